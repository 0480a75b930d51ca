"""A config's identity: one canonical JSON text and its hash, pinned, order-free, the same in every process."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.processes import ROOT

import runner.hashing as hashing_module
from runner.hashing import canonical_json, config_hash

PINNED = {"lr": 0.001, "width": 256, "grabs": ["weight_norm", "grad_norm"], "online": True,
          "name": "été", "opt": {"b": 2, "a": None}, "seed": 0}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10)


def test_canonical_json_format():
    assert canonical_json(PINNED) == ('{"grabs":["weight_norm","grad_norm"],"lr":0.001,"name":"été",'
                                      '"online":true,"opt":{"a":null,"b":2},"seed":0,"width":256}')
    assert canonical_json({"t": (1, 2)}) == canonical_json({"t": [1, 2]}) == '{"t":[1,2]}'
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_hash_is_pinned():
    # Changing this value changes every stored job's identity: resubmits would duplicate jobs.
    assert config_hash(PINNED) == "66bbcc6dedcb3e509d5d2da7b6f5a697"


def test_hash_ignores_key_order_but_not_types():
    shuffled = {"seed": 0, "opt": {"a": None, "b": 2}, "online": True, "name": "été",
                "grabs": ["weight_norm", "grad_norm"], "width": 256, "lr": 0.001}
    assert config_hash(shuffled) == config_hash(PINNED)
    assert config_hash({"lr": 1}) != config_hash({"lr": 1.0}) != config_hash({"lr": True})
    assert config_hash({"g": ["a", "b"]}) != config_hash({"g": ["b", "a"]})
    assert len(config_hash({})) == 32 and int(config_hash({}), 16) >= 0


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=8), st.randoms())
def test_hash_invariant_under_key_reordering(config, rnd):
    items = list(config.items())
    rnd.shuffle(items)
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert canonical_json(dict(items)) == canonical_json(config) == text
    assert config_hash(dict(items)) == config_hash(config) == hashlib.sha256(text.encode()).hexdigest()[:32]


def test_canonical_json_without_the_prebuilt_c_encoder(monkeypatch):
    expected = canonical_json(PINNED)
    monkeypatch.setattr(hashing_module, "_C_ENCODE", None)
    assert canonical_json(PINNED) == expected and config_hash(PINNED) == "66bbcc6dedcb3e509d5d2da7b6f5a697"
    with pytest.raises(ValueError):
        canonical_json({"x": float("inf")})


def test_hash_same_across_processes_and_hash_seeds():
    code = ("from runner.hashing import config_hash; keys = {'alpha', 'beta', 'gamma', 'delta', 'eps'};"
            "print(config_hash({k: [k, len(k)] for k in keys}), config_hash({'x': {k: 1 for k in keys}}))")
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.add(done.stdout)
    keys = {"alpha", "beta", "gamma", "delta", "eps"}
    here = f"{config_hash({k: [k, len(k)] for k in keys})} {config_hash({'x': {k: 1 for k in keys}})}\n"
    assert outputs == {here}
