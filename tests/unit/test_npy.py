"""Grab arrays travel as .npy bytes and are never unpickled."""
from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from runner.npy import from_npy, to_npy


def test_numeric_arrays_round_trip():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(from_npy(to_npy(a)), a)


def test_pickled_payloads_are_refused():
    planted = io.BytesIO()
    np.save(planted, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        from_npy(planted.getvalue())
    with pytest.raises(ValueError):
        from_npy(pickle.dumps([1, 2, 3]))
    with pytest.raises(TypeError):
        to_npy(np.array([object()]))
