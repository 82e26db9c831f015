"""Shell backends: where a terminal's bytes go. One small interface, two runtimes behind it.

``KubeShell`` runs the shell through the Kubernetes exec API (``bizcloud.kube.exec``), for pods;
``DockerShell`` through the Docker Engine's exec (``bizcloud.webshell.docker``), for containers on
Docker hosts, as the seed did. The bridge (``bridge.py``) sees only ``ShellSession``; opening
one raises ``TargetGone`` or ``BackendUnavailable`` with a message meant for the terminal.
"""

from __future__ import annotations

from typing import Protocol

from bizcloud.kube.config import KubeConfig
from bizcloud.kube.errors import KubeApiError, KubeUnavailable
from bizcloud.kube.exec import ExecStream, open_exec
from bizcloud.webshell.docker import DockerEngine, DockerExec
from bizcloud.webshell.errors import BackendUnavailable, TargetGone

# bash where the image has it, sh otherwise (busybox images have no bash).
SHELL_COMMAND = ("/bin/sh", "-c", "export TERM=xterm-256color; "
                 "if command -v bash >/dev/null 2>&1; then exec bash; fi; exec sh")


class ShellSession(Protocol):
    target: str

    async def read(self) -> bytes | None: ...
    async def write(self, data: bytes) -> None: ...
    async def resize(self, *, cols: int, rows: int) -> None: ...
    async def keepalive(self) -> None: ...
    async def close(self) -> None: ...
    async def ending(self) -> str: ...


class KubeShell:
    def __init__(self, stream: ExecStream, target: str, *, cols: int, rows: int) -> None:
        self._stream = stream
        self.target = target
        self._size = (cols, rows)

    async def read(self) -> bytes | None:
        return await self._stream.read()

    async def write(self, data: bytes) -> None:
        try:
            await self._stream.write(data)
        except KubeUnavailable as e:
            raise TargetGone(f"{self.target}: the exec stream closed") from e

    async def resize(self, *, cols: int, rows: int) -> None:
        self._size = (cols, rows)
        try:
            await self._stream.resize(cols=cols, rows=rows)
        except KubeUnavailable as e:
            raise TargetGone(f"{self.target}: the exec stream closed") from e

    async def keepalive(self) -> None:
        """Re-send the current size: data on the stream, so no idle timeout on the way (kubelet's
        streaming idle timeout, a proxy's read timeout) sees silence. Same size: no SIGWINCH."""
        cols, rows = self._size
        await self.resize(cols=cols, rows=rows)

    async def close(self) -> None:
        await self._stream.close_stdin()
        await self._stream.close()

    async def ending(self) -> str:
        status = self._stream.status
        if status is None:
            return f"connection to {self.target} lost (the pod or its node went away?)"
        code = self._stream.exit_code()
        if code is not None:
            return f"session ended (exit code {code})"
        return f"session ended: {status.get('message') or status.get('reason') or status}"


async def open_kube_shell(config: KubeConfig, *, namespace: str, pod: str, container: str | None = None,
                          cols: int = 80, rows: int = 24, ping_interval: float | None = 20.0) -> KubeShell:
    target = f"pod {namespace}/{pod}" + (f" container {container}" if container else "")
    try:
        stream = await open_exec(config, namespace=namespace, pod=pod, container=container,
                                 command=SHELL_COMMAND, ping_interval=ping_interval)
    except KubeApiError as e:
        if e.status in (400, 404):
            raise TargetGone(f"{target} does not exist or is not running ({e.api_message or e.reason})",
                             hint="`kubectl get pods -n NAMESPACE` lists the pods") from e
        raise BackendUnavailable(f"{target}: {e.message}") from e
    except KubeUnavailable as e:
        raise BackendUnavailable(f"{target}: {e.message}", hint=e.hint) from e
    shell = KubeShell(stream, target, cols=cols, rows=rows)
    await shell.resize(cols=cols, rows=rows)
    return shell


class DockerShell:
    def __init__(self, exec_: DockerExec, engine: DockerEngine, target: str) -> None:
        self._exec = exec_
        self._engine = engine
        self.target = target

    async def read(self) -> bytes | None:
        return await self._exec.read()

    async def write(self, data: bytes) -> None:
        try:
            await self._exec.write(data)
        except (ConnectionError, OSError) as e:
            raise TargetGone(f"{self.target}: the exec stream closed") from e

    async def resize(self, *, cols: int, rows: int) -> None:
        await self._exec.resize(cols=cols, rows=rows)

    async def keepalive(self) -> None:
        """The engine's socket is local: nothing between it and us times out."""

    async def close(self) -> None:
        await self._exec.close()

    async def ending(self) -> str:
        try:
            code = await self._engine.exit_code(self._exec.exec_id)
            running = (await self._engine.inspect_container(self.target.split()[-1]))["State"]["Running"]
        except (TargetGone, BackendUnavailable):
            return f"connection to {self.target} lost (the container is gone)"
        finally:
            await self._engine.aclose()
        if not running:
            return f"{self.target} stopped"
        return f"session ended (exit code {code})" if code is not None else "session ended"


async def open_docker_shell(docker_host: str, *, container: str, cols: int = 80,
                            rows: int = 24) -> DockerShell:
    engine = DockerEngine(docker_host)
    try:
        await engine.inspect_container(container)
        exec_ = await engine.exec(container, SHELL_COMMAND, cols=cols, rows=rows)
    except BaseException:
        await engine.aclose()
        raise
    return DockerShell(exec_, engine, f"container {container}")
