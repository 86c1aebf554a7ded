"""Files built to make a decoder work or allocate far beyond their size (issue 18's findings),
made at test time: small generators, no committed blobs. Each returns the file's bytes."""

import struct
import zlib


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _dht(table_class: int, table_id: int, symbol: int) -> bytes:
    counts = bytes([1] + [0] * 15)  # one code of one bit
    return _segment(0xC4, bytes([table_class << 4 | table_id]) + counts + bytes([symbol]))


def lossless_jpeg_empty_scans(components: int = 3, scans: int = 10, side: int = 7000) -> bytes:
    """Lossless (SOF3) JPEG, side x side, whose scans carry no entropy-coded data: a decoder
    that decodes the whole frame for each scan does it `scans` times."""
    sof = struct.pack(">BHHB", 8, side, side, components) + b"".join(
        bytes([c + 1, 0x11, 0]) for c in range(components))
    sos = bytes([components]) + b"".join(bytes([c + 1, 0x00]) for c in range(components)) + bytes([1, 0, 0])
    return (b"\xff\xd8" + _segment(0xC3, sof) + _dht(0, 0, 0)
            + _segment(0xDA, sos) * scans + b"\xff\xd9")


def baseline_jpeg_empty_scans(scans: int = 1000, side: int = 7000) -> bytes:
    """Baseline JPEG, side x side, with `scans` scans and no entropy-coded data."""
    sof = struct.pack(">BHHB", 8, side, side, 3) + b"".join(bytes([c + 1, 0x11, 0]) for c in range(3))
    sos = bytes([3]) + b"".join(bytes([c + 1, 0x00]) for c in range(3)) + bytes([0, 63, 0])
    return (b"\xff\xd8" + _segment(0xDB, bytes([0]) + bytes([1] * 64)) + _segment(0xC0, sof)
            + _dht(0, 0, 0) + _dht(1, 0, 0) + _segment(0xDA, sos) * scans + b"\xff\xd9")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _zeros_deflated(n: int) -> bytes:
    z, block, out = zlib.compressobj(9), bytes(1 << 22), []
    while n > 0:
        out.append(z.compress(block[:min(n, len(block))]))
        n -= len(block)
    out.append(z.flush())
    return b"".join(out)


def wide_png_16bit(width: int = 50_000_000) -> bytes:
    """A PNG width x 1 of 16-bit RGBA zeros (about 390 KB for 50,000,000 pixels)."""
    ihdr = struct.pack(">IIBBBBB", width, 1, 16, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", _zeros_deflated(1 + width * 8))
            + _chunk(b"IEND", b""))


def png_with_iccp_bomb(inflated: int = 380 << 20) -> bytes:
    """A 1x1 PNG whose iCCP chunk inflates to `inflated` bytes."""
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    iccp = b"icc\x00\x00" + _zeros_deflated(inflated)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"iCCP", iccp)
            + _chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00")) + _chunk(b"IEND", b""))


def gif_frame_larger_than_screen(side: int = 10000) -> bytes:
    """A GIF with a 1x1 logical screen whose first frame is side x side."""
    screen = struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"  # 2-colour table
    frame = b"," + struct.pack("<HHHHB", 0, 0, side, side, 0)
    lzw = b"\x02" + b"\x01\x2c\x00"  # code size 2: clear, end of information
    return b"GIF89a" + screen + frame + lzw + b";"


# name -> (bytes maker, media type, width, height): what the module may still report.
HOSTILE = {
    "lossless.jpg": (lambda: lossless_jpeg_empty_scans(3, 10), "image/jpeg", 7000, 7000),
    "lossless4.jpg": (lambda: lossless_jpeg_empty_scans(4, 2), "image/jpeg", 7000, 7000),
    "scans.jpg": (baseline_jpeg_empty_scans, "image/jpeg", 7000, 7000),
    "wide16.png": (wide_png_16bit, "image/png", 50_000_000, 1),
    "iccp.png": (png_with_iccp_bomb, "image/png", 1, 1),
    "bigframe.gif": (gif_frame_larger_than_screen, "image/gif", 1, 1),
}
