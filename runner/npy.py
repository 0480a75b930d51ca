"""Arrays travel to and from the database as .npy bytes, never pickled."""
from __future__ import annotations

import io

import numpy as np


def to_npy(array: np.ndarray) -> bytes:
    """Encode a numeric array as .npy bytes; object arrays are refused (they would need pickle)."""
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise TypeError("object arrays cannot be stored: return a numeric array")
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def from_npy(data: bytes) -> np.ndarray:
    """Decode .npy bytes; a pickled payload raises ValueError instead of being unpickled."""
    return np.load(io.BytesIO(data), allow_pickle=False)
