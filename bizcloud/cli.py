"""The `bizcloud` command: thin Typer commands over the packages, with Rich progress.

Every BizCloudError becomes one red line (what is wrong — what to do) and exit status 1; an
interrupt says how to clean up. Commands that list things take `--json` for scripts.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from bizcloud import stack
from bizcloud.cluster import gobuild, images, lifecycle
from bizcloud.cluster.versions import COMPONENTS, TOOLS, GoComponent
from bizcloud.errors import BizCloudError
from bizcloud.settings import ClusterMode, get_settings

app = typer.Typer(help="BizCloud: a private-cloud platform on Kubernetes.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
cluster_app = typer.Typer(help="The local Kubernetes cluster built from the official Go modules.",
                          no_args_is_help=True)
image_app = typer.Typer(help="Container images built locally (nothing is pulled).", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")
app.add_typer(image_app, name="image")

console = Console(stderr=True)
out = Console()
T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _guard(action: Callable[[], T]) -> T:
    try:
        return action()
    except BizCloudError as e:
        console.print(f"[bold red]error:[/] {e.one_line()}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/] — `bizcloud cluster down` stops whatever was started")
        raise typer.Exit(130) from None


@contextmanager
def _steps(title: str) -> Iterator[Callable[[str], None]]:
    """A spinner showing the current step; finished steps stay on screen with their duration."""
    started = [time.monotonic(), time.monotonic()]
    current: list[str] = []
    with console.status(title) as status:
        def step(text: str) -> None:
            now = time.monotonic()
            if current:
                console.print(f"  [green]✓[/] {current[-1]} [dim]({now - started[1]:.1f}s)[/]")
            current.append(text)
            started[1] = now
            status.update(f"{title}: {text}")

        yield step
        if current:
            console.print(f"  [green]✓[/] {current[-1]} [dim]({time.monotonic() - started[1]:.1f}s)[/]")
    console.print(f"[bold green]{title}[/] done in {time.monotonic() - started[0]:.1f}s")


# --- cluster -----------------------------------------------------------------------------------

def _build_with_progress() -> None:
    settings = get_settings()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("[dim]{task.fields[step]}"),
                  TimeElapsedColumn(), console=console) as progress:
        tasks = {c.name: progress.add_task(f"{c.name} {c.version}", total=1, step="waiting")
                 for c in (*COMPONENTS, *TOOLS)}

        def on_step(c: GoComponent, text: str) -> None:
            progress.update(tasks[c.name], step=text)

        def on_done(c: GoComponent, cached: bool) -> None:
            progress.update(tasks[c.name], completed=1, step="cached" if cached else "built")

        gobuild.build_all(settings.cache_dir, (*COMPONENTS, *TOOLS),
                          on_start=lambda c: on_step(c, "starting"), on_step=on_step, on_done=on_done)
    console.print(f"binaries in {settings.cache_dir / 'bin'}")


@cluster_app.command("build")
def cluster_build() -> None:
    """Build etcd, Kubernetes, kwok, crictl and helm from pinned Go modules (cached by version)."""
    _guard(_build_with_progress)


@cluster_app.command("up")
def cluster_up(
    mode: Annotated[str, typer.Option(help="real: one real node (containerd + kubelet); "
                                           "kwok: simulated nodes for scale tests.")] = "real",
    kwok_nodes: Annotated[int | None, typer.Option(help="Simulated nodes in kwok mode.", min=1)] = None,
) -> None:
    """Start the local cluster (idempotent: a running cluster is left as it is)."""
    if mode not in ("real", "kwok"):
        console.print(f"[bold red]error:[/] --mode must be real or kwok, not {mode!r}")
        raise typer.Exit(2)
    settings = get_settings()
    cluster_mode: ClusterMode = "real" if mode == "real" else "kwok"
    _guard(lambda: lifecycle.preflight(cluster_mode))
    _guard(_build_with_progress)
    with _steps("cluster up") as step:
        _guard(lambda: lifecycle.up(settings, mode=cluster_mode, kwok_nodes=kwok_nodes, step=step))
    out.print(f"kubeconfig: {lifecycle.layout_of(settings).admin_kubeconfig}")


PurgeFlag = Annotated[bool, typer.Option(help="Also delete the local state (cluster data, certificates).")]


def _stop(title: str, action: Callable[[Callable[[str], None]], list[str]]) -> None:
    with _steps(title) as step:
        stopped = _guard(lambda: action(step))
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def _emit_json(data: dict[str, Any]) -> None:
    """Plain JSON on stdout: no colours or wrapping, whatever the terminal."""
    print(json.dumps(data, indent=2))


@cluster_app.command("down")
def cluster_down(purge: PurgeFlag = False) -> None:
    """Stop every process the local cluster started (and nothing else)."""
    _stop("cluster down", lambda step: lifecycle.down(get_settings(), purge=purge, step=step))


@cluster_app.command("status")
def cluster_status(as_json: JsonFlag = False) -> None:
    """Which daemons run, with their pids and logs, and how many nodes are Ready."""
    data = _guard(lambda: lifecycle.status(get_settings()))
    if as_json:
        _emit_json(data)
        return
    table = Table("daemon", "running", "pid", "log")
    for name, d in data["daemons"].items():
        table.add_row(name, "[green]yes[/]" if d["running"] else "[red]no[/]", str(d["pid"] or ""), d["log"])
    out.print(table)
    nodes = f"{data.get('nodes_ready', 0)}/{data.get('nodes', 0)} nodes Ready" if data["up"] else "down"
    out.print(f"mode: {data['mode']}  apiserver: {data['apiserver']}  {nodes}")
    if not data["up"]:
        raise typer.Exit(1)


@cluster_app.command("kubeconfig")
def cluster_kubeconfig() -> None:
    """Print the path of the admin kubeconfig (`export KUBECONFIG=$(bizcloud cluster kubeconfig)`)."""
    path = lifecycle.layout_of(get_settings()).admin_kubeconfig
    if not path.is_file():
        console.print("[bold red]error:[/] no kubeconfig yet — run `bizcloud cluster up` first")
        raise typer.Exit(1)
    print(path)


# --- images ------------------------------------------------------------------------------------

@image_app.command("build")
def image_build(
    directory: Annotated[Path, typer.Argument(help="Directory with a Dockerfile (and go.mod to compile).",
                                              exists=True, file_okay=False)],
    tag: Annotated[str, typer.Option("-t", "--tag", help="Image name, NAME:TAG.")],
    load: Annotated[bool, typer.Option(help="Load into the local cluster's containerd.")] = True,
) -> None:
    """Build an image with Docker Engine from a locally made base, and load it into the cluster."""
    settings = get_settings()
    socket = lifecycle.layout_of(settings).containerd_socket

    def build() -> None:
        with _steps(f"image {tag}") as step:
            step("building")
            images.build_image(directory, tag, settings)
            if load and socket.exists():
                step("loading into the cluster's containerd")
                images.load_into_containerd(tag, socket)
            elif load:
                console.print("[yellow]the local cluster is not up: image left in Docker only[/]")

    _guard(build)


# --- the whole stack ---------------------------------------------------------------------------

@app.command("up")
def up() -> None:
    """Run BizCloud on its embedded defaults: local cluster, sample service; print the endpoints."""
    settings = get_settings()
    if settings.kubeconfig is None:
        _guard(lambda: lifecycle.preflight("real"))
    _guard(_build_with_progress)
    with _steps("bizcloud up") as step:
        data = _guard(lambda: stack.up(settings, step=step))
    _print_endpoints(data)


@app.command("down")
def down(purge: PurgeFlag = False) -> None:
    """Stop everything `bizcloud up` started."""
    _stop("bizcloud down", lambda step: stack.down(get_settings(), purge=purge, step=step))


@app.command("status")
def status(as_json: JsonFlag = False) -> None:
    """Every component that `make up` started, with its endpoint."""
    data = _guard(lambda: stack.endpoints(get_settings()))
    if as_json:
        _emit_json(data)
        return
    _print_endpoints(data)


# --- daemons and the catalog --------------------------------------------------------------------

@app.command("server")
def server() -> None:
    """Run the API server (REST under /api/v1, OpenAPI at /openapi.json, metrics at /metrics)."""
    from bizcloud.daemons import server_main  # noqa: PLC0415 - keeps FastAPI out of every other command

    _guard(lambda: server_main(get_settings()))


@app.command("monitor")
def monitor() -> None:
    """Run the k8s-monitor: pods -> instance events -> catalog (one leader among several)."""
    from bizcloud.daemons import monitor_main  # noqa: PLC0415 - keeps SQLAlchemy out of other commands

    _guard(lambda: monitor_main(get_settings()))


@app.command("gateway")
def gateway(
    workers: Annotated[int, typer.Option(min=1, max=64, help="nginx worker processes.")] = 2,
    balance: Annotated[str, typer.Option(help="Peer choice: round_robin or least_conn.")] = "round_robin",
    peer: Annotated[list[str] | None, typer.Option(
        help="Admin URL of another gateway to keep in sync (repeatable).")] = None,
) -> None:
    """Run the access-layer gateway: nginx + Lua upstreams that follow the catalog without reloads."""
    from bizcloud.daemons import gateway_main  # noqa: PLC0415 - keeps the gateway out of other commands

    _guard(lambda: gateway_main(get_settings(), workers=workers, balance=balance, peers=tuple(peer or ())))


def _api_get(path: str, params: dict[str, str] | None = None) -> Any:
    url = f"{stack.api_url(get_settings())}/api/v1{path}"
    try:
        response = httpx.get(url, params=params, timeout=10)
    except httpx.HTTPError as e:
        raise BizCloudError(f"the BizCloud API does not answer at {url}",
                            hint="start it with `make up` or `bizcloud server`") from e
    if response.status_code == 404:
        raise BizCloudError(f"not found: {path}", hint="`bizcloud services ls` lists the services")
    if response.status_code >= 400:
        raise BizCloudError(f"the API answered {response.status_code} for {path}: {response.text[:200]}")
    return response.json()


services_app = typer.Typer(help="The service catalog.", no_args_is_help=True)
app.add_typer(services_app, name="services")


@services_app.command("ls")
def services_ls(as_json: JsonFlag = False) -> None:
    """Every service in the catalog."""
    data = _guard(lambda: _api_get("/services"))
    if as_json:
        _emit_json(data)
        return
    table = Table("service", "owner", "description")
    for svc in data:
        table.add_row(svc["name"], svc.get("owner", ""), svc.get("description", ""))
    out.print(table)


@app.command("instances")
def instances(
    service: Annotated[str, typer.Argument(help="Service name.")],
    env: Annotated[str | None, typer.Option(help="Only this environment.")] = None,
    group: Annotated[str | None, typer.Option(help="Only this group (normal or gray).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The serving instances of a service, as the catalog has them."""
    params = {k: v for k, v in (("env", env), ("group", group)) if v}
    data = _guard(lambda: _api_get(f"/services/{service}/instances", params))
    if as_json:
        _emit_json(data)
        return
    table = Table("env", "group", "pod", "ip", "ports", "node", "release")
    for i in data:
        ports = ",".join(f"{k}={v}" for k, v in sorted(i["ports"].items()))
        table.add_row(i["env"], i["group"], i["pod"], i["ip"] or "", ports, i["node"] or "",
                      i["release"] or "")
    out.print(table)


# --- shell and users ---------------------------------------------------------------------------

@app.command("shell")
def shell(
    pod: Annotated[str, typer.Argument(help="Pod name.")],
    namespace: Annotated[str, typer.Option("-n", "--namespace", help="The pod's namespace.")] = "bc-dev",
    container: Annotated[str | None, typer.Option("-c", "--container", help="Container (default: first).")]
    = None,
) -> None:
    """A shell in a pod's container, through the BizCloud server (bash, else sh); audited and recorded."""
    import asyncio  # noqa: PLC0415

    from bizcloud.accounts.bootstrap import cli_token  # noqa: PLC0415
    from bizcloud.webshell.terminal import run_terminal  # noqa: PLC0415

    settings = get_settings()
    url = stack.api_url(settings).replace("http://", "ws://", 1) + f"/api/v1/shell/kube/{namespace}/{pod}"
    if container:
        url += f"?container={container}"
    token = cli_token(settings.resolved_state_dir())
    _guard(lambda: asyncio.run(run_terminal(url, token)))


users_app = typer.Typer(help="Console and API users (writes the catalog's database directly).",
                        no_args_is_help=True)
app.add_typer(users_app, name="users")


def _accounts() -> Any:
    from bizcloud.accounts.store import AccountStore  # noqa: PLC0415
    from bizcloud.catalog.db import make_engine, migrate_engine  # noqa: PLC0415

    engine = make_engine(get_settings().resolved_database_url())
    migrate_engine(engine)
    return AccountStore(engine)


def _role(value: str) -> None:
    from bizcloud.accounts.roles import Role  # noqa: PLC0415

    if value not in {r.value for r in Role}:
        raise BizCloudError(f"role {value!r} is not a role", hint="use viewer, developer, ops or admin")


@users_app.command("ls")
def users_ls(as_json: JsonFlag = False) -> None:
    """Every user and their role."""
    users = _guard(lambda: _accounts().list_users())
    rows = [{"name": u.name, "role": u.role.value, "disabled": u.disabled} for u in users]
    if as_json:
        _emit_json({"users": rows})
        return
    table = Table("user", "role", "disabled")
    for r in rows:
        table.add_row(r["name"], r["role"], "yes" if r["disabled"] else "")
    out.print(table)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option(help="viewer, developer, ops or admin.")] = "viewer",
    password: Annotated[str | None, typer.Option(help="8 characters or more; generated if left out.")] = None,
) -> None:
    """Add a user; prints the generated password when none is given."""
    from bizcloud.accounts import credentials  # noqa: PLC0415
    from bizcloud.accounts.roles import Role  # noqa: PLC0415

    _guard(lambda: _role(role))
    secret = password or credentials.new_password()
    _guard(lambda: _accounts().create_user(name=name, password=secret, role=Role(role)))
    out.print(f"user {name} ({role}) added" + ("" if password else f"; password: {secret}"))


@users_app.command("set-role")
def users_set_role(name: Annotated[str, typer.Argument()], role: Annotated[str, typer.Argument()]) -> None:
    """Change a user's role."""
    from bizcloud.accounts.roles import Role  # noqa: PLC0415

    _guard(lambda: _role(role))
    _guard(lambda: _accounts().update_user(name=name, role=Role(role)))
    out.print(f"user {name} is now {role}")


@users_app.command("token")
def users_token(name: Annotated[str, typer.Argument(help="User name.")],
                label: Annotated[str, typer.Option(help="What the token is for.")] = "cli") -> None:
    """A new API token for NAME (shown once): use it as BIZCLOUD_TOKEN or Authorization: Bearer."""
    token = _guard(lambda: _accounts().issue_token(user=name, name=label))
    out.print(token)


def _print_endpoints(data: dict[str, Any]) -> None:
    cluster = data["cluster"]
    where = f", apiserver {cluster['apiserver']}" if "apiserver" in cluster else ""
    out.print(f"[bold]cluster[/]    {'up' if cluster['up'] else 'down'} ({cluster['mode']}){where}")
    out.print(f"[bold]kubeconfig[/] {data['kubeconfig']}")
    for name in ("server", "monitor"):
        if name in data:
            d = data[name]
            state = "up" if d["running"] else "down"
            out.print(f"[bold]{name:<10}[/] {state}, {d['url']}")
    if "console" in data:
        console_info = data["console"]
        out.print(f"[bold]console[/]    {console_info['url']}")
        if console_info.get("password"):
            out.print(f"[bold]admin[/]      user admin, password {console_info['password']}   "
                      f"(saved in {console_info['credentials']})")
        else:
            out.print(f"[bold]admin[/]      credentials in {console_info['credentials']}")
    if "zookeeper" in data:
        zk = data["zookeeper"]
        out.print(f"[bold]zookeeper[/]  {'up' if zk['running'] else 'down'}, {zk['hosts']}   "
                  f"(try: bizcloud soa providers)")
    if "mariadb" in data:
        db = data["mariadb"]
        out.print(f"[bold]mariadb[/]    {'up' if db['running'] else 'down'}, master :{db['master_port']}, "
                  f"replica :{db['replica_port']}   (try: bizcloud grants --service demo-api)")
    gateway = data.get("gateway")
    if gateway:
        state = "up" if gateway["running"] else "down"
        out.print(f"[bold]gateway[/]    {state}, {gateway['url']}/   "
                  f"(try: curl -H 'X-User-Id: 42' {gateway['url']}/)")
    else:
        for url in data.get("demo-web", {}).get("urls", []):
            out.print(f"[bold]demo-web[/]   {url}   (try: curl {url})")


# --- SOA registry ------------------------------------------------------------------------------

soa_app = typer.Typer(help="The SOA registry (ZooKeeper, Apache Dubbo's layout).", no_args_is_help=True)
whitelist_app = typer.Typer(help="Who may call an interface (Dubbo condition routers).", no_args_is_help=True)
app.add_typer(soa_app, name="soa")
soa_app.add_typer(whitelist_app, name="whitelist")


@soa_app.command("providers")
def soa_providers(
        interface: Annotated[str | None, typer.Argument(help="one interface (default: all)")] = None,
        as_json: JsonFlag = False) -> None:
    """Provider nodes as Dubbo consumers see them: interface, address, group, pod."""
    from bizcloud.soa import admin  # noqa: PLC0415 - keeps kazoo out of other commands

    def read() -> list[dict[str, Any]]:
        with admin.session(get_settings()) as client:
            return admin.providers(client, interface)

    rows = _guard(read)
    if as_json:
        _emit_json({"providers": rows})
        return
    table = Table("interface", "address", "group", "application", "env", "pod")
    for row in rows:
        table.add_row(row["interface"], row["address"] or "(not a URL)", row["group"] or "",
                      row.get("application") or "", row.get("env") or "", row.get("pod") or "")
    out.print(table)


def _whitelist(interface: str, change: Callable[[Any], object] | None, as_json: bool) -> None:
    from bizcloud.soa import admin  # noqa: PLC0415 - keeps kazoo out of other commands

    def run() -> dict[str, Any]:
        with admin.session(get_settings()) as client:
            if change is not None:
                change(client)
            return admin.whitelist(client, interface)

    data = _guard(run)
    if as_json:
        _emit_json(data)
    elif data["open"]:
        out.print(f"{interface}: open (no whitelist rule)")
    else:
        out.print(f"{interface}: only {', '.join(data['allowed']) or 'nobody'}")


@whitelist_app.command("show")
def whitelist_show(interface: str, as_json: JsonFlag = False) -> None:
    """The consumer IPs allowed to call INTERFACE (no rule = open)."""
    _whitelist(interface, None, as_json)


@whitelist_app.command("set")
def whitelist_set(
        interface: str, ips: Annotated[list[str] | None, typer.Argument(help="consumer IPs")] = None,
        as_json: JsonFlag = False) -> None:
    """Only IPS may call INTERFACE (none given: nobody)."""
    from bizcloud.soa.whitelist import set_whitelist  # noqa: PLC0415

    def change(client: Any) -> None:
        try:
            set_whitelist(client, interface, ips or [])
        except ValueError as e:  # a bad IP or interface name
            raise BizCloudError(str(e), hint="give a Java interface name, then IPv4 or IPv6 addresses") from e

    _whitelist(interface, change, as_json)


@whitelist_app.command("clear")
def whitelist_clear(interface: str, as_json: JsonFlag = False) -> None:
    """Remove INTERFACE's rule: every consumer may call it again."""
    from bizcloud.soa.whitelist import clear_whitelist  # noqa: PLC0415

    _whitelist(interface, lambda client: clear_whitelist(client, interface), as_json)


# --- config center -----------------------------------------------------------------------------

config_app = typer.Typer(help="Service configs and the resource inventory, versioned (the config center).",
                         no_args_is_help=True)
app.add_typer(config_app, name="config")
ConfigNameArg = Annotated[str, typer.Argument(help="A service name, or `inventory`.")]
CommentOpt = Annotated[str, typer.Option(help="Why: kept with the version.")]


def _api_target(path: str, *, yaml_text: str | None = None) -> tuple[str, dict[str, str]]:
    """The URL of an API path and the headers with the CLI's token (writes need it)."""
    from urllib.parse import quote  # noqa: PLC0415

    from bizcloud.accounts.bootstrap import cli_token  # noqa: PLC0415

    settings = get_settings()
    url = f"{stack.api_url(settings)}/api/v1{quote(path)}"
    headers = {"Content-Type": "text/yaml"} if yaml_text is not None else {}
    if token := cli_token(settings.resolved_state_dir()):
        headers["Authorization"] = f"Bearer {token}"
    return url, headers


def _api(method: str, path: str, *, params: dict[str, str] | None = None,
         yaml_text: str | None = None, json_body: dict[str, Any] | None = None, timeout: float = 30) -> Any:
    """One API call with the CLI's token; a refused config lists each problem on a line."""
    url, headers = _api_target(path, yaml_text=yaml_text)
    try:
        response = httpx.request(method, url, params=params, content=yaml_text, json=json_body,
                                 headers=headers, timeout=timeout)
    except httpx.HTTPError as e:
        raise BizCloudError(f"the BizCloud API does not answer at {url}",
                            hint="start it with `make up` or `bizcloud server`") from e
    is_json = response.headers.get("content-type", "").startswith("application/json")
    detail = response.json().get("detail") if is_json and response.status_code >= 400 else response.text[:300]
    if isinstance(detail, dict) and "problems" in detail:
        lines = [f"{detail['message']}:", *detail["problems"]]
        raise BizCloudError("\n  ".join(lines), hint=detail.get("hint", ""))
    if isinstance(detail, dict) and "message" in detail:   # {"message", "hint"}: the release routes' errors
        raise BizCloudError(str(detail["message"]), hint=str(detail.get("hint") or ""))
    if response.status_code == 401:
        raise BizCloudError("the API wants a user for this", hint="set BIZCLOUD_TOKEN to a token from "
                            "`bizcloud users token NAME` (make up saves one for the CLI)")
    if response.status_code >= 400 and is_json and isinstance(detail, str):
        raise BizCloudError(detail)   # the API's own one line: what is wrong — what to do
    if response.status_code >= 400:
        raise BizCloudError(f"the API answered {response.status_code} for {method} {path}: {detail}")
    return response.json() if is_json else response.text


def _versions_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("kind", "name", "version", "author", "when", "comment")
    for v in rows:
        name = v["name"] + (" (deleted)" if v["deleted"] else "")
        table.add_row(v["kind"], name, str(v["version"]), v["author"], v["created_at"][:19], v["comment"])
    return table


@config_app.command("apply")
def config_apply(
    file: Annotated[Path, typer.Argument(help="A YAML file: one or several configs (---), all or none.",
                                         exists=True, dir_okay=False, readable=True)],
    comment: CommentOpt = "", as_json: JsonFlag = False,
) -> None:
    """Upload FILE's configs; each gets a new version unless its content is unchanged."""
    data = _guard(lambda: _api("PUT", "/configs", params={"comment": comment},
                               yaml_text=file.read_text(encoding="utf-8")))
    if as_json:
        _emit_json(data)
        return
    for r in data["results"]:
        out.print(f"{r['kind']} {r['name']}: version {r['version']} ({r['status']})", highlight=False)


@config_app.command("ls")
def config_ls(as_json: JsonFlag = False) -> None:
    """The current version of every config."""
    data = _guard(lambda: _api("GET", "/configs"))
    if as_json:
        _emit_json(data)
    else:
        out.print(_versions_table(data))


@config_app.command("show")
def config_show(name: ConfigNameArg,
                version: Annotated[int | None, typer.Option(help="This version (default: current).",
                                                            min=1)] = None,
                as_json: JsonFlag = False) -> None:
    """A config as uploaded (YAML), or with --json as validated, defaults filled in."""
    path = f"/configs/{name}" + (f"/versions/{version}" if version else "")
    data = _guard(lambda: _api("GET", path))
    if as_json:
        _emit_json(data)
    else:
        out.print(data["yaml"] or f"(version {data['version']} deleted the config)", end="", highlight=False,
                  markup=False)


@config_app.command("history")
def config_history(name: ConfigNameArg, as_json: JsonFlag = False) -> None:
    """Every version of a config, deletions included."""
    data = _guard(lambda: _api("GET", f"/configs/{name}/versions"))
    if as_json:
        _emit_json(data)
    else:
        out.print(_versions_table(data))


@config_app.command("diff")
def config_diff(name: ConfigNameArg,
                old: Annotated[int, typer.Argument(help="Older version (0: nothing).", min=0)],
                new: Annotated[int, typer.Argument(help="Newer version.", min=1)],
                as_json: JsonFlag = False) -> None:
    """A unified diff between two versions of a config (their validated form)."""
    data = _guard(lambda: _api("GET", f"/configs/{name}/diff", params={"from": str(old), "to": str(new)}))
    if as_json:
        _emit_json(data)
    else:
        out.print(data["diff"] or "(no difference)", end="" if data["diff"] else "\n", highlight=False,
                  markup=False)


@config_app.command("delete")
def config_delete(name: ConfigNameArg, comment: CommentOpt = "", as_json: JsonFlag = False) -> None:
    """Delete a config: a new version marks it deleted; its history stays."""
    data = _guard(lambda: _api("DELETE", f"/configs/{name}", params={"comment": comment}))
    if as_json:
        _emit_json(data)
    else:
        out.print(f"{data['kind']} {data['name']}: deleted in version {data['version']}", highlight=False)


@app.command("graph")
def dependency_graph(
    service: Annotated[str | None, typer.Argument(help="Only this service, its uses and users.")] = None,
    output: Annotated[str, typer.Option("--format", help="json or dot (Graphviz).")] = "json",
) -> None:
    """The dependency graph of the configs: services -> MySQL, Redis, hosts, SOA interfaces."""
    if output not in ("json", "dot"):
        raise typer.BadParameter(f"{output!r} is not known; use json or dot", param_hint="--format")
    params = {"format": output} | ({"service": service} if service else {})
    data = _guard(lambda: _api("GET", "/graph", params=params))
    if output == "dot":
        out.print(data, end="", highlight=False, markup=False)
    else:
        _emit_json(data)


# --- automatic authorization -------------------------------------------------------------------

@app.command("grants")
def grants(
    ip: Annotated[str | None, typer.Option(help="Only grants of this pod IP.")] = None,
    service: Annotated[str | None, typer.Option(help="Only grants of this service's pods.")] = None,
    why: Annotated[bool, typer.Option("--why", help="With --ip: why each grant is held, and its journal.")
                   ] = False,
    journal: Annotated[bool, typer.Option("--journal", help="The journal instead: grants, revokes, refusals.")
                       ] = False,
    as_json: JsonFlag = False,
) -> None:
    """The grants in force (MySQL accounts, SOA whitelists, firewall rules), and why each is held."""
    params = {k: v for k, v in (("ip", ip), ("service", service)) if v}
    if why:
        if not ip:
            raise typer.BadParameter("say whose grants to explain with --ip", param_hint="--why")
        data = _guard(lambda: _api("GET", "/grants/explain", params={"ip": ip}))
        if as_json:
            _emit_json(data)
            return
        for line in data["because"] or [f"{ip} holds no grant"]:
            out.print(line, highlight=False, soft_wrap=True)
        rows: list[dict[str, Any]] = data["journal"]
    elif journal:
        rows = _guard(lambda: _api("GET", "/grants/journal", params=params))
        if as_json:
            _emit_json({"journal": rows})
            return
    else:
        held: list[dict[str, Any]] = _guard(lambda: _api("GET", "/grants", params=params))
        if as_json:
            _emit_json({"grants": held})
            return
        table = Table("kind", "target", "ip", "grant", "state", "services")
        for g in held:
            state = g["state"] + (f" ({g['attempts']} tries: {g['error']})" if g["error"] else "")
            table.add_row(g["kind"], g["target"], g["subject_ip"], g["grant"], state, ",".join(g["services"]))
        out.print(table)
        return
    table = Table("when", "action", "outcome", "kind", "target", "ip", "grant", "trigger", "error")
    for j in rows:
        table.add_row(j["at"][:23], j["action"], j["outcome"], j["kind"], j["target"], j["subject_ip"],
                      j["grant"], j["trigger"], j["error"] or "")
    out.print(table)


# --- release: render, deploy, scale, environments ----------------------------------------------

env_app = typer.Typer(help="One-click environments: a service closure in its own namespace.",
                      no_args_is_help=True)
app.add_typer(env_app, name="env")
EnvOpt = Annotated[str, typer.Option("--env", "-e", help="The environment (namespace bc-ENV).")]
ServiceArg = Annotated[str, typer.Argument(help="The service (its config is in the config center).")]


def _api_stream(method: str, path: str, body: dict[str, Any], title: str) -> dict[str, Any]:
    """A long API operation with its progress on screen (NDJSON events), then its result."""
    url, headers = _api_target(path)
    headers["Accept"] = "application/x-ndjson"
    result: dict[str, Any] | None = None
    with _steps(title) as step:
        try:
            timeout = httpx.Timeout(30, read=900)
            with httpx.stream(method, url, json=body, headers=headers, timeout=timeout) as r:
                if r.status_code == 401:
                    raise BizCloudError("the API wants a user for this", hint="set BIZCLOUD_TOKEN to a token "
                                        "from `bizcloud users token NAME` (make up saves one for the CLI)")
                if r.status_code >= 400:
                    r.read()
                    is_json = r.headers.get("content-type", "").startswith("application/json")
                    raise BizCloudError(str(r.json().get("detail") if is_json else r.text[:300]))
                for line in r.iter_lines():
                    event = json.loads(line) if line.strip() else {}
                    if "step" in event:
                        step(event["step"])
                    elif "rollout" in event:
                        ro = event["rollout"]
                        step(f"{ro['workload']}: {ro['updated']}/{ro['desired']} updated, "
                             f"{ro['ready']} ready")
                    elif "error" in event:
                        raise BizCloudError(event["error"])
                    elif "result" in event:
                        result = event["result"]
        except httpx.HTTPError as e:
            raise BizCloudError(f"the BizCloud API does not answer at {url}",
                                hint="start it with `make up` or `bizcloud server`") from e
    if result is None:
        raise BizCloudError("the API closed the stream before the operation ended",
                            hint="see `bizcloud releases` for how it ended")
    return result


@app.command("render")
def render(
    service: ServiceArg, env: EnvOpt,
    image: Annotated[str | None, typer.Option(help="The image (default: what runs now, else the config's).")
                     ] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="Render this config file here, without the server (needs --image or `image:`).")
    ] = None,
    helm_chart: Annotated[Path | None, typer.Option(
        "--helm-chart", help="Write a Helm chart (and its values.yaml) to this directory.")] = None,
) -> None:
    """The manifests a deploy applies: standard YAML that `kubectl apply -f -` accepts."""
    from bizcloud.configcenter import documents  # noqa: PLC0415
    from bizcloud.configcenter.schema import ServiceConfig  # noqa: PLC0415
    from bizcloud.release.helm import export_chart  # noqa: PLC0415
    from bizcloud.release.params import Platform, params_for  # noqa: PLC0415
    from bizcloud.release.render import Renderer, to_yaml  # noqa: PLC0415

    def local() -> str:
        text = file.read_text() if file else _api("GET", f"/configs/{service}")["yaml"]
        configs = {d.name: d.config for d in documents.read(text)}
        config = configs.get(service)
        if not isinstance(config, ServiceConfig):
            raise BizCloudError(f"no config of service {service!r} in {file or 'the config center'}",
                                hint=f"it has: {', '.join(configs) or 'nothing'}")
        chosen = image or config.image
        if chosen is None:
            raise BizCloudError(f"no image for {service}", hint="give --image or add `image:` to the config")
        params = params_for(config, env, image=chosen, platform=Platform.from_settings(get_settings()))
        if helm_chart is not None:
            return f"chart written to {export_chart(params, helm_chart)}\n"
        return to_yaml(Renderer().render(params))

    if file is not None or helm_chart is not None:
        text = _guard(local)
    else:
        text = _guard(lambda: _api("GET", f"/release/{service}/{env}/render",
                                   params={"image": image} if image else None))
    out.print(text, end="", highlight=False, markup=False, soft_wrap=True)


@app.command("deploy")
def deploy(  # noqa: PLR0917 - Typer maps parameters to options
    service: ServiceArg, env: EnvOpt,
    image: Annotated[str | None, typer.Option(help="The image to run (default: what runs now).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate on the server and show the diff; "
                                                            "write nothing.")] = False,
    show_diff: Annotated[bool, typer.Option("--diff", help="Show the diff against the live objects.")
                         ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Render, dry-run, (diff,) apply and wait for the rollout: one click, no manifests."""
    body = {"image": image, "dry_run": dry_run, "diff": show_diff}
    title = f"{'dry-run of ' if dry_run else ''}deploying {service} to {env}"
    result = _guard(lambda: _api_stream("POST", f"/release/{service}/{env}/deploy", body, title))
    if as_json:
        _emit_json(result)
        return
    for d in result["diffs"]:
        if d["action"] != "unchanged":
            out.print(d["diff"] or f"{d['action']} {d['object']}", end="", highlight=False, markup=False)
    changed = "changes" if result["changed"] else "no change"
    done = ", ".join(f"{w} {r['ready']}/{r['desired']} ready" for w, r in result["rollouts"].items())
    out.print(f"{service} in {env}: {result['image']} (release {result['release']}), {changed}"
              + (f"; {done}" if done else "") + ("; dry run, nothing written" if dry_run else ""),
              highlight=False)


@app.command("scale")
def scale(  # noqa: PLR0917 - Typer maps parameters to options
    service: ServiceArg, env: EnvOpt,
    replicas: Annotated[int | None, typer.Option(help="The number of pods.", min=0, max=1000)] = None,
    cpu: Annotated[str | None, typer.Option(help="CPU per pod, e.g. 500m.")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory per pod, e.g. 512Mi.")] = None,
    rolling: Annotated[bool, typer.Option("--rolling", help="Restart pods with the new size instead of "
                                                            "resizing them in place.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Scale out or up: replicas now, CPU and memory in place where the cluster can (else rolling)."""
    body = {"replicas": replicas, "cpu": cpu, "memory": memory, "rolling": rolling}
    result = _guard(lambda: _api("POST", f"/release/{service}/{env}/scale", json_body=body, timeout=900))
    if as_json:
        _emit_json(result)
        return
    parts = [f"replicas {result['replicas'][0]} → {result['replicas'][1]}"] if result["replicas"] else []
    parts += [f"{k} {a} → {b}" for k, (a, b) in result["resources"].items()]
    how = {"in-place": f"resized {len(result['pods'])} pods in place, no restart",
           "rolling": "rolling update", "none": ""}[result["method"]]
    out.print(f"{service} in {env}: {', '.join(parts)}" + (f" ({how})" if how else "")
              + f"; config version {result['config_version']}", highlight=False)


@env_app.command("create")
def env_create(
    name: Annotated[str, typer.Argument(help="The new environment (namespace bc-NAME).")],
    source: Annotated[str, typer.Option("--from", help="Take parameters and images from it.")],
    only: Annotated[list[str] | None, typer.Option("--only", help="Only this service and what it consumes "
                                                                  "(repeat for more).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Deploy a whole environment in one go: the services of --from (or --only) and their SOA closure."""
    body = {"name": name, "from": source, "only": only or []}
    title = f"creating environment {name}"
    result = _guard(lambda: _api_stream("POST", "/release/environments", body, title))
    if as_json:
        _emit_json(result)
        return
    out.print(f"environment {name} (namespace {result['namespace']}) from {source}: "
              f"{', '.join(result['services'])}", highlight=False)


@env_app.command("delete")
def env_delete(name: Annotated[str, typer.Argument(help="An environment made by `env create`.")],
               as_json: JsonFlag = False) -> None:
    """Delete an environment made by `env create`, and everything in its namespace."""
    result = _guard(lambda: _api("DELETE", f"/release/environments/{name}", timeout=400))
    if as_json:
        _emit_json(result)
    else:
        out.print(f"environment {name} deleted (namespace {result['deleted']})", highlight=False)


@app.command("releases")
def releases(
    service: Annotated[str | None, typer.Argument(help="Only this service.")] = None,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1, max=1000)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """The release history: deploys, scales, environments and gray steps, with who and how they ended."""
    params = {k: v for k, v in (("service", service), ("env", env), ("limit", str(limit))) if v}
    rows: list[dict[str, Any]] = _guard(lambda: _api("GET", "/release/history", params=params))
    if as_json:
        _emit_json({"history": rows})
        return
    table = Table("when", "service", "env", "action", "user", "outcome", "message")
    for r in rows:
        table.add_row(r["started_at"][:19], r["service"], r["env"], r["action"], r["user"], r["outcome"],
                      r["message"])
    out.print(table)


# --- gray release ------------------------------------------------------------------------------

gray_app = typer.Typer(help="Gray releases: a second Deployment at a new image, users split by ID at the "
                            "gateway and in the SOA layer, steps analysed, automatic rollback.",
                       no_args_is_help=True)
app.add_typer(gray_app, name="gray")
UidsOpt = Annotated[str | None, typer.Option("--uids", help="User IDs always on gray, comma-separated.")]


def _uids(value: str | None) -> list[str] | None:
    return None if value is None else [u.strip() for u in value.split(",") if u.strip()]


def _gray_call(service: str, env: str, verb: str, body: dict[str, Any] | None = None) -> Any:
    return _guard(lambda: _api("POST", f"/release/gray/{service}/{env}/{verb}", json_body=body or {},
                               timeout=900))


def _gray_line(g: dict[str, Any]) -> str:
    pods = g["pods"]
    return (f"{g['service']} in {g['env']}: {g['phase']}, {g['image']} at {g['ratio']:g}% "
            f"(gray {pods['gray']} pods, normal {pods['normal']}; base {g['base_image']})"
            + (f" — {g['message']}" if g["message"] else ""))


def _gray_show(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit_json(data)
    else:
        out.print(_gray_line(data), highlight=False, soft_wrap=True)


@gray_app.command("start")
def gray_start(  # noqa: PLR0917 - Typer maps parameters to options
    service: ServiceArg, env: EnvOpt,
    image: Annotated[str, typer.Option(help="The image to try, e.g. demo:v2.")],
    ratio: Annotated[float | None, typer.Option(help="Percent of users on gray first (default: the first "
                                                     "step, else 10).")] = None,
    uids: UidsOpt = None,
    steps: Annotated[str | None, typer.Option(help="Ratios walked through, e.g. 10,30,50,100 (100 promotes).")
                     ] = None,
    interval: Annotated[str, typer.Option(help="How long each step is analysed: 60s, 5m, 1h.")] = "60s",
    max_error_rate: Annotated[float | None, typer.Option(help="Roll back above this error rate (0-1).")
                              ] = None,
    max_p99_ms: Annotated[float | None, typer.Option(help="Roll back above this p99 latency (ms).")] = None,
    min_requests: Annotated[int | None, typer.Option(help="Requests a window needs for a verdict.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Start a gray release of IMAGE beside what runs: pods first, then the users' share."""
    try:
        step_list = [float(s) for s in steps.split(",") if s.strip()] if steps else []
    except ValueError as e:
        raise typer.BadParameter(f"{steps!r} is not a list of numbers; give e.g. 10,30,50,100",
                                 param_hint="--steps") from e
    limits = {k: v for k, v in (("max_error_rate", max_error_rate), ("max_p99_ms", max_p99_ms),
                                ("min_requests", min_requests)) if v is not None}
    body = {"image": image, "ratio": ratio, "uids": _uids(uids) or [], "steps": step_list,
            "interval": interval, "thresholds": limits or None}
    _gray_show(_gray_call(service, env, "start", body), as_json)


@gray_app.command("set")
def gray_set(service: ServiceArg, env: EnvOpt,
             ratio: Annotated[float, typer.Option(help="Percent of users on gray, 0-100.")],
             uids: UidsOpt = None, as_json: JsonFlag = False) -> None:
    """Move the gray release to RATIO by hand (and a new --uids whitelist); it then holds there."""
    _gray_show(_gray_call(service, env, "set", {"ratio": ratio, "uids": _uids(uids)}), as_json)


@gray_app.command("pause")
def gray_pause(service: ServiceArg, env: EnvOpt, as_json: JsonFlag = False) -> None:
    """Stop stepping and analysing; traffic and pods stay."""
    _gray_show(_gray_call(service, env, "pause"), as_json)


@gray_app.command("resume")
def gray_resume(service: ServiceArg, env: EnvOpt, as_json: JsonFlag = False) -> None:
    """Go on after a pause."""
    _gray_show(_gray_call(service, env, "resume"), as_json)


@gray_app.command("promote")
def gray_promote(service: ServiceArg, env: EnvOpt, as_json: JsonFlag = False) -> None:
    """Make the gray image the normal one; the gray Deployment goes to 0."""
    _gray_show(_gray_call(service, env, "promote"), as_json)


@gray_app.command("rollback")
def gray_rollback(service: ServiceArg, env: EnvOpt,
                  reason: Annotated[str, typer.Option(help="Why, for the history.")] = "",
                  as_json: JsonFlag = False) -> None:
    """Back to the base image: every user to normal at once, then gray to 0."""
    _gray_show(_gray_call(service, env, "rollback", {"reason": reason}), as_json)


@gray_app.command("status")
def gray_status(service: ServiceArg, env: EnvOpt, as_json: JsonFlag = False) -> None:
    """The gray release, its last analysis and its history."""
    data = _guard(lambda: _api("GET", f"/release/gray/{service}/{env}"))
    if as_json:
        _emit_json(data)
        return
    g = data["gray"]
    out.print(_gray_line(g) if g else f"{service} in {env}: no gray release", highlight=False, soft_wrap=True)
    if data["last_analysis"]:
        a = data["last_analysis"]
        out.print(f"last analysis at {a['ratio']:g}%: {a['outcome']} — {a['reason']}", highlight=False,
                  soft_wrap=True)
    table = Table("when", "action", "user", "outcome", "message")
    for h in data["history"]:
        table.add_row(h["started_at"][:19], h["action"], h["user"], h["outcome"], h["message"])
    out.print(table)


def main() -> None:
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)
