"""Edited copies of real photos, as a user's collection holds them: cropped, resized and
re-encoded versions of one picture. Any sensible copy verdict calls these a match of their
source (the edits are milder than the ones the near-duplicate studies survive)."""

from __future__ import annotations

import io

from PIL import Image, ImageOps


def edited_copy(
    data: bytes, crop: float = 0.9, scale: float = 0.7, quality: int = 75, mirror: bool = False
) -> bytes:
    """Centre crop keeping `crop` of each side, resize by `scale`, optional mirror, JPEG."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = image.size
    dx, dy = int(w * (1 - crop) / 2), int(h * (1 - crop) / 2)
    image = image.crop((dx, dy, w - dx, h - dy))
    image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))
    if mirror:
        image = ImageOps.mirror(image)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()
