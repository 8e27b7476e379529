"""The X.509 certificates of an OpenSearch node (its CA, node and admin certificates), made and
checked with ``cryptography``. :func:`~projectdeployer.service_types.opensearch.ensure_pki`
imports this module when it runs, so loading the plugins does not import ``cryptography``
(about 80 ms)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def distinguished_name(common_name: str, project: str, env: str) -> x509.Name:
    """The distinguished name of a certificate of ``project``/``env``."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ProjectDeployer"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"{project}-{env}"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )


def key_to_pem(key: rsa.RSAPrivateKey) -> str:
    """PKCS#8 PEM, unencrypted."""
    # PKCS#8, unencrypted: the key format the Security plugin documentation asks for.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def certificate_to_pem(cert: x509.Certificate) -> str:
    """PEM."""
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def new_key() -> rsa.RSAPrivateKey:
    """A new 2048-bit RSA key (what the Security plugin takes)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_ca(project: str, env: str, service: str, now: dt.datetime, validity: dt.timedelta) -> tuple[str, str]:
    """A self-signed CA for ``project``/``env``/``service``: (certificate PEM, key PEM)."""
    key = new_key()
    name = distinguished_name(f"{project}-{env}-{service} CA", project, env)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate_to_pem(cert), key_to_pem(key)


def issue(ca_cert_pem: str, ca_key_pem: str, subject: x509.Name, now: dt.datetime, *, validity: dt.timedelta, server: bool, hostnames: Sequence[str] = ()) -> tuple[str, str]:
    """A certificate for ``subject`` signed by the CA: a node's (server + client auth, SANs) or a client's."""

    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    key = new_key()
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if server else [ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)  # type: ignore[arg-type]
    )
    if server:
        names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
        names += [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return certificate_to_pem(builder.sign(ca_key, hashes.SHA256())), key_to_pem(key)  # type: ignore[arg-type]


def valid_until(cert_pem: str) -> dt.datetime | None:
    """When the certificate expires; ``None`` when it cannot be read."""
    try:
        return x509.load_pem_x509_certificate(cert_pem.encode()).not_valid_after_utc
    except ValueError:
        return None


def usable(cert_pem: str | None, key_pem: str | None, ca_cert_pem: str, now: dt.datetime, renew_before: dt.timedelta) -> bool:
    """Both present, the key matches, the CA signed it, and it is valid for ``renew_before`` more."""

    if not cert_pem or not key_pem or not matches(cert_pem, key_pem):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_cert_pem.encode()))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return cert.not_valid_after_utc - now > renew_before


def matches(cert_pem: str, key_pem: str) -> bool:
    """The certificate's public key is the key's."""

    try:
        cert_pub = x509.load_pem_x509_certificate(cert_pem.encode()).public_key()
        key_pub = serialization.load_pem_private_key(key_pem.encode(), password=None).public_key()
    except (ValueError, TypeError):
        return False
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return cert_pub.public_bytes(der, spki) == key_pub.public_bytes(der, spki)
