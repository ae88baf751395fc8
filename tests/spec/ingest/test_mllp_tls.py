"""MLLP over TLS with client certificates: the listener asks every feed for a certificate chaining to
the configured CA, and the inbox accepts a message only from the source that certificate is bound to
(issue 7: "MLLP ... over TLS with client certificates bound to the source")."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sharedcare.app import Services
from sharedcare.ingest.hl7v2 import mllp
from sharedcare.ingest.inbox import Inbox
from sharedcare.settings import Settings
from sharedcare.storage import inbox_store
from tests.spec.ingest.feeds import adt, msa, register
from tests.spec.ingest.test_mllp import Running


def _cert(name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, *, ca: bool = False,
          server: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer[0].subject if issuer else subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
               .not_valid_after(now + timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca = _cert("test feeds CA", None, ca=True)
    server = _cert("localhost", ca, server=True)
    trust = _cert("RJ7 PAS", ca)
    other = _cert("RJ7 PAS impostor", ca)
    paths = {n: tmp_path / f"{n}.pem" for n in ("ca", "server", "trust", "other")}
    _write(paths["ca"], ca[0])
    for n, (cert, key) in (("server", server), ("trust", trust), ("other", other)):
        _write(paths[n], cert, key)
    return paths


def _client(pki: dict[str, Path], who: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if who is not None:
        context.load_cert_chain(str(pki[who]), str(pki[who].with_suffix(".key")))
    return context


def _fingerprint(path: Path) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(path.read_text())).hexdigest()


def test_only_the_certificate_bound_to_a_source_may_send_as_it(store: Services, settings: Settings,
                                                                 pki: dict[str, Path]) -> None:
    register(store, cert_sha256=_fingerprint(pki["trust"]))
    tls = settings.model_copy(update={"mllp_tls_cert": pki["server"], "mllp_tls_key": pki["server"].with_suffix(".key"),
                                      "mllp_tls_client_ca": pki["ca"]})
    running = Running(Inbox(store.repo, tls), tls)

    def send(who: str | None, control: str) -> str | None:
        try:
            return asyncio.run(mllp.send("localhost", running.port, [adt("A01", control)], tls=_client(pki, who)))[0]
        except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
            return None

    try:
        accepted = send("trust", "TLS-1")
        assert accepted is not None
        assert msa(accepted)[1] == "AA"
        impostor = send("other", "TLS-2")  # a valid certificate, but not the one bound to RJ7
        assert impostor is not None
        assert msa(impostor)[1] == "AR"
        assert "certificate" in msa(impostor)[3]
        assert send(None, "TLS-3") is None  # no client certificate: the handshake itself fails
        plain = None
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            plain = asyncio.run(mllp.send("127.0.0.1", running.port, [adt("A01", "TLS-4")], timeout_s=5))[0]
        assert plain is None  # plain TCP to a TLS listener gets nothing
        assert [m.message_key for m in inbox_store.messages(store.engine)] == ["TLS-1"]
    finally:
        running.close()
