"""Builds the cluster's binaries from the official Go modules, into a cache outside the repository.

Each component gets a throwaway Go module under ``<cache>/gobuild/<name>-<version>/`` that
requires the upstream module at its pinned version (plus, for k8s.io/kubernetes, a replace for
each staging module), and its binaries land in ``<cache>/bin/<name>-<version>/``. A stamp file
records the exact build spec, so a second build, or a fresh clone on the same machine, reuses the
binaries, while a changed pin or ldflag rebuilds. Go's own module and build caches make a rebuild
after an interrupted one cheap.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from bizcloud.cluster.versions import COMPONENTS, MIN_GO, GoComponent
from bizcloud.errors import BuildError, PrerequisiteError

STAMP = ".bizcloud-build.json"
_NETWORK_SIGNS = ("dial tcp", "no such host", "proxyconnect", "i/o timeout", "connection refused",
                  "TLS handshake timeout", "server response: not found")

Progress = Callable[[str], None]


def bin_dir(cache_dir: Path, component: GoComponent) -> Path:
    return cache_dir / "bin" / component.key


def binary_path(cache_dir: Path, component: GoComponent, binary: str) -> Path:
    return bin_dir(cache_dir, component) / binary


def build_spec(component: GoComponent) -> dict[str, object]:
    """What a build depends on; a change to any of it invalidates the cached binaries."""
    return {
        "module": component.module,
        "version": component.version,
        "binaries": component.binaries,
        "ldflags": list(component.ldflags),
        "tags": list(component.tags),
        "assets": {name: list(paths) for name, paths in component.assets.items()},
    }


def is_built(cache_dir: Path, component: GoComponent) -> bool:
    out = bin_dir(cache_dir, component)
    stamp = out / STAMP
    if not stamp.is_file():
        return False
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    files = [*component.binaries, *component.assets]
    return recorded == build_spec(component) and all((out / f).is_file() for f in files)


def go_binary() -> str:
    """The `go` command, checked to be new enough; a clear error when it is not there."""
    go = shutil.which("go")
    if go is None:
        raise PrerequisiteError(
            "Go is not installed: `go` was not found on PATH",
            hint="install Go 1.24 or newer, or put /usr/local/go/bin on PATH",
        )
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False).stdout
    match = re.match(r"go(\d+)\.(\d+)", out.strip())
    if match is None or (int(match[1]), int(match[2])) < MIN_GO:
        raise PrerequisiteError(
            f"Go {out.strip() or '(unknown version)'} is too old to build Kubernetes {MIN_GO}",
            hint=f"install Go {MIN_GO[0]}.{MIN_GO[1]} or newer",
        )
    return go


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    # Builds must not wander off to download a toolchain; the pins are chosen to need none.
    env.setdefault("GOTOOLCHAIN", "local")
    env.setdefault("GOFLAGS", "-buildvcs=false")
    return env


def _run_go(go: str, args: list[str], *, cwd: Path, log: Path, what: str) -> str:
    """Run one go command, appending its stderr to ``log``; return its stdout."""
    with log.open("a") as sink:
        sink.write(f"$ go {' '.join(args)}\n")
        sink.flush()
        proc = subprocess.run([go, *args], cwd=cwd, env=_go_env(), stdout=subprocess.PIPE, stderr=sink,
                              text=True, check=False)
    if proc.returncode == 0:
        return proc.stdout
    tail = log.read_text(errors="replace").splitlines()[-40:]
    text = "\n".join(tail)
    if any(sign in text for sign in _NETWORK_SIGNS):
        proxy = _go_env().get("GOPROXY") or subprocess.run(
            [go, "env", "GOPROXY"], capture_output=True, text=True, check=False).stdout.strip()
        raise BuildError(
            f"{what}: the Go module proxy ({proxy}) could not be reached",
            hint=f"check network access to the proxy or set GOPROXY; the full log is {log}",
        )
    last = next((line for line in reversed(tail) if line.strip()), "unknown error")
    raise BuildError(f"{what} failed: {last.strip()}", hint=f"the full log is {log}")


def _staging_modules(go: str, component: GoComponent, *, cwd: Path, log: Path) -> list[str]:
    """The staging modules k8s.io/kubernetes requires at v0.0.0, read from its own go.mod."""
    out = _run_go(go, ["mod", "download", "-json", f"{component.module}@{component.version}"], cwd=cwd,
                  log=log, what=f"downloading {component.module}@{component.version}")
    info = json.loads(out)
    gomod = Path(info["GoMod"]).read_text()
    return sorted(set(re.findall(r"^\s*(k8s\.io/[\w.\-/]+) v0\.0\.0$", gomod, flags=re.MULTILINE)))


def build_component(go: str, cache_dir: Path, component: GoComponent, *, progress: Progress) -> Path:
    """Build every binary of ``component``; return the directory that holds them."""
    work = cache_dir / "gobuild" / component.key
    out = bin_dir(cache_dir, component)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    log.write_text("")
    (work / "go.mod").write_text(f"module bizcloud.local/build/{component.name}\n\ngo 1.24.0\n")
    (work / "go.sum").unlink(missing_ok=True)

    if component.replace_staging:
        progress("reading staging modules")
        staging = _staging_modules(go, component, cwd=work, log=log)
        pinned = component.staging_version()
        _run_go(go, ["mod", "edit", *[f"-replace={m}={m}@{pinned}" for m in staging]], cwd=work, log=log,
                what="pinning staging modules")

    progress("resolving modules")
    packages = [f"{pkg}@{component.version}" for pkg in component.binaries.values()]
    _run_go(go, ["get", "-tool", *packages], cwd=work, log=log,
            what=f"resolving {component.module}@{component.version}")

    progress("compiling " + ", ".join(component.binaries))
    staging_out = work / "bin"
    shutil.rmtree(staging_out, ignore_errors=True)
    staging_out.mkdir()
    # One binary: name it ourselves (go.etcd.io/etcd/server/v3 would otherwise become "server").
    # Several: go names each after its package directory, which for k8s.io/kubernetes/cmd/* is ours.
    single = len(component.binaries) == 1
    target = staging_out / next(iter(component.binaries)) if single else staging_out
    args = ["build", "-trimpath", "-o", str(target) + ("" if single else "/")]
    if component.tags:
        args += ["-tags", ",".join(component.tags)]
    args += ["-ldflags", " ".join(("-s", "-w", *component.ldflags))]
    args += list(component.binaries.values())
    _run_go(go, args, cwd=work, log=log, what=f"building {component.key}")

    out.mkdir(parents=True, exist_ok=True)
    for binary in component.binaries:
        produced = staging_out / binary
        if not produced.is_file():
            raise BuildError(f"building {component.key}: {binary} was not produced", hint=f"see {log}")
        os.replace(produced, out / binary)
    if component.assets:
        info = json.loads(_run_go(go, ["mod", "download", "-json", f"{component.module}@{component.version}"],
                                  cwd=work, log=log, what=f"reading {component.module} sources"))
        source = Path(info["Dir"])
        for name, paths in component.assets.items():
            (out / name).write_text("\n---\n".join((source / p).read_text() for p in paths))
    (out / STAMP).write_text(json.dumps(build_spec(component)))
    return out


def build_all(cache_dir: Path, components: Iterable[GoComponent] = COMPONENTS, *,
              on_start: Callable[[GoComponent], None] = lambda c: None,
              on_step: Callable[[GoComponent, str], None] = lambda c, s: None,
              on_done: Callable[[GoComponent, bool], None] = lambda c, cached: None) -> None:
    """Build what is not in the cache yet; report each component's start, steps and end."""
    pending = [c for c in components if not is_built(cache_dir, c)]
    for component in components:
        if component not in pending:
            on_done(component, True)
    if not pending:
        return
    go = go_binary()
    for component in pending:
        on_start(component)
        build_component(go, cache_dir, component, progress=functools.partial(on_step, component))
        on_done(component, False)

