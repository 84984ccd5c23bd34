"""Is a file's content an image MindSpore's C++ decoder will accept? Checked without decoding.

MindSpore's ``Decode`` / ``RandomCropDecodeResize`` abort the whole dataset
pipeline on a file they cannot read (and leave ``abnormal_image.jpg`` in the
working directory), so the native loader checks each file's bytes first.
"""
from __future__ import annotations

from ..errors import DataError

_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"


def check_encoded(data: bytes, path: str) -> bytes:
    """The bytes of an image the C++ decoder accepts, or :class:`DataError`.

    JPEG and PNG are checked structurally without decoding (MindSpore's
    decoder aborts the whole pipeline on a file it cannot read): JPEG marker
    segments up to the scan and the end-of-image marker (truncation), PNG's
    IEND chunk. Other formats are decoded with Pillow and handed over as BMP.
    """
    if data.startswith(_JPEG):
        problem = _jpeg_problem(data)
        if problem:
            raise DataError(f"cannot read image {path}: {problem}")
        return data
    if data.startswith(_PNG):
        if b"IEND" not in data[-64:]:
            raise DataError(f"cannot read image {path}: truncated PNG (no IEND chunk)")
        return data
    import io

    from PIL import Image, UnidentifiedImageError

    if not data:
        raise DataError(f"cannot read image {path}: empty file")
    try:
        with Image.open(io.BytesIO(data)) as im:
            image = im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        reason = str(exc).replace(repr(io.BytesIO), "").split(" <_io")[0]
        raise DataError(f"cannot read image {path}: {reason}") from None
    buf = io.BytesIO()
    image.save(buf, format="BMP")
    return buf.getvalue()


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_problem(data: bytes) -> str | None:
    """Why libjpeg would refuse ``data`` (headers up to SOS, EOI present), or None."""
    if b"\xff\xd9" not in data[-4096:]:
        return "truncated JPEG (no end-of-image marker)"
    i, n, frame = 2, len(data), False
    while i + 4 <= n:
        if data[i] != 0xFF:
            return f"corrupt JPEG (no marker at byte {i})"
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker == 0xD9:
            return "corrupt JPEG (ends before its image data)"
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if length < 2 or i + 2 + length > n:
            return f"corrupt JPEG (segment at byte {i} overruns the file)"
        if marker in _SOF:
            if length < 8 or int.from_bytes(data[i + 5:i + 7], "big") == 0 \
                    or int.from_bytes(data[i + 7:i + 9], "big") == 0:
                return "corrupt JPEG (zero-sized frame)"
            frame = True
        if marker == 0xDA:
            return None if frame else "corrupt JPEG (image data before a frame header)"
        i += 2 + length
    return "corrupt JPEG (no image data)"
