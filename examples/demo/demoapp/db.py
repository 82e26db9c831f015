"""demo-api's database: a greeting read with the MySQL account BizCloud granted this very pod.

Nothing here creates users or knows an admin password: BizCloud's authorization worker creates
the account ``MYSQL_USER``@<this pod's IP> on the master and the replica once the pod is Ready,
with the password from the Secret the pod reads into ``MYSQL_PASSWORD``. Reads go to the replica
(the dependency declares both roles). Errors are answered, not raised: a pod that is Ready but not
granted yet (the first milliseconds) says so instead of failing the call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pymysql


@dataclass(frozen=True)
class Database:
    host: str
    port: int
    replica_port: int
    user: str
    password: str
    database: str

    @classmethod
    def from_env(cls) -> Database | None:
        host = os.environ.get("MYSQL_HOST", "")
        if not host:
            return None
        port = os.environ.get("MYSQL_PORT", "3306")
        return cls(host=host, port=int(port), replica_port=int(os.environ.get("MYSQL_REPLICA_PORT", port)),
                   user=os.environ.get("MYSQL_USER", ""), password=os.environ.get("MYSQL_PASSWORD", ""),
                   database=os.environ.get("MYSQL_DATABASE", ""))

    def greeting(self) -> dict[str, Any]:
        """The first greeting, read on the replica, or the error (never the password)."""
        try:
            connection = pymysql.connect(host=self.host, port=self.replica_port, user=self.user,
                                         password=self.password, database=self.database, connect_timeout=2,
                                         read_timeout=2)
        except pymysql.MySQLError as e:
            return {"error": f"{type(e).__name__}: {e.args[-1] if e.args else e}", "server": "replica"}
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT text FROM greetings ORDER BY id LIMIT 1")
                row = cursor.fetchone()
            return {"greeting": row[0] if row else None, "server": "replica", "user": self.user}
        except pymysql.MySQLError as e:
            return {"error": f"{type(e).__name__}: {e.args[-1] if e.args else e}", "server": "replica"}
        finally:
            connection.close()
