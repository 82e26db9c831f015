"""Loading kubeconfigs and in-cluster service accounts: what ends up in KubeConfig, and clear failures."""

from __future__ import annotations

import base64
import os
import ssl
import stat
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bizcloud.cluster import pki
from bizcloud.errors import KubeError
from bizcloud.kube.config import KubeConfig, load_in_cluster, load_kubeconfig

CA = pki.new_ca("test-ca")
CLIENT = pki.issue(CA, pki.CertSpec(file="client", common_name="tester", client=True))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _kubeconfig(cluster: dict[str, Any], user: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Config", "current-context": "ctx",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443/", **cluster}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": "bc-dev"}}],
            **top}


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Send tempfile's files to a directory of our own, so we can see what is left behind."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


# --- what a kubeconfig gives ---------------------------------------------------------------------

def test_embedded_data_is_decoded_and_the_key_file_exists_only_while_loading(
        tmp_path: Path, private_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, _kubeconfig(
        {"certificate-authority-data": _b64(CA.cert_pem())},
        {"client-certificate-data": _b64(CLIENT.cert_pem()), "client-key-data": _b64(CLIENT.key_pem())}))
    config = load_kubeconfig(path)
    assert config.server == "https://127.0.0.1:6443"
    assert config.ca_pem == CA.cert_pem()
    assert config.client_cert_pem == CLIENT.cert_pem()
    assert config.client_key_pem == CLIENT.key_pem()
    assert config.namespace == "bc-dev"
    assert config.token is None
    assert "BEGIN PRIVATE KEY" not in repr(config)

    modes: list[int] = []
    original = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: Any, *args: Any, **kwargs: Any) -> None:
        modes.append(stat.S_IMODE(os.stat(certfile).st_mode))
        original(self, certfile, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    context = config.ssl_context()
    assert modes == [0o600]
    assert list(private_tmp.iterdir()) == []
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_file_paths_are_read_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_bytes(CA.cert_pem())
    (tmp_path / "pki" / "client.crt").write_bytes(CLIENT.cert_pem())
    (tmp_path / "pki" / "client.key").write_bytes(CLIENT.key_pem())
    path = _write(tmp_path, _kubeconfig(
        {"certificate-authority": "pki/ca.crt"},
        {"client-certificate": "pki/client.crt", "client-key": str(tmp_path / "pki" / "client.key")}))
    config = load_kubeconfig(path)
    assert config.ca_pem == CA.cert_pem()
    assert config.client_cert_pem == CLIENT.cert_pem()
    assert config.client_key_pem == CLIENT.key_pem()
    config.ssl_context()


async def test_a_token_becomes_a_bearer_header_and_insecure_skips_verification(tmp_path: Path) -> None:
    path = _write(tmp_path, _kubeconfig({"insecure-skip-tls-verify": True}, {"token": "s3cret"}))
    config = load_kubeconfig(path)
    assert config.token == "s3cret"
    assert config.client_cert_pem is None
    context = config.ssl_context()
    assert context.verify_mode == ssl.CERT_NONE
    assert not context.check_hostname

    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"kind": "Status"})

    async with config.async_client(transport=httpx.MockTransport(answer)) as client:
        await client.get("/version")
    assert seen[0].url == "https://127.0.0.1:6443/version"
    assert seen[0].headers["Authorization"] == "Bearer s3cret"


def test_a_token_file_is_read_when_used(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("first\n")
    config = load_kubeconfig(_write(tmp_path, _kubeconfig({}, {"tokenFile": "token"})))
    assert config.bearer_token() == "first"
    (tmp_path / "token").write_text("rotated\n")
    assert config.bearer_token() == "rotated"


def test_another_context_can_be_chosen(tmp_path: Path) -> None:
    doc = _kubeconfig({}, {"token": "t"})
    doc["contexts"].append({"name": "other", "context": {"cluster": "c", "user": "u"}})
    config = load_kubeconfig(_write(tmp_path, doc), context="other")
    assert config.namespace == "default"


# --- unusable kubeconfigs name the field ---------------------------------------------------------

@pytest.mark.parametrize(("change", "names"), [
    pytest.param(lambda d: d.pop("current-context"), "current-context", id="no-current-context"),
    pytest.param(lambda d: d.update({"current-context": "nope"}), "contexts", id="unknown-context"),
    pytest.param(lambda d: d["contexts"][0]["context"].update(user="ghost"), "users", id="unknown-user"),
    pytest.param(lambda d: d["clusters"][0]["cluster"].pop("server"), "server", id="no-server"),
    pytest.param(lambda d: d["clusters"][0]["cluster"].update({"certificate-authority-data": "%%%"}),
                 "certificate-authority-data", id="bad-base64"),
    pytest.param(lambda d: d["users"][0]["user"].update({"client-certificate": "missing.crt"}),
                 "client-certificate", id="missing-file"),
])
def test_unusable_kubeconfig_names_the_field(tmp_path: Path, change: Any, names: str) -> None:
    doc = _kubeconfig({}, {"token": "t"})
    change(doc)
    with pytest.raises(KubeError, match=names) as caught:
        load_kubeconfig(_write(tmp_path, doc))
    assert str(tmp_path / "config.yaml") in caught.value.message


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    config = load_kubeconfig(_write(tmp_path, _kubeconfig(
        {}, {"client-certificate-data": _b64(CLIENT.cert_pem())})))
    with pytest.raises(KubeError, match="client-key"):
        config.ssl_context()


def test_a_key_that_does_not_match_is_refused_and_leaves_no_file(tmp_path: Path, private_tmp: Path) -> None:
    other = pki.issue(CA, pki.CertSpec(file="x", common_name="x", client=True))
    config = KubeConfig(server="https://x", client_cert_pem=CLIENT.cert_pem(), client_key_pem=other.key_pem())
    with pytest.raises(KubeError, match="usable pair"):
        config.ssl_context()
    assert list(private_tmp.iterdir()) == []


# --- in a pod ------------------------------------------------------------------------------------

def test_in_cluster_reads_the_service_account(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_bytes(CA.cert_pem())
    (tmp_path / "namespace").write_text("bc-prod")
    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    config = load_in_cluster(secrets_dir=tmp_path, environ=environ)
    assert config.server == "https://10.96.0.1:443"
    assert config.bearer_token() == "sa-token"
    assert config.ca_pem == CA.cert_pem()
    assert config.namespace == "bc-prod"


def test_in_cluster_outside_a_pod_says_so(tmp_path: Path) -> None:
    with pytest.raises(KubeError, match="KUBERNETES_SERVICE_HOST"):
        load_in_cluster(secrets_dir=tmp_path, environ={})
