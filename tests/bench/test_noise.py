"""bench/noise.py's two verdicts on constructed samples (nothing here is timed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest


def load_noise() -> ModuleType:
    # bench/ is a folder of scripts, not a package: load the module from its file
    path = Path(__file__).resolve().parents[2] / "bench" / "noise.py"
    spec = importlib.util.spec_from_file_location("bench_noise", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


noise = load_noise()
LOW = [1.00, 1.02, 0.98, 1.01, 0.99]
HIGH = [2.00, 2.03, 1.97, 2.01, 1.99]


def test_clearly_separated_samples_are_ahead_or_behind_under_both_rules() -> None:
    assert noise.strict(LOW, HIGH).verdict == "ahead"
    assert noise.strict(HIGH, LOW).verdict == "behind"
    ahead = noise.bootstrap(LOW, HIGH)
    assert ahead.verdict == "ahead"
    assert ahead.low <= ahead.ratio <= ahead.high < 1
    behind = noise.bootstrap(HIGH, LOW)
    assert behind.verdict == "behind"
    assert 1 < behind.low <= behind.ratio <= behind.high


def test_identical_samples_are_within_noise_under_both_rules() -> None:
    samples = [1.0, 1.3, 0.9, 1.1, 1.2]
    assert noise.strict(samples, list(samples)).verdict == "within noise"
    same = noise.bootstrap(samples, list(samples))
    assert same.verdict == "within noise"
    assert same.low < 1 < same.high and same.ratio == 1


def test_one_outlier_stops_the_strict_rule_but_not_the_bootstrap() -> None:
    ours = [1.0] * 6 + [1.5]  # one slow run among seven
    peer = [1.1] * 7
    assert noise.strict(ours, peer).verdict == "within noise"  # the spread (0.5) swallows the 0.1 difference
    assert (
        noise.bootstrap(ours, peer).verdict == "ahead"
    )  # 4 of 7 draws must hit the outlier: ~1 % of resamples


def test_the_interval_is_reproducible() -> None:
    ours, peer = [1.0, 1.2, 0.95, 1.1, 1.05], [1.1, 1.0, 1.3, 1.15, 1.2]
    assert noise.bootstrap(ours, peer) == noise.bootstrap(list(ours), list(peer))


def test_a_peer_median_at_or_below_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        noise.bootstrap(LOW, [0.5, 0.0, 0.4])


def test_fewer_than_three_samples_give_no_verdict() -> None:
    assert noise.strict([1.0, 1.0], HIGH).verdict == "too few samples"
    assert noise.bootstrap([1.0], HIGH).verdict == "too few samples"
