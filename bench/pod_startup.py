"""Pod start-up latency on the real node, measured as Kubernetes' own SLO defines it.

SLO (sig-scalability): from pod creation to all containers reported started, observed through
a watch; p99 <= 5 s, image pulls excluded (our images are local, so there are none). We take
the creation time on the client just before the POST, so API latency counts against us, and
also report time to Ready (the sample app's readiness probe runs every second).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from bizcloud.cluster import images, lifecycle, processes
from bizcloud.kube.kubectl import is_ready
from bizcloud.settings import Settings
from bizcloud.stack import SAMPLE_DIR

NAMESPACE = "bench-startup"


def _pod(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "startup-bench"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "app", "image": image, "imagePullPolicy": "Never",
                "ports": [{"name": "http", "containerPort": 8080}],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
            }],
        },
    }


def _all_started(pod: dict[str, Any]) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return bool(statuses) and all("running" in (s.get("state") or {}) for s in statuses)


def run(settings: Settings, *, pods: int = 50, rate: float | None = None, timeout: float = 300.0
        ) -> dict[str, Any]:
    """Create ``pods`` pods at ``rate`` per second (None: all at once) and time each one."""
    image = settings.sample_image
    images.build_image(SAMPLE_DIR, image, settings)
    images.load_into_containerd(image, lifecycle.layout_of(settings).containerd_socket)
    kubectl = lifecycle.kubectl(settings)
    kubectl.run("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", timeout=180)
    kubectl.run("create", "namespace", NAMESPACE)
    processes.wait_until(lambda: kubectl.run("get", "sa", "default", "-n", NAMESPACE,
                                             check=False).returncode == 0,
                         what="no default ServiceAccount", timeout=60)

    started: dict[str, float] = {}
    ready: dict[str, float] = {}
    done = threading.Event()
    base = f"/api/v1/namespaces/{NAMESPACE}/pods"

    with lifecycle.admin_http(settings) as client:
        version = client.get(base).raise_for_status().json()["metadata"]["resourceVersion"]

    def watch() -> None:
        with lifecycle.admin_http(settings) as stream_client, stream_client.stream(
                "GET", base, params={"watch": "true", "resourceVersion": version},
                timeout=timeout) as response:
            for line in response.iter_lines():
                now = time.perf_counter()
                pod = json.loads(line)["object"]
                name = pod["metadata"]["name"]
                if name not in started and _all_started(pod):
                    started[name] = now
                if name not in ready and is_ready(pod):
                    ready[name] = now
                if len(ready) >= pods:
                    done.set()
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    created: dict[str, float] = {}
    with lifecycle.admin_http(settings) as client:
        first = time.perf_counter()
        for i in range(pods):
            if rate:
                time.sleep(max(0.0, first + i / rate - time.perf_counter()))
            name = f"startup-{i:03d}"
            created[name] = time.perf_counter()
            client.post(base, json=_pod(name, image)).raise_for_status()
    if not done.wait(timeout):
        raise TimeoutError(f"only {len(ready)}/{pods} pods became Ready within {timeout:.0f}s")
    kubectl.run("delete", "namespace", NAMESPACE, "--wait=false")
    return {
        "pods": pods,
        "started_s": [started[n] - created[n] for n in created],
        "ready_s": [ready[n] - created[n] for n in created],
    }
