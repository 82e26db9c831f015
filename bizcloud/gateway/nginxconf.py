"""The gateway's nginx: where its files live and the configuration it runs on.

nginx runs as BizCloud's own process (never the system service) with a prefix under the state
directory: the generated ``nginx.conf``, the seed file ``init_by_lua`` loads before any worker
serves, the pid file, logs and temp directories. Rendering is pure; ``process.py`` writes and runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jinja2

LUA_DIR = Path(__file__).resolve().parent / "lua"
TEMPLATE = "nginx.conf.j2"
NGINX = "/usr/sbin/nginx"
Balance = Literal["round_robin", "least_conn"]


@dataclass(frozen=True)
class GatewayPaths:
    """The files of one gateway under its prefix directory."""

    prefix: Path

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def seed(self) -> Path:
        return self.prefix / "seed.json"

    @property
    def pidfile(self) -> Path:
        return self.prefix / "nginx.pid"

    @property
    def error_log(self) -> Path:
        return self.prefix / "logs" / "error.log"

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "access.log"

    def create(self) -> None:
        for sub in ("logs", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class GatewayConfig:
    """What the generated configuration depends on."""

    host: str
    port: int
    admin_port: int
    workers: int = 2
    balance: Balance = "round_robin"
    cooloff_s: float = 3.0
    max_tries: int = 3
    connect_timeout_s: float = 1.0
    keepalive: int = 64
    worker_connections: int = 4096
    state_dict_mb: int = 64
    access_log: bool = True


def render(config: GatewayConfig, paths: GatewayPaths) -> str:
    """The nginx.conf for ``config``. Purely computational."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=False,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    access_log = f"{paths.access_log} bizcloud buffer=64k flush=1s" if config.access_log else "off"
    return env.get_template(TEMPLATE).render(
        generated_by="bizcloud.gateway.nginxconf", prefix=str(paths.prefix), lua_dir=str(LUA_DIR),
        seed_path=str(paths.seed), access_log=access_log, error_level="warn",
        host=config.host, port=config.port, admin_port=config.admin_port, workers=config.workers,
        balance=config.balance, cooloff_s=config.cooloff_s, max_tries=config.max_tries,
        connect_timeout_s=config.connect_timeout_s, keepalive=config.keepalive,
        worker_connections=config.worker_connections, state_dict_mb=config.state_dict_mb)
