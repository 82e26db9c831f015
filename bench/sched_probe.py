"""The machine's wake-up floor: how late a process that is woken gets to run, while a benchmark's load runs.

Ready -> routable crosses three processes (the monitor, the gateway's syncer, nginx), each woken by
the one before. On a machine whose cores are shared with the load generator (a control plane
churning 1,000 pods) a woken process waits for a core; this measures that wait with nothing of
ours in it: two processes bounce a datagram back and forth every 10 ms, and each round trip is
two wake-ups. ``bench.gateway_latency`` runs it during the churn and prints it beside its figures,
so a reader can tell the pipeline's own latency from the machine's.

    python -m bench.sched_probe --seconds 30     # one JSON line: round trips in ms (p50, p90, p99, max)
    python -m bench.sched_probe                  # until SIGTERM, then the JSON line (``Floor``)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from bench.common import summary

_stopped = False


def probe(seconds: float, *, interval: float = 0.01) -> dict[str, float]:
    """Round trips (ms) of one datagram between this process and a forked child, every ``interval``."""
    here = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    here.bind(("127.0.0.1", 0))
    there = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    there.bind(("127.0.0.1", 0))
    child = os.fork()
    if child == 0:   # the echo: wakes for each datagram, answers, sleeps again
        while True:
            data, peer = there.recvfrom(16)
            if data == b"q":
                os._exit(0)
            there.sendto(data, peer)
    rounds: list[float] = []
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not _stopped:
            started = time.perf_counter()
            here.sendto(b"x", there.getsockname())
            here.recvfrom(16)
            rounds.append((time.perf_counter() - started) * 1000)
            time.sleep(interval)
    finally:
        here.sendto(b"q", there.getsockname())
        os.waitpid(child, 0)
        here.close()
        there.close()
    return summary(rounds)


class Floor:
    """The probe in a process of its own (``start``), from now until ``stop`` returns its figures."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen([sys.executable, "-m", "bench.sched_probe"], stdout=subprocess.PIPE,
                                      text=True)

    def stop(self) -> dict[str, Any]:
        self._proc.send_signal(signal.SIGTERM)
        out, _ = self._proc.communicate(timeout=30)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result


def _stop(_signum: int, _frame: object) -> None:
    global _stopped  # noqa: PLW0603 - the signal handler's only way to end the loop
    _stopped = True


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sched_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=math.inf)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    print(json.dumps(probe(args.seconds)), flush=True)


if __name__ == "__main__":
    main()
