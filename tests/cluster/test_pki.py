"""Certificates of the local cluster: who they name, what they may do, and that reuse is safe."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bizcloud.cluster import pki

SPECS = pki.cluster_cert_specs(node_name="node-a", node_ip="192.0.2.10", service_ip="10.96.0.1")


def _by_file(file: str) -> pki.CertSpec:
    return next(s for s in SPECS if s.file == file)


def _sans(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | {
        str(v) for v in ext.get_values_for_type(x509.IPAddress)}


def _usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_ca_is_self_signed_and_may_sign() -> None:
    ca = pki.new_ca("test-ca")
    ca.cert.verify_directly_issued_by(ca.cert)
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


@pytest.mark.parametrize(
    ("file", "cn", "orgs", "usage"),
    [
        ("admin", "bizcloud-admin", ["system:masters"], ExtendedKeyUsageOID.CLIENT_AUTH),
        ("kubelet-client", "system:node:node-a", ["system:nodes"], ExtendedKeyUsageOID.CLIENT_AUTH),
        ("controller-manager", "system:kube-controller-manager", [], ExtendedKeyUsageOID.CLIENT_AUTH),
        ("scheduler", "system:kube-scheduler", [], ExtendedKeyUsageOID.CLIENT_AUTH),
        ("apiserver", "kube-apiserver", [], ExtendedKeyUsageOID.SERVER_AUTH),
        ("kubelet", "node-a", [], ExtendedKeyUsageOID.SERVER_AUTH),
    ],
)
def test_identities_carry_the_names_rbac_expects(file: str, cn: str, orgs: list[str],
                                                   usage: x509.ObjectIdentifier) -> None:
    ca = pki.new_ca("test-ca")
    leaf = pki.issue(ca, _by_file(file))
    leaf.cert.verify_directly_issued_by(ca.cert)
    subject = leaf.cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == orgs
    assert _usages(leaf.cert) == {usage}


def test_apiserver_serves_every_name_clients_use() -> None:
    leaf = pki.issue(pki.new_ca("test-ca"), _by_file("apiserver"))
    assert {"127.0.0.1", "192.0.2.10", "10.96.0.1", "localhost", "kubernetes.default.svc"} <= _sans(leaf.cert)


def test_ensure_pki_reuses_what_fits(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path, SPECS, ca_name="test-ca")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    pki.ensure_pki(tmp_path, SPECS, ca_name="test-ca")
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert before == after
    assert oct((tmp_path / "ca.key").stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "sa.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_ensure_pki_reissues_serving_certs_when_the_node_ip_changes(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path, SPECS, ca_name="test-ca")
    admin, ca = (tmp_path / "admin.crt").read_bytes(), (tmp_path / "ca.crt").read_bytes()
    moved = pki.cluster_cert_specs(node_name="node-a", node_ip="192.0.2.99", service_ip="10.96.0.1")
    pki.ensure_pki(tmp_path, moved, ca_name="test-ca")
    apiserver = x509.load_pem_x509_certificate((tmp_path / "apiserver.crt").read_bytes())
    assert "192.0.2.99" in _sans(apiserver)
    assert "192.0.2.10" not in _sans(apiserver)
    assert (tmp_path / "admin.crt").read_bytes() == admin
    assert (tmp_path / "ca.crt").read_bytes() == ca
