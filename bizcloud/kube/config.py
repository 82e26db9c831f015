"""Where the API server is and who we are to it: kubeconfig files and in-cluster service accounts.

The first step of every call BizCloud makes to Kubernetes (informer, leases, later apply and
exec): turn a kubeconfig (the local cluster's admin one, or any user's) or a pod's service
account into one frozen ``KubeConfig``, and from it an ``httpx.AsyncClient`` that speaks TLS with
the right CA and client certificate or bearer token. Certificates are held in memory; Python's
``ssl`` can load a client certificate only from a file, so that file exists (mode 0600) just for
the duration of ``load_cert_chain``. A kubeconfig we cannot use fails with a ``KubeError`` naming
the field, because "TLS handshake failed" three layers later tells nobody what to fix.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from bizcloud.errors import KubeError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_TOKEN_REFRESH_SECONDS = 60.0


@dataclass(frozen=True)
class KubeConfig:
    """One API server and one identity. ``source`` says where it came from, for error messages."""

    server: str
    ca_pem: bytes | None = None
    insecure_skip_tls_verify: bool = False
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None
    namespace: str = "default"
    source: str = "(in memory)"

    def bearer_token(self) -> str | None:
        """The token to send; a token file is re-read because service-account tokens rotate."""
        if self.token_file is not None:
            try:
                return self.token_file.read_text().strip()
            except OSError as e:
                raise KubeError(f"{self.source}: cannot read tokenFile {self.token_file}: {e.strerror}",
                                hint="check the path and its permissions") from e
        return self.token

    def ssl_context(self) -> ssl.SSLContext:
        """TLS settings for httpx's ``verify=`` (httpx 0.28 ignores ``cert=``)."""
        try:
            if self.ca_pem is not None:
                context = ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))
            else:
                context = ssl.create_default_context()
        except (ssl.SSLError, ValueError) as e:
            raise KubeError(f"{self.source}: certificate-authority is not a valid PEM certificate",
                            hint="fix certificate-authority(-data) in the kubeconfig") from e
        if self.insecure_skip_tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if (self.client_cert_pem is None) != (self.client_key_pem is None):
            missing = "client-key" if self.client_key_pem is None else "client-certificate"
            raise KubeError(f"{self.source}: user has a client certificate or key but no {missing}",
                            hint=f"add {missing}(-data) to the user in the kubeconfig")
        if self.client_cert_pem is not None and self.client_key_pem is not None:
            _load_cert_chain(context, self.client_cert_pem, self.client_key_pem, self.source)
        return context

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An AsyncClient bound to this server and identity; ``kwargs`` go to httpx (timeout, …)."""
        kwargs.setdefault("timeout", httpx.Timeout(30.0))
        headers = {"Accept": "application/json", "User-Agent": "bizcloud", **kwargs.pop("headers", {})}
        auth = _BearerAuth(self) if self.token is not None or self.token_file is not None else None
        return httpx.AsyncClient(base_url=self.server, verify=self.ssl_context(), auth=auth,
                                 headers=headers, **kwargs)


class _BearerAuth(httpx.Auth):
    """Adds ``Authorization: Bearer``; re-reads a token file at most once a minute."""

    def __init__(self, config: KubeConfig) -> None:
        self._config = config
        self._token: str | None = None
        self._read_at = float("-inf")

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        now = time.monotonic()
        if self._token is None or now - self._read_at > _TOKEN_REFRESH_SECONDS:
            self._token, self._read_at = self._config.bearer_token(), now
        if self._token:
            request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def _load_cert_chain(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes, source: str) -> None:
    fd, name = tempfile.mkstemp(prefix="bizcloud-kube-", suffix=".pem")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cert_pem.rstrip(b"\n") + b"\n" + key_pem)
        context.load_cert_chain(name)
    except ssl.SSLError as e:
        raise KubeError(f"{source}: client-certificate and client-key do not form a usable pair ({e})",
                        hint="fix client-certificate(-data) / client-key(-data) in the kubeconfig") from e
    finally:
        os.unlink(name)


# --- kubeconfig files ------------------------------------------------------------------------------

def load_kubeconfig(path: Path, *, context: str | None = None) -> KubeConfig:
    """The cluster and user of ``context`` (default: the file's current-context)."""
    source = f"kubeconfig {path}"
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as e:
        raise KubeError(f"cannot read {source}: {e.strerror}", hint="check BIZCLOUD_KUBECONFIG") from e
    except yaml.YAMLError as e:
        raise KubeError(f"{source} is not valid YAML: {e}") from e
    if not isinstance(doc, dict):
        raise KubeError(f"{source} is not a kubeconfig (expected a mapping at the top)")
    name = context or doc.get("current-context")
    if not name:
        raise KubeError(f"{source} has no current-context",
                        hint="set one with `kubectl config use-context NAME`, or name a context")
    ctx = _named(doc, "contexts", "context", name, source)
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if not cluster_name:
        raise KubeError(f"{source}: context {name!r} names no cluster (contexts[].context.cluster)")
    cluster = _named(doc, "clusters", "cluster", cluster_name, source)
    user = _named(doc, "users", "user", user_name, source) if user_name else {}
    server = cluster.get("server")
    if not server:
        raise KubeError(f"{source}: cluster {cluster_name!r} has no server (clusters[].cluster.server)")
    base = path.parent
    where = f"{source}, cluster {cluster_name!r}"
    who = f"{source}, user {user_name!r}"
    token_file = user.get("tokenFile")
    return KubeConfig(
        server=str(server).rstrip("/"),
        ca_pem=_pem(cluster, "certificate-authority", base, where),
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
        client_cert_pem=_pem(user, "client-certificate", base, who),
        client_key_pem=_pem(user, "client-key", base, who),
        token=str(user["token"]) if user.get("token") else None,
        token_file=(base / token_file) if token_file else None,
        namespace=str(ctx.get("namespace") or "default"),
        source=source,
    )


def _named(doc: Mapping[str, Any], section: str, key: str, name: str, source: str) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(key)
            if not isinstance(body, dict):
                raise KubeError(f"{source}: {section} entry {name!r} has no {key!r} mapping")
            return body
    raise KubeError(f"{source}: no {section} entry named {name!r}",
                    hint=f"add it under {section}, or fix the name that refers to it")


def _pem(entry: Mapping[str, Any], key: str, base: Path, where: str) -> bytes | None:
    """``key-data`` (base64) or ``key`` (a file path, relative to the kubeconfig's directory)."""
    if data := entry.get(f"{key}-data"):
        try:
            return base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError) as e:
            raise KubeError(f"{where}: {key}-data is not valid base64") from e
    if file := entry.get(key):
        try:
            return (base / str(file)).read_bytes()
        except OSError as e:
            raise KubeError(f"{where}: cannot read {key} file {base / str(file)}: {e.strerror}") from e
    return None


# --- in-cluster ------------------------------------------------------------------------------------

def load_in_cluster(*, secrets_dir: Path = SERVICE_ACCOUNT_DIR,
                    environ: Mapping[str, str] | None = None) -> KubeConfig:
    """The pod's own service account, as client-go's ``rest.InClusterConfig`` reads it."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeError("not running in a pod: KUBERNETES_SERVICE_HOST/PORT are not set",
                        hint="set BIZCLOUD_KUBECONFIG to use a kubeconfig instead")
    token_file = secrets_dir / "token"
    if not token_file.is_file():
        raise KubeError(f"in-cluster config: no service account token at {token_file}",
                        hint="is automountServiceAccountToken disabled for this pod?")
    ca_file = secrets_dir / "ca.crt"
    namespace_file = secrets_dir / "namespace"
    host = f"[{host}]" if ":" in host else host
    return KubeConfig(
        server=f"https://{host}:{port}",
        ca_pem=ca_file.read_bytes() if ca_file.is_file() else None,
        token_file=token_file,
        namespace=namespace_file.read_text().strip() if namespace_file.is_file() else "default",
        source=f"in-cluster service account ({secrets_dir})",
    )


def load(path: Path | None = None) -> KubeConfig:
    """``path``; else, inside a pod, its service account; else $KUBECONFIG or ~/.kube/config."""
    if path is not None:
        return load_kubeconfig(path)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return load_in_cluster()
    env_path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return load_kubeconfig(Path(env_path) if env_path else Path.home() / ".kube" / "config")


__all__ = ["KubeConfig", "load", "load_in_cluster", "load_kubeconfig"]
