"""What the real node needs from the host, and how to leave the host as it was found.

Everything here is scoped to what the local cluster owns: its cgroup root, the mounts under its
state directory, its CNI bridge and the shims of its own containerd. Nothing else is touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from bizcloud.errors import PrerequisiteError

CGROUP_V1 = Path("/sys/fs/cgroup")
REAL_NODE_TOOLS = {
    "containerd": "apt-get install containerd",
    "runc": "apt-get install runc",
    "ctr": "apt-get install containerd",
    "iptables": "apt-get install iptables",
    "ip": "apt-get install iproute2",
}
CNI_PLUGINS = Path("/usr/lib/cni")


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise PrerequisiteError(f"{what} needs root (it runs containerd, a kubelet and a network bridge)",
                                hint="run it with sudo, or use `--mode kwok`, which needs no root")


def require_real_node_tools() -> None:
    missing = [tool for tool in REAL_NODE_TOOLS if shutil.which(tool) is None]
    if missing:
        fixes = sorted({REAL_NODE_TOOLS[t] for t in missing})
        raise PrerequisiteError(f"missing for a real node: {', '.join(missing)}",
                                hint="; ".join(fixes) + " (or `make setup`)")
    if not (CNI_PLUGINS / "bridge").is_file():
        raise PrerequisiteError(f"CNI plugins not found in {CNI_PLUGINS}",
                                hint="apt-get install containernetworking-plugins")


def node_ip() -> str:
    """The address of the interface carrying the default route: the node's InternalIP.

    Asks the kernel's routing table only; no packet is sent.
    """
    try:
        routes = json.loads(subprocess.run(["ip", "-j", "-4", "route", "show", "default"],
                                           capture_output=True, text=True, check=True).stdout)
        device = routes[0]["dev"]
        addrs = json.loads(subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", device],
                                          capture_output=True, text=True, check=True).stdout)
        return str(addrs[0]["addr_info"][0]["local"])
    except (subprocess.CalledProcessError, FileNotFoundError, IndexError, KeyError, ValueError) as e:
        raise PrerequisiteError("cannot find this host's IPv4 address (no default route)",
                                hint="give the host a default route, or use `--mode kwok`") from e


def _cgroup_hierarchies() -> list[Path]:
    if (CGROUP_V1 / "cgroup.controllers").exists():  # unified (v2) hierarchy
        return [CGROUP_V1]
    return [p for p in CGROUP_V1.iterdir() if p.is_dir() and (p / "cgroup.procs").exists()]


def ensure_cgroup_root(cgroup_root: str) -> None:
    """kubelet requires its --cgroup-root to exist in every hierarchy before it starts."""
    for hierarchy in _cgroup_hierarchies():
        (hierarchy / cgroup_root.lstrip("/")).mkdir(exist_ok=True)


def kill_cgroup_root(cgroup_root: str) -> int:
    """SIGKILL every process left under our cgroup root, then remove its cgroups. Returns the count."""
    killed = pids_under(cgroup_root)
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for hierarchy in _cgroup_hierarchies():
        root = hierarchy / cgroup_root.lstrip("/")
        if root.is_dir():
            # Deepest first; a cgroup whose last process is still exiting is left for next time.
            for directory in [*sorted(_walk(root), key=lambda d: -len(d.parts)), root]:
                with contextlib.suppress(OSError):
                    directory.rmdir()
    return len(killed)


def pids_under(cgroup_root: str) -> set[int]:
    """Every process in the cgroup subtree ``cgroup_root`` (of the pids hierarchy on cgroup v1)."""
    hierarchy = CGROUP_V1 if (CGROUP_V1 / "cgroup.controllers").exists() else CGROUP_V1 / "pids"
    pids: set[int] = set()
    for procs in _walk(hierarchy / cgroup_root.lstrip("/"), "cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids |= {int(p) for p in procs.read_text().split()}
    return pids


def _walk(root: Path, file: str | None = None) -> list[Path]:
    """Sub-directories of ``root`` (or the files named ``file`` in them), tolerating concurrent
    removal: kubelet and runc delete cgroups while we look."""
    found: list[Path] = []
    for directory, subdirs, files in os.walk(root):
        base = Path(directory)
        if file is None:
            found += [base / d for d in subdirs]
        elif file in files:
            found.append(base / file)
    return found


def processes_mentioning(needle: str) -> list[int]:
    """Pids whose command line contains ``needle`` (our containerd's shims name its socket)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(proc.name))
    return pids


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below ``root``, deepest first (the order to unmount them)."""
    prefix = str(root.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(Path(point))
    return sorted(set(points), key=lambda p: -len(p.parts))


def unmount_under(root: Path) -> None:
    for point in mounts_under(root):
        if subprocess.run(["umount", str(point)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def delete_link(name: str) -> None:
    subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
