"""A local certificate authority and the workspace's server certificate, kept in DATA_DIR/tls.

`workspace serve --tls` serves HTTPS and gRPC-over-TLS on the workspace's port (gateway.py). Clients
trust the workspace by trusting `ca.pem`, the one file they need:

    export REQUESTS_CA_BUNDLE=DATA_DIR/tls/ca.pem            # databricks-sdk, the CLI, requests
    export GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=DATA_DIR/tls/ca.pem  # databricks-connect's gRPC channel

The CA is generated once (its key never leaves the data dir, files 0600 in a 0700 folder) and signs a
server certificate for localhost, 127.0.0.1, ::1 and the address served; that one is issued again when
it nears its end or does not name the address. Keeping the CA keeps a client's trust across restarts.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aml_databricks.compute.host.private import private_folder, write_private

CA_DAYS = 3650
SERVER_DAYS = 397  # the longest validity browsers accept for a server certificate
RENEW_BEFORE = datetime.timedelta(days=30)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # what clients trust
    certificate: Path  # the server's chain: its certificate, then the CA's
    key: Path

    def server_context(self, alpn: list[str]) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.certificate, self.key)
        context.set_alpn_protocols(alpn)
        return context


def ensure_tls(data_dir: Path, host: str) -> TlsFiles:
    """The CA and a current server certificate naming `host` (and loopback), created as needed."""
    folder = private_folder(data_dir / "tls")
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    ca_key_path = folder / "ca-key.pem"
    names = sorted({*LOOPBACK_NAMES, host})
    if not (files.ca.exists() and ca_key_path.exists()):
        ca_key, ca_cert = _new_ca()
        write_private(ca_key_path, _key_pem(ca_key))
        write_private(files.ca, _cert_pem(ca_cert))
        files.certificate.unlink(missing_ok=True)
    if not _current(files.certificate, names):
        ca_key, ca_cert = _load_ca(ca_key_path, files.ca)
        key, certificate = _new_server(ca_key, ca_cert, names)
        write_private(files.key, _key_pem(key))
        write_private(files.certificate, _cert_pem(certificate) + _cert_pem(ca_cert))
    return files


def subject_names(names: list[str]) -> list[x509.GeneralName]:
    """The subjectAltName entries for host names and IP addresses."""

    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aml-databricks local workspace CA")])
    now = _now()
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def _new_server(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                names: list[str]) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:

    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    issuer = ca_cert.subject
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(subject_names(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, certificate


def _load_ca(key_path: Path, cert_path: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:

    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not the EC key this workspace made")
    return key, x509.load_pem_x509_certificate(cert_path.read_bytes())


def _current(path: Path, names: list[str]) -> bool:
    """Whether the server certificate at `path` exists, names every one of `names` and is not near its end."""
    if not path.exists():
        return False

    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
        alternative = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    present = {str(v) for v in alternative.get_values_for_type(x509.DNSName)}
    present |= {str(v) for v in alternative.get_values_for_type(x509.IPAddress)}
    wanted = {str(ipaddress.ip_address(n)) if _is_ip(n) else n for n in names}
    return wanted <= present and certificate.not_valid_after_utc - _now() > RENEW_BEFORE


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:

    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return data.decode()


def _cert_pem(certificate: x509.Certificate) -> str:

    data = certificate.public_bytes(serialization.Encoding.PEM)
    return data.decode()
