"""Hostile grid files: a few hundred bytes that stand for billions of values (YAML aliases, merge
keys), used by the bad-input table and the timing tests."""
from __future__ import annotations

OK = "sweep: ok\nbatchfn: gaussian_teacher\nmodel: mlp\nbase: {d: 4, batch_size: 8, steps: 5}\n"
# A few hundred bytes of YAML standing for 9**9 values: each level lists the one before nine times.
ALIAS_BOMB = OK + "grid:\n  lr: [0.1]\nx0: &x0 [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]\n" for i in range(1, 9))
# Merge keys that double at each level: 40 levels would copy 2**40 entries (PyYAML <= 6.0.3).
MERGE_BOMB = "m0: &m0 {a: 1, b: 2}\n" + "".join(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}]}}\n" for i in range(1, 40))
# Under one base key: each job's config is half a megabyte of JSON, from a few hundred bytes of YAML.
CONFIG_BOMB = OK.replace("steps: 5}", "steps: 5, monomials: [&m0 [1, 1, 1, 1, 1, 1, 1, 1], " + ", ".join(
    f"&m{i} [{', '.join([f'*m{i - 1}'] * 8)}]" for i in range(1, 5)) + ", [" + ", ".join(["*m4"] * 8) + "]]}")
