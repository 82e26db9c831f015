"""BizCloud's long-running processes, wired from their parts: `bizcloud server` and `bizcloud monitor`.

The monitor process: Reflector (list+watch of labelled pods) -> Monitor (pure diff, reconcile)
-> Dispatcher -> subscribers (the catalog today; gateway and SOA registry later), with a Lease
deciding which of several monitors dispatches, and Prometheus metrics on its own port. The
server process: the FastAPI app over the same catalog database. Both log one JSON object per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import Gauge, start_http_server
from sqlalchemy import Engine, MetaData

from bizcloud.authz.credentials import KubeCredentials
from bizcloud.authz.executor import Executor
from bizcloud.authz.grants import Kind
from bizcloud.authz.iptables import IptablesExecutor
from bizcloud.authz.journal import AuthzStore
from bizcloud.authz.mysql import MysqlExecutor
from bizcloud.authz.worker import AuthzWorker
from bizcloud.catalog.db import checkpoint, make_engine, migrate_engine
from bizcloud.catalog.store import CatalogStore, Committed
from bizcloud.catalog.subscriber import CatalogSubscriber
from bizcloud.catalog.wakeup import WakeupSender, parse_targets
from bizcloud.configcenter.schema import Inventory
from bizcloud.configcenter.store import ConfigStore
from bizcloud.errors import BizCloudError
from bizcloud.gateway.direct import NginxPusher
from bizcloud.kube import config as kube_config
from bizcloud.kube.client import KubeClient
from bizcloud.kube.conditions import PodCondition, set_pod_condition
from bizcloud.kube.errors import Conflict, NotFound
from bizcloud.kube.informer import Reflector
from bizcloud.kube.lease import LeaderElector
from bizcloud.monitor.dispatcher import Dispatcher
from bizcloud.monitor.instances import slim_pod
from bizcloud.monitor.model import Instance
from bizcloud.monitor.monitor import Monitor
from bizcloud.monitor.podlines import slim_event
from bizcloud.settings import Settings
from bizcloud.soa import zookeeper

if TYPE_CHECKING:
    from pathlib import Path

    from bizcloud.soa.registry import SoaRegistry

log = logging.getLogger("bizcloud.daemons")

CHECKPOINT_S = 1.0   # how often the monitor copies the catalog's write-ahead log into its file


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                                 "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # One line per HTTP call (lease renewals every 2 s) would drown what the monitor decides.
    logging.getLogger("httpx").setLevel(logging.WARNING)


# --- monitor -----------------------------------------------------------------------------------

async def ensure_namespace(client: KubeClient, name: str) -> None:
    try:
        await client.get(f"/api/v1/namespaces/{name}")
    except NotFound:
        with contextlib.suppress(Conflict):
            await client.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": name}})


def _export_reflector(reflector: Reflector) -> None:
    for attribute, help_text in (("watch_restarts", "Watches restarted (timeouts, errors)."),
                                 ("expired", "Watches or lists answered 410 Gone."),
                                 ("errors", "List or watch errors."),
                                 ("bookmarks", "Watch bookmarks received.")):
        gauge = Gauge(f"bizcloud_monitor_informer_{attribute}", help_text)
        gauge.set_function(functools.partial(_counter, reflector, attribute))


def _counter(reflector: Reflector, attribute: str) -> float:
    return float(getattr(reflector, attribute))


def _authz_worker(settings: Settings, engine: Engine, client: KubeClient, soa: SoaRegistry | None, *,
                  live: Callable[[], Iterable[Instance]]) -> AuthzWorker:
    """The authorization worker with its executors: MySQL, iptables, and SOA whitelists when
    there is a registry (on the registry's own ZooKeeper session)."""
    credentials = KubeCredentials(client)

    def inventory() -> Inventory:  # the worker's latest snapshot: executors resolve targets through it
        return worker.inventory()

    executors: dict[Kind, Executor] = {Kind.MYSQL: MysqlExecutor(inventory, credentials),
                                       Kind.TCP: IptablesExecutor(inventory)}
    if soa is not None:
        from bizcloud.authz.soa import SoaWhitelistExecutor  # noqa: PLC0415 - see _kubeconfig

        executors[Kind.SOA] = SoaWhitelistExecutor(soa.client)

    async def write_gate(instance: Instance, condition: PodCondition) -> None:
        await set_pod_condition(client, namespace=instance.namespace, pod=instance.pod, uid=instance.uid,
                                condition=condition)

    worker = AuthzWorker(configs=ConfigStore(engine), store=AuthzStore(engine), executors=executors,
                         live=live, credentials=credentials, retry_max=settings.authz_retry_max_s,
                         write_gate=write_gate)
    return worker


def _kubeconfig(settings: Settings) -> Path:
    """The cluster's kubeconfig. Why the lazy imports here and for ZooKeeper: the monitor is
    CPU-bound from its start until its backlog is committed, and what it loads before its first
    event is part of that; the local cluster's lifecycle (with the PKI's cryptography) and kazoo
    are loaded only by a monitor that uses them."""
    if settings.kubeconfig:
        return settings.kubeconfig.expanduser().resolve()
    from bizcloud.cluster import lifecycle  # noqa: PLC0415

    return lifecycle.kubeconfig_path(settings)


def database_schema() -> list[MetaData]:
    """Every table of the catalog's database: each layer that owns tables keeps its models on a
    metadata of its own, and only a layer above them all can list them. A fresh database is made
    from these in one go (``migrate_engine(schema=...)``); the models are imported only then."""
    from bizcloud.accounts.models import Base as Accounts  # noqa: PLC0415
    from bizcloud.authz.models import Base as Authz  # noqa: PLC0415
    from bizcloud.catalog.models import Base as Catalog  # noqa: PLC0415
    from bizcloud.configcenter.models import Base as Config  # noqa: PLC0415
    from bizcloud.release.models import Base as Release  # noqa: PLC0415

    return [base.metadata for base in (Catalog, Accounts, Config, Authz, Release)]


async def run_monitor(settings: Settings, *, stop: asyncio.Event, identity: str | None = None,
                      metrics_port: int | None = None) -> Monitor:
    """Run one monitor until ``stop``; returns it (tests inspect it)."""
    engine = make_engine(settings.resolved_database_url(), background_checkpoints=True)
    wakeups = WakeupSender(parse_targets(settings.catalog_wakeup,
                                         default=(settings.server_host, settings.server_port)))
    gateways = NginxPusher(parse_targets(settings.gateway_feed, setting="gateway_feed",
                                         default=("127.0.0.1", settings.gateway_admin_port)))

    def committed(changes: Committed) -> None:   # the gateways first: they are the latency-bound readers
        gateways(changes)
        wakeups.notify(changes.revision)

    store = CatalogStore(engine, on_commit=committed)
    catalog = CatalogSubscriber(store)
    zookeeper_hosts = zookeeper.resolve_hosts(settings)
    soa: SoaRegistry | None = None
    if zookeeper_hosts:
        from bizcloud.soa.registry import SoaRegistry  # noqa: PLC0415 - see _kubeconfig

        soa = SoaRegistry.connect(zookeeper_hosts, live=lambda: monitor.live())  # noqa: PLW0108 - monitor is made below
    identity = identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    config = kube_config.load(_kubeconfig(settings))
    lease = settings.monitor_lease_duration_s
    async with KubeClient.from_config(config) as client:
        authz = _authz_worker(settings, engine, client, soa, live=lambda: monitor.addressed())  # noqa: PLW0108
        dispatcher = Dispatcher([catalog, *([soa] if soa else []), authz], journal=catalog)
        monitor = Monitor(dispatcher, catalog, grace=settings.monitor_grace_s, on_addresses=authz.kick)
        reflector = Reflector(client, monitor, min_watch_timeout=settings.monitor_watch_timeout_s,
                              transform=slim_pod, decode=slim_event)
        # The pods' list streams in while the schema is migrated and the Lease's namespace made:
        # the API server serializes thousands of pods meanwhile. Nothing touches the catalog
        # before this monitor leads (a standby only keeps its table), and leading waits for both.
        watching = asyncio.create_task(reflector.run(stop), name="reflector")
        try:
            await asyncio.gather(asyncio.to_thread(migrate_engine, engine, schema=database_schema),
                                 ensure_namespace(client, settings.monitor_lease_namespace))
        except BaseException:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
            raise
        if metrics_port is not None:
            _export_reflector(reflector)
            start_http_server(metrics_port, addr=settings.server_host)
        elector = LeaderElector(client, namespace=settings.monitor_lease_namespace,
                                name=settings.monitor_lease_name, identity=identity, lease_duration=lease,
                                renew_deadline=lease * 2 / 3, retry_period=lease * 2 / 15)
        background: set[asyncio.Task[None]] = set()

        async def started() -> None:
            task = asyncio.create_task(monitor.start_leading())
            background.add(task)
            task.add_done_callback(background.discard)

        log.info("monitor starting identity=%s lease=%s/%s", identity, settings.monitor_lease_namespace,
                 settings.monitor_lease_name)
        await asyncio.gather(
            watching,
            _checkpoints(engine, stop),
            elector.run(stop, started, monitor.stop_leading),
            monitor.resync_forever(settings.monitor_resync_s, stop),
            *([soa.reconcile_forever(settings.monitor_resync_s, stop,
                                     when=lambda: monitor.synced and monitor.leading)] if soa else []),
            authz.reconcile_forever(settings.monitor_resync_s, stop,
                                    when=lambda: monitor.synced and monitor.leading),
        )
        for task in list(background):
            task.cancel()
        await dispatcher.stop()
        await authz.aclose()
        await gateways.aclose()
    if soa is not None:
        soa.close()
    wakeups.close()
    engine.dispose()
    log.info("monitor stopped identity=%s", identity)
    return monitor


async def _checkpoints(engine: Engine, stop: asyncio.Event, interval_s: float = CHECKPOINT_S) -> None:
    """Copy the catalog's write-ahead log into its file every ``interval_s``, in a thread, and once
    more at ``stop``: the monitor's commits never do it themselves (``make_engine``'s
    ``background_checkpoints``)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
        try:
            await asyncio.to_thread(checkpoint, engine)
        except Exception as e:  # a busy or missing file: the next round tries again
            log.warning("catalog checkpoint failed error=%r", e)


def monitor_main(settings: Settings) -> None:
    """`bizcloud monitor`: run until SIGTERM or SIGINT, then release the Lease and exit."""
    configure_logging()
    _tune_gc_for_monitor()
    # The catalog's commits run in a thread whose SQLite calls each release the GIL; with the
    # event loop busy (watch lines, authz plans) every call waited the default 5 ms switch
    # interval to get it back, dozens per batch: 1 ms bounds that wait.
    sys.setswitchinterval(0.001)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_monitor(settings, stop=stop, metrics_port=settings.monitor_metrics_port)

    asyncio.run(main())


def _tune_gc_for_monitor() -> None:
    """Keep the cyclic collector off what never becomes garbage, and let it run less often.

    Everything imported so far (modules, classes, SQLAlchemy's and pydantic's tables: most of the
    heap) lives as long as the process; ``gc.freeze`` moves it out of the collector's sight, so
    its full passes no longer rescan it. A larger first threshold lets the monitor's short-lived
    events and rows die before a young pass ever sees them. Reference counting frees as before;
    only cycles wait a little longer. At 10,000 pods the collector's passes were 0.4 s of a
    3 s start-up backlog; with both, 0.2 s.
    """
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    gc.enable()   # `python -m bizcloud monitor` turns it off for its imports


# --- gateway -----------------------------------------------------------------------------------

def gateway_main(settings: Settings, *, workers: int = 2, balance: str = "round_robin",
                 peers: tuple[str, ...] = ()) -> None:
    """`bizcloud gateway`: nginx + Lua on the catalog's routes, following its change stream."""
    from bizcloud.gateway.nginxconf import GatewayConfig  # noqa: PLC0415
    from bizcloud.gateway.runner import run_gateway  # noqa: PLC0415

    configure_logging()
    if balance not in ("round_robin", "least_conn"):
        raise BizCloudError(f"balance: {balance!r} is not a policy", hint="use round_robin or least_conn")
    config = GatewayConfig(host=settings.gateway_host, port=settings.gateway_port,
                           admin_port=settings.gateway_admin_port, workers=workers,
                           balance="least_conn" if balance == "least_conn" else "round_robin")
    catalog_url = f"http://{settings.server_host}:{settings.server_port}"

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_gateway(config=config, prefix=settings.resolved_state_dir() / "gateway",
                          catalog_url=catalog_url, stop=stop, peers=peers)

    asyncio.run(main())


# --- server ------------------------------------------------------------------------------------

def server_main(settings: Settings) -> None:
    """`bizcloud server`: the REST API (OpenAPI at /openapi.json, metrics at /metrics)."""
    # Imported here: FastAPI and the web app take a third of a second to import, which every
    # monitor start (and its 10,000-pod backlog) would otherwise pay for a server it never runs.
    import uvicorn  # noqa: PLC0415 - keeps FastAPI out of the monitor's start

    from bizcloud.web.app import create_app  # noqa: PLC0415
    from bizcloud.web.ws_protocol import ShellWebSocketProtocol  # noqa: PLC0415

    configure_logging()
    app = create_app(database_url=settings.resolved_database_url(), poll_interval=settings.catalog_poll_s,
                     wakeup=(settings.server_host, settings.server_port), settings=settings)
    # Long-polls of the change stream may be waiting: let them go after 2 s instead of 60.
    # WebSocket pings every shell_keepalive_s keep idle shells alive through proxies' idle timeouts;
    # a shell whose client leaves one unanswered is closed saying so (ShellWebSocketProtocol).
    ping_timeout = settings.shell_ping_timeout_s or max(20.0, settings.shell_keepalive_s)
    uvicorn.run(app, host=settings.server_host, port=settings.server_port, log_config=None,
                access_log=False, timeout_graceful_shutdown=2, ws_ping_interval=settings.shell_keepalive_s,
                ws_ping_timeout=ping_timeout, ws_max_size=1 << 20, ws=ShellWebSocketProtocol)
