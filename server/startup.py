"""Everything ``stigmer server`` checks before it serves: socket, TLS files, token.

Each problem is a ``StartupError`` whose message is one line naming what is
wrong and, where there is one, the fix; the CLI prints it and exits 1. All
checks run before the server accepts a single connection.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import ssl
import stat
from pathlib import Path

from stigmer_backend.backends.wire import is_header_safe

from .authorization import Principal, TokensFileError, parse_tokens_file

__all__ = [
    "MIN_TOKEN_LENGTH",
    "StartupError",
    "is_loopback",
    "listening_socket",
    "read_server_token",
    "read_server_tokens",
    "server_ssl_context",
]

MIN_TOKEN_LENGTH = 16
"""Shorter tokens are refused: they could be guessed (``openssl rand -hex 32`` makes a good one)."""


class StartupError(Exception):
    """The server cannot start; the message is one line for the operator."""


def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int] | tuple[str, int, int, int]]:
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as error:
        raise StartupError(f"cannot listen on {host}: unknown host ({error.strerror})") from None
    family, _, _, _, address = infos[0]
    if not isinstance(address[0], str):  # (int, bytes): an IPv6 build without address support
        raise StartupError(f"cannot listen on {host}: it resolves to no IP address")
    return family, address


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine: every address it resolves to is a loopback address.

    Unresolvable names are not loopback (the caller reports them when binding).
    """
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return bool(infos) and all(
        isinstance(info[4][0], str) and ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket on the first address ``host`` resolves to.

    :param host: an address or name; ``0.0.0.0`` / ``::`` for every interface.
    :param port: 0 lets the system choose a free port (read it from ``getsockname``).

    Made here rather than by asyncio so the server knows its one real address
    (``localhost`` would otherwise bind two sockets, with two ports when port
    is 0) and so a busy port is reported before anything else starts.
    """
    family, address = _resolve(host, port)
    shown = f"[{address[0]}]:{port}" if family == socket.AF_INET6 else f"{address[0]}:{port}"
    # IPPROTO_TCP said explicitly: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # sockets whose proto says TCP, and with it on every small gRPC response waits ~40 ms for
    # the peer's delayed ACK. socket.create_server would leave proto 0.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart reuses the port at once
        if family == socket.AF_INET6:
            # "::" serves IPv4 too where the system can; a specific IPv6 address only itself.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if address[0] == "::" else 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise StartupError(f"cannot listen on {shown}: the port is already in use") from None
        if error.errno == errno.EACCES:
            raise StartupError(f"cannot listen on {shown}: permission denied (ports below 1024 need root)") from None
        raise StartupError(f"cannot listen on {shown}: {(error.strerror or str(error)).lower()}") from None
    return sock


def server_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """TLS for the server (TLS 1.2+, HTTP/2 by ALPN) from PEM certificate chain and key files.

    :param cert_file: the certificate, followed by any intermediates.
    :param key_file: its unencrypted private key.

    Each file is parsed on its own first, so the message says which one is
    wrong and how; OpenSSL's own errors ("PEM lib") name neither.
    """
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    for what, path in (("certificate", cert_file), ("key", key_file)):
        _check_readable(f"TLS {what} file", Path(path))
    try:
        x509.load_pem_x509_certificates(Path(cert_file).read_bytes())
    except ValueError:
        raise StartupError(f"TLS certificate file {cert_file} holds no PEM certificate") from None
    try:
        serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
    except TypeError:
        raise StartupError(f"TLS key file {key_file} is encrypted; give the server an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise StartupError(f"TLS key file {key_file} holds no usable PEM private key") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as error:
        problem = "the key does not match the certificate" if error.reason == "KEY_VALUES_MISMATCH" else error
        raise StartupError(f"cannot use TLS certificate {cert_file} with key {key_file}: {problem}") from None
    return context


def _check_readable(what: str, path: Path) -> None:
    try:
        with path.open("rb") as file:
            file.read(1)
    except FileNotFoundError:
        raise StartupError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise StartupError(f"{what} {path} is a directory") from None
    except PermissionError:
        raise StartupError(f"{what} {path} is not readable (permission denied)") from None
    except OSError as error:
        raise StartupError(f"{what} {path} cannot be read: {(error.strerror or str(error)).lower()}") from None


def _read_private_file(what: str, token_file: str) -> str:
    path = Path(token_file)
    _check_readable(what, path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise StartupError(f"{what} {path} is accessible by other users (mode {mode:04o}); run: chmod 600 {path}")
    try:
        return path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise StartupError(f"{what} {path}: tokens must be printable ASCII") from None


def read_server_tokens(tokens_file: str) -> dict[str, Principal]:
    """Tokens bound to roles and names, from a 0600 file of lines ``ROLE NAME TOKEN`` (see ``authorization``)."""
    text = _read_private_file("tokens file", tokens_file)
    try:
        return parse_tokens_file(text, f"tokens file {tokens_file}", is_header_safe, MIN_TOKEN_LENGTH)
    except TokensFileError as error:
        raise StartupError(str(error)) from None


def read_server_token(token_file: str | None, env_value: str | None, env_name: str) -> str | None:
    """The bearer token the server requires, from a file or the environment; ``None`` if neither.

    :param token_file: path of a file holding the token (surrounding whitespace ignored).
    :param env_value: the token from the environment variable, if set.
    :param env_name: that variable's name, for messages.

    A token file readable or writable by anyone but its owner is refused, as
    ssh refuses such a private key: the token is as good as the data behind
    the server. Tokens must be at least ``MIN_TOKEN_LENGTH`` printable ASCII
    characters without spaces, so they fit an HTTP header unchanged.
    """
    if token_file is not None and env_value is not None:
        raise StartupError(f"give the token either with --token-file or with {env_name}, not both")
    if token_file is not None:
        path = Path(token_file)
        _check_readable("token file", path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise StartupError(
                f"token file {path} is accessible by other users (mode {mode:04o}); run: chmod 600 {path}"
            )
        try:
            token = path.read_text(encoding="ascii").strip()
        except UnicodeDecodeError:
            raise StartupError(f"token file {path}: the token must be printable ASCII") from None
        source = f"token file {path}"
    elif env_value is not None:
        token, source = env_value.strip(), env_name
    else:
        return None
    if not token:
        raise StartupError(f"{source} is empty")
    if not is_header_safe(token):
        raise StartupError(f"{source}: the token must be printable ASCII without spaces")
    if len(token) < MIN_TOKEN_LENGTH:
        raise StartupError(
            f"{source}: the token is too short ({len(token)} characters; use at least {MIN_TOKEN_LENGTH}, "
            "for example the output of `openssl rand -hex 32`)"
        )
    return token
