"""Local images: built by a Docker Engine on this host, handed to the cluster's containerd.

Where it sits: below the CLI (`bizcloud image build DIR -t TAG`) and beside the cluster lifecycle,
which loads the pause image before the kubelet starts. Nothing can be pulled on our machines, so
every image the cluster runs is made here from what Debian ships:

- ``bizcloud.local/base:busybox``: a root filesystem of busybox-static and its applets, imported;
- ``bizcloud.local/base:python``: a minimal Debian with Python 3, bootstrapped by ``debootstrap``
  from the Debian mirror this host's apt uses (a package registry, which we may reach);
- :data:`~bizcloud.cluster.configs.PAUSE_IMAGE`: the pod sandbox, ``assets/pause.c`` compiled
  statically into an image FROM scratch;
- applications FROM the base: a directory with a ``go.mod`` is compiled statically into ``app``
  in the build context first (the "package into image" step); a Dockerfile that copies
  ``bizcloud-sdk`` gets BizCloud's SOA SDK and kazoo in the context, taken from this very
  installation so an app runs the SDK version it was tested with; then ``docker build`` runs offline.

The Docker Engine keeps its data root at the default ``/var/lib/docker``, shared by every working
copy, so images survive `cluster down --purge`. `load_into_containerd` streams ``docker save`` into
the cluster's own containerd, in the ``k8s.io`` namespace the kubelet's CRI reads, so pods with
``imagePullPolicy: IfNotPresent`` (or ``Never``) run the image without a registry.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bizcloud.cluster import processes
from bizcloud.cluster.configs import PAUSE_IMAGE
from bizcloud.cluster.layout import Layout
from bizcloud.errors import BizCloudError, BuildError, ClusterError, PrerequisiteError
from bizcloud.settings import Settings

__all__ = [
    "BASE_IMAGE",
    "PYTHON_BASE_IMAGE",
    "apt_mirror",
    "build_image",
    "docker_answers",
    "ensure_base_image",
    "ensure_docker",
    "ensure_pause_image",
    "ensure_python_base_image",
    "image_exists",
    "image_id",
    "in_containerd",
    "load_into_containerd",
    "normalized_ref",
]

BASE_IMAGE = "bizcloud.local/base:busybox"
PYTHON_BASE_IMAGE = "bizcloud.local/base:python"
SDK_CONTEXT_DIR = "bizcloud-sdk"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
_APT_SOURCES = Path("/etc/apt/sources.list")
_APT_SOURCES_D = Path("/etc/apt/sources.list.d")
_OS_RELEASE = Path("/etc/os-release")
BUSYBOX = Path("/bin/busybox")
PAUSE_SOURCE = Path(__file__).parent / "assets" / "pause.c"
CRI_NAMESPACE = "k8s.io"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnobody:x:65534:\n"
_PAUSE_DOCKERFILE = """\
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
"""

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    """The default progress callback: report nothing."""


def _tool(name: str, *, hint: str, extra_dirs: tuple[str, ...] = ()) -> str:
    """The absolute path of command ``name``, or a PrerequisiteError saying how to install it."""
    found = shutil.which(name) or next(
        (str(Path(d) / name) for d in extra_dirs if os.access(Path(d) / name, os.X_OK)), None)
    if found is None:
        raise PrerequisiteError(f"`{name}` was not found on PATH", hint=hint)
    return found


def _docker_cli() -> str:
    return _tool("docker", hint="apt-get install docker.io")


def _docker_env(settings: Settings) -> dict[str, str]:
    """The environment for every docker command: our engine, and the classic builder.

    The classic builder is in every client and engine and stores its result in the engine's own
    image store, which is where `docker save` looks; a BuildKit builder selected through buildx
    might not be. Our Dockerfiles only COPY, which is all the classic builder needs to be good at.
    """
    env = dict(os.environ)
    env.pop("DOCKER_CONTEXT", None)
    env["DOCKER_HOST"] = settings.docker_host
    env["DOCKER_BUILDKIT"] = "0"
    return env


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def _run(argv: list[str], *, what: str, env: dict[str, str] | None = None, cwd: Path | None = None,
         timeout: float = 600.0, on_line: Progress | None = None,
         error: type[BizCloudError] = BuildError) -> str:
    """Run ``argv`` with stdout and stderr merged; return the output or raise ``error`` naming ``what``.

    Lines are handed to ``on_line`` as they arrive, so a long build shows its steps; a command
    still running after ``timeout`` seconds is killed.
    """
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd, text=True, errors="replace")
    except OSError as e:
        raise error(f"{what}: cannot run {argv[0]}: {e.strerror}", hint=f"command: {' '.join(argv)}") from e
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        proc.kill()

    watchdog = threading.Timer(timeout, kill)
    watchdog.start()
    lines: list[str] = []
    try:
        with proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if on_line is not None and line.strip():
                    on_line(line.rstrip())
            returncode = proc.wait()
    finally:
        watchdog.cancel()
    output = "".join(lines)
    if returncode != 0:
        why = f"timed out after {timeout:.0f}s" if expired.is_set() else "failed"
        raise error(f"{what} {why}: {_last_line(output)}", hint=f"command: {' '.join(argv)}")
    return output


# --- the Docker Engine -------------------------------------------------------------------------


def docker_answers(settings: Settings, *, timeout: float = 5.0) -> bool:
    """Whether the Docker Engine at ``settings.docker_host`` answers `docker info`."""
    try:
        proc = subprocess.run([_docker_cli(), "info", "--format", "{{.ServerVersion}}"],
                              env=_docker_env(settings), capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and bool(proc.stdout.strip())


def ensure_docker(settings: Settings, layout: Layout, *, timeout: float = 60.0,
                  progress: Progress = _quiet) -> None:
    """Make sure a Docker Engine answers at ``settings.docker_host``; start Debian's dockerd if not.

    The engine we start listens only on that socket, touches no iptables rules and creates no
    bridge (every build and test container runs with ``--network=none``); it logs to
    ``logs/dockerd.log`` of ``layout`` and outlives the command that started it. Its data root
    stays at ``/var/lib/docker`` so images persist across working copies.
    """
    if docker_answers(settings):
        return
    host = settings.docker_host
    if not host.startswith("unix://"):
        raise BizCloudError(f"no Docker Engine answers at {host}",
                            hint="start it, or unset BIZCLOUD_DOCKER_HOST so bizcloud starts a local one")
    log = layout.log("dockerd")
    running = processes.read_pidfile(layout.pidfile("dockerd"))
    if running is None:
        dockerd = _tool("dockerd", hint="apt-get install docker.io", extra_dirs=("/usr/sbin", "/usr/bin"))
        if os.geteuid() != 0:
            raise PrerequisiteError(f"no Docker Engine answers at {host}, and starting dockerd needs root",
                                    hint="run as root, or start the Docker Engine yourself")
        layout.logs.mkdir(parents=True, exist_ok=True)
        layout.run.mkdir(parents=True, exist_ok=True)
        Path(host.removeprefix("unix://")).parent.mkdir(parents=True, exist_ok=True)
        progress(f"starting dockerd on {host} (log: {log})")
        running = processes.start(layout, "dockerd", [
            dockerd,
            f"--host={host}",
            "--iptables=false",
            "--bridge=none",
            "--ip-masq=false",
        ])
    else:
        progress(f"waiting for dockerd (pid {running.pid}) to answer on {host}")
    try:
        processes.wait_until(lambda: docker_answers(settings), what=f"Docker Engine on {host}",
                             timeout=timeout, log=log, pid=running.pid)
    except ClusterError as e:
        raise BizCloudError(f"dockerd did not come up: {e.message}", hint=f"see {log}") from e


def _default_layout(settings: Settings, layout: Layout | None) -> Layout:
    return layout if layout is not None else Layout(settings.resolved_state_dir())


def image_id(tag: str, settings: Settings) -> str | None:
    """The content ID (``sha256:…``) of image ``tag`` in the Docker Engine, or None if it has none."""
    proc = subprocess.run([_docker_cli(), "image", "inspect", "--format", "{{.Id}}", tag],
                          env=_docker_env(settings), capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def image_exists(tag: str, settings: Settings) -> bool:
    """Whether the Docker Engine has an image named ``tag``."""
    return image_id(tag, settings) is not None


def tag_image(source: str, target: str, settings: Settings) -> None:
    """Give image ``source`` a second name ``target`` in the Docker Engine (a release under test)."""
    _run([_docker_cli(), "tag", source, target], what=f"tagging {source} as {target}",
         env=_docker_env(settings), timeout=60)


def _docker_build(context: Path, tag: str, settings: Settings, *, progress: Progress) -> None:
    def on_line(line: str) -> None:
        if line.startswith("Step "):
            progress(line)

    _run([_docker_cli(), "build", "--network=none", "--force-rm", "-t", tag, str(context)],
         what=f"docker build of {tag}", env=_docker_env(settings), on_line=on_line)


# --- the base image ----------------------------------------------------------------------------


def _is_static_elf(path: Path) -> bool:
    """Whether ``path`` is an ELF64 executable without a program interpreter (PT_INTERP).

    Reads only the ELF header and program headers. Debian's dynamic ``busybox`` package installs
    the same path as ``busybox-static`` but would not run in a root filesystem without libc.
    """
    with path.open("rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:  # ELF64, little-endian
            return True  # not a layout we read; let the smoke test in the image speak
        phoff, = struct.unpack_from("<Q", header, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != pt_interp for i in range(phnum))


def _busybox_rootfs(tar_path: Path, busybox: Path, applets: list[str]) -> None:
    """Write the base image's root filesystem as a tarball, every entry owned by root."""

    def entry(name: str, kind: bytes, mode: int, *, size: int = 0, link: str = "") -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.size, info.linkname = kind, mode, size, link
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = int(time.time())
        return info

    with tarfile.open(tar_path, "w") as tar:
        for directory, mode in (("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("home", 0o755),
                                ("proc", 0o555), ("root", 0o700), ("sys", 0o555), ("tmp", 0o1777),
                                ("usr", 0o755), ("usr/bin", 0o755), ("var", 0o755)):
            tar.addfile(entry(directory, tarfile.DIRTYPE, mode))
        with busybox.open("rb") as binary:
            tar.addfile(entry("bin/busybox", tarfile.REGTYPE, 0o755, size=busybox.stat().st_size), binary)
        for applet in sorted(set(applets) | {"sh"}):
            if applet != "busybox" and "/" not in applet:
                tar.addfile(entry(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox"))
        for name, text in (("etc/passwd", _PASSWD), ("etc/group", _GROUP)):
            data = text.encode()
            info = entry(name, tarfile.REGTYPE, 0o644, size=len(data))
            with tempfile.TemporaryFile() as content:
                content.write(data)
                content.seek(0)
                tar.addfile(info, content)


def ensure_base_image(settings: Settings, *, layout: Layout | None = None,
                      progress: Progress = _quiet) -> str:
    """Build ``bizcloud.local/base:busybox`` from Debian's busybox-static, unless it exists; its tag.

    The image is one layer: /bin/busybox with a symlink per applet (/bin/sh among them), /etc/passwd
    and /etc/group with root and nobody (65534), and a world-writable /tmp. Nothing is pulled.
    """
    ensure_docker(settings, _default_layout(settings, layout), progress=progress)
    if image_exists(BASE_IMAGE, settings):
        return BASE_IMAGE
    if not BUSYBOX.is_file():
        raise PrerequisiteError(f"{BUSYBOX} is missing; the base image is made from it",
                                hint="apt-get install busybox-static")
    if not _is_static_elf(BUSYBOX):
        raise PrerequisiteError(f"{BUSYBOX} is dynamically linked and cannot run alone in an image",
                                hint="apt-get install busybox-static (it replaces the busybox package)")
    progress(f"building {BASE_IMAGE} from {BUSYBOX}")
    applets = _run([str(BUSYBOX), "--list"], what="listing busybox applets").split()
    version = _run([str(BUSYBOX), "--help"], what="asking busybox its version").splitlines()[0].strip()
    with tempfile.TemporaryDirectory(prefix="bizcloud-base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        _busybox_rootfs(rootfs, BUSYBOX, applets)
        _run([_docker_cli(), "import",
              "--change", 'CMD ["/bin/sh"]',
              "--change", f"ENV PATH={DEFAULT_PATH}",
              "--change", f"LABEL io.bizcloud.busybox={json.dumps(version)}",
              "--message", f"bizcloud base image from {BUSYBOX} ({len(applets)} applets)",
              str(rootfs), BASE_IMAGE],
             what=f"docker import of {BASE_IMAGE}", env=_docker_env(settings))
    return BASE_IMAGE


# --- the Python base image ---------------------------------------------------------------------


def apt_mirror(sources: str, deb822: list[str]) -> str | None:
    """The main Debian archive among apt's sources (one-line and deb822 forms), or None; pure.

    Security and updates archives are skipped: debootstrap needs the archive that holds the suite.
    """
    candidates: list[str] = []
    for line in sources.splitlines():
        fields = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()  # drop [options]
        if len(fields) >= 3 and fields[0] == "deb":
            candidates.append(fields[1])
    for text in deb822:
        for stanza in re.split(r"\n\s*\n", text):
            values = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, flags=re.MULTILINE))
            if "deb" in values.get("Types", "").split() and values.get("Enabled", "yes") != "no":
                candidates.extend(values.get("URIs", "").split())
    for uri in (c.rstrip("/") for c in candidates):
        if uri.startswith(("http://", "https://")) and "security" not in uri and uri.endswith("debian"):
            return uri
    return None


def _host_mirror_and_suite(settings: Settings) -> tuple[str, str]:
    deb822 = [f.read_text(errors="replace") for f in sorted(_APT_SOURCES_D.glob("*.sources"))]
    lists = "\n".join(f.read_text(errors="replace")
                      for f in [_APT_SOURCES, *sorted(_APT_SOURCES_D.glob("*.list"))] if f.is_file())
    mirror = settings.debian_mirror or apt_mirror(lists, deb822) or DEFAULT_MIRROR
    release = dict(re.findall(r'^(\w+)="?([^"\n]*)"?$', _OS_RELEASE.read_text(), flags=re.MULTILINE)) \
        if _OS_RELEASE.is_file() else {}
    return mirror, release.get("VERSION_CODENAME") or "bookworm"


def ensure_python_base_image(settings: Settings, *, layout: Layout | None = None,
                             progress: Progress = _quiet) -> str:
    """Build ``bizcloud.local/base:python`` with debootstrap, unless it exists; its tag.

    A ``minbase`` Debian of the host's release plus ``python3``: about 40 seconds and 60 MB of
    packages once, then cached by the Docker Engine like every image. Package caches, apt lists,
    documentation and locales are dropped before the import.
    """
    ensure_docker(settings, _default_layout(settings, layout), progress=progress)
    if image_exists(PYTHON_BASE_IMAGE, settings):
        return PYTHON_BASE_IMAGE
    debootstrap = _tool("debootstrap", hint="apt-get install debootstrap",
                        extra_dirs=("/usr/sbin", "/sbin"))
    if os.geteuid() != 0:
        raise PrerequisiteError(f"building {PYTHON_BASE_IMAGE} runs debootstrap, which needs root",
                                hint="run as root once; the image is cached afterwards")
    mirror, suite = _host_mirror_and_suite(settings)
    progress(f"bootstrapping {PYTHON_BASE_IMAGE}: Debian {suite} minbase + python3 from {mirror}")
    with tempfile.TemporaryDirectory(prefix="bizcloud-pybase-") as tmp:
        root = Path(tmp) / "root"

        def on_line(line: str) -> None:
            if line.startswith("I: Retrieving Release") or line.startswith("I: Base system"):
                progress(line.removeprefix("I: "))

        _run([debootstrap, "--variant=minbase", "--include=python3", suite, str(root), mirror],
             what=f"debootstrap of Debian {suite} from {mirror}", timeout=900, on_line=on_line)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                     "usr/share/locale", "usr/share/info"):
            shutil.rmtree(root / junk, ignore_errors=True)
        tarball = Path(tmp) / "rootfs.tar"
        _run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(tarball), "."],
             what="packing the Python root filesystem")
        version = _run([str(root / "usr/bin/python3"), "--version"], what="asking python3 its version",
                       ).strip() if (root / "usr/bin/python3").exists() else "python3"
        _run([_docker_cli(), "import",
              "--change", 'CMD ["python3"]',
              "--change", f"ENV PATH={DEFAULT_PATH}",
              "--change", "ENV PYTHONDONTWRITEBYTECODE=1",
              "--change", f"LABEL io.bizcloud.python={json.dumps(version)}",
              "--message", f"bizcloud Python base image: Debian {suite} minbase + {version}",
              str(tarball), PYTHON_BASE_IMAGE],
             what=f"docker import of {PYTHON_BASE_IMAGE}", env=_docker_env(settings))
    return PYTHON_BASE_IMAGE


# --- the pause image ---------------------------------------------------------------------------


def ensure_pause_image(settings: Settings, *, layout: Layout | None = None,
                       progress: Progress = _quiet) -> str:
    """Build the pod sandbox image (PAUSE_IMAGE) from ``assets/pause.c``, unless it exists; its tag."""
    ensure_docker(settings, _default_layout(settings, layout), progress=progress)
    if image_exists(PAUSE_IMAGE, settings):
        return PAUSE_IMAGE
    gcc = _tool("gcc", hint="apt-get install gcc libc6-dev")
    progress(f"building {PAUSE_IMAGE} from {PAUSE_SOURCE.name}")
    with tempfile.TemporaryDirectory(prefix="bizcloud-pause-") as tmp:
        context = Path(tmp)
        _run([gcc, "-static", "-Os", "-s", "-Wall", "-o", str(context / "pause"), str(PAUSE_SOURCE)],
             what=f"compiling {PAUSE_SOURCE.name} (gcc -static)")
        (context / "Dockerfile").write_text(_PAUSE_DOCKERFILE)
        _docker_build(context, PAUSE_IMAGE, settings, progress=progress)
    return PAUSE_IMAGE


# --- application images ------------------------------------------------------------------------


def _go_build(source: Path, output: Path) -> None:
    """Compile the Go module in ``source`` into one static binary at ``output``."""
    go = _tool("go", hint="install Go 1.24 or newer (or put /usr/local/go/bin on PATH)",
               extra_dirs=("/usr/local/go/bin",))
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = f"{env.get('GOFLAGS', '')} -buildvcs=false".strip()
    env.setdefault("GOTOOLCHAIN", "local")
    _run([go, "build", "-trimpath", "-o", str(output), "."], what=f"go build in {source}", env=env,
         cwd=source)


def local_bases(dockerfile: str) -> set[str]:
    """The images a Dockerfile builds FROM (``AS`` names and ``--platform`` dropped); pure."""
    bases = set()
    for line in dockerfile.splitlines():
        fields = line.split()
        if fields and fields[0].upper() == "FROM":
            refs = [f for f in fields[1:] if not f.startswith("--")]
            if refs:
                bases.add(refs[0])
    return bases


SDK_LIBRARIES = ("kazoo", "pymysql")


def bundle_sdk(target: Path) -> None:
    """Copy the SOA SDK (``bizcloud.soa``, ``bizcloud.usersplit``), kazoo and PyMySQL into ``target``.

    The SDK modules an app imports use only the standard library, kazoo and ``bizcloud.usersplit``
    (a rule of ``bizcloud/soa``), so these files are all an app image needs on its PYTHONPATH.
    PyMySQL (pure Python) comes along for apps whose config declares a MySQL dependency: the
    account BizCloud grants their pods is used with it, no client library to install.
    """
    package = Path(__file__).resolve().parent.parent
    libraries = []
    for name in SDK_LIBRARIES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise PrerequisiteError(f"{name} is not installed, and app images that use the SOA SDK need it",
                                    hint="run `make setup` (it installs BizCloud's Python dependencies)")
        libraries.append(Path(next(iter(spec.submodule_search_locations))))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "tests")
    target.mkdir(parents=True)
    (target / "bizcloud").mkdir()
    for module in ("__init__.py", "usersplit.py"):
        shutil.copy2(package / module, target / "bizcloud" / module)
    shutil.copytree(package / "soa", target / "bizcloud" / "soa", ignore=ignore)
    for library in libraries:
        shutil.copytree(library, target / library.name, ignore=ignore)


def build_image(directory: Path, tag: str, settings: Settings, *, layout: Layout | None = None,
                progress: Progress = _quiet) -> None:
    """Build image ``tag`` from ``directory`` (its Dockerfile), offline, into the Docker Engine.

    The directory is copied into a temporary build context, so the source tree is never written;
    when it holds a ``go.mod`` the module is first compiled statically into ``<context>/app`` (run
    in the source directory, so Go's module and build caches apply). The build runs with
    ``--network=none``, FROM images that exist locally; BizCloud's own bases
    (``bizcloud.local/base:busybox``, ``bizcloud.local/base:python``) are built first if missing.
    """
    source = directory.expanduser().resolve()
    if not (source / "Dockerfile").is_file():
        raise BuildError(f"no Dockerfile in {source}", hint="an image is built from DIR/Dockerfile")
    dockerfile = (source / "Dockerfile").read_text()
    bases = local_bases(dockerfile)
    for base, ensure in ((BASE_IMAGE, ensure_base_image), (PYTHON_BASE_IMAGE, ensure_python_base_image)):
        if base in bases:
            ensure(settings, layout=layout, progress=progress)
    with tempfile.TemporaryDirectory(prefix="bizcloud-build-") as tmp:
        context = Path(tmp) / "context"
        shutil.copytree(source, context, symlinks=True,
                        ignore=shutil.ignore_patterns(".git", "__pycache__", "*.pyc"))
        if (source / "go.mod").is_file():
            progress(f"compiling the Go module in {source} (static, CGO_ENABLED=0)")
            _go_build(source, context / "app")
        if SDK_CONTEXT_DIR in dockerfile:
            progress(f"adding BizCloud's SOA SDK and kazoo to the build context ({SDK_CONTEXT_DIR}/)")
            bundle_sdk(context / SDK_CONTEXT_DIR)
        progress(f"docker build -t {tag}")
        _docker_build(context, tag, settings, progress=progress)


# --- the cluster's containerd ------------------------------------------------------------------


def normalized_ref(ref: str) -> str:
    """The fully qualified name Docker and the CRI give ``ref``; purely computational.

    ``demo-web:v1`` -> ``docker.io/library/demo-web:v1``; ``bizcloud.local/pause:3.10`` stays;
    a missing tag becomes ``:latest`` (a digest reference keeps its digest and gets no tag).
    """
    name, at, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"):
        domain, path = "docker.io", name
    else:
        domain, path = first, rest
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    suffix = f"@{digest}" if at else ""
    if tag or not at:
        suffix = f":{tag or 'latest'}{suffix}"
    return f"{domain}/{path}{suffix}"


def _ctr(socket: Path) -> list[str]:
    ctr = _tool("ctr", hint="apt-get install containerd")
    return [ctr, "--address", str(socket), "--namespace", CRI_NAMESPACE]


def _require_socket(socket: Path) -> None:
    if not socket.is_socket():
        raise ClusterError(f"the cluster's containerd socket {socket} does not exist",
                           hint="start the cluster: `bizcloud cluster up`")


def _containerd_images(socket: Path) -> list[str]:
    _require_socket(socket)
    out = _run([*_ctr(socket), "images", "ls", "-q"], what=f"listing images in containerd at {socket}",
               timeout=60, error=ClusterError)
    return out.split()


def in_containerd(ref: str, socket: Path) -> bool:
    """Whether the containerd at ``socket`` holds ``ref`` (normalized) in the CRI's namespace."""
    return normalized_ref(ref) in _containerd_images(socket)


def load_into_containerd(tag: str, socket: Path, *, settings: Settings | None = None,
                         progress: Progress = _quiet, timeout: float = 600.0) -> None:
    """Copy image ``tag`` from the Docker Engine into the cluster's containerd, unpacked.

    Streams ``docker save TAG | ctr -n k8s.io images import -`` without a temporary file, then
    checks that the CRI sees the image under its normalized name (the name the kubelet asks for).
    """
    settings = settings if settings is not None else Settings()
    _require_socket(socket)
    save_argv = [_docker_cli(), "save", tag]
    import_argv = [*_ctr(socket), "images", "import", "-"]
    progress(f"loading {tag} into containerd at {socket}")
    with tempfile.TemporaryFile() as save_err:
        save = subprocess.Popen(save_argv, stdout=subprocess.PIPE, stderr=save_err, stdin=subprocess.DEVNULL,
                                env=_docker_env(settings))
        assert save.stdout is not None
        try:
            load = subprocess.Popen(import_argv, stdin=save.stdout, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, errors="replace")
        finally:
            save.stdout.close()  # only ctr holds the pipe now: docker save sees EPIPE if ctr dies
        try:
            load_out, _ = load.communicate(timeout=timeout)
            save_code = save.wait(timeout=30)
        except subprocess.TimeoutExpired as e:
            load.kill()
            save.kill()
            load.wait()
            save.wait()
            raise ClusterError(f"loading {tag} into containerd timed out after {timeout:.0f}s",
                               hint=f"command: {' '.join(save_argv)} | {' '.join(import_argv)}") from e
        save_err.seek(0)
        save_out = save_err.read().decode(errors="replace")
    if save_code != 0:
        raise BuildError(f"docker save {tag} failed: {_last_line(save_out)}",
                         hint=f"build it first: `bizcloud image build DIR -t {tag}`")
    if load.returncode != 0:
        raise ClusterError(f"importing {tag} into containerd at {socket} failed: {_last_line(load_out)}",
                           hint=f"command: {' '.join(import_argv)}")
    ref = normalized_ref(tag)
    if not in_containerd(ref, socket):
        raise ClusterError(f"containerd at {socket} imported {tag} but does not list {ref}",
                           hint=f"ctr said: {_last_line(load_out)}")
