"""Local images against the real Docker Engine: the busybox and Python bases, the pause sandbox, the demo.

These start Debian's dockerd through `ensure_docker` when none answers, and leave it running
(its images are shared by every working copy). Containers run with ``--network=none`` and are
reached from inside with Python's urllib; every container and test image is removed afterwards.
Loading into containerd is covered by the cluster's end-to-end tests, which own a containerd.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bizcloud.cluster.configs import PAUSE_IMAGE
from bizcloud.cluster.images import (
    BASE_IMAGE,
    PYTHON_BASE_IMAGE,
    apt_mirror,
    build_image,
    ensure_base_image,
    ensure_docker,
    ensure_pause_image,
    ensure_python_base_image,
    local_bases,
    normalized_ref,
)
from bizcloud.cluster.layout import Layout
from bizcloud.errors import BuildError
from bizcloud.settings import Settings
from bizcloud.usersplit import bucket

pytestmark = pytest.mark.e2e

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
DEMO_TAG = "bizcloud.local/demo:e2e-test"

Docker = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="module")
def docker(settings: Settings) -> Iterator[Docker]:
    """`docker ARGS...` against the engine `ensure_docker` brought up; removes the containers it ran."""
    ensure_docker(settings, Layout(settings.resolved_state_dir()))
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONTEXT"}
    env["DOCKER_HOST"] = settings.docker_host
    started: list[str] = []

    def run(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
        if args[:2] == ("run", "-d") and proc.returncode == 0:
            started.append(proc.stdout.strip())
        if check and proc.returncode != 0:
            pytest.fail(f"docker {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    yield run
    if started:
        run("rm", "-f", *started, check=False)


def _name() -> str:
    return f"bizcloud-test-{uuid.uuid4().hex[:8]}"


# The app images have Python but no wget or curl: requests are made from inside with urllib.
_FETCH = """
import sys, urllib.request, urllib.error
url, method, uid = sys.argv[1:4]
req = urllib.request.Request(url, method=method, headers={"X-User-Id": uid} if uid else {})
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
except OSError as e:
    status, body = 0, str(e).encode()
print(status)
sys.stdout.write(body.decode())
"""


def http(docker: Docker, container: str, path: str, *, post: bool = False, port: int = 8080,
         uid: str = "") -> tuple[int, str]:
    """(status, body) of a request to 127.0.0.1:PORT PATH from inside the container; 0: no answer."""
    proc = docker("exec", container, "python3", "-c", _FETCH, f"http://127.0.0.1:{port}{path}",
                  "POST" if post else "GET", uid, check=False)
    status, _, body = proc.stdout.partition("\n")
    return (int(status), body.strip()) if status.isdigit() else (0, proc.stderr.strip())


def wait_ready(docker: Docker, container: str, *, port: int = 8080, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http(docker, container, "/healthz", port=port)[0] == 200:
            return
        time.sleep(0.2)
    logs = docker("logs", container, check=False)
    pytest.fail(f"{container} never answered /healthz: {logs.stdout[-500:]} {logs.stderr[-500:]}")


def inspect(docker: Docker, container: str, template: str) -> str:
    return str(docker("inspect", "--format", template, container).stdout.strip())


# --- the busybox base ---------------------------------------------------------------------------


class TestBaseImage:
    def test_has_a_working_shell(self, settings: Settings, docker: Docker) -> None:
        assert ensure_base_image(settings) == BASE_IMAGE
        out = docker("run", "--rm", "--network=none", BASE_IMAGE, "sh", "-c", "echo hi").stdout
        assert out == "hi\n"

    def test_has_users_applets_and_a_sticky_tmp(self, settings: Settings, docker: Docker) -> None:
        ensure_base_image(settings)
        script = "id -u nobody; stat -c %a /tmp; readlink /bin/wget; echo $PATH"
        out = docker("run", "--rm", "--network=none", "--user", "65534", BASE_IMAGE, "sh", "-c", script)
        uid, tmp_mode, wget, path = out.stdout.split()
        assert (uid, tmp_mode, wget) == ("65534", "1777", "busybox")
        assert "/bin" in path.split(":")

    def test_is_built_once(self, settings: Settings, docker: Docker) -> None:
        ensure_base_image(settings)
        before = inspect(docker, BASE_IMAGE, "{{.Id}}")
        ensure_base_image(settings)
        assert inspect(docker, BASE_IMAGE, "{{.Id}}") == before


# --- the pause image ----------------------------------------------------------------------------


class TestPauseImage:
    def test_runs_until_sigterm_then_exits_0(self, settings: Settings, docker: Docker) -> None:
        assert ensure_pause_image(settings) == PAUSE_IMAGE
        container = _name()
        docker("run", "-d", "--network=none", "--name", container, PAUSE_IMAGE)
        time.sleep(0.5)
        assert inspect(docker, container, "{{.State.Running}}") == "true"
        assert inspect(docker, PAUSE_IMAGE, "{{.Config.User}}") == "65535:65535"
        started = time.monotonic()
        docker("stop", "--time", "10", container)  # SIGTERM; SIGKILL (exit 137) only after 10 s
        assert time.monotonic() - started < 5
        assert inspect(docker, container, "{{.State.ExitCode}}") == "0"


# --- demo-web, built from its Go module ---------------------------------------------------------


@pytest.fixture(scope="module")
def demo_image(settings: Settings, docker: Docker) -> Iterator[str]:
    build_image(DEMO, DEMO_TAG, settings)
    yield DEMO_TAG
    # Containers first: an image a container still uses would only be untagged, left dangling.
    users = docker("ps", "-aq", "--filter", f"ancestor={DEMO_TAG}", check=False).stdout.split()
    if users:
        docker("rm", "-f", *users, check=False)
    docker("rmi", DEMO_TAG, check=False)


def run_demo(docker: Docker, image: str, *env: str, role: str = "web") -> str:
    container = _name()
    argv = ["run", "-d", "--network=none", "--name", container]
    for pair in env:
        argv += ["-e", pair]
    docker(*argv, image, role)
    wait_ready(docker, container, port=8080 if role == "web" else 20880)
    return container


class TestPythonBase:
    def test_runs_python_as_nobody_without_a_network(self, settings: Settings, docker: Docker) -> None:
        ensure_python_base_image(settings)
        proc = docker("run", "--rm", "--network=none", "--user", "65534", PYTHON_BASE_IMAGE,
                      "python3", "-c", "import json, sqlite3, ssl, os; print(os.getuid(), json.dumps([1]))")
        assert proc.stdout.strip() == "65534 [1]"

    def test_is_built_once(self, settings: Settings, docker: Docker) -> None:
        before = inspect(docker, PYTHON_BASE_IMAGE, "{{.Id}}")
        assert ensure_python_base_image(settings) == PYTHON_BASE_IMAGE
        assert inspect(docker, PYTHON_BASE_IMAGE, "{{.Id}}") == before


class TestDemoApp:
    def test_build_leaves_the_source_untouched(self, demo_image: str) -> None:
        assert not (DEMO / "bizcloud-sdk").exists()

    def test_image_carries_the_sdk_and_runs_as_nobody(self, docker: Docker, demo_image: str) -> None:
        assert inspect(docker, demo_image, "{{json .Config.Entrypoint}}") == '["python3","-m","demoapp"]'
        assert inspect(docker, demo_image, "{{.Config.User}}") == "65534"
        proc = docker("run", "--rm", "--network=none", "--entrypoint", "python3", demo_image, "-c",
                      "import kazoo, bizcloud.soa.consumer, bizcloud.usersplit as u; print(u.bucket('42'))")
        assert proc.stdout.strip() == str(bucket("42"))

    def test_web_answers_with_its_identity(self, docker: Docker, demo_image: str) -> None:
        container = run_demo(docker, demo_image, "SERVICE=demo-web", "VERSION=v7", "GROUP=gray", "ENV=dev",
                             "NODE_NAME=node-1", "POD_IP=10.88.0.9")
        status, body = http(docker, container, "/")
        assert status == 200, body
        hostname = docker("exec", container, "python3", "-c", "import socket; print(socket.gethostname())")
        assert json.loads(body) == {"service": "demo-web", "pod": hostname.stdout.strip(), "ip": "10.88.0.9",
                                    "version": "v7", "group": "gray", "env": "dev", "node": "node-1"}
        line = json.loads(docker("logs", container).stdout.strip().splitlines()[-1])
        assert (line["msg"], line["path"], line["status"]) == ("request", "/", 200)

    def test_api_answers_calls_of_its_interfaces_only(self, docker: Docker, demo_image: str) -> None:
        container = run_demo(docker, demo_image, "SERVICE=demo-api", "SOA_INTERFACES=com.example.Echo",
                             role="api")
        status, body = http(docker, container, "/com.example.Echo/greet", port=20880, uid="u-7")
        assert status == 200, body
        answer = json.loads(body)
        assert (answer["interface"], answer["method"], answer["uid"], answer["service"]) == (
            "com.example.Echo", "greet", "u-7", "demo-api")
        assert http(docker, container, "/com.example.Other/greet", port=20880)[0] == 404

    def test_fail_switch_makes_root_answer_500(self, docker: Docker, demo_image: str) -> None:
        container = run_demo(docker, demo_image, "VERSION=v1")
        status, body = http(docker, container, "/admin/fail?rate=100", post=True)
        assert (status, json.loads(body)) == (200, {"rate": 100, "mode": "error"})
        assert json.loads(http(docker, container, "/admin/fail")[1]) == {"rate": 100, "mode": "error"}
        assert http(docker, container, "/")[0] == 500
        assert http(docker, container, "/healthz") == (200, "ok")
        http(docker, container, "/admin/fail?rate=0", post=True)
        status, body = http(docker, container, "/")
        assert status == 200
        assert json.loads(body)["version"] == "v1"

    def test_health_mode_fails_readiness_only(self, docker: Docker, demo_image: str) -> None:
        container = run_demo(docker, demo_image)
        http(docker, container, "/admin/fail?rate=100&mode=health", post=True)
        assert http(docker, container, "/healthz")[0] == 503
        assert http(docker, container, "/")[0] == 200

    def test_fail_rate_from_the_environment(self, docker: Docker, demo_image: str) -> None:
        container = run_demo(docker, demo_image, "FAIL_RATE=100")
        assert json.loads(http(docker, container, "/admin/fail")[1]) == {"rate": 100, "mode": "error"}
        assert http(docker, container, "/")[0] == 500

    @pytest.mark.parametrize("query", ["rate=101", "rate=-1", "rate=x", "rate=5&mode=sometimes"])
    def test_fail_switch_rejects_bad_values(self, docker: Docker, demo_image: str, query: str) -> None:
        container = run_demo(docker, demo_image)
        status, body = http(docker, container, f"/admin/fail?{query}", post=True)
        assert status == 400
        assert "must be" in json.loads(body)["error"]

    def test_stops_gracefully_on_sigterm(self, docker: Docker, demo_image: str) -> None:
        container = run_demo(docker, demo_image)
        started = time.monotonic()
        docker("stop", "--time", "10", container)
        assert time.monotonic() - started < 5
        assert inspect(docker, container, "{{.State.ExitCode}}") == "0"
        assert '"msg": "stopped"' in docker("logs", container).stdout


# --- build failures -----------------------------------------------------------------------------


class TestBuildErrors:
    def test_go_compile_error_names_the_step_and_the_error(self, settings: Settings, tmp_path: Path) -> None:
        (tmp_path / "go.mod").write_text("module example.com/broken\n\ngo 1.24\n")
        (tmp_path / "main.go").write_text("package main\n\nfunc main() { undefinedThing() }\n")
        (tmp_path / "Dockerfile").write_text("FROM bizcloud.local/base:busybox\nCOPY app /app\n")
        with pytest.raises(BuildError, match=r"go build in .* failed: .*undefined: undefinedThing"):
            build_image(tmp_path, "bizcloud.local/broken:test", settings)

    def test_docker_build_error_names_the_step(self, settings: Settings, tmp_path: Path) -> None:
        (tmp_path / "Dockerfile").write_text("FROM bizcloud.local/base:busybox\nCOPY missing.txt /x\n")
        with pytest.raises(BuildError, match=r"docker build of bizcloud.local/broken:test failed: .*missing"):
            build_image(tmp_path, "bizcloud.local/broken:test", settings)

    def test_a_go_module_is_compiled_into_the_image(self, settings: Settings, docker: Docker,
                                                    tmp_path: Path) -> None:
        (tmp_path / "go.mod").write_text("module example.com/hello\n\ngo 1.24\n")
        (tmp_path / "main.go").write_text(
            'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hi") }\n')
        (tmp_path / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY app /app\nENTRYPOINT [\"/app\"]\n")
        tag = "bizcloud.local/hello-go:test"
        build_image(tmp_path, tag, settings)
        try:
            assert docker("run", "--rm", "--network=none", tag).stdout.strip() == "hi"
            assert not (tmp_path / "app").exists()
        finally:
            docker("rmi", tag, check=False)

    def test_a_directory_without_dockerfile_is_refused(self, settings: Settings, tmp_path: Path) -> None:
        with pytest.raises(BuildError, match="no Dockerfile"):
            build_image(tmp_path, "bizcloud.local/broken:test", settings)


# --- reference names (pure) ---------------------------------------------------------------------


@pytest.mark.parametrize(("ref", "normalized"), [
    ("demo-web:v1", "docker.io/library/demo-web:v1"),
    ("demo-web", "docker.io/library/demo-web:latest"),
    ("team/demo-web:v2", "docker.io/team/demo-web:v2"),
    ("docker.io/demo-web:v1", "docker.io/library/demo-web:v1"),
    ("index.docker.io/library/demo-web:v1", "docker.io/library/demo-web:v1"),
    ("bizcloud.local/pause:3.10", "bizcloud.local/pause:3.10"),
    ("localhost/app", "localhost/app:latest"),
    ("registry:5000/team/app:1", "registry:5000/team/app:1"),
    ("registry:5000/app", "registry:5000/app:latest"),
    ("app@sha256:abc", "docker.io/library/app@sha256:abc"),
    ("app:v1@sha256:abc", "docker.io/library/app:v1@sha256:abc"),
])
def test_normalized_ref(ref: str, normalized: str) -> None:
    assert normalized_ref(ref) == normalized


def test_local_bases_reads_every_from_line() -> None:
    dockerfile = ("# FROM nothing\nFROM --platform=linux/amd64 bizcloud.local/base:python AS build\n"
                  "RUN true\nfrom bizcloud.local/base:busybox\n")
    assert local_bases(dockerfile) == {PYTHON_BASE_IMAGE, BASE_IMAGE}


@pytest.mark.parametrize(("sources", "deb822", "mirror"), [
    ("deb http://ftp.de.debian.org/debian bookworm main\n", [], "http://ftp.de.debian.org/debian"),
    ("deb [arch=amd64 signed-by=/k.gpg] https://mirror.example/debian/ bookworm main\n", [],
     "https://mirror.example/debian"),
    ("# deb http://commented.example/debian bookworm main\n", [], None),
    ("", ["Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n"
          "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n"], "http://deb.debian.org/debian"),
    ("", ["Types: deb-src\nURIs: http://src.example/debian\n"], None),
    ("", ["Types: deb\nEnabled: no\nURIs: http://off.example/debian\n"], None),
])
def test_apt_mirror(sources: str, deb822: list[str], mirror: str | None) -> None:
    assert apt_mirror(sources, deb822) == mirror
