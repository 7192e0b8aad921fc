"""The benchmark's verdicts say only what its rounds show: a target straddled by the rounds is not measurable."""

from tools import benchmark


QUIET = 1.05


def word(ratios, spread=QUIET, target=1.52):
    return " ".join(benchmark.verdict(benchmark.Measured(ratios, spread), target, "SAG/CFG").split()[:3])


def test_a_target_above_every_round_passes_and_below_every_round_misses():
    assert word([1.40, 1.45, 1.48]).startswith("PASS SAG/CFG")
    assert word([1.60, 1.58, 1.70]).startswith("MISS SAG/CFG")


def test_rounds_that_straddle_the_target_give_no_verdict():
    assert word([1.40, 1.50, 1.60]) == "NOT MEASURABLE NOW"
    line = benchmark.verdict(benchmark.Measured([0.24, 1.50, 9.9], QUIET), 1.52, "SAG/CFG")
    assert line.endswith("SAG/CFG <= 1.52: 1.500 (rounds 0.240 to 9.900)")


def test_fewer_rounds_than_the_minimum_or_a_busy_machine_give_no_verdict():
    assert benchmark.MIN_ROUNDS == 3
    assert word([1.1, 1.2]) == "NOT MEASURABLE NOW"
    assert word([1.40, 1.45, 1.48], spread=1.19) == "NOT MEASURABLE NOW"  # the rounds agree, the times did not


def test_the_spread_and_the_ratios_come_from_the_same_rounds():
    times = {"sag": [1.5, 1.6, 1.5], "cfg": [1.0, 1.0, 1.1]}
    result = benchmark.measured(times, "sag", "cfg")
    assert result.ratios == [1.5, 1.6, 1.5 / 1.1] and result.spread == 1.1 / 1.0  # cfg varied more than sag


def test_the_busy_warning_comes_only_when_the_spread_shows_it():
    quiet = benchmark.noise_line({"32x32": 1.04, "64x64": 1.09})
    busy = benchmark.noise_line({"32x32": 1.04, "64x64": 1.31})
    assert "busy" not in quiet and quiet.endswith("32x32 1.04, 64x64 1.09")
    assert "64x64 1.31; above 1.1, so the machine was busy" in busy
    assert benchmark.spread([2.0, 2.2, 2.1]) == 2.2 / 2.0
