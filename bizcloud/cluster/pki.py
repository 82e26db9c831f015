"""The local cluster's certificates: one CA, serving certificates and client identities.

Pure generation (``issue``/``new_ca`` return objects) is kept apart from the file layout
(``ensure_pki``), so tests check the certificates themselves. ECDSA P-256 keys: Kubernetes accepts
them everywhere and they are generated in microseconds, which keeps `cluster up` fast.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=365)
_CA_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class KeyPair:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class CertSpec:
    """What one certificate says: who it names, which hosts it serves, what it may do."""

    file: str
    common_name: str
    organizations: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    server: bool = False
    client: bool = False


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def new_ca(common_name: str, *, now: dt.datetime | None = None) -> KeyPair:
    """A self-signed CA. Purely computational."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(key, cert)


def issue(ca: KeyPair, spec: CertSpec, *, now: dt.datetime | None = None) -> KeyPair:
    """A leaf certificate signed by ``ca``. Purely computational."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    usages = []
    if spec.server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if spec.client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(spec.common_name, spec.organizations))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, key_cert_sign=False,
                                     crl_sign=False, content_commitment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                       critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in spec.dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in spec.ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return KeyPair(key, builder.sign(ca.key, hashes.SHA256()))


def cluster_cert_specs(*, node_name: str, node_ip: str, service_ip: str) -> tuple[CertSpec, ...]:
    """Every identity the local cluster uses. Purely computational.

    The group ``system:masters`` is given only to the admin and to the API server's own client
    identity towards kubelets; components get their well-known users so RBAC's defaults apply.
    """
    return (
        CertSpec("apiserver", "kube-apiserver", server=True,
                 dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                            "kubernetes.default.svc.cluster.local"),
                 ips=("127.0.0.1", node_ip, service_ip)),
        CertSpec("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                 organizations=("system:masters",), client=True),
        CertSpec("admin", "bizcloud-admin", organizations=("system:masters",), client=True),
        CertSpec("controller-manager", "system:kube-controller-manager", client=True),
        CertSpec("scheduler", "system:kube-scheduler", client=True),
        CertSpec("kubelet-client", f"system:node:{node_name}", organizations=("system:nodes",), client=True),
        CertSpec("kubelet", node_name, server=True, dns_names=(node_name, "localhost"),
                 ips=("127.0.0.1", node_ip)),
        CertSpec("kwok", "kwok-controller", organizations=("system:masters",), client=True),
    )


def _sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | {
        str(v) for v in ext.get_values_for_type(x509.IPAddress)}


def _load(directory: Path, stem: str) -> KeyPair | None:
    crt, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    if not (crt.is_file() and key.is_file()):
        return None
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        return None
    return KeyPair(private, x509.load_pem_x509_certificate(crt.read_bytes()))


def _write(directory: Path, stem: str, pair: KeyPair) -> None:
    key_file = directory / f"{stem}.key"
    key_file.write_bytes(pair.key_pem())
    key_file.chmod(0o600)
    (directory / f"{stem}.crt").write_bytes(pair.cert_pem())


def _still_valid(pair: KeyPair, spec: CertSpec, ca: KeyPair) -> bool:
    wanted = set(spec.dns_names) | set(spec.ips)
    fresh = pair.cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=30)
    return pair.cert.issuer == ca.cert.subject and _sans(pair.cert) == wanted and fresh


def ensure_pki(directory: Path, specs: tuple[CertSpec, ...], *, ca_name: str) -> KeyPair:
    """Create what is missing or stale under ``directory``; keep what still fits. Returns the CA.

    Reusing certificates keeps kubeconfigs handed out earlier valid across `up`/`down`; a changed
    node IP re-issues the serving certificates that name it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = _load(directory, "ca")
    if ca is None:
        ca = new_ca(ca_name)
        _write(directory, "ca", ca)
    for spec in specs:
        current = _load(directory, spec.file)
        if current is None or not _still_valid(current, spec, ca):
            _write(directory, spec.file, issue(ca, spec))
    sa_key = directory / "sa.key"
    if not sa_key.is_file():
        key = ec.generate_private_key(ec.SECP256R1())
        sa_key.write_bytes(KeyPair(key, ca.cert).key_pem())
        sa_key.chmod(0o600)
        (directory / "sa.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return ca
