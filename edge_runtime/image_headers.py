"""An encoded image's width and height from its header alone, before any pixel is decoded.

A 876-byte PNG can declare 30000 x 30000 pixels (2.7 GB once decoded); a 335-byte JPEG the same.
``image_size`` reads the size the way the decoder will, from the first bytes of the formats
``images.decode_image`` accepts: PNG (IHDR), JPEG (the first SOF marker), BMP (the DIB header),
TIFF and BigTIFF (the first IFD's ImageWidth and ImageLength: OpenCV decodes the first page),
WebP (VP8, VP8L, VP8X), GIF (the logical screen) and PNM (P1-P6 text header). Anything else, or a
header cut short, gives None: the caller refuses it without decoding.
"""

from __future__ import annotations

import struct

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length field (TEM, RSTn)
TIFF_WIDTH, TIFF_HEIGHT = 256, 257
PNM_MAGICS = tuple(f"P{i}".encode() for i in range(1, 7))


def _png(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _jpeg(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in JPEG_SOF:
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return width, height
        pos += 2 + length
    return None


def _bmp(data: bytes) -> tuple[int, int] | None:
    if len(data) < 26:
        return None
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # a negative height is a top-down bitmap


def _tiff(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    (version,) = struct.unpack(order + "H", data[2:4])
    big = version == 43
    head, entry, count_fmt, offset_fmt = (16, 20, "Q", "Q") if big else (8, 12, "H", "I")
    if len(data) < head:
        return None
    (ifd,) = struct.unpack(order + offset_fmt, data[8:16] if big else data[4:8])
    count_size = struct.calcsize(count_fmt)
    if ifd + count_size > len(data):
        return None
    (count,) = struct.unpack(order + count_fmt, data[ifd:ifd + count_size])
    found: dict[int, int] = {}
    for i in range(min(count, 4096)):
        at = ifd + count_size + i * entry
        if at + entry > len(data):
            return None
        tag, kind = struct.unpack(order + "HH", data[at:at + 4])
        if tag in (TIFF_WIDTH, TIFF_HEIGHT) and kind in (3, 4, 16):  # SHORT, LONG, LONG8
            value = data[at + (12 if big else 8):at + entry]
            fmt = {3: "H", 4: "I", 16: "Q"}[kind]
            (found[tag],) = struct.unpack(order + fmt, value[:struct.calcsize(fmt)])
    if TIFF_WIDTH in found and TIFF_HEIGHT in found:
        return found[TIFF_WIDTH], found[TIFF_HEIGHT]
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _pnm(data: bytes) -> tuple[int, int] | None:
    tokens: list[bytes] = []
    for line in data[:4096].split(b"\n"):
        tokens += line.split(b"#", 1)[0].split()
        if len(tokens) >= 3:
            break
    if len(tokens) < 3 or not tokens[1].isdigit() or not tokens[2].isdigit():
        return None
    return int(tokens[1]), int(tokens[2])


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` an encoded image declares, or None when its header is not one of the
    formats above (or is cut short)."""
    try:
        if data.startswith(PNG_MAGIC):
            return _png(data)
        if data.startswith(b"\xff\xd8"):
            return _jpeg(data)
        if data.startswith(b"BM"):
            return _bmp(data)
        if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
            return _tiff(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
        if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
            return struct.unpack("<HH", data[6:10])
        if data[:2] in PNM_MAGICS:
            return _pnm(data)
    except struct.error:  # a header cut inside a field
        return None
    return None
