"""``HOST:PORT`` endpoints, written and read the same way by the server and its clients.

An IPv6 address is bracketed (``[::1]:7780``), as in URLs, so that the last
colon always separates the port.
"""

from __future__ import annotations

import ipaddress

__all__ = ["format_endpoint", "parse_endpoint"]


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
