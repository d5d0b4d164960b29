"""Page sizes and opaque page tokens, as the proto's pagination section says.

A token carries the key of the last item returned and a fingerprint of the
request it belongs to (all fields but ``page_size`` and ``page_token``), so a
token replayed with other filters or order is rejected instead of silently
returning a wrong page.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias, TypeVar

from . import errors

if TYPE_CHECKING:  # the CLI reads MAX_PAGE_SIZE from here without loading the generated messages
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    PagedRequest: TypeAlias = pb.ListExecutionsRequest | pb.ListAgentInstancesRequest | pb.ListSecretsRequest
    """The requests with ``page_size`` and ``page_token``."""

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "cut", "decode_token", "encode_token", "page_size"]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_TOKEN_VERSION = 1
_MAX_TOKEN_CHARS = 1024

T = TypeVar("T")


def page_size(requested: int) -> int:
    if requested < 0:
        raise errors.invalid_argument("page_size", f"must not be negative (got {requested})")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _fingerprint(request: PagedRequest) -> str:
    scope = dataclasses.replace(request, page_size=0, page_token="")
    digest = hashlib.sha256(type(request).__name__.encode() + bytes(scope)).hexdigest()
    return digest[:16]


def encode_token(request: PagedRequest, last_key: str) -> str:
    payload = json.dumps({"v": _TOKEN_VERSION, "f": _fingerprint(request), "k": last_key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_token(request: PagedRequest) -> str | None:
    """The key after which the requested page starts; None for the first page."""
    token = request.page_token
    if not token:
        return None
    if len(token) > _MAX_TOKEN_CHARS:  # ours are far shorter; a long one is not worth parsing
        raise errors.invalid_argument("page_token", "malformed page token")
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        version, fingerprint, key = payload["v"], payload["f"], payload["k"]
    except (ValueError, TypeError, KeyError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise errors.invalid_argument("page_token", "malformed page token") from None
    if version != _TOKEN_VERSION or not isinstance(key, str):
        raise errors.invalid_argument("page_token", "malformed page token")
    if fingerprint != _fingerprint(request):
        raise errors.invalid_argument("page_token", "the page token was issued for a request with other fields")
    return key


def cut(request: PagedRequest, fetched: Sequence[T], size: int, key: Callable[[T], str]) -> tuple[list[T], str]:
    """The page and its ``next_page_token``, from items read one past the page.

    :param fetched: the items after the token's key, in order, up to ``size + 1``
        of them: reading one more than the page holds tells whether another page
        follows without counting the rest.
    :param key: the item's key in the order (its id or name), carried by the token.
    """
    page = list(fetched[:size])
    token = encode_token(request, key(page[-1])) if len(fetched) > size else ""
    return page, token
