"""How a ``BackendService`` is reached over gRPC, the same for the server, its clients and the suite.

- endpoints are ``HOST:PORT``, an IPv6 address bracketed (``[::1]:7780``) as in
  URLs, so that the last colon always separates the port;
- a bearer token is printable ASCII without spaces, sent as one header
  ``authorization: Bearer <token>``;
- a client's TLS trusts the system store or one CA file, TLS 1.2 or newer,
  HTTP/2 by ALPN.

``stigmer server`` (``server/``), ``CloudBackend`` (``backends/cloud``) and the
conformance suite's targets (``conformance/targets.py``) all use this module,
so what one writes the others read.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from grpclib import GRPCError
from grpclib.const import Status

__all__ = ["authorization", "client_ssl_context", "format_endpoint", "is_header_safe", "parse_endpoint"]


def parse_endpoint(text: str) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT``; ``ValueError`` with a one-line reason if malformed.

    :param text: ``example.com:443``, ``127.0.0.1:7780`` or ``[::1]:7780``; no scheme, no path.
    """
    if "://" in text or "/" in text:
        raise ValueError(f"{text!r} is not HOST:PORT (no scheme or path: write example.com:443)")
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not HOST:PORT (the port is missing)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} in brackets is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, like [::1]:7780")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def format_endpoint(host: str, port: int) -> str:
    """The inverse of ``parse_endpoint``: brackets an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_header_safe(token: str) -> bool:
    """Whether ``token`` can travel unchanged as ``authorization: Bearer <token>``: printable ASCII, no spaces."""
    return bool(token) and all(33 <= ord(char) <= 126 for char in token)


def authorization(token: str) -> str:
    """The ``authorization`` header's value that carries ``token``."""
    return f"Bearer {token}"


def client_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """TLS for a client: the system trust store, or only ``ca_file`` (PEM) if given; HTTP/2 by ALPN.

    Raises ``GRPCError(UNAVAILABLE)`` naming the file if it cannot be read or holds no certificate.
    """
    if ca_file and not Path(ca_file).is_file():
        raise GRPCError(Status.UNAVAILABLE, f"CA file {ca_file} not found")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or error
        raise GRPCError(Status.UNAVAILABLE, f"CA file {ca_file} is not a PEM certificate ({reason})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    return context
