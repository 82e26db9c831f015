"""Deploy and one-click environments end to end: templates → real API server → Ready pods.

The module keeps its own SQLite config center holding the sample configs (examples/demo) and a
copy of the inventory, and works in environments of its own (``rel-<hex>``, namespaces
``bc-rel-<hex>``) created with ``create_environment`` from ``dev``, so it never touches what
`make up` deployed in ``bc-dev``. Releases are the sample image under two tags, ``demo:v1`` and
``demo:v2``; the pods report their release label, which the templates set from the image tag.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from bizcloud import stack
from bizcloud.catalog.db import make_engine, migrate_engine
from bizcloud.cluster import images, lifecycle
from bizcloud.configcenter.store import ConfigStore
from bizcloud.errors import BizCloudError
from bizcloud.kube.client import KubeClient
from bizcloud.kube.kubectl import Kubectl
from bizcloud.kube.objectdiff import Action
from bizcloud.release.deploy import Releaser
from bizcloud.release.environments import create_environment, delete_environment
from bizcloud.release.params import IMAGE_ID_ANNOTATION, Platform
from bizcloud.release.scale import scale
from bizcloud.settings import Settings
from tests.e2e.conftest import ready_pods, wait_for

pytestmark = pytest.mark.e2e

ENV = f"rel-{uuid.uuid4().hex[:5]}"
NAMESPACE = f"bc-{ENV}"
SCALE_ENV = f"{ENV}-scale"
SCALE_NAMESPACE = f"bc-{SCALE_ENV}"


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConfigStore]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('release') / 'catalog.db'}")
    migrate_engine(engine)
    store = ConfigStore(engine)
    inventory = stack.SAMPLE_INVENTORY.read_text().replace(stack.NODE_IP_PLACEHOLDER, "192.0.2.2")
    store.apply(inventory, author="test")
    store.apply(stack.SAMPLE_CONFIGS.read_text(), author="test")
    yield store
    engine.dispose()


@pytest.fixture(scope="module")
def v2_image(sample_image: str, real_cluster: Settings) -> str:
    """The sample image under a second tag: a new release, as far as the cluster can tell."""
    images.tag_image(sample_image, "demo:v2", real_cluster)
    images.load_into_containerd("demo:v2", lifecycle.layout_of(real_cluster).containerd_socket)
    return "demo:v2"


@pytest.fixture
async def releaser(kube: KubeClient, configs: ConfigStore) -> AsyncIterator[Releaser]:
    # No monitor runs in this module, so its pods are made without the `bizcloud.io/authorized`
    # gate (tests/e2e/test_gray.py and test_authz.py deploy with it, beside a monitor that opens it).
    yield Releaser(kube, configs, platform=Platform(authorized_gate=False), rollout_timeout=180)


@pytest.fixture(scope="module", autouse=True)
def _remove_environment(kubectl: Kubectl) -> Iterator[None]:
    yield
    for namespace in (NAMESPACE, SCALE_NAMESPACE):
        kubectl.run("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)


def releases(kubectl: Kubectl, service: str) -> list[str]:
    return sorted(p["metadata"]["labels"]["bizcloud.io/release"]
                  for p in ready_pods(kubectl, NAMESPACE, f"bizcloud.io/service={service}"))


async def test_env_create_deploys_the_closure_from_the_sample_configs(
        releaser: Releaser, kubectl: Kubectl, sample_image: str) -> None:
    steps: list[str] = []
    outcome = await create_environment(releaser, ENV, "dev", only=["demo-web"], on_step=steps.append)
    assert outcome.services == ["demo-api", "demo-web"]  # demo-web consumes demo-api's interface
    assert all(d.rollouts[d.service].state.value == "complete" for d in outcome.deploys)
    assert releases(kubectl, "demo-web") == ["v1", "v1"]  # dev's parameters: 2 replicas
    assert releases(kubectl, "demo-api") == ["v1", "v1"]
    gray = kubectl.get_json("deployment", "demo-web-gray", "-n", NAMESPACE)
    assert gray["spec"]["replicas"] == 0
    secret = kubectl.get_json("secret", "bizcloud-mysql-demo-api", "-n", NAMESPACE)
    assert set(secret["data"]) == {"demo_api"}
    namespace = kubectl.get_json("namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["bizcloud.io/from-env"] == "dev"
    assert any("deploying demo-api" in s for s in steps)


async def test_a_second_deploy_changes_nothing_and_keeps_the_environment_label(
        releaser: Releaser, kubectl: Kubectl) -> None:
    before = kubectl.get_json("deployment", "demo-web", "-n", NAMESPACE)["metadata"]["resourceVersion"]
    outcome = await releaser.deploy("demo-web", ENV, show_diff=True)
    assert {d.action for d in outcome.diffs} == {Action.UNCHANGED}, [d.text for d in outcome.diffs]
    assert not outcome.pruned and not outcome.changed
    after = kubectl.get_json("deployment", "demo-web", "-n", NAMESPACE)["metadata"]["resourceVersion"]
    assert after == before
    labels = kubectl.get_json("namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["bizcloud.io/from-env"] == "dev"  # the deploy's own Namespace apply left it alone


async def test_dry_run_shows_the_new_image_and_writes_nothing(releaser: Releaser, kubectl: Kubectl,
                                                               v2_image: str) -> None:
    outcome = await releaser.deploy("demo-web", ENV, image=v2_image, dry_run=True)
    changed = {str(d.ref): d for d in outcome.diffs if d.action is Action.UPDATE}
    assert set(changed) == {f"Deployment {NAMESPACE}/demo-web", f"Deployment {NAMESPACE}/demo-web-gray"}
    assert "+        image: demo:v2" in changed[f"Deployment {NAMESPACE}/demo-web"].text
    assert releases(kubectl, "demo-web") == ["v1", "v1"]


async def test_deploy_a_new_image_rolls_and_then_keeps_it(releaser: Releaser, kubectl: Kubectl,
                                                         v2_image: str) -> None:
    seen: list[tuple[str, int]] = []
    outcome = await releaser.deploy("demo-web", ENV, image=v2_image,
                                    on_rollout=lambda name, s: seen.append((name, s.updated)))
    assert outcome.release == "v2" and outcome.rollouts["demo-web"].state.value == "complete"
    wait_for(lambda: releases(kubectl, "demo-web") == ["v2", "v2"], timeout=60, what="two v2 pods")
    assert any(name == "demo-web" for name, _ in seen)
    again = await releaser.deploy("demo-web", ENV)  # no --image: the image running now
    assert again.image == v2_image


async def test_bad_requests_name_the_fix_and_change_nothing(releaser: Releaser, kubectl: Kubectl) -> None:
    with pytest.raises(BizCloudError, match="has no config in the config center"):
        await releaser.deploy("nope", ENV)
    with pytest.raises(BizCloudError, match="no parameters for environment 'nowhere'"):
        await releaser.deploy("demo-web", "nowhere")
    assert kubectl.run("get", "namespace", "bc-nowhere", check=False).returncode != 0
    with pytest.raises(BizCloudError, match="was not created by `bizcloud env create`"):
        await delete_environment(releaser, "dev", wait=False)
    with pytest.raises(BizCloudError, match="exists already"):
        await create_environment(releaser, ENV, "e2e")


async def test_a_rebuilt_image_rolls_once_and_a_later_deploy_keeps_it(releaser: Releaser) -> None:
    """`make up` marks pods with the image's content ID; a user's deploy after it restarts nothing."""
    await releaser.deploy("demo-api", ENV, pod_annotations={IMAGE_ID_ANNOTATION: "sha256:rebuilt"})
    again = await releaser.deploy("demo-api", ENV, show_diff=True)
    assert {d.action for d in again.diffs} == {Action.UNCHANGED}, [d.text for d in again.diffs]


async def test_env_delete_removes_the_namespace(releaser: Releaser, kubectl: Kubectl) -> None:
    assert await delete_environment(releaser, ENV, wait=True, timeout=180) == NAMESPACE
    assert kubectl.run("get", "namespace", NAMESPACE, check=False).returncode != 0



async def test_scale_replicas_then_resize_in_place_and_remember_both(
        releaser: Releaser, kubectl: Kubectl, configs: ConfigStore) -> None:
    await create_environment(releaser, SCALE_ENV, "dev", only=["demo-web"])
    outcome = await scale(releaser, "demo-web", SCALE_ENV, replicas=3, user="tester")
    assert outcome.replicas == (2, 3)
    wait_for(lambda: len(ready_pods(kubectl, SCALE_NAMESPACE, "bizcloud.io/service=demo-web")) == 3,
             timeout=90, what="three demo-web pods")
    web = "bizcloud.io/service=demo-web"
    before = {p["metadata"]["uid"] for p in ready_pods(kubectl, SCALE_NAMESPACE, web)}
    resized = await scale(releaser, "demo-web", SCALE_ENV, cpu="30m", memory="112Mi", user="tester")
    assert resized.method == "in-place", resized.to_json()  # Kubernetes 1.34: pods/resize is on
    pods = ready_pods(kubectl, SCALE_NAMESPACE, "bizcloud.io/service=demo-web")
    assert {p["metadata"]["uid"] for p in pods} == before  # same pods, no restart
    for pod in pods:
        status = pod["status"]["containerStatuses"][0]
        assert status["restartCount"] == 0
        assert status["resources"]["requests"] == {"cpu": "30m", "memory": "112Mi"}
    current = configs.get("demo-web")
    assert current.author == "tester" and "in-place" in current.comment
    assert (current.config or {})["resources"][SCALE_ENV] == {"replicas": 3, "cpu": "30m", "memory": "112Mi",
                                                              "env": {}}
    rolled = await scale(releaser, "demo-web", SCALE_ENV, memory="120Mi", rolling=True, user="tester")
    assert rolled.method == "rolling"
    wait_for(lambda: not before & {p["metadata"]["uid"] for p in
                                   ready_pods(kubectl, SCALE_NAMESPACE, "bizcloud.io/service=demo-web")},
             timeout=120, what="the pods replaced by a rolling update")
    deployment = kubectl.get_json("deployment", "demo-web", "-n", SCALE_NAMESPACE)
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"memory": "120Mi"}
    again = await releaser.deploy("demo-web", SCALE_ENV, show_diff=True)  # the config remembers the scale
    assert {d.action for d in again.diffs if d.ref.kind == "Deployment"} == {Action.UNCHANGED}, \
        [d.text for d in again.diffs]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"replicas": -1}, "--replicas: -1 is out of range"),
    ({"cpu": "lots"}, "--cpu: 'lots' is not valid"),
    ({"memory": "512m"}, "--memory: '512m' is not valid"),
    ({}, "nothing to scale"),
])
async def test_scale_refuses_bad_values_by_option(releaser: Releaser, configs: ConfigStore,
                                                  kwargs: dict[str, Any], message: str) -> None:
    version = configs.get("demo-web").version
    with pytest.raises(BizCloudError, match=message):
        await scale(releaser, "demo-web", SCALE_ENV, **kwargs)
    assert configs.get("demo-web").version == version
