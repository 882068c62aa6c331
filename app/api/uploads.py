"""Parsing of multipart fields shared by the image routes: bounded reads, content types, bbox,
ids and metadata. Raises domain errors; app/api/errors.py turns them into 4xx."""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

from fastapi import UploadFile

from app.config import LimitSettings
from app.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from app.index.filters import KEY_PATTERN, MetadataFilter, parse_filter

ACCEPTED_CONTENT_TYPES = frozenset(
    {
        "image/jpeg",
        "image/jpg",
        "image/pjpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "image/bmp",
        "image/x-ms-bmp",
        "image/tiff",
        "application/octet-stream",
    }
)
ACCEPTED_TEXT = "JPEG, PNG, WebP, GIF, BMP or TIFF (image/* or application/octet-stream)"


async def read_upload(upload: UploadFile, limits: LimitSettings, label: str | None = None) -> bytes:
    """Read at most max_upload_bytes (+1 to detect overflow) of one uploaded file; errors name
    it by `label` (default: its file name)."""
    name = label or upload.filename or "file"
    ctype = (upload.content_type or "application/octet-stream").split(";")[0].strip().lower()
    if ctype not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"{name}: content type {ctype!r} is not accepted; send {ACCEPTED_TEXT}"
        )
    data = await upload.read(limits.max_upload_bytes + 1)
    if len(data) > limits.max_upload_bytes:
        raise PayloadTooLarge(
            f"{name}: larger than the {limits.max_upload_bytes} byte upload limit"
        )
    if not data:
        raise InvalidRequest(f"{name}: the uploaded file is empty; send an image")
    return data


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """'x1,y1,x2,y2' in pixels of the uploaded image -> tuple, or None when absent."""
    if text is None or not text.strip():
        return None
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InvalidRequest(
            f"bbox must be four finite numbers 'x1,y1,x2,y2' in image pixels; got {text[:80]!r}"
        )
    x1, y1, x2, y2 = values
    if x1 < 0 or y1 < 0 or x2 <= x1 or y2 <= y1:
        raise InvalidRequest(f"bbox must satisfy 0 <= x1 < x2 and 0 <= y1 < y2; got {text[:80]!r}")
    return (x1, y1, x2, y2)


def check_item_id(item_id: str, limits: LimitSettings) -> str:
    """Ids are opaque strings: non-empty, bounded, no control characters. They never become
    file paths (the store keys rows by them in sqlite only)."""
    if not item_id:
        raise InvalidRequest("id must be a non-empty string")
    if len(item_id) > limits.max_id_length:
        raise InvalidRequest(f"id longer than {limits.max_id_length} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in item_id):
        raise InvalidRequest("id contains control characters; use printable text")
    return item_id


def check_metadata(
    value: Any, limits: LimitSettings, where: str = "metadata"
) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where} must be a JSON object (or null); got {type(value).__name__}")
    for key in value:
        # A key no filter can name would be stored but never be searchable by.
        if not KEY_PATTERN.match(key):
            raise InvalidRequest(
                f"{where}: key {key[:80]!r} is not accepted; metadata keys are what filters "
                f"match on and must match {KEY_PATTERN.pattern} (letters, digits, '_' and '-', "
                "1 to 64 characters)"
            )
    size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if size > limits.max_metadata_bytes:
        raise InvalidRequest(
            f"{where} is {size} bytes of JSON; at most {limits.max_metadata_bytes} are accepted"
        )
    return value


def parse_list_field(values: list[str] | None, name: str, count: int) -> list[str] | None:
    """A per-file form field sent either repeated (one per file) or once as a JSON array."""
    if not values:
        return None
    if len(values) == 1 and values[0].lstrip().startswith("["):
        try:
            parsed = json.loads(values[0])
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{name} is not valid JSON: {exc.msg}") from exc
        if not isinstance(parsed, list):
            raise InvalidRequest(f"{name} must be a JSON array with one entry per file")
        values = [v if isinstance(v, str) else json.dumps(v) for v in parsed]
    if len(values) != count:
        raise InvalidRequest(
            f"{name} has {len(values)} entries for {count} files; send one per file"
        )
    return values


def parse_metadata_entries(
    values: list[str] | None,
    count: int,
    limits: LimitSettings,
    labels: list[str] | None = None,
) -> list[dict[str, Any] | None]:
    """One metadata object (or None) per file; errors say which entry and, with `labels`,
    which file it belongs to."""
    raw = parse_list_field(values, "metadata", count)
    if raw is None:
        return [None] * count
    out: list[dict[str, Any] | None] = []
    for i, text in enumerate(raw):
        where = f"metadata[{i}]" + (f" (for {labels[i]})" if labels is not None else "")
        if len(text.encode("utf-8")) > limits.max_metadata_bytes:
            raise InvalidRequest(f"{where} is over the {limits.max_metadata_bytes} byte limit")
        try:
            value = json.loads(text) if text.strip() else None
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{where} is not valid JSON: {exc.msg}") from exc
        out.append(check_metadata(value, limits, where))
    return out


def parse_filter_field(text: str | None) -> MetadataFilter | None:
    """The multipart `filter` field: a JSON object (see app/index/filters.py); empty = none."""
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"filter is not valid JSON ({exc.msg}); send a JSON object such as "
            '{"album": "trip", "year": {"in": [2023, 2024]}}'
        ) from exc
    return parse_filter(value)


MAX_FILENAME_LENGTH = 255


def upload_filename(upload: UploadFile) -> str | None:
    """The client's file name without any directory part, control characters removed and at
    most 255 characters; None when it sent none. Kept as text in metadata, never a path."""
    raw = upload.filename or ""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(ch for ch in base if unicodedata.category(ch) not in ("Cc", "Cs"))
    return clean[:MAX_FILENAME_LENGTH] or None


def with_filename(
    metadata: dict[str, Any] | None, filename: str | None
) -> dict[str, Any] | None:
    """Metadata with `filename` set from the upload unless the client set its own."""
    if filename is None or (metadata is not None and "filename" in metadata):
        return metadata
    return {**(metadata or {}), "filename": filename}


def file_labels(names: list[str | None]) -> list[str]:
    """How errors name each upload of one request: its file name, and its place when there
    are several ('b.jpg' (file 2 of 3)); the place alone when it has no name."""
    n = len(names)
    if n == 1:
        return [repr(names[0]) if names[0] else "the file"]
    return [
        f"{name!r} (file {i} of {n})" if name else f"file {i} of {n}"
        for i, name in enumerate(names, start=1)
    ]


# /index embeds every file before it writes any: one bad file stores nothing.
NOTHING_STORED = (
    "nothing from this request was stored (an /index request stores all of its files or "
    "none): fix or leave out that file and send the request again"
)
