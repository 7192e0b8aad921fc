"""tools/quality.py: the pipeline runs end to end in --quick mode, and its Fréchet distance is the textbook one."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from quality_scores import frechet_distance  # noqa: E402


def test_quick_run_scores_every_row_for_every_seed_and_counts_sag_passes(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "tools" / "quality.py"), "--quick", "--out", str(tmp_path)],
                   check=True, cwd=tmp_path, capture_output=True, timeout=300)
    result = json.loads((tmp_path / "results.json").read_text())
    rows = result["rows"]
    seeds = [str(seed) for seed in result["settings"]["seeds"]]

    assert len(rows) == 17 and len(seeds) == 2
    for name, entry in rows.items():
        assert list(entry["seeds"]) == seeds, name
        for scores in entry["seeds"].values():
            assert math.isfinite(scores["fd"]) and scores["fd"] >= 0, name
            assert 0.0 <= scores["recognised"] <= 1.0, name
    # 3 sampling steps, cond + uncond rows each; SAG adds one uncond pass per guided step.
    assert rows["CFG"]["unet_passes_per_image"] == 6
    assert rows["CFG + SAG"]["unet_passes_per_image"] == 9
    assert rows["CFG + SAG 0.5-1"]["unet_passes_per_image"] == 7
    assert (tmp_path / "table.md").read_text().count("\n") == 2 + len(rows)
    assert len(list((tmp_path / "samples").glob("*.png"))) == 16


def test_frechet_distance_of_a_shifted_copy_is_the_squared_shift():
    features = np.random.default_rng(0).normal(size=(500, 6))
    shift = np.array([0.5, -1.0, 0.0, 2.0, 0.0, 0.25])

    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-9)
    assert abs(frechet_distance(features, features + shift) - float(shift @ shift)) < 1e-9


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(200_000, 2)) * [1.0, 2.0]
    b = rng.normal(size=(200_000, 2)) * [3.0, 1.0] + [1.0, 0.0]
    # diagonal covariances: |mu_a - mu_b|^2 + sum (s_a - s_b)^2 over the standard deviations
    expected = 1.0 + (1.0 - 3.0) ** 2 + (2.0 - 1.0) ** 2

    assert abs(frechet_distance(a, b) - expected) < 0.05


def test_paired_change_compares_seed_by_seed_and_counts_changes_below_the_printed_precision_as_ties():
    import quality

    def row(baseline, fds, shares):
        return {"baseline": baseline, "seeds": {str(i): {"fd": fd, "recognised": share}
                                                for i, (fd, share) in enumerate(zip(fds, shares))}}
    result = {"rows": {"CFG": row(None, [10.0, 6.0, 8.0], [0.5, 0.6, 0.7]),
                       "SAG": row("CFG", [9.0, 6.5, 8.000001], [0.51, 0.6, 0.69])}}

    assert quality.paired_change(result, "CFG", "fd") == "-"
    assert quality.paired_change(result, "SAG", "fd") == "-0.17 ± 0.76 (1 better, 1 worse of 3)"
    assert quality.paired_change(result, "SAG", "recognised") == "+0.00 ± 1.00 (1 better, 1 worse of 3)"
