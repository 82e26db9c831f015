"""`cluster up`, `down` and `status`: start the local cluster's daemons in order, stop them all.

Order matters both ways: etcd, API server, controller-manager and scheduler, then either a real
node (containerd + kubelet) or kwok's simulated nodes; `down` walks the same list backwards and
then sweeps what a kubelet leaves behind (pod processes, mounts, the bridge), so no process
outlives it. `up` is idempotent: a healthy cluster is left alone, a half-started or crashed one
is cleaned first.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from bizcloud.cluster import configs, gobuild, host, images, pki, processes
from bizcloud.cluster.layout import Layout
from bizcloud.cluster.versions import COMPONENTS, component_for
from bizcloud.errors import ClusterError
from bizcloud.kube.kubectl import Kubectl, is_ready
from bizcloud.settings import ClusterMode, Settings

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE_DAEMONS: dict[str, tuple[str, ...]] = {"real": ("containerd", "kubelet"), "kwok": ("kwok",)}
ALL_DAEMONS = (*CONTROL_PLANE, "containerd", "kubelet", "kwok")
KUBECONFIG_USERS = ("admin", "controller-manager", "scheduler", "kubelet", "kwok")

Step = Callable[[str], None]


def daemons_for(mode: ClusterMode) -> tuple[str, ...]:
    return (*CONTROL_PLANE, *NODE_DAEMONS[mode])


def layout_of(settings: Settings) -> Layout:
    return Layout(settings.resolved_state_dir())


def binaries(settings: Settings) -> dict[str, Path]:
    return {name: gobuild.binary_path(settings.cache_dir, component_for(name), name)
            for component in COMPONENTS for name in component.binaries}


def kubeconfig_path(settings: Settings) -> Path:
    """The cluster BizCloud works on: an existing one if configured, else the local one."""
    return settings.kubeconfig.expanduser().resolve() if settings.kubeconfig else \
        layout_of(settings).admin_kubeconfig


def kubectl(settings: Settings) -> Kubectl:
    return Kubectl(binaries(settings)["kubectl"], kubeconfig_path(settings))


# --- state -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClusterState:
    mode: ClusterMode
    node_ip: str
    kwok_nodes: int

    def to_json(self) -> str:
        return json.dumps({"mode": self.mode, "node_ip": self.node_ip, "kwok_nodes": self.kwok_nodes})


def read_state(layout: Layout) -> ClusterState | None:
    try:
        data = json.loads(layout.state_file.read_text())
        return ClusterState(mode=data["mode"], node_ip=data["node_ip"], kwok_nodes=int(data["kwok_nodes"]))
    except (OSError, ValueError, KeyError):
        return None


def running_daemons(layout: Layout) -> dict[str, processes.Running]:
    return {name: r for name in ALL_DAEMONS if (r := processes.read_pidfile(layout.pidfile(name)))}


# --- probes ----------------------------------------------------------------------------------

@contextlib.contextmanager
def admin_http(settings: Settings) -> Iterator[httpx.Client]:
    pki_dir = layout_of(settings).pki
    tls = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    tls.load_cert_chain(pki_dir / "admin.crt", pki_dir / "admin.key")
    with httpx.Client(base_url=f"https://127.0.0.1:{settings.apiserver_port}", verify=tls,
                      timeout=3.0) as client:
        yield client


def apiserver_ready(settings: Settings) -> bool:
    try:
        with admin_http(settings) as client:
            return client.get("/readyz").status_code == 200
    except (httpx.HTTPError, OSError):  # OSError: TLS files not written yet
        return False


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0, verify=False).status_code == 200
    except httpx.HTTPError:
        return False


def nodes_ready(settings: Settings) -> tuple[int, int]:
    """(ready, total) nodes, as the API server sees them."""
    with admin_http(settings) as client:
        items = client.get("/api/v1/nodes").raise_for_status().json()["items"]
    return sum(1 for n in items if is_ready(n)), len(items)


# --- up --------------------------------------------------------------------------------------

def _write_configs(params: configs.ClusterParams) -> None:
    lay, s = params.layout, params.settings
    ca = pki.ensure_pki(lay.pki, pki.cluster_cert_specs(node_name=s.node_name, node_ip=params.node_ip,
                                                        service_ip=params.service_ip),
                        ca_name=f"{s.cluster_name}-ca")
    ca_pem = ca.cert_pem()
    for user in KUBECONFIG_USERS:
        cert_file = "kubelet-client" if user == "kubelet" else user
        doc = configs.kubeconfig(cluster=s.cluster_name, server=params.apiserver_url, ca_pem=ca_pem,
                                 user=user, cert_pem=(lay.pki / f"{cert_file}.crt").read_bytes(),
                                 key_pem=(lay.pki / f"{cert_file}.key").read_bytes())
        path = lay.kubeconfig_for(user)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        path.chmod(0o600)
    (lay.config / "containerd.toml").write_text(configs.containerd_toml(params))
    (lay.config / "kubelet.yaml").write_text(yaml.safe_dump(configs.kubelet_config(params), sort_keys=False))
    for stale in lay.cni_conf_dir.glob("*"):
        stale.unlink()
    (lay.cni_conf_dir / "10-bizcloud.conflist").write_text(configs.to_json(configs.cni_conflist(params)))


def _check_ports(settings: Settings, mode: ClusterMode) -> None:
    fields = ["etcd_port", "etcd_peer_port", "apiserver_port", "controller_manager_port", "scheduler_port"]
    fields += ["kubelet_port", "kubelet_healthz_port"] if mode == "real" else ["kwok_port"]
    for field in fields:
        processes.require_free(getattr(settings, field), what=field.removesuffix("_port").replace("_", " "),
                               setting=field)


def _start(params: configs.ClusterParams, name: str, argv: list[str], ready: Callable[[], bool],
           *, timeout: float) -> None:
    lay = params.layout
    running = processes.start(lay, name, argv)
    processes.wait_until(ready, what=f"{name} did not become ready", timeout=timeout, log=lay.log(name),
                         pid=running.pid)


def preflight(mode: ClusterMode) -> None:
    """Fail early, before any build or process, on what the host cannot provide."""
    if mode == "real":
        host.require_root("a real node")
        host.require_real_node_tools()


def up(settings: Settings, *, mode: ClusterMode = "real", kwok_nodes: int | None = None,
       step: Step = lambda s: None) -> ClusterState:
    """Bring the local cluster up (or confirm it is up); return what runs."""
    lay = layout_of(settings)
    nodes = kwok_nodes if kwok_nodes is not None else settings.kwok_nodes
    preflight(mode)
    lay.create()
    previous = read_state(lay)
    running = running_daemons(lay)
    if running and previous is not None and previous.mode != mode:
        raise ClusterError(f"the local cluster is up in {previous.mode} mode",
                           hint="run `bizcloud cluster down` first, then `up` in the other mode")
    if previous is not None and set(daemons_for(mode)) <= set(running) and apiserver_ready(settings) \
            and (mode == "real" or previous.kwok_nodes == nodes):
        step("already up")
        return previous
    if running:
        step("cleaning up a half-started cluster")
        down(settings, step=step)
    if previous is not None and previous.mode != mode:
        step(f"switching from {previous.mode} to {mode}: clearing the old cluster's data")
        shutil.rmtree(lay.etcd_data, ignore_errors=True)
        lay.create()

    step("building binaries (cached after the first time)")
    gobuild.build_all(settings.cache_dir)
    _check_ports(settings, mode)
    node_ip = host.node_ip() if mode == "real" else "127.0.0.1"
    params = configs.ClusterParams(settings=settings, layout=lay, node_ip=node_ip, bin=binaries(settings))
    step("writing certificates and configuration")
    _write_configs(params)
    state = ClusterState(mode=mode, node_ip=node_ip, kwok_nodes=nodes if mode == "kwok" else 0)
    lay.state_file.write_text(state.to_json())

    timeout = settings.up_timeout_s
    step("starting etcd")
    _start(params, "etcd", configs.etcd_argv(params), lambda: _http_ok(f"{params.etcd_url}/health"),
           timeout=timeout)
    step("starting kube-apiserver")
    _start(params, "kube-apiserver", configs.apiserver_argv(params), lambda: apiserver_ready(settings),
           timeout=timeout)
    step("starting kube-controller-manager and kube-scheduler")
    cm = processes.start(lay, "kube-controller-manager", configs.controller_manager_argv(params))
    sched = processes.start(lay, "kube-scheduler", configs.scheduler_argv(params))
    for name, proc, port in (("kube-controller-manager", cm, settings.controller_manager_port),
                             ("kube-scheduler", sched, settings.scheduler_port)):
        healthz = f"https://127.0.0.1:{port}/healthz"
        processes.wait_until(lambda url=healthz: _http_ok(url),  # type: ignore[misc]
                             what=f"{name} did not become healthy", timeout=timeout, log=lay.log(name),
                             pid=proc.pid)
    if mode == "real":
        _up_real_node(params, step=step)
    else:
        _up_kwok_nodes(params, nodes, step=step)
    return state


def _up_real_node(params: configs.ClusterParams, *, step: Step) -> None:
    lay, s = params.layout, params.settings
    host.ensure_cgroup_root(configs.cgroup_root(s))
    step("starting containerd")
    _start(params, "containerd", configs.containerd_argv(params), lay.containerd_socket.exists,
           timeout=s.up_timeout_s)
    if not images.in_containerd(configs.PAUSE_IMAGE, lay.containerd_socket):
        step("building and importing the pause image")
        images.ensure_docker(s, lay)
        images.ensure_pause_image(s)
        images.load_into_containerd(configs.PAUSE_IMAGE, lay.containerd_socket)
    step("starting kubelet")
    # Heartbeat timestamps have one-second precision; allow for that rounding.
    since = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=1)
    kubelet = processes.start(lay, "kubelet", configs.kubelet_argv(params))
    step(f"waiting for node {s.node_name} to be Ready")
    processes.wait_until(lambda: _node_ready(s, s.node_name, since=since),
                         what=f"node {s.node_name} did not become Ready", timeout=s.up_timeout_s,
                         log=lay.log("kubelet"), pid=kubelet.pid)


def _node_ready(settings: Settings, name: str, *, since: dt.datetime) -> bool:
    """Ready, and reported so by a kubelet heartbeat after ``since``.

    A node object survives in etcd across `down`/`up` with its last status; without the
    heartbeat check a restarted cluster would look Ready before its kubelet said anything.
    """
    try:
        with admin_http(settings) as client:
            response = client.get(f"/api/v1/nodes/{name}")
    except (httpx.HTTPError, OSError):
        return False
    if response.status_code != 200 or not is_ready(response.json()):
        return False
    for condition in response.json()["status"]["conditions"]:
        if condition["type"] == "Ready":
            heartbeat = dt.datetime.fromisoformat(condition["lastHeartbeatTime"].replace("Z", "+00:00"))
            return heartbeat >= since
    return False


def _up_kwok_nodes(params: configs.ClusterParams, count: int, *, step: Step) -> None:
    lay, s = params.layout, params.settings
    step("starting kwok")
    proc = processes.start(lay, "kwok", configs.kwok_argv(params))
    step(f"creating {count} simulated nodes")
    kubectl(s).apply(json.dumps(configs.kwok_nodes(count)))
    processes.wait_until(lambda: nodes_ready(s)[0] >= count, what=f"{count} kwok nodes did not become Ready",
                         timeout=s.up_timeout_s, log=lay.log("kwok"), pid=proc.pid)


# --- down ------------------------------------------------------------------------------------

def _remove_pods(params_layout: Layout, crictl: Path) -> None:
    """Stop and remove every pod sandbox through CRI, which also tears down its network."""
    if not params_layout.containerd_socket.exists() or not crictl.is_file():
        return
    endpoint = f"unix://{params_layout.containerd_socket}"
    base = [str(crictl), f"--runtime-endpoint={endpoint}", f"--image-endpoint={endpoint}", "--timeout=20s"]
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        subprocess.run([*base, "rmp", "--all", "--force"], capture_output=True, timeout=120, check=False)


def down(settings: Settings, *, purge: bool = False, step: Step = lambda s: None) -> list[str]:
    """Stop everything the local cluster started, and nothing else. Returns what was stopped."""
    lay = layout_of(settings)
    stopped: list[str] = []
    if not lay.root.exists():
        return stopped
    if processes.stop(lay, "kubelet"):
        stopped.append("kubelet")
    if processes.read_pidfile(lay.pidfile("containerd")) is not None:
        step("removing pods")
        _remove_pods(lay, binaries(settings)["crictl"])
    for name in ("kwok", "containerd", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
        if processes.stop(lay, name):
            stopped.append(name)
    state = read_state(lay)
    if state is not None and state.mode == "real":
        # Whatever a crashed kubelet or containerd left behind: pod processes, shims, bridge.
        # (Only a real node owns these; a kwok cluster beside it must never touch them.)
        leftovers = host.kill_cgroup_root(configs.cgroup_root(settings))
        for pid in host.processes_mentioning(str(lay.containerd_socket)):
            processes.terminate(pid, timeout=5)
            leftovers += 1
        if leftovers:
            step(f"killed {leftovers} leftover pod processes")
        host.delete_link(settings.cni_bridge)
    host.unmount_under(lay.root)
    if purge:
        step(f"removing {lay.root}")
        shutil.rmtree(lay.root, ignore_errors=True)
    return stopped


# --- status ----------------------------------------------------------------------------------

def status(settings: Settings) -> dict[str, Any]:
    """What runs, where, and whether it answers; the data behind `cluster status --json`."""
    lay = layout_of(settings)
    state = read_state(lay)
    running = running_daemons(lay)
    wanted = daemons_for(state.mode) if state else CONTROL_PLANE
    daemons = {name: {"running": name in running, "pid": running[name].pid if name in running else None,
                      "log": str(lay.log(name))} for name in wanted}
    ready = bool(running) and apiserver_ready(settings)
    result: dict[str, Any] = {
        "mode": state.mode if state else None,
        "up": ready and all(d["running"] for d in daemons.values()),
        "state_dir": str(lay.root),
        "kubeconfig": str(lay.admin_kubeconfig),
        "apiserver": f"https://127.0.0.1:{settings.apiserver_port}",
        "node_ip": state.node_ip if state else None,
        "daemons": daemons,
    }
    if ready:
        result["nodes_ready"], result["nodes"] = nodes_ready(settings)
    return result
