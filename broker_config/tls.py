"""TLS material for the broker: an ECDSA P-256 CA and a server certificate signed by it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)

DEFAULT_HOSTS = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class TlsPaths:
    """Where the CA and server files live inside a TLS directory."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def in_dir(cls, directory: Path) -> TlsPaths:
        """Standard file names inside directory."""
        return cls(directory / "ca.crt", directory / "ca.key", directory / "server.crt", directory / "server.key")

    def complete(self) -> bool:
        """True if all four files exist."""
        return all(p.exists() for p in (self.ca_cert, self.ca_key, self.server_cert, self.server_key))


def _name(common_name: str) -> x509.Name:
    """A subject name with the project's organisation."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ALL edge"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    """Subject alternative names: IP entries for addresses, DNS entries otherwise."""
    entries: list[x509.GeneralName] = []
    for host in hosts:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a private key as unencrypted PKCS#8 PEM readable by its owner only."""
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    """A certificate builder with validity starting a minute ago (tolerates small clock skew)."""
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def make_ca(paths: TlsPaths, days: int = 3650) -> None:
    """Create a self-signed CA certificate and key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("ALL edge broker CA")
    cert = (
        _builder(name, name, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(paths.ca_key, key)
    paths.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    logger.info("CA written to %s", paths.ca_cert)


def make_server_cert(paths: TlsPaths, hosts: tuple[str, ...] = DEFAULT_HOSTS, days: int = 825) -> None:
    """Create a server key and certificate for hosts, signed by the CA in paths."""
    ca_key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{paths.ca_key} is not an EC private key")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(_name(hosts[0]), ca_cert.subject, key.public_key(), days)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(paths.server_key, key)
    paths.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    logger.info("server certificate for %s written to %s", ", ".join(hosts), paths.server_cert)


def ensure_tls(directory: Path, hosts: tuple[str, ...] = DEFAULT_HOSTS, force: bool = False) -> TlsPaths:
    """Create the CA and server certificate in directory unless they already exist."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = TlsPaths.in_dir(directory)
    if force or not paths.complete():
        make_ca(paths)
        make_server_cert(paths, hosts)
    return paths
