"""BizCloud's main job on its embedded defaults: what `make up` starts, and where to find it.

Today that is the local cluster and the sample service `demo-web` in environment `dev`; each
later component (API and console, gateway, ZooKeeper, MariaDB) adds itself to `up`, `down` and
`endpoints`, so `bizcloud status --json` stays the one place scripts look things up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bizcloud.cluster import images, lifecycle
from bizcloud.cluster.lifecycle import Step
from bizcloud.errors import BizCloudError
from bizcloud.kube.kubectl import is_ready
from bizcloud.settings import Settings

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "examples" / "demo-web"
SAMPLE_IMAGE = "demo-web:v1"
SAMPLE_NAMESPACE = "bc-dev"
SAMPLE_SERVICE = "demo-web"


def deploy_sample(settings: Settings, *, step: Step) -> None:
    """Build the sample image, load it into the node, apply its manifest, wait for Ready pods."""
    lay = lifecycle.layout_of(settings)
    step(f"building image {SAMPLE_IMAGE}")
    images.build_image(SAMPLE_DIR, SAMPLE_IMAGE, settings)
    images.load_into_containerd(SAMPLE_IMAGE, lay.containerd_socket)
    step(f"deploying {SAMPLE_SERVICE} to {SAMPLE_NAMESPACE}")
    kubectl = lifecycle.kubectl(settings)
    kubectl.apply((SAMPLE_DIR / "k8s.yaml").read_text())
    kubectl.run("rollout", "status", f"deployment/{SAMPLE_SERVICE}", "-n", SAMPLE_NAMESPACE, "--timeout=180s",
                timeout=200)


def sample_urls(settings: Settings) -> list[str]:
    """The URL of each Ready pod of the sample service (the gateway will front them later)."""
    kubectl = lifecycle.kubectl(settings)
    pods = kubectl.get_json("pods", "-n", SAMPLE_NAMESPACE, "-l", f"bizcloud.io/service={SAMPLE_SERVICE}")
    urls = []
    for pod in pods["items"]:
        ip = pod.get("status", {}).get("podIP")
        if ip and is_ready(pod) and not pod["metadata"].get("deletionTimestamp"):
            urls.append(f"http://{ip}:8080/")
    return urls


def up(settings: Settings, *, step: Step) -> dict[str, Any]:
    lifecycle.up(settings, mode="real", step=step)
    deploy_sample(settings, step=step)
    return endpoints(settings)


def down(settings: Settings, *, purge: bool = False, step: Step) -> list[str]:
    return lifecycle.down(settings, purge=purge, step=step)


def endpoints(settings: Settings) -> dict[str, Any]:
    """Every component `make up` started, with its endpoint: the data of `bizcloud status --json`."""
    cluster = lifecycle.status(settings)
    result: dict[str, Any] = {"cluster": cluster, "kubeconfig": cluster["kubeconfig"]}
    if cluster["up"] and cluster["mode"] == "real":
        try:
            result["demo-web"] = {"namespace": SAMPLE_NAMESPACE, "urls": sample_urls(settings)}
        except BizCloudError:
            result["demo-web"] = {"namespace": SAMPLE_NAMESPACE, "urls": []}
    return result
