"""The benchmark's verdicts say only what its rounds show: a target straddled by the rounds is not measurable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import benchmark  # noqa: E402


def test_a_target_above_every_round_passes_and_below_every_round_misses():
    assert benchmark.verdict([1.40, 1.45, 1.48], 1.52, "SAG/CFG").split()[0] == "PASS"
    assert benchmark.verdict([1.60, 1.58, 1.70], 1.52, "SAG/CFG").split()[0] == "MISS"


def test_rounds_that_straddle_the_target_give_no_verdict():
    line = benchmark.verdict([0.24, 1.50, 9.9], 1.52, "SAG/CFG")
    assert line.split()[:3] == ["NOT", "MEASURABLE", "NOW"]
    assert "1.500 (rounds 0.240 to 9.900)" in line


def test_fewer_rounds_than_the_minimum_give_no_verdict():
    assert benchmark.MIN_ROUNDS == 3
    assert benchmark.verdict([1.1, 1.2], 1.52, "SAG/CFG").startswith("  NOT MEASURABLE NOW")


def test_the_busy_warning_comes_only_when_the_spread_shows_it():
    quiet = benchmark.noise_line({"32x32": 1.04, "64x64": 1.09})
    busy = benchmark.noise_line({"32x32": 1.04, "64x64": 1.31})
    assert "busy" not in quiet and quiet.endswith("32x32 1.04, 64x64 1.09")
    assert "64x64 1.31; above 1.1, so the machine was busy" in busy
    assert benchmark.spread([2.0, 2.2, 2.1]) == 2.2 / 2.0
