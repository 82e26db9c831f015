"""Preparing a brand-new catalog database: Alembic's revisions against the models' create_all + stamp.

The monitor's first start (``make up``, the issue 3 benchmark) finds an empty SQLite file and
migrates it on a thread while the pods' list streams in, so the CPU spent there is taken from the
watch (one GIL). Each round runs in a fresh interpreter that has already imported what
``bizcloud monitor`` imports (``bizcloud.daemons``), then times ``migrate_engine`` on an empty
file: ``alembic`` (no schema: Alembic is imported and runs every revision) or ``models``
(``schema=database_schema``: create_all and the stamp in one transaction). Rounds alternate.

    .venv/bin/python -m bench.fresh_catalog [--rounds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROUND = """
import json, sys, time
import bizcloud.daemons
from bizcloud.catalog.db import make_engine, migrate_engine
from bizcloud.daemons import database_schema
engine = make_engine(sys.argv[2])
with engine.connect():
    pass  # the file, WAL and the pool exist before timing, as in the monitor (its engine is made first)
wall, cpu = time.perf_counter(), time.process_time()
migrate_engine(engine, schema=database_schema if sys.argv[1] == "models" else None)
print(json.dumps({"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                  "alembic_loaded": "alembic" in sys.modules}))
"""


def one_round(path: str, directory: Path, index: int) -> dict[str, float | bool]:
    url = f"sqlite:///{directory / f'{path}-{index}.db'}"
    done = subprocess.run([sys.executable, "-c", ROUND, path, url], capture_output=True, text=True,
                          check=True)
    result: dict[str, float | bool] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float | bool]]] = {"alembic": [], "models": []}
    with tempfile.TemporaryDirectory(prefix="bench-fresh-catalog-") as tmp:
        for index in range(args.rounds):
            order = ("alembic", "models") if index % 2 == 0 else ("models", "alembic")
            for path in order:
                runs[path].append(one_round(path, Path(tmp), index))
                print(json.dumps({"round": index, "path": path, **runs[path][-1]}), flush=True)
    summary: dict[str, object] = {"rounds": args.rounds, "loadavg": os.getloadavg()}
    for path, results in runs.items():
        for key in ("wall_s", "cpu_s"):
            values = [float(r[key]) for r in results]
            summary[f"{path}_{key}_median"] = round(statistics.median(values), 4)
            summary[f"{path}_{key}_min"] = round(min(values), 4)
    for key in ("wall_s", "cpu_s"):
        new, old = summary[f"models_{key}_median"], summary[f"alembic_{key}_median"]
        assert isinstance(new, float) and isinstance(old, float)
        summary[f"{key}_ratio_models_to_alembic"] = round(new / old, 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
