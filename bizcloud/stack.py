"""BizCloud's main job on its embedded defaults: what `make up` starts, and where to find it.

Today: the local cluster, the API server and the monitor (as daemons of the state directory,
like the cluster's own), and the sample services `demo-web` and `demo-api` in environment `dev`
(one image, `examples/demo`), whose instances the monitor puts into the catalog. Each later
component (gateway, ZooKeeper, MariaDB) adds itself to `up`, `down` and `endpoints`, so
`bizcloud status --json` stays the one place scripts look.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bizcloud.accounts import bootstrap
from bizcloud.authz import mariadb
from bizcloud.authz.credentials import KubeCredentials
from bizcloud.cluster import images, lifecycle, processes
from bizcloud.cluster.host import node_ip
from bizcloud.cluster.lifecycle import Step
from bizcloud.configcenter.schema import SecretRef
from bizcloud.daemons import ensure_namespace
from bizcloud.errors import BizCloudError
from bizcloud.kube import config as kube_config
from bizcloud.kube.client import KubeClient
from bizcloud.kube.kubectl import is_ready
from bizcloud.release.params import IMAGE_ID_ANNOTATION
from bizcloud.settings import Settings
from bizcloud.soa import zookeeper

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "examples" / "demo"
SAMPLE_NAMESPACE = "bc-dev"
SAMPLE_SERVICE = "demo-web"
SAMPLE_SERVICES = ("demo-web", "demo-api")
SAMPLE_SERVICES_PROVIDERS_FIRST = ("demo-api", "demo-web")
SAMPLE_CONFIGS = SAMPLE_DIR / "bizcloud.yaml"          # the sample services' configs (config center)
SAMPLE_INVENTORY = SAMPLE_DIR.parent / "inventory.yaml"  # where the local MariaDB pair lives
NODE_IP_PLACEHOLDER = "NODE_IP"
MARIADB_ADMIN = SecretRef(namespace="bizcloud-system", name="mariadb-admin")
# demo-api reads this greeting on the replica with the account BizCloud grants each of its pods.
SAMPLE_DATABASE = "demo"
SAMPLE_DATABASE_SQL = (
    "CREATE TABLE IF NOT EXISTS greetings (id INT PRIMARY KEY, text VARCHAR(200) NOT NULL)",
    "INSERT INTO greetings (id, text) VALUES (1, 'hello from MariaDB') ON DUPLICATE KEY UPDATE text = text",
)


def deploy_sample(settings: Settings, *, step: Step) -> None:
    """Build the sample image, load it into the node, and deploy both services from their configs.

    No manifest is written by hand: `bizcloud deploy` renders the release templates from the
    configs `apply_sample_configs` stored, as any service's deploy does (recorded in the release
    history as done by `bizcloud up`). On an existing cluster (``settings.kubeconfig``) the image
    is not built here: that cluster's nodes pull ``settings.sample_image`` from wherever it was
    pushed. A rebuilt image under the same tag rolls the pods (its content ID is a pod annotation).
    """
    apply_sample_configs(settings, only_missing=True)  # deployed on its own (tests): its configs first
    annotations: dict[str, str] = {}
    if settings.kubeconfig is None:
        step(f"building image {settings.sample_image}")
        images.build_image(SAMPLE_DIR, settings.sample_image, settings)
        images.load_into_containerd(settings.sample_image, lifecycle.layout_of(settings).containerd_socket)
        built = images.image_id(settings.sample_image, settings)
        annotations = {IMAGE_ID_ANNOTATION: built} if built else {}

    async def run(client: KubeClient) -> None:
        from bizcloud.catalog.db import make_engine  # noqa: PLC0415
        from bizcloud.configcenter.store import ConfigStore  # noqa: PLC0415
        from bizcloud.release.deploy import Releaser  # noqa: PLC0415
        from bizcloud.release.params import Platform  # noqa: PLC0415
        from bizcloud.release.store import ReleaseStore  # noqa: PLC0415

        engine = make_engine(settings.resolved_database_url())
        try:
            releaser = Releaser(client, ConfigStore(engine), platform=Platform.from_settings(settings),
                                rollout_timeout=180)
            store = ReleaseStore(engine)
            for service in SAMPLE_SERVICES_PROVIDERS_FIRST:
                step(f"deploying {service} to {SAMPLE_NAMESPACE} (bizcloud deploy {service} --env dev)")
                with store.operation(service, "dev", "deploy", "bizcloud up"):
                    entry = store.record(service=service, env="dev", action="deploy", user="bizcloud up",
                                         detail={"image": settings.sample_image})
                    try:
                        await releaser.deploy(service, "dev", image=settings.sample_image,
                                              pod_annotations=annotations)
                    except BaseException as e:
                        store.finish(entry, outcome="failed", message=str(e)[:500])
                        raise
                    store.finish(entry, outcome="ok")
        finally:
            engine.dispose()

    _with_client(settings, run, namespace=SAMPLE_NAMESPACE)


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


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as BIZCLOUD_* variables, so a daemon started from here sees the same ones."""
    env = {}
    for name, value in settings.model_dump().items():
        if isinstance(value, Path):  # daemons run from the state directory: no relative paths
            env[f"BIZCLOUD_{name.upper()}"] = str(value.expanduser().resolve())
        elif value is not None:
            env[f"BIZCLOUD_{name.upper()}"] = str(value)
    return env


def api_url(settings: Settings) -> str:
    return f"http://{settings.server_host}:{settings.server_port}"


def metrics_url(settings: Settings) -> str:
    return f"http://{settings.server_host}:{settings.monitor_metrics_port}/metrics"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_daemons(settings: Settings, *, step: Step) -> None:
    """Start the API server and the monitor unless they run; wait until both answer."""
    lay = lifecycle.layout_of(settings)
    lay.create()
    env = settings_env(settings)
    for name, probe in (("server", f"{api_url(settings)}/healthz"), ("monitor", metrics_url(settings))):
        running = processes.read_pidfile(lay.pidfile(name))
        if running is None:
            setting = "server_port" if name == "server" else "monitor_metrics_port"
            processes.require_free(getattr(settings, setting), what=f"the {name}", setting=setting)
            step(f"starting the {name}")
            running = processes.start(lay, name, [sys.executable, "-m", "bizcloud", name], env=env)
        processes.wait_until(lambda url=probe: _answers(url),  # type: ignore[misc]
                             what=f"the {name} did not answer", timeout=60, log=lay.log(name),
                             pid=running.pid)


def gateway_url(settings: Settings) -> str:
    return f"http://{settings.gateway_host}:{settings.gateway_port}"


def gateway_admin_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.gateway_admin_port}"


def start_gateway(settings: Settings, *, step: Step) -> None:
    """Start `bizcloud gateway` (after the server: it seeds from the catalog before nginx listens)."""
    lay = lifecycle.layout_of(settings)
    running = processes.read_pidfile(lay.pidfile("gateway"))
    if running is None:
        for setting in ("gateway_port", "gateway_admin_port"):
            processes.require_free(getattr(settings, setting), what="the gateway", setting=setting)
        step("starting the gateway")
        running = processes.start(lay, "gateway", [sys.executable, "-m", "bizcloud", "gateway"],
                                  env=settings_env(settings))
    processes.wait_until(lambda: _answers(f"{gateway_admin_url(settings)}/healthz"),
                         what="the gateway did not answer", timeout=60, log=lay.log("gateway"),
                         pid=running.pid)


def ensure_sample_route(settings: Settings) -> None:
    """The gateway's `/` (any host) goes to the sample service in `dev`; kept if it exists.

    Written to the catalog's database directly (as the monitor does), not through the API, whose
    writes need a logged-in user; the ROUTE change reaches gateways on the change stream.
    """
    from bizcloud.catalog.db import make_engine  # noqa: PLC0415 - keeps SQLAlchemy out of other commands
    from bizcloud.catalog.errors import AlreadyExists  # noqa: PLC0415
    from bizcloud.catalog.store import CatalogStore  # noqa: PLC0415

    engine = make_engine(settings.resolved_database_url())
    try:
        CatalogStore(engine).create_route(host="*", path_prefix="/", service=SAMPLE_SERVICE, env="dev")
    except AlreadyExists:
        pass
    finally:
        engine.dispose()


def mariadb_dir(settings: Settings) -> Path:
    return settings.resolved_state_dir() / "mariadb"


def start_mariadb(settings: Settings, *, step: Step) -> mariadb.MariaDbPair:
    """The MariaDB master and replica of the sample's MySQL dependency, with its database."""
    step("starting MariaDB (master and replica)")
    pair = mariadb.start_pair(mariadb_dir(settings), master_port=settings.mariadb_master_port,
                              replica_port=settings.mariadb_replica_port)
    mariadb.create_database(pair, SAMPLE_DATABASE, SAMPLE_DATABASE_SQL)
    return pair


def sample_inventory(host: str, master_port: int, replica_port: int) -> str:
    """The sample inventory with the MariaDB pair's address and ports. Purely computational."""
    text = SAMPLE_INVENTORY.read_text().replace(NODE_IP_PLACEHOLDER, host)
    return text.replace("3316", str(master_port)).replace("3317", str(replica_port))


def apply_sample_configs(settings: Settings, pair: mariadb.MariaDbPair | None = None, *,
                         only_missing: bool = False) -> None:
    """The inventory and the sample services' configs into the config center (unchanged ones stay).

    Written to the database directly, like the sample route: `make up` acts as the operator.
    Without ``pair`` the inventory names where `make up` runs the pair (the node's address and
    the configured ports); ``only_missing`` leaves a config center that has the sample alone.
    """
    from bizcloud.catalog.db import make_engine, migrate_engine  # noqa: PLC0415
    from bizcloud.configcenter.store import ConfigStore  # noqa: PLC0415

    if pair is not None:
        inventory = sample_inventory(pair.host, pair.master_port, pair.replica_port)
    else:
        host = "127.0.0.1"
        with contextlib.suppress(BizCloudError):
            host = node_ip()
        inventory = sample_inventory(host, settings.mariadb_master_port, settings.mariadb_replica_port)
    engine = make_engine(settings.resolved_database_url())
    try:
        migrate_engine(engine)
        store = ConfigStore(engine)
        if only_missing and set(SAMPLE_SERVICES) <= set(store.latest().services):
            return
        store.apply(inventory, author="bizcloud up", comment="the local MariaDB pair")
        store.apply(SAMPLE_CONFIGS.read_text(), author="bizcloud up", comment="the sample services")
    finally:
        engine.dispose()


def store_mariadb_admin(settings: Settings, pair: mariadb.MariaDbPair) -> None:
    """The admin Secret the inventory names (the MySQL executor reads it)."""
    _with_client(settings, lambda c: KubeCredentials(c).store_admin(MARIADB_ADMIN, pair.admin_user,
                                                                     pair.admin_password),
                 namespace=MARIADB_ADMIN.namespace)


def _with_client(settings: Settings, call: Callable[[KubeClient], Awaitable[object]], *,
                 namespace: str) -> None:
    async def run() -> None:
        config = kube_config.load(lifecycle.kubeconfig_path(settings))
        async with KubeClient.from_config(config) as client:
            await ensure_namespace(client, namespace)
            await call(client)

    asyncio.run(run())


def stop_daemons(settings: Settings) -> list[str]:
    lay = lifecycle.layout_of(settings)
    return [name for name in ("gateway", "monitor", "server") if processes.stop(lay, name)]


def wait_for_sample_in_catalog(settings: Settings, *, timeout: float = 60) -> list[dict[str, Any]]:
    """The monitor should have put every Ready sample pod into the catalog."""
    url = f"{api_url(settings)}/api/v1/services/{SAMPLE_SERVICE}/instances"
    found: list[dict[str, Any]] = []

    def catalogued() -> bool:
        nonlocal found
        try:
            response = httpx.get(url, params={"env": "dev"}, timeout=5)
        except httpx.HTTPError:
            return False
        found = response.json() if response.status_code == 200 else []
        return bool(found) and len(found) == len(sample_urls(settings))

    processes.wait_until(catalogued, what=f"{SAMPLE_SERVICE}'s instances are not in the catalog",
                         timeout=timeout, log=lifecycle.layout_of(settings).log("monitor"))
    return found


def up(settings: Settings, *, step: Step) -> dict[str, Any]:
    if settings.kubeconfig is None:
        lifecycle.up(settings, mode="real", step=step)
    password = bootstrap.ensure_admin(settings.resolved_database_url(), settings.resolved_state_dir())
    if settings.zookeeper_hosts is None:  # before the monitor, which registers SOA providers there
        step("starting ZooKeeper")
        zookeeper.start(zookeeper.local_server(settings))
    pair = start_mariadb(settings, step=step)
    apply_sample_configs(settings, pair)
    store_mariadb_admin(settings, pair)
    start_daemons(settings, step=step)
    deploy_sample(settings, step=step)
    step(f"waiting for {SAMPLE_SERVICE} in the catalog")
    wait_for_sample_in_catalog(settings)
    ensure_sample_route(settings)
    start_gateway(settings, step=step)
    data = endpoints(settings)
    data["console"]["password"] = password  # printed once, when it was generated
    return data


def down(settings: Settings, *, purge: bool = False, step: Step) -> list[str]:
    """Stop the daemons, the cluster, then the Docker Engine if (and only if) BizCloud started it."""
    stopped = stop_daemons(settings)
    if zookeeper.stop(zookeeper.local_server(settings)):
        stopped.append("zookeeper")
    if mariadb.stop_pair(mariadb_dir(settings)):
        stopped.append("mariadb")
    stopped += lifecycle.down(settings, purge=False, step=step)
    if processes.stop(lifecycle.layout_of(settings), "dockerd"):
        stopped.append("dockerd")
    if purge:
        lifecycle.down(settings, purge=True, step=step)
    return stopped


def endpoints(settings: Settings) -> dict[str, Any]:
    """Every component `make up` started, with its endpoint: the data of `bizcloud status --json`."""
    cluster = _external_status(settings) if settings.kubeconfig else lifecycle.status(settings)
    result: dict[str, Any] = {"cluster": cluster, "kubeconfig": cluster["kubeconfig"]}
    lay = lifecycle.layout_of(settings)
    for name, url, extra in (
            ("server", api_url(settings), {"openapi": f"{api_url(settings)}/openapi.json",
                                           "metrics": f"{api_url(settings)}/metrics"}),
            ("monitor", metrics_url(settings), {}),
            ("gateway", gateway_url(settings), {"admin": gateway_admin_url(settings),
                                                "metrics": f"{gateway_admin_url(settings)}/metrics"})):
        running = processes.read_pidfile(lay.pidfile(name))
        result[name] = {"running": running is not None, "pid": running.pid if running else None,
                        "url": url, "log": str(lay.log(name)), **extra}
    local_zk = zookeeper.local_server(settings)
    zk_running = None if settings.zookeeper_hosts else zookeeper.running(local_zk)
    result["zookeeper"] = {"running": bool(settings.zookeeper_hosts) or zk_running is not None,
                           "pid": zk_running.pid if zk_running else None,
                           "hosts": settings.zookeeper_hosts or local_zk.hosts,
                           "external": bool(settings.zookeeper_hosts), "log": str(local_zk.log)}
    pids = mariadb.status(mariadb_dir(settings))
    result["mariadb"] = {"running": all(pids.values()), "master_port": settings.mariadb_master_port,
                         "replica_port": settings.mariadb_replica_port, "pids": pids,
                         "admin_secret": f"{MARIADB_ADMIN.namespace}/{MARIADB_ADMIN.name}"}
    result["console"] = {"url": f"{api_url(settings)}/console/",
                         "credentials": str(settings.resolved_state_dir() / bootstrap.CREDENTIALS_FILE)}
    if cluster["up"] and cluster["mode"] in ("real", "external"):
        try:
            result["demo-web"] = {"namespace": SAMPLE_NAMESPACE, "urls": sample_urls(settings)}
        except BizCloudError:
            result["demo-web"] = {"namespace": SAMPLE_NAMESPACE, "urls": []}
    return result


def _external_status(settings: Settings) -> dict[str, Any]:
    kubectl = lifecycle.kubectl(settings)
    try:
        nodes = kubectl.get_json("nodes", timeout=15)["items"]
        up = True
    except BizCloudError:
        nodes, up = [], False
    return {"mode": "external", "up": up, "kubeconfig": str(kubectl.kubeconfig),
            "nodes": len(nodes), "nodes_ready": sum(1 for n in nodes if is_ready(n))}
