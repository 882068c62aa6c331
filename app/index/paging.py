"""Opaque cursors of `VectorStore.list_items`, the same for every backend, and the id range
an `id_prefix` selects (`prefix_upper_bound`), so every backend pages and filters alike.

A cursor encodes the last id of the previous page (keyset paging): "i1." + the id's UTF-8
bytes in unpadded base64url. Listing resumes strictly after that id, so a page never skips or
repeats an id that stayed live while the client paged, whatever was added or deleted meanwhile.
"""

from __future__ import annotations

import base64
import binascii

from app.errors import InvalidRequest

_PREFIX = "i1."


def encode_cursor(last_id: str) -> str:
    raw = base64.urlsafe_b64encode(last_id.encode("utf-8")).decode("ascii").rstrip("=")
    return _PREFIX + raw


def decode_cursor(cursor: str) -> str:
    """The id a cursor encodes; InvalidRequest (422) when it is not one of ours."""
    bad = InvalidRequest(
        "cursor is malformed: pass the next_cursor of the previous page unchanged"
    )
    if not isinstance(cursor, str) or not cursor.startswith(_PREFIX) or len(cursor) > 4096:
        raise bad
    raw = cursor[len(_PREFIX) :]
    try:
        decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise bad from exc
    if not decoded or encode_cursor(decoded) != cursor:
        raise bad
    return decoded


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string above every string starting with `prefix` in code-point order, or
    None when the last character cannot be incremented into an encodable one."""
    nxt = ord(prefix[-1]) + 1
    if nxt > 0x10FFFF or 0xD800 <= nxt <= 0xDFFF:
        return None
    return prefix[:-1] + chr(nxt)
