"""Build time of the cluster's binaries: cold (empty Go caches), relink, and warm (cached).

cold:   fresh module cache and build cache: what a new machine pays, downloads included.
relink: fresh binary cache, warm Go caches: what a new working copy pays after a version bump
        of ldflags, or when the binary cache was wiped.
warm:   everything cached: what every `make up`/`make test` after the first pays.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bizcloud.cluster import gobuild


@contextmanager
def _env(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _timed_build(cache_dir: Path) -> float:
    started = time.perf_counter()
    gobuild.build_all(cache_dir)
    return time.perf_counter() - started


def run(cache_dir: Path, *, cold: bool) -> dict[str, float]:
    results = {"warm_s": _timed_build(cache_dir)}
    with tempfile.TemporaryDirectory(prefix="bizbench-build-") as scratch:
        results["relink_s"] = _timed_build(Path(scratch) / "bin-cache")
        if cold:
            root = Path(scratch)
            with _env(GOCACHE=str(root / "gocache"), GOMODCACHE=str(root / "gomodcache")):
                results["cold_s"] = _timed_build(root / "cold-cache")
                # Module caches are read-only on purpose; go itself knows how to remove them.
                subprocess.run([shutil.which("go") or "go", "clean", "-modcache"], check=False,
                               capture_output=True)
    return results
