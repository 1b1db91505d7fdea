"""
TLS material for the ``wss://`` rows of the end-to-end benchmark, made with ``trustme``.

The runner calls :func:`make_certificates` once, into a temporary directory: a throwaway CA and a
server certificate for ``127.0.0.1`` and ``localhost`` signed by it. The server loads the certificate
chain and key (:func:`server_context`); every client trusts only that CA (:func:`client_context`), and
the Backpack pipeline, which builds its own default context, finds it through ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

__all__ = ["TlsFiles", "client_context", "make_certificates", "server_context"]


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files: the CA certificate, and the server's key plus certificate chain."""

    ca: str
    server: str


def make_certificates(directory: str) -> TlsFiles:
    """Write a fresh CA and a ``127.0.0.1``/``localhost`` server certificate into ``directory``."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(os.path.join(directory, "ca.pem"), os.path.join(directory, "server.pem"))
    ca.cert_pem.write_to_path(files.ca)
    cert.private_key_and_cert_chain_pem.write_to_path(files.server)
    return files


def server_context(server_pem: str) -> ssl.SSLContext:
    """The server side: Python's defaults (TLS 1.2+, 16 KiB records) with our certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server_pem)
    return context


def client_context(ca_pem: str) -> ssl.SSLContext:
    """The client side: certificate and host name verified against our CA only."""
    return ssl.create_default_context(cafile=ca_pem)
