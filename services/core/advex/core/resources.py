"""Resource names and page tokens shared by the storage and gateway APIs.

Ids sort by creation time, so "newest first" paging is a keyset query on the
id alone and stays stable while rows are added.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time

from advex.core.errors import InvalidArgument, NotFound

_ID_LENGTH = 20  # 12 hex digits of milliseconds + 8 random


_last_millis = 0
_id_lock = threading.Lock()


def new_id() -> str:
    """Time-ordered: ids made later in this process sort after earlier ones,
    also within one millisecond (the clock part then steps ahead by 1 ms)."""
    global _last_millis
    with _id_lock:
        _last_millis = max(int(time.time() * 1000), _last_millis + 1)
        millis = _last_millis
    return f"{millis:012x}{secrets.token_hex(4)}"


def resource_name(collection: str, resource_id: str) -> str:
    return f"{collection}/{resource_id}"


def parse_name(collection: str, name: str) -> str:
    """The id in "{collection}/{id}"; NotFound names the expected form."""
    prefix = f"{collection}/"
    resource_id = name[len(prefix) :] if name.startswith(prefix) else ""
    if len(resource_id) != _ID_LENGTH or not all(c in "0123456789abcdef" for c in resource_id):
        if not name:
            raise InvalidArgument(f"a name is required, of the form '{collection}/<id>'")
        raise NotFound(f"there is no {collection[:-1]} named '{name}' (names look like '{collection}/<id>')")
    return resource_id


def encode_page_token(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode()


def decode_page_token(token: str) -> str | None:
    """The id the previous page ended at, or None for the first page."""
    if not token:
        return None
    try:
        last_id = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError):
        last_id = ""
    if len(last_id) != _ID_LENGTH:
        raise InvalidArgument("page_token is not one this server issued; pass next_page_token as returned")
    return last_id


def page_size(requested: int, default: int = 50, maximum: int = 1000) -> int:
    if requested < 0:
        raise InvalidArgument(f"page_size must be >= 0, got {requested}")
    return min(requested or default, maximum)
