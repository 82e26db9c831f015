"""The SDK runs in small app images (Python and kazoo only): it must import nothing else of ours."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pydantic", "pydantic_settings", "httpx", "sqlalchemy", "fastapi", "prometheus_client", "yaml",
         "typer", "rich", "bizcloud.monitor", "bizcloud.settings", "bizcloud.cluster")


def test_consumer_and_provider_import_only_the_stdlib_kazoo_and_usersplit() -> None:
    code = ("import json, sys; import bizcloud.soa.consumer, bizcloud.soa.provider, bizcloud.soa.whitelist; "
            "print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    assert [m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY] == []
    ours = {m for m in loaded if m.startswith("bizcloud")}
    assert ours <= {"bizcloud", "bizcloud.usersplit", "bizcloud.soa", "bizcloud.soa.consumer",
                    "bizcloud.soa.provider", "bizcloud.soa.whitelist", "bizcloud.soa.urls",
                    "bizcloud.soa.rules", "bizcloud.soa.balancers", "bizcloud.soa.watching"}, ours
