"""kubectl as a library: the one way BizCloud's cluster tooling talks to the API server for now.

Stock kubectl (built from the pinned k8s.io/kubernetes) speaks every API the cluster serves and
is what users run too, so what BizCloud does can be replayed by hand. The monitor's hot path
will get a native client of its own; everything here is occasional and cold.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bizcloud.errors import KubeError


@dataclass(frozen=True)
class Kubectl:
    binary: Path
    kubeconfig: Path

    def run(self, *args: str, stdin: str | None = None, timeout: float = 60.0, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args]
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired as e:
            raise KubeError(f"kubectl {' '.join(args[:3])} timed out after {timeout:.0f}s",
                            hint="is the API server up? `bizcloud cluster status`") from e
        except FileNotFoundError as e:
            raise KubeError(f"kubectl not found at {self.binary}",
                            hint="run `bizcloud cluster build`") from e
        if check and proc.returncode != 0:
            message = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise KubeError(f"kubectl {' '.join(args[:3])}: {message}")
        return proc

    def get_json(self, *args: str, timeout: float = 60.0) -> dict[str, Any]:
        out = self.run("get", *args, "-o", "json", timeout=timeout).stdout
        data: dict[str, Any] = json.loads(out)
        return data

    def apply(self, manifest: str, *, server_side: bool = True) -> None:
        args = ["apply", "-f", "-"]
        if server_side:
            args += ["--server-side", "--field-manager=bizcloud", "--force-conflicts"]
        self.run(*args, stdin=manifest, timeout=120)


def is_ready(obj: dict[str, Any]) -> bool:
    """Whether a Node or Pod reports the condition Ready=True. Purely computational."""
    conditions = obj.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
