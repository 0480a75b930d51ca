"""The words every layer's messages share: one "did you mean", one way to write a duration."""
from __future__ import annotations

from runner.text import closest, did_you_mean, format_duration


def test_did_you_mean_names_the_nearest_known_name_or_says_nothing():
    assert did_you_mean("lr_rate", ["lr", "width", "seed"]) == ""
    assert did_you_mean("widht", ["lr", "width", "seed"]) == "did you mean 'width'?"
    assert did_you_mean("x", []) == "" and closest("x", []) is None
    assert closest("graba", {"grabs": 1, "grid": 2}) == "grabs"  # any iterable of names: a dict's keys


def test_the_nearest_name_does_not_depend_on_the_order_of_the_candidates():
    names = ["weight_norm", "weight_decay", "weights"]
    assert {closest("weight_nrm", order) for order in (names, names[::-1], sorted(names))} == {"weight_norm"}


def test_durations():
    assert [format_duration(s) for s in (None, float("nan"), float("inf"), 0, 59.4, 61, 3599, 3600, 7325)] == [
        "-", "-", "-", "0s", "59s", "1m01s", "59m59s", "1h00m", "2h02m"]
