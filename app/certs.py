"""The server's TLS setup: load or make its certificate, and build the ``ssl`` contexts.

Rules of this module:

* The private key is read by OpenSSL from its file, or made here and handed
  to OpenSSL through a private temporary file that is deleted at once; it is
  never logged, printed, or kept in a Python object longer than that.
* Every failure to set up TLS is a :class:`TlsSetupError` whose message is one
  line naming the file and the reason, never the file's contents: the CLI
  prints it and exits 1.
* Both contexts speak TLS 1.2 and 1.3 only (RFC 8996 deprecates 1.0 and 1.1)
  and refuse renegotiation (a client-driven CPU cost with no use for an echo).

Why ``cryptography`` and not ``trustme`` for ``--tls self-signed``: trustme
makes a CA and a leaf for tests ("not for production" in its own words) and
is built on cryptography anyway; one self-signed leaf for the bound host is a
dozen lines of cryptography's documented x509 builder, and we keep one
dependency instead of two.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import socket
import ssl
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from app.feed.events import TlsInfo

#: ALPN protocols the web listener offers, in our order of preference (RFC 7301).
WEB_ALPN: Final = ("h2", "http/1.1")
# A self-signed certificate is valid from a little before now (clocks drift)...
SELF_SIGNED_BACKDATE: Final = datetime.timedelta(hours=1)
# ...for this long: it lives as long as the process, which restarts long before.
SELF_SIGNED_LIFETIME: Final = datetime.timedelta(days=30)

# The server name each handshake asked for (SNI, RFC 6066 section 3), by SSL
# object: OpenSSL reports it only to a callback, during the handshake.  Weak, so
# a connection that ends mid-handshake leaves nothing behind.
_sni: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


class TlsSetupError(OSError):
    """TLS cannot be set up (a missing, unreadable or mismatched key or certificate)."""


@dataclass(frozen=True, slots=True)
class ServerTls:
    """The contexts of one server, and the certificate's fingerprint."""

    #: For the TLS echo listener: no ALPN.
    echo: ssl.SSLContext
    #: For the HTTPS listener: ALPN ``h2`` and ``http/1.1``.
    web: ssl.SSLContext
    #: SHA-256 of the leaf certificate (DER), ``AB:CD:...``, as browsers and openssl show it.
    fingerprint: str
    #: True when the certificate was made at start (``--tls self-signed``).
    self_signed: bool


def server_tls(cert: str, key: str, host: str) -> ServerTls:
    """Contexts for *cert* and *key* (PEM files), or for a fresh self-signed one when both are "".

    Raises:
        TlsSetupError: a file is missing or unreadable, not PEM, encrypted, or
            the key does not match the certificate.
    """
    if cert:
        echo = _context(cert, key, alpn=())
        web = _context(cert, key, alpn=WEB_ALPN)
        der = ssl.PEM_cert_to_DER_cert(_first_pem_cert(cert))
        return ServerTls(echo, web, _fingerprint(der), self_signed=False)
    with tempfile.TemporaryDirectory(prefix="trio-echo-tls-") as tmp:
        cert_path, key_path = write_self_signed(Path(tmp), host)
        made = server_tls(str(cert_path), str(key_path), host)
    return dataclasses.replace(made, self_signed=True)


def write_self_signed(folder: Path, host: str) -> tuple[Path, Path]:
    """Make a self-signed certificate for *host* (:func:`make_self_signed`) and write it to
    *folder*: ``(cert.pem, key.pem)``, the key readable by this user only.

    ``serve --workers N`` shares one such certificate between its workers this way.
    """
    cert_pem, key_pem = make_self_signed(host)
    cert_path = folder / "cert.pem"
    key_path = folder / "key.pem"
    cert_path.write_bytes(cert_pem)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    return cert_path, key_path


def make_self_signed(host: str) -> tuple[bytes, bytes]:
    """A self-signed EC P-256 certificate for *host*, and its key: ``(cert_pem, key_pem)``.

    Its subjectAltName names *host* (an IP address or DNS name) and, so that
    ``localhost`` URLs work too, the loopback names; an unspecified *host*
    (``0.0.0.0``, ``::``) adds this machine's name.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    hosts = [host, "localhost", "127.0.0.1", "::1"]
    if host in ("0.0.0.0", "::", ""):
        hosts.append(socket.gethostname())
    for name in dict.fromkeys(h for h in hosts if h not in ("0.0.0.0", "::", "")):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host or "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - SELF_SIGNED_BACKDATE)
        .not_valid_after(now + SELF_SIGNED_LIFETIME)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def tls_info(obj: ssl.SSLObject | ssl.SSLSocket | Any) -> TlsInfo:
    """What a finished handshake agreed on: version, cipher suite, SNI and ALPN.

    *obj* is an ``ssl.SSLSocket``, ``ssl.SSLObject`` or ``trio.SSLStream``.
    """
    cipher = obj.cipher()
    inner = getattr(obj, "_ssl_object", obj)  # trio.SSLStream keeps its SSLObject here
    return TlsInfo(
        version=obj.version() or "",
        cipher=cipher[0] if cipher else "",
        sni=_sni.pop(inner, None),
        alpn=obj.selected_alpn_protocol(),
    )


def _remember_sni(ssl_obj: Any, server_name: str | None, ctx: ssl.SSLContext) -> None:
    if server_name is not None:
        _sni[ssl_obj] = server_name


def _context(cert: str, key: str, *, alpn: tuple[str, ...]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    ctx.sni_callback = _remember_sni
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    for what, path in (("certificate", cert), ("key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise TlsSetupError(f"tls: cannot read the {what} {path}: {exc.strerror}") from None
    try:
        # A password callback that refuses: OpenSSL would otherwise prompt on the terminal.
        ctx.load_cert_chain(cert, key, password=_no_password)
    except _EncryptedKey:
        raise TlsSetupError(f"tls: the key {key} is encrypted; give an unencrypted key") from None
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
        raise TlsSetupError(
            f"tls: cannot use the certificate {cert} with the key {key}: {_plain(reason)}"
        ) from None
    return ctx


class _EncryptedKey(Exception):
    pass


def _no_password() -> str:
    raise _EncryptedKey


def _plain(reason: str) -> str:
    """OpenSSL's reason code as words: ``KEY_VALUES_MISMATCH`` -> ``key values mismatch``."""
    return str(reason).replace("_", " ").lower()


def _first_pem_cert(path: str) -> str:
    text = Path(path).read_text(errors="replace")
    begin = text.find("-----BEGIN CERTIFICATE-----")
    end = text.find("-----END CERTIFICATE-----", begin)
    if begin < 0 or end < 0:
        raise TlsSetupError(f"tls: no PEM certificate in {path}")
    return text[begin : end + len("-----END CERTIFICATE-----")] + "\n"


def _fingerprint(der: bytes) -> str:
    import hashlib

    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
