"""Where a firewalled host's ``iptables-save`` / ``iptables-restore`` run: here, over ssh, or via salt.

The iptables executor decides *what* to run (an argv such as ``["iptables-restore", "-w", "10",
"--noflush"]`` and the rules on stdin); a backend decides *where*, behind one Protocol:
``run(host, argv, stdin) -> stdout``. Every failure (the tool or the transport missing, a non-zero
exit, a timeout) is an ``ExecutorUnavailableError`` carrying the command and its stderr, so the
worker retries it later. The argv never passes through a local shell; each backend's command line
is built by a pure ``command(...)`` method so the exact commands are pinned by tests.

The exact commands, for ``argv = ["iptables-restore", "-w", "10", "--noflush"]``:

- ``local`` (this machine; ``netns`` set: inside that network namespace)::

      ip netns exec <netns> iptables-restore -w 10 --noflush        < rules

- ``ssh`` (key-based; ``BatchMode`` so a missing key fails instead of prompting; the remote user
  must be allowed to run iptables, i.e. root)::

      ssh -o BatchMode=yes -o ConnectTimeout=10 -- <ssh_user>@<address> \
          'iptables-restore -w 10 --noflush' < rules

- ``salt`` (from the salt master; ``cmd.run_all`` so the minion's exit code and stderr come back
  apart from stdout; the rules travel base64-encoded in ``cmd.run_all``'s ``stdin`` argument,
  because salt parses CLI arguments as YAML and a multi-line ``*filter`` text would not survive it)::

      salt --out=json --static <salt_target> cmd.run_all 'base64 -d | iptables-restore -w 10 --noflush' \
          stdin=<base64 of the rules> python_shell=True

  and for reading back (no stdin)::

      salt --out=json --static <salt_target> cmd.run_all 'iptables-save -t filter' python_shell=False

  The answer is ``{"<minion>": {"retcode": 0, "stdout": "…", "stderr": "…", "pid": …}}``; a minion
  that did not answer comes back as a string there, which is reported as unavailable. Both command
  lines were fed once to salt 3008.4's own CLI parser (``SaltCMDOptionParser`` and
  ``salt.utils.args.parse_input``): target, ``cmd.run_all``, the command string, ``stdin`` a string
  decoding to the rules byte for byte, ``python_shell`` a boolean.

Only ``local`` is exercised against a real kernel in the tests (network namespaces); ``ssh`` and
``salt`` are tested for the exact argv they build, with no server. ``ssh_user`` and ``salt_target``
are validated here (the inventory schema accepts any string for them) so neither can smuggle an
option (``-oProxyCommand=…``) or a glob matching other minions into the command line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import shlex
from collections.abc import Sequence
from typing import Protocol

from bizcloud.authz.executor import ExecutorUnavailableError
from bizcloud.configcenter.schema import FirewalledHost
from bizcloud.identifiers import InvalidNameError

DEFAULT_TIMEOUT = 30.0
_STDERR_SHOWN = 2000
_UNIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_MINION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")  # one minion: no glob, no option


class FirewallBackend(Protocol):
    """Runs one command on a firewalled host; returns its stdout, raises ExecutorUnavailableError."""

    async def run(self, host: FirewalledHost, argv: Sequence[str], stdin: str | None = None) -> str: ...


async def execute(argv: Sequence[str], stdin: str | None, *, timeout: float,
                  what: str) -> tuple[int, str, str]:
    """Run ``argv`` (no shell) and return (exit code, stdout, stderr); a missing program or a
    timeout is an ExecutorUnavailableError naming ``what`` (the command as the host sees it)."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
    except OSError as e:
        raise ExecutorUnavailableError(f"{what}: cannot start {argv[0]}: {e.strerror or e}",
                                       hint=f"install {argv[0]} on this machine (and check PATH)") from e
    try:
        out, err = await asyncio.wait_for(process.communicate((stdin or "").encode()), timeout)
    except TimeoutError as e:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise ExecutorUnavailableError(
            f"{what}: no answer within {timeout:g} s",
            hint="check that the host is reachable; the next converge retries") from e
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def failed(what: str, code: int, stderr: str) -> ExecutorUnavailableError:
    text = stderr.strip() or "(no stderr)"
    if len(text) > _STDERR_SHOWN:
        text = text[:_STDERR_SHOWN] + "…"
    return ExecutorUnavailableError(f"{what}: exit code {code}: {text}",
                                    hint="the next converge retries; fix the host if it keeps failing")


class LocalBackend:
    """This machine, or one of its network namespaces (``host.netns``)."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout

    def command(self, host: FirewalledHost, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", host.netns, *argv] if host.netns else list(argv)

    async def run(self, host: FirewalledHost, argv: Sequence[str], stdin: str | None = None) -> str:
        what = shlex.join(argv) + (f" (netns {host.netns})" if host.netns else "")
        code, out, err = await execute(self.command(host, argv), stdin, timeout=self.timeout, what=what)
        if code:
            raise failed(what, code, err)
        return out


class SshBackend:
    """Another machine over ssh, as ``host.ssh_user`` at ``host.address``, keys only."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, connect_timeout: int = 10) -> None:
        self.timeout = timeout
        self.connect_timeout = connect_timeout

    def command(self, host: FirewalledHost, argv: Sequence[str]) -> list[str]:
        user = host.ssh_user
        if not _UNIX_USER.match(user):
            raise InvalidNameError("ssh_user", user, "give a Unix user name: lower-case letters, digits, "
                                                     "'_' and '-', starting with a letter or '_' (e.g. root)")
        # ssh hands the remote shell one string: quote each argument, and end ssh's options first.
        return ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}", "--",
                f"{user}@{host.address}", shlex.join(argv)]

    async def run(self, host: FirewalledHost, argv: Sequence[str], stdin: str | None = None) -> str:
        what = f"{shlex.join(argv)} (ssh {host.ssh_user}@{host.address})"
        code, out, err = await execute(self.command(host, argv), stdin, timeout=self.timeout, what=what)
        if code:
            raise failed(what, code, err)
        return out


class SaltBackend:
    """A salt minion, from the salt master, through ``cmd.run_all``."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout

    @staticmethod
    def target(host: FirewalledHost) -> str:
        target = host.salt_target or host.address
        if not _MINION_ID.match(target):
            raise InvalidNameError("salt_target", target, "give one minion id: letters, digits, '.', '_' "
                                                          "and '-', no globs (e.g. db1.example.com)")
        return target

    def command(self, host: FirewalledHost, argv: Sequence[str], stdin: str | None = None) -> list[str]:
        command = ["salt", "--out=json", "--static", self.target(host), "cmd.run_all"]
        if stdin is None:
            return [*command, shlex.join(argv), "python_shell=False"]
        encoded = base64.b64encode(stdin.encode()).decode("ascii")
        return [*command, f"base64 -d | {shlex.join(argv)}", f"stdin={encoded}", "python_shell=True"]

    async def run(self, host: FirewalledHost, argv: Sequence[str], stdin: str | None = None) -> str:
        target = self.target(host)
        what = f"{shlex.join(argv)} (salt {target})"
        code, out, err = await execute(self.command(host, argv, stdin), None, timeout=self.timeout, what=what)
        return self.result(what, target, code, out, err)

    @staticmethod
    def result(what: str, target: str, code: int, out: str, err: str) -> str:
        """The minion's stdout from ``salt --out=json --static`` output, or why there is none."""
        try:
            answer = json.loads(out)[target]
        except (ValueError, KeyError, TypeError):
            raise failed(what, code, err or f"no answer from minion {target} in: {out[:200]!r}") from None
        if not isinstance(answer, dict):
            raise failed(what, code, f"minion {target}: {answer}")
        retcode = answer.get("retcode")
        if retcode != 0:
            raise failed(what, retcode if isinstance(retcode, int) else -1, str(answer.get("stderr", "")))
        return str(answer.get("stdout", ""))


def default_backends() -> dict[str, FirewallBackend]:
    return {"local": LocalBackend(), "ssh": SshBackend(), "salt": SaltBackend()}
