"""Self-signed TLS certificates: the answer of last resort to ``obtain_certificate``.

Every domain gets a certificate even when no issuer (ACME, a company CA) answered for it, so
a domain route always has its HTTPS server (browsers warn, as the seed says for development).
Certificates are cached in ``$PROJECTDEPLOYER_HOME/{project}/{env}/secrets/certs/`` as
``{domain}.crt`` and ``{domain}.key`` (0600, directories 0700) and made again when missing,
expiring within 30 days, not for the domain, or not matching their key.

``cryptography`` is imported on first use, never when the CLI starts.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..core import paths
from ..core.errors import ProjectDeployerError
from ..core.fsutil import write_private
from ..core.routing import RoutingError, check_domain
from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..core.provider import Server

#: A certificate is valid this long.
VALIDITY = dt.timedelta(days=365)
#: ... and made again when it expires sooner than this.
RENEW_BEFORE = dt.timedelta(days=30)


class CertificateError(ProjectDeployerError):
    """A certificate cannot be made for this name."""


def certificate_files(project: str, env: str, domain: str) -> tuple[Path, Path]:
    """``(crt, key)`` paths of ``domain``'s cached certificate (``*`` becomes ``_`` in file names)."""
    name = _domain(domain).replace("*", "_")
    base = paths.env_dir(project, env, "secrets") / "certs"
    return base / f"{name}.crt", base / f"{name}.key"


def _domain(domain: str) -> str:
    try:
        return check_domain(domain)
    except RoutingError as exc:
        raise CertificateError(str(exc)) from None


def _usable(cert_pem: bytes, key_pem: bytes, domain: str, now: dt.datetime) -> bool:
    """Parses, names exactly ``domain``, matches its key and is valid for 30 more days."""
    from cryptography import x509  # noqa: PLC0415 - deferred: cryptography (start-up: ~80 ms)
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - deferred: cryptography (start-up: ~80 ms)

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except (ValueError, TypeError, x509.ExtensionNotFound):
        return False
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    same_key = cert.public_key().public_bytes(serialization.Encoding.DER, public) == key.public_key().public_bytes(serialization.Encoding.DER, public)
    return same_key and [n.lower() for n in names] == [domain] and cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > RENEW_BEFORE


def make_self_signed(domain: str, *, now: dt.datetime | None = None) -> tuple[str, str]:
    """A new self-signed certificate for ``domain``: ``(cert_pem, key_pem)``, EC P-256, 1 year."""
    from cryptography import x509  # noqa: PLC0415 - deferred: cryptography (start-up: ~80 ms)
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415 - deferred: cryptography (start-up: ~80 ms)
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415 - deferred: cryptography (start-up: ~80 ms)
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415 - deferred: cryptography (start-up: ~80 ms)

    domain = _domain(domain)
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    # A common name is at most 64 characters; the SAN is what clients check anyway.
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, domain if len(domain) <= 64 else domain[:64].rstrip("."))] + [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ProjectDeployer self-signed")]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # A little in the past: a client whose clock is slightly behind still accepts it.
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return cert_pem, key_pem


def self_signed_certificate(project: str, env: str, domain: str, *, now: dt.datetime | None = None) -> tuple[str, str]:
    """``domain``'s cached self-signed certificate, made (again) when it is not usable."""
    domain = _domain(domain)
    now = now or dt.datetime.now(dt.UTC)
    crt, key = certificate_files(project, env, domain)
    try:
        cert_pem, key_pem = crt.read_bytes(), key.read_bytes()
    except FileNotFoundError:
        pass
    else:
        if _usable(cert_pem, key_pem, domain, now):
            return cert_pem.decode(), key_pem.decode()
    cert_text, key_text = make_self_signed(domain, now=now)
    # Every directory from the environment's secrets down is private, not just the file's own.
    secrets_dir = paths.env_dir(project, env, "secrets")
    for directory in (secrets_dir, crt.parent):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
    # A crash between the two writes leaves a pair that does not match (or a missing file):
    # detected on the next call, which makes both again.
    write_private(key, key_text)
    write_private(crt, cert_text)
    return cert_text, key_text


@hookimpl(trylast=True)
def obtain_certificate(project: str, env: str, domain: str, servers: Sequence[Server]) -> tuple[str, str] | None:
    """Any domain no other issuer answered for: a cached self-signed certificate."""
    return self_signed_certificate(project, env, domain)


__all__ = ["CertificateError", "certificate_files", "make_self_signed", "obtain_certificate", "self_signed_certificate"]
