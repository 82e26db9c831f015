"""Gray release end to end: real cluster, real `bizcloud server`, `monitor` and `gateway`, a real ZooKeeper.

The module runs its own ZooKeeper (port 22186, on the node's address so pods reach it), its own
SQLite catalog holding the sample configs, and the three processes on its own ports (18840-18843)
and Lease; the sample services are deployed with the templates into an environment of its own
(``gray-<hex>``, namespace ``bc-gray-<hex>``), made from ``dev``, so nothing `make up` runs is
touched. Every gray operation goes through the CLI or the REST API, as a user's would. Releases
are the sample image under two tags, ``demo:v1`` and ``demo:v2``; pods answer with their release
label (``version``) and group, and demo-web's answers carry demo-api's under ``backend``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bizcloud import stack
from bizcloud.accounts.roles import Role
from bizcloud.accounts.store import AccountStore
from bizcloud.catalog.db import make_engine, migrate_engine
from bizcloud.catalog.policies import GrayPolicyOut
from bizcloud.catalog.store import CatalogStore
from bizcloud.cluster import images, lifecycle
from bizcloud.cluster.host import node_ip
from bizcloud.configcenter.store import ConfigStore
from bizcloud.kube.client import KubeClient
from bizcloud.kube.config import load_kubeconfig
from bizcloud.kube.kubectl import Kubectl
from bizcloud.release.deploy import Releaser
from bizcloud.release.environments import create_environment
from bizcloud.release.params import Platform
from bizcloud.release.replicas import split
from bizcloud.release.store import ReleaseStore
from bizcloud.settings import Settings
from bizcloud.soa import zookeeper
from bizcloud.soa.zookeeper import ZooKeeperServer
from bizcloud.usersplit import bucket
from tests.e2e.conftest import cli, ready_pods, wait_for

pytestmark = pytest.mark.e2e

ZK_PORT = 22186
SERVER_PORT, MONITOR_PORT, GATEWAY_PORT, ADMIN_PORT = 18840, 18841, 18842, 18843
API = f"http://127.0.0.1:{SERVER_PORT}/api/v1"
GATEWAY = f"http://127.0.0.1:{GATEWAY_PORT}"
ENV = f"gray-{uuid.uuid4().hex[:5]}"
NAMESPACE = f"bc-{ENV}"
TICK_S = 3.0          # the controller's tick (GrayController.tick_s)
UIDS = [f"user-{n}" for n in range(120)]


@dataclass
class Stack:
    tmp: Path
    env: dict[str, str]
    token: str
    catalog: CatalogStore
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, probe: str, extra: dict[str, str] | None = None) -> None:
        log = self.tmp / f"{name}.log"
        proc = subprocess.Popen([sys.executable, "-m", "bizcloud", name], env={**self.env, **(extra or {})},
                                stdout=log.open("ab"), stderr=subprocess.STDOUT)   # a restart appends
        self.procs[name] = proc

        def answers() -> bool:
            assert proc.poll() is None, f"{name} died: {log.read_text()[-3000:]}"
            try:
                return httpx.get(probe, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(answers, timeout=60, what=f"the {name}")

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    def gray(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`bizcloud gray ARGS` against this module's server, with its ops token."""
        env = {"BIZCLOUD_SERVER_PORT": str(SERVER_PORT), "BIZCLOUD_TOKEN": self.token}
        return cli("gray", *args, env=env, check=check)

    def post(self, service: str, verb: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return httpx.post(f"{API}/release/gray/{service}/{ENV}/{verb}", json=body or {}, timeout=600,
                          headers={"Authorization": f"Bearer {self.token}"})

    def status(self, service: str) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{API}/release/gray/{service}/{ENV}", timeout=10).json()
        return result


@pytest.fixture(scope="module")
def v2_image(sample_image: str, real_cluster: Settings) -> str:
    """The sample image under a second tag: a new release, as far as the cluster can tell."""
    images.tag_image(sample_image, "demo:v2", real_cluster)
    images.load_into_containerd("demo:v2", lifecycle.layout_of(real_cluster).containerd_socket)
    return "demo:v2"


@pytest.fixture(scope="module")
def gray_stack(real_cluster: Settings, kubectl: Kubectl, sample_image: str, v2_image: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("gray-e2e")
    zk = ZooKeeperServer(root=tmp, port=ZK_PORT, host=node_ip())
    zookeeper.start(zk)
    db_url = f"sqlite:///{tmp / 'catalog.db'}"
    engine = make_engine(db_url)
    migrate_engine(engine)
    configs = ConfigStore(engine)
    inventory = stack.SAMPLE_INVENTORY.read_text().replace(stack.NODE_IP_PLACEHOLDER, node_ip())
    configs.apply(inventory, author="test")
    configs.apply(stack.SAMPLE_CONFIGS.read_text(), author="test")
    accounts = AccountStore(engine)
    accounts.create_user(name="gray-ops", password="gray-e2e-password", role=Role.OPS)
    token = accounts.issue_token(user="gray-ops", name="e2e")
    env = {**os.environ, "BIZCLOUD_DATABASE_URL": db_url, "BIZCLOUD_STATE_DIR": str(tmp / "state"),
           "BIZCLOUD_KUBECONFIG": str(lifecycle.kubeconfig_path(real_cluster)),
           "BIZCLOUD_SERVER_PORT": str(SERVER_PORT), "BIZCLOUD_MONITOR_METRICS_PORT": str(MONITOR_PORT),
           "BIZCLOUD_GATEWAY_PORT": str(GATEWAY_PORT), "BIZCLOUD_GATEWAY_ADMIN_PORT": str(ADMIN_PORT),
           "BIZCLOUD_MONITOR_LEASE_NAME": f"e2e-gray-{uuid.uuid4().hex[:6]}", "BIZCLOUD_MONITOR_GRACE_S": "1",
           "BIZCLOUD_MONITOR_RESYNC_S": "5", "BIZCLOUD_ZOOKEEPER_HOSTS": zk.hosts}
    own = Stack(tmp=tmp, env=env, token=token, catalog=CatalogStore(engine))
    try:
        own.start("server", f"http://127.0.0.1:{SERVER_PORT}/healthz")
        own.start("monitor", f"http://127.0.0.1:{MONITOR_PORT}/metrics")
        own.start("gateway", f"http://127.0.0.1:{ADMIN_PORT}/healthz")
        # the sample, with the registry address the server's releaser renders too (same manifests)
        asyncio.run(_create_environment(real_cluster, configs, Platform(zookeeper=zk.hosts)))
        wait_for(lambda: len(own.catalog.instances(service="demo-web", env=ENV)) == 2, timeout=60,
                 what="demo-web in the module's catalog")
        own.catalog.create_route(host="*", path_prefix="/", service="demo-web", env=ENV)
        wait_for(lambda: _answer("user-1").get("backend", {}).get("version") == "v1", timeout=60,
                 what="demo-web -> demo-api through the gateway")
        yield own
    finally:
        own.stop()
        kubectl.run("delete", "namespace", NAMESPACE, "--wait=false", "--ignore-not-found", check=False)
        zookeeper.stop(zk)
        engine.dispose()


async def _create_environment(cluster: Settings, configs: ConfigStore, platform: Platform) -> None:
    async with KubeClient.from_config(load_kubeconfig(lifecycle.kubeconfig_path(cluster))) as client:
        releaser = Releaser(client, configs, platform=platform, rollout_timeout=180)
        await create_environment(releaser, ENV, "dev", only=["demo-web"])


def _answer(uid: str | None) -> dict[str, Any]:
    try:
        response = httpx.get(f"{GATEWAY}/", headers={"X-User-Id": uid} if uid else {}, timeout=10)
    except httpx.HTTPError:
        return {}
    return response.json() if response.status_code == 200 else {}


def _expected(uid: str, ratio: float) -> str:
    return "gray" if bucket(uid) < ratio * 100 else "normal"


def _split_holds(ratio: float, *, backend: bool = False) -> bool:
    """Every UID lands in its group (and version) at the gateway — and in the SOA layer with ``backend``."""
    for uid in UIDS:
        body = _answer(uid)
        want = _expected(uid, ratio)
        want_version = "v2" if want == "gray" else "v1"
        if body.get("group") != want or body.get("version") != want_version:
            return False
        if backend and (body.get("backend", {}).get("group") != want
                        or body["backend"].get("version") != want_version):
            return False
    return True


def _replicas(kubectl: Kubectl, name: str) -> int:
    return int(kubectl.get_json("deployment", name, "-n", NAMESPACE)["spec"].get("replicas") or 0)


def _image(kubectl: Kubectl, name: str) -> str:
    return str(kubectl.get_json("deployment", name, "-n", NAMESPACE)["spec"]["template"]["spec"]
               ["containers"][0]["image"])


class Load:
    """A bounded load loop through the gateway (random users, ~30 requests/s): any non-200 is a failure.

    demo-web answers 200 with ``backend_error`` when its SOA call to demo-api failed; that is a
    failure too. A new demo-web pod takes traffic only once Ready, and its ``bizcloud.io/authorized``
    readiness gate keeps it un-Ready until its whitelist entry on demo-api is written, so not even
    its first request may be refused.
    """

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.backend_errors: list[tuple[str, str]] = []   # (pod, error)
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(11)
        with httpx.Client(base_url=GATEWAY, timeout=10) as client:
            while not self._stop.is_set() and self.answered < 50_000:
                time.sleep(0.03)
                uid = f"load-{rng.randrange(10_000)}"
                try:
                    response = client.get("/", headers={"X-User-Id": uid})
                except httpx.HTTPError as e:
                    self.failures.append(f"{uid}: {e!r}")
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{uid}: {response.status_code} {response.text[:200]}")
                    continue
                self.answered += 1
                body = response.json()
                if "backend_error" in body:
                    self.backend_errors.append((str(body.get("pod")), body["backend_error"]))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def check(self) -> None:
        """No failed request and no SOA call refused, not even on a pod started during the loop."""
        assert self.failures == [], self.failures[:5]
        assert self.answered > 50
        errors = self.backend_errors
        assert errors == [], f"{len(errors)} SOA calls failed: {errors[:3]}"


def test_start_at_20_percent_splits_pods_and_users_in_both_layers(gray_stack: Stack,
                                                                   kubectl: Kubectl) -> None:
    with Load() as load:
        started = json.loads(gray_stack.gray("start", "demo-web", "--env", ENV, "--image", "demo:v2",
                                             "--ratio", "20", "--interval", "5s", "--json").stdout)
        assert started["phase"] == "running" and started["ratio"] == 20
        pods = split(2, 20)
        assert _replicas(kubectl, "demo-web-gray") == pods.gray
        assert _replicas(kubectl, "demo-web") == pods.normal
        assert _image(kubectl, "demo-web-gray") == "demo:v2" and _image(kubectl, "demo-web") == "demo:v1"
        wait_for(lambda: _split_holds(20), timeout=30, what="users split 20 % by bucket at the gateway")
        assert _split_holds(20), "the same answer every time"

        # demo-api gray too: a gray user's demo-web (gray) calls a gray demo-api through ZooKeeper
        assert gray_stack.post("demo-api", "start", {"image": "demo:v2", "ratio": 20}).status_code == 200
        wait_for(lambda: _split_holds(20, backend=True), timeout=60,
                 what="gray consumers reaching gray providers")
        assert len(ready_pods(kubectl, NAMESPACE, "bizcloud.io/group=gray")) == 2

        # rollback restores v1 in both
        gray_stack.gray("rollback", "demo-api", "--env", ENV)
        rolled = json.loads(gray_stack.gray("rollback", "demo-web", "--env", ENV, "--json").stdout)
        assert rolled["phase"] == "rolled-back"
        assert (_replicas(kubectl, "demo-web-gray"), _replicas(kubectl, "demo-web")) == (0, 2)
        wait_for(lambda: {_answer(u).get("version") for u in UIDS[:30]} == {"v1"}, timeout=30,
                 what="every user back on v1")
        assert {_answer(u).get("backend", {}).get("version") for u in UIDS[:30]} == {"v1"}
    load.check()
    history = gray_stack.status("demo-web")["history"]
    assert [h["action"] for h in history[:2]] == ["gray-rollback", "gray-start"]
    assert {h["outcome"] for h in history[:2]} == {"ok"}


def test_promote_puts_everyone_on_v2_and_gray_at_zero(gray_stack: Stack, kubectl: Kubectl) -> None:
    with Load() as load:
        gray_stack.gray("start", "demo-web", "--env", ENV, "--image", "demo:v2", "--ratio", "20")
        wait_for(lambda: _split_holds(20), timeout=30, what="the 20 % split")
        promoted = json.loads(gray_stack.gray("promote", "demo-web", "--env", ENV, "--json").stdout)
        assert promoted["phase"] == "promoted"
        assert _image(kubectl, "demo-web") == "demo:v2"
        assert (_replicas(kubectl, "demo-web-gray"), _replicas(kubectl, "demo-web")) == (0, 2)
        wait_for(lambda: {_answer(u).get("version") for u in UIDS} == {"v2"}, timeout=30,
                 what="every user on v2")
        assert {_answer(u).get("group") for u in UIDS} == {"normal"}
    load.check()


def test_a_second_operation_while_one_runs_is_refused_with_409(gray_stack: Stack, kubectl: Kubectl) -> None:
    """A deploy (here: its lock, taken as `bizcloud deploy` takes it) holds demo-web: gray waits its turn."""
    engine = make_engine(gray_stack.env["BIZCLOUD_DATABASE_URL"])
    before = _versions(kubectl)
    with ReleaseStore(engine).operation("demo-web", ENV, "deploy", "tester"):
        refused = gray_stack.post("demo-web", "start", {"image": _other_image(kubectl), "ratio": 50})
        assert refused.status_code == 409
        detail = refused.json()["detail"]
        assert f"deploy is already running on demo-web in {ENV}: held by tester" in detail["message"]
        assert "wait for it to finish" in detail["hint"]
        run = gray_stack.gray("status", "demo-web", "--env", ENV, "--json")
        assert run.returncode == 0   # reads are never refused
    engine.dispose()
    assert _versions(kubectl) == before
    started = gray_stack.post("demo-web", "start", {"image": _other_image(kubectl), "ratio": 50})
    assert started.status_code == 200, started.text
    assert gray_stack.post("demo-web", "rollback").json()["phase"] == "rolled-back"


def _other_image(kubectl: Kubectl) -> str:
    """The tag demo-web does not run now (v2 after the promote), so each test also runs on its own."""
    return "demo:v1" if _image(kubectl, "demo-web") == "demo:v2" else "demo:v2"


def _versions(kubectl: Kubectl) -> dict[str, str]:
    return {name: kubectl.get_json("deployment", name, "-n", NAMESPACE)["metadata"]["resourceVersion"]
            for name in ("demo-web", "demo-web-gray")}


def test_bad_requests_get_one_clear_error_and_change_nothing(gray_stack: Stack, kubectl: Kubectl) -> None:
    before = _versions(kubectl)
    prior = gray_stack.status("demo-web")
    assert prior["gray"] is None or not prior["gray"]["active"]
    ended = f"is {prior['gray']['phase']}" if prior["gray"] else "has no gray release in environment"
    cases = [
        (("promote", "demo-web", "--env", ENV), ended, "bizcloud gray start"),
        (("promote", "demo-web", "--env", "nowhere"), "has no gray release in environment 'nowhere'",
         "bizcloud gray start"),
        (("start", "demo-web", "--env", ENV, "--image", "demo:v2", "--ratio", "150"),
         "ratio: 150.0 is not a percentage", "from 0 to 100"),
        (("start", "demo-web", "--env", "nowhere", "--image", "demo:v2"),
         "not deployed in environment 'nowhere'", "bizcloud deploy demo-web --env nowhere"),
    ]
    for args, message, hint in cases:
        run = gray_stack.gray(*args, check=False)
        assert run.returncode == 1, (args, run.stdout)
        said = " ".join(run.stderr.split())   # Rich wraps long lines
        assert message in said and hint in said, (args, said)
        assert "Traceback" not in said
    nothing_runs = gray_stack.post("demo-web", "set", {"ratio": -1})   # refused for its state first
    assert nothing_runs.status_code == (409 if prior["gray"] else 404)
    assert gray_stack.post("demo-web", "start", {"image": "demo:v2", "ratio": 101}).status_code == 400
    assert gray_stack.post("no-such-svc", "start", {"image": "demo:v2"}).status_code == 404
    engine = make_engine(gray_stack.env["BIZCLOUD_DATABASE_URL"])   # a developer who owns nothing
    accounts = AccountStore(engine)
    accounts.create_user(name="dev-gray", password="gray-e2e-password", role=Role.DEVELOPER)
    stranger = accounts.issue_token(user="dev-gray", name="e2e")
    engine.dispose()
    denied = httpx.post(f"{API}/release/gray/demo-web/{ENV}/start", json={"image": "demo:v2"}, timeout=30,
                        headers={"Authorization": f"Bearer {stranger}"})
    assert denied.status_code == 403 and "does not own service demo-web" in denied.json()["detail"]
    assert _versions(kubectl) == before
    after = gray_stack.status("demo-web")
    assert (after["gray"], after["history"]) == (prior["gray"], prior["history"])


def test_a_failing_gray_version_is_rolled_back_automatically(gray_stack: Stack, kubectl: Kubectl) -> None:
    interval = 3
    body = {"image": _other_image(kubectl), "ratio": 50, "interval": f"{interval}s",
            "thresholds": {"min_requests": 5, "max_error_rate": 0.05}}
    started = gray_stack.post("demo-web", "start", body)
    assert started.status_code == 200, started.text
    gray_users = [u for u in (f"g-{n}" for n in range(400)) if bucket(u) < 5000][:40]
    (pod,) = ready_pods(kubectl, NAMESPACE, "bizcloud.io/service=demo-web,bizcloud.io/group=gray")
    broken = httpx.post(f"http://{pod['status']['podIP']}:8080/admin/fail", params={"rate": "100"}, timeout=5)
    assert broken.status_code == 200, broken.text
    broken_at = time.monotonic()

    def rolled_back() -> bool:
        for uid in gray_users[:10]:
            _answer(uid)       # traffic for the analysis; the gray ones fail now
        return gray_stack.status("demo-web")["gray"]["phase"] in ("rolling-back", "rolled-back")
    wait_for(rolled_back, timeout=120, interval=0.2, what="the automatic rollback")
    # the window running when the pod broke, the next one, and a tick to hear its verdict
    assert time.monotonic() - broken_at <= 2 * interval + TICK_S + 5
    wait_for(lambda: gray_stack.status("demo-web")["gray"]["phase"] == "rolled-back", timeout=120,
             what="the rollback to finish")
    status = gray_stack.status("demo-web")
    assert status["history"][0]["action"] == "gray-auto-rollback"
    assert "analysis failed" in status["gray"]["message"]
    assert status["last_analysis"]["outcome"] == "fail"
    assert _replicas(kubectl, "demo-web-gray") == 0
    wait_for(lambda: {_answer(u).get("group") for u in gray_users} == {"normal"}, timeout=30,
             what="gray users back on normal")


def test_a_restarted_server_converges_the_release_first(gray_stack: Stack, kubectl: Kubectl) -> None:
    """The cluster drifted while the server was down (as if a batch stopped half-way): the runner's
    first act is ``converge``, which puts the pods and the split back to what the stored state says."""
    started = gray_stack.post("demo-web", "start", {"image": _other_image(kubectl), "ratio": 50})
    assert started.status_code == 200, started.text
    server = gray_stack.procs["server"]
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)
    kubectl.run("scale", "deployment/demo-web-gray", "-n", NAMESPACE, "--replicas=0")
    engine = make_engine(gray_stack.env["BIZCLOUD_DATABASE_URL"])
    CatalogStore(engine).set_gray(policy=GrayPolicyOut(service="demo-web", ratio=0.0))
    engine.dispose()
    gray_stack.start("server", f"http://127.0.0.1:{SERVER_PORT}/healthz")
    pods = split(2, 50)
    gray = "bizcloud.io/service=demo-web,bizcloud.io/group=gray"
    wait_for(lambda: len(ready_pods(kubectl, NAMESPACE, gray)) == pods.gray, timeout=120,
             what="the gray pods back")
    wait_for(lambda: {_answer(u).get("group") for u in UIDS if bucket(u) < 5000} == {"gray"}, timeout=30,
             what="gray users back on gray")
    assert gray_stack.status("demo-web")["gray"]["phase"] == "running"
    # gray policies are per service: a second environment's gray release of demo-web is refused
    other = gray_stack.gray("start", "demo-web", "--env", "elsewhere", "--image", "demo:v3", check=False)
    assert other.returncode == 1
    assert f"already has a gray release in {ENV}" in " ".join(other.stderr.split())
    assert gray_stack.post("demo-web", "rollback").json()["phase"] == "rolled-back"
