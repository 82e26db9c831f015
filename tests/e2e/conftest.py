"""Fixtures for end-to-end tests: the real local cluster, the sample image, throwaway namespaces.

The real cluster is the one `make up` runs (default state directory and ports): if it is already
up the tests use it and leave it up; if not, they start it and stop it at the end. Each test
module works in its own namespace, so the tests never touch what a developer deployed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from bizcloud import stack
from bizcloud.cluster import images, lifecycle
from bizcloud.kube.client import KubeClient
from bizcloud.kube.config import load_kubeconfig
from bizcloud.kube.kubectl import Kubectl, is_ready
from bizcloud.settings import Settings


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll until ``check`` returns something truthy; fail the test with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def metric(port: int, name: str) -> float | None:
    """One unlabelled sample of a process's Prometheus endpoint on ``port`` (None: not answering)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def cli(*args: str, env: dict[str, str] | None = None, check: bool = True
        ) -> subprocess.CompletedProcess[str]:
    """Run the `bizcloud` command as a user would (same interpreter, so no PATH assumptions)."""
    return subprocess.run([sys.executable, "-m", "bizcloud", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600, check=check)


async def eventually(check: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1) -> Any:
    """``wait_for`` for async tests: ``check`` may return an awaitable."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        await asyncio.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
async def kube(real_cluster: Settings) -> AsyncIterator[KubeClient]:
    """The async Kubernetes client on the real cluster."""
    async with KubeClient.from_config(load_kubeconfig(lifecycle.kubeconfig_path(real_cluster))) as client:
        yield client


@pytest.fixture(scope="session")
def real_settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def real_cluster(real_settings: Settings) -> Iterator[Settings]:
    if os.geteuid() != 0:
        pytest.skip("a real node needs root (containerd, kubelet, a network bridge); run the suite as root")
    was_up = lifecycle.status(real_settings)["up"] and lifecycle.status(real_settings)["mode"] == "real"
    lifecycle.up(real_settings, mode="real")
    yield real_settings
    if not was_up:
        stack.down(real_settings, step=lambda _: None)


@pytest.fixture(scope="session")
def kubectl(real_cluster: Settings) -> Kubectl:
    return lifecycle.kubectl(real_cluster)


@pytest.fixture(scope="session")
def sample_image(real_cluster: Settings) -> str:
    """The sample service's image, built locally and loaded into the node's containerd."""
    image = real_cluster.sample_image
    images.build_image(stack.SAMPLE_DIR, image, real_cluster)
    images.load_into_containerd(image, lifecycle.layout_of(real_cluster).containerd_socket)
    return image


@pytest.fixture(scope="module")
def namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"bc-e2e-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", name)
    wait_for(lambda: _has_default_service_account(kubectl, name), timeout=60,
             what=f"the default ServiceAccount in {name}")
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def _has_default_service_account(kubectl: Kubectl, namespace: str) -> bool:
    return kubectl.run("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0


def deploy_sample_alone(settings: Settings) -> None:
    """The sample deployed as `make up` does, but with no BizCloud monitor running: its pods are
    made without the ``bizcloud.io/authorized`` gate (nothing here would open it), as on a cluster
    with ``BIZCLOUD_RELEASE_AUTHORIZED_GATE=false``."""
    alone = settings.model_copy(update={"release_authorized_gate": False})
    stack.deploy_sample(alone, step=lambda _: None)


def demo_deployment(*, name: str, namespace: str, image: str, replicas: int, service: str | None = None,
                    group: str = "normal") -> str:
    """A Deployment of the sample app with BizCloud's labels, as kubectl-ready JSON."""
    labels = {"app": name, "bizcloud.io/service": service or name, "bizcloud.io/env": "e2e",
              "bizcloud.io/group": group, "bizcloud.io/release": "v1"}

    def field(path: str) -> dict[str, Any]:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

    env = [{"name": "POD_NAME", **field("metadata.name")}, {"name": "POD_IP", **field("status.podIP")},
           {"name": "VERSION", **field("metadata.labels['bizcloud.io/release']")},
           {"name": "GROUP", **field("metadata.labels['bizcloud.io/group']")}]
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "automountServiceAccountToken": False,
                    "containers": [{
                        "name": "app", "image": image, "imagePullPolicy": "IfNotPresent", "env": env,
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                           "periodSeconds": 1},
                    }],
                },
            },
        },
    })


def ready_pods(kubectl: Kubectl, namespace: str, selector: str) -> list[dict[str, Any]]:
    """Pods that are Ready, have an IP and are not being deleted."""
    pods = kubectl.get_json("pods", "-n", namespace, "-l", selector)["items"]
    return [p for p in pods if is_ready(p) and p["status"].get("podIP")
            and not p["metadata"].get("deletionTimestamp")]
