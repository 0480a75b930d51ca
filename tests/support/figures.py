"""Checks on written figures: a PNG's size from its header, and a sane figure."""
from __future__ import annotations

import struct
from pathlib import Path


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def assert_sane_png(path: Path) -> None:
    width, height = png_size(path)
    assert 600 <= width <= 2400 and 400 <= height <= 1600, (width, height)
    assert path.stat().st_size > 10_000
