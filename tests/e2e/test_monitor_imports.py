"""The monitor's whole run loads none of the heavy modules it has no use for.

`tests/monitor/test_startup_imports.py` checks the start up to the first use of the cluster; this
runs `python -X importtime -m bizcloud monitor` against the real cluster (its own catalog file,
Lease, metrics port and an empty state directory, so no ZooKeeper and no config: what a
monitor's backlog usually meets) until a pod of its own is committed to the catalog, stops it,
and reads every module it imported on the way: the lazy imports must stay lazy while it runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bizcloud.catalog.db import make_engine, migrate_engine
from bizcloud.catalog.store import CatalogStore
from bizcloud.cluster import lifecycle
from bizcloud.kube.kubectl import Kubectl
from bizcloud.settings import Settings
from tests.e2e.conftest import demo_deployment, wait_for
from tests.e2e.test_monitor import free_port
from tests.monitor.test_startup_imports import NOT_AT_START

pytestmark = pytest.mark.e2e


def test_a_running_monitor_never_imports_what_it_does_not_use(
        real_cluster: Settings, kubectl: Kubectl, namespace: str, sample_image: str, tmp_path: Path) -> None:
    service = f"imp-{uuid.uuid4().hex[:6]}"
    kubectl.apply(demo_deployment(name=service, namespace=namespace, image=sample_image, replicas=1,
                                  service=service))
    db_url = f"sqlite:///{tmp_path / 'catalog.db'}"
    engine = make_engine(db_url)
    migrate_engine(engine)
    store = CatalogStore(engine)
    env = {**os.environ, "BIZCLOUD_DATABASE_URL": db_url, "BIZCLOUD_STATE_DIR": str(tmp_path / "state"),
           "BIZCLOUD_KUBECONFIG": str(lifecycle.kubeconfig_path(real_cluster)),
           "BIZCLOUD_MONITOR_METRICS_PORT": str(free_port()),
           "BIZCLOUD_MONITOR_LEASE_NAME": f"e2e-imports-{uuid.uuid4().hex[:6]}"}
    env.pop("BIZCLOUD_ZOOKEEPER_HOSTS", None)
    log = tmp_path / "monitor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "bizcloud", "monitor"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: store.instances(service=service), timeout=120,
                     what=f"the monitor to commit {service}'s pod")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    engine.dispose()
    lines = log.read_text(errors="replace").splitlines()
    modules = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
    assert proc.returncode == 0, "\n".join(lines[-20:])
    assert {"bizcloud.authz.worker", "bizcloud.authz.mysql", "httpx", "sqlalchemy"} <= modules
    assert {name.split(".")[0] for name in modules} & set(NOT_AT_START) == set()
