"""The quality lab (tools/quality): the smoke run fails when SAG is computed but not applied; the scores are the textbook ones.

The family rows (PAG and SEG beside SAG) have their own smoke run, `quick --sets family`, whose page is
written from a cache that holds only the family rows' cells.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tools import demo
from tools.quality import cli, report, weights
from tools.quality.data import sample_set
from tools.quality.report import stats
from tools.quality.rows import ROW_SETS, family_rows, rows_of
from tools.quality.scores import (PatchJudge, class_histogram, edge_energy, frechet_distance,
                                  kernel_inception_distance, laplacian_pyramid, patch_descriptors, precision_recall,
                                  sliced_wasserstein)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("quality")
    subprocess.run([sys.executable, "-m", "tools.quality", "quick", "--out", str(out)],
                   check=True, cwd=ROOT, capture_output=True, timeout=300)
    return {**json.loads((out / "quick.json").read_text()), "report": (out / "docs" / "quality-results.md").read_text()}


@pytest.fixture(scope="module")
def quick_family(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("quality-family")
    subprocess.run([sys.executable, "-m", "tools.quality", "quick", "--sets", "family", "--out", str(out)],
                   check=True, cwd=ROOT, capture_output=True, timeout=300)
    docs = out / "docs"
    return {**json.loads((out / "quick.json").read_text()), "page": (docs / "quality-family.md").read_text(),
            "docs": sorted(path.name for path in docs.iterdir())}


def test_quick_sigma_zero_row_equals_the_cfg_row(quick):
    rows = quick["rows"]
    if quick["batch_invariant"]:
        # blur sigma 0: the degraded input is x itself and the extra pass gives back the uncond output: term 0
        assert rows["sigma 0 (plumbing check)"]["digests"] == rows["CFG"]["digests"]
    else:  # this CPU's U-Net rounds a batch's rows differently from the same rows alone: equal up to rounding
        assert rows["sigma 0 (plumbing check)"]["fd"] == pytest.approx(rows["CFG"]["fd"], abs=1e-4)


def test_quick_sag_changes_every_seed_and_the_mask_matters(quick):
    rows = quick["rows"]
    cfg, sag, blur_all = (rows[name]["digests"] for name in ("CFG", "CFG + SAG", "global blur, scale 0.75"))
    assert all(a != b for a, b in zip(sag, cfg))
    assert all(a != b for a, b in zip(blur_all, sag))
    assert 0.0 < rows["CFG + SAG"]["mask_coverage"] < 1.0
    assert rows["global blur, scale 0.75"]["mask_coverage"] == 1.0


def test_quick_counts_one_extra_uncond_pass_per_guided_step(quick):
    rows = quick["rows"]  # 3 sampling steps of cond + uncond rows; SAG adds one uncond row per step
    assert rows["CFG"]["unet_passes_per_image"] == 6
    assert rows["CFG + SAG"]["unet_passes_per_image"] == 9


def test_quick_report_tables_every_row_with_its_change_from_cfg(quick):
    table = [line for line in quick["report"].splitlines() if line.startswith("| quick |")]
    assert [line.split(" | ")[1] for line in table] == list(quick["rows"])
    cfg = [cell.strip() for cell in table[0].split("|")]
    assert cfg[16:19] == ["6", "-", "-"]  # CFG: 6 U-Net passes per image, no baseline, no change
    assert all(line.count("of 2)") == 2 for line in table[1:])  # a paired change over both seeds, under both scorers
    assert "Every judge's distance grows with the blur:" in quick["report"]


def test_quick_report_judges_sags_change_under_five_scorers_and_the_patch_judge(quick):
    line = next(line for line in quick["report"].splitlines() if line.startswith("| CFG + SAG vs CFG | 2 |"))
    cells = [cell.strip() for cell in line.split("|")[1:-1]]
    assert all(cell.startswith(("+", "-")) and cell != "-" for cell in cells[2:7])  # ΔFD under each of the 5 scorers
    assert cells[7].endswith("of 5")
    assert cells[8].endswith("/2)")  # the patch judge's change over both seeds


def test_weight_files_are_named_by_the_code_and_the_torch_version(monkeypatch, tmp_path):
    spec = weights.MODELS["base"]
    before = weights.diffusion_path(tmp_path, spec, 0)
    assert weights.diffusion_path(tmp_path, spec, 1) != before
    monkeypatch.setattr(torch, "__version__", "0.0.0-other")
    assert weights.diffusion_path(tmp_path, spec, 0) != before
    monkeypatch.undo()
    changed = tmp_path / "data.py"
    changed.write_bytes(Path(weights.data.__file__).read_bytes() + b"# changed\n")
    paths = weights.code_paths()
    monkeypatch.setattr(weights, "code_paths", lambda: [changed if p.name == changed.name else p for p in paths])
    assert weights.diffusion_path(tmp_path, spec, 0) != before


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


def test_kid_is_the_unbiased_mmd_of_the_cubic_kernel():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) + 0.5
    kernel = lambda x, y: (x @ y / 3 + 1) ** 3  # noqa: E731
    within_a = sum(kernel(a[i], a[j]) for i in range(40) for j in range(40) if i != j) / (40 * 39)
    within_b = sum(kernel(b[i], b[j]) for i in range(30) for j in range(30) if i != j) / (30 * 29)
    across = sum(kernel(x, y) for x in a for y in b) / (40 * 30)

    assert kernel_inception_distance(a, b) == pytest.approx(within_a + within_b - 2 * across, rel=1e-9)
    same = [kernel_inception_distance(rng.normal(size=(200, 3)), rng.normal(size=(200, 3))) for _ in range(20)]
    assert abs(np.mean(same)) < 0.05  # unbiased: about 0 between two samples of one distribution


def test_precision_and_recall_see_a_collapsed_generator():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(400, 2))
    collapsed = rng.normal(size=(400, 2)) * 0.1  # all inside the real manifold, covering only its middle
    far = rng.normal(size=(400, 2)) + 20.0

    precision, recall = precision_recall(real, collapsed)
    assert precision > 0.95 and recall < 0.3
    assert precision_recall(real, far) == (0.0, 0.0)
    assert precision_recall(real, real) == (1.0, 1.0)


def test_class_histogram_counts_the_arg_max_class():
    probs = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.7, 0.1]])
    assert class_histogram(probs, 3).tolist() == [1, 2, 0]


def test_demo_out_takes_a_picture_file_or_a_folder_and_refuses_other_names_before_sampling(tmp_path, capsys):
    assert demo.picture_path(tmp_path / "x.png") == tmp_path / "x.png"
    assert demo.picture_path(tmp_path / "pictures") == tmp_path / "pictures" / "sag_demo.png"
    (tmp_path / "run.1").mkdir()
    assert demo.picture_path(tmp_path / "run.1") == tmp_path / "run.1" / "sag_demo.png"
    with pytest.raises(SystemExit) as stopped:
        demo.main(["--out", str(tmp_path / "demo.txt")])  # argparse's error: exit 2, before any model is loaded
    assert stopped.value.code == 2
    assert "--out " + str(tmp_path / "demo.txt") + ": give a .png, .jpg, .jpeg file or a folder" in capsys.readouterr().err


def test_demo_help_describes_every_option(capsys):
    with pytest.raises(SystemExit):
        demo.main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for words in ("--seed SEED sampling seed", "--out OUT where the picture goes", "--threads THREADS torch threads"):
        assert words in shown


def test_demo_model_is_shipped_small_and_loads_into_the_lab_networks():
    assert demo.MODEL_FILE.stat().st_size <= 5 * 2**20
    model, scorer, metadata = demo.load()  # load_state_dict is strict: every tensor has its place, none is missing

    assert metadata["model"] == "base" and metadata["training_seed"] == "0"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert sum(p.numel() for p in model.unet.parameters()) > 1_000_000


def test_sign_test_is_the_exact_two_sided_binomial_tail_without_ties():
    assert stats.sign_test([-1.0] * 14) == pytest.approx(2 / 2 ** 14)
    assert stats.sign_test([-1.0] * 13 + [0.5]) == pytest.approx(2 * 15 / 2 ** 14)  # 13 of 14
    assert stats.sign_test([-1.0, 1.0, 0.0]) == 1.0  # one each way, the tie dropped
    assert stats.sign_test([-0.1] * 3) == 0.25  # 3 of 3 seeds: the chance of it with no effect
    assert stats.sign_test([]) == 1.0


def test_bootstrap_interval_holds_the_mean_and_is_fixed_by_its_seed():
    changes = [-0.9, -1.1, -0.7, -1.3, -1.0, -0.8]
    low, high = stats.bootstrap_interval(changes)
    assert min(changes) < low < sum(changes) / len(changes) < high < max(changes)
    assert stats.bootstrap_interval(changes) == (low, high)
    assert stats.bootstrap_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)


def test_sliced_wasserstein_is_zero_for_the_same_set_and_the_mean_projected_shift_for_a_shifted_copy():
    points = torch.randn(300, 5, generator=torch.Generator().manual_seed(0))
    shift = torch.tensor([0.5, -1.0, 0.0, 2.0, 0.25])
    assert sliced_wasserstein(points, points, torch.Generator().manual_seed(1)) == 0.0
    generator = torch.Generator().manual_seed(1)
    axes = [torch.randn(5, 256, generator=generator) for _ in range(4)]
    expected = torch.stack([((shift @ (a / a.norm(dim=0))).abs()).mean() for a in axes]).mean()
    found = sliced_wasserstein(points + shift, points, torch.Generator().manual_seed(1))
    assert found == pytest.approx(float(expected), rel=1e-5)


def test_laplacian_pyramid_halves_each_level_and_keeps_a_constant_in_the_low_pass_only():
    levels = laplacian_pyramid(torch.full((2, 4, 32, 32), 0.3))
    assert [tuple(level.shape[-2:]) for level in levels] == [(32, 32), (16, 16), (8, 8)]
    assert all(level.abs().max() < 1e-6 for level in levels[:2])
    assert torch.allclose(levels[2], torch.full((2, 4, 8, 8), 0.3))


def test_patch_descriptors_are_the_images_own_windows():
    images = torch.arange(2 * 3 * 10 * 10, dtype=torch.float32).reshape(2, 3, 10, 10)
    found = patch_descriptors(images, 4, torch.Generator().manual_seed(0), size=7)
    generator = torch.Generator().manual_seed(0)
    rows, columns = torch.randint(0, 4, (2, 4), generator=generator), torch.randint(0, 4, (2, 4), generator=generator)
    assert found.shape == (8, 3 * 49)
    r, c = int(rows[1, 2]), int(columns[1, 2])
    assert torch.equal(found[6], images[1, :, r:r + 7, c:c + 7].reshape(-1))


def test_patch_judge_scores_blurred_real_images_monotonically_worse():
    from sag_core.blur import gaussian_blur_2d
    judge = PatchJudge(sample_set(512, 1)[0], per_image=8)
    images = sample_set(128, 2)[0]
    scores = [sum(judge.distances(gaussian_blur_2d(images, s) if s else images, seed=3)) for s in (0, 0.5, 1, 2)]
    assert scores == sorted(scores) and scores[0] < scores[-1] / 2


def test_edge_energy_of_a_flat_image_is_zero_and_of_one_step_edge_is_its_share():
    flat = torch.zeros(1, 4, 32, 32)
    step = flat.clone()
    step[:, :3, :, 16:] = 2.0  # clamped to 1: a step of 1 across one of 31 column gaps, none down
    assert edge_energy(flat)[0] == 0.0
    assert edge_energy(step)[0] == pytest.approx(1 / 31 / 2)


# The rows' keys name their cached cells: these are the keys the rows had before PAG and SEG joined.
KEYS_BEFORE_PAG = {"no guidance": "3b6946a35e", "CFG": "7420c10092", "CFG 7": "e04870de03",
                   "CFG 3, 30 steps": "4040d5d346", "CFG + SAG": "77589d4adb", "CFG + SAG 0.5-1": "b1fad1d804",
                   "SAG alone": "7a43abf057", "DDIM CFG++ 7.5 + SAG": "38ffb83c1f", "inverse mask": "7960dc8185",
                   "SAG alone, negative branch": "e322b520a0", "null class, SAG": "9fa24ebf22"}


def test_rows_made_before_pag_and_seg_keep_their_keys_and_the_family_shares_them():
    before = {row.name: row for row in rows_of([name for name in ROW_SETS if name != "family"])}
    assert {name: before[name].key() for name in KEYS_BEFORE_PAG} == KEYS_BEFORE_PAG
    assert all(row.family is None for row in before.values())
    family = family_rows()
    shared = [row for row in family if row.name in before]
    assert {row.name for row in shared} == {"no guidance", "CFG", "CFG 3, 30 steps", "CFG + SAG", "SAG alone"}
    assert all(row.key() == before[row.name].key() for row in shared)
    assert len({row.key() for row in family}) == len(family)
    assert all(row.baseline in {r.name for r in family} for row in family if row.name != "no guidance")


def test_family_rows_reach_the_script_as_pag_and_seg_settings(ext):
    import harness
    from sag_core.params import PAG, SAG, SEG, SagParams
    script = harness.sag_script(ext.txt2img)
    for row in family_rows():
        args = harness.sag_args(ext.txt2img, *row.script_values())
        params = SagParams.from_script_args(args[script.args_from:script.args_to])
        family = row.family or {}
        assert params.acts(SAG) == (row.sag is not None), row.name
        assert params.acts(PAG) == ("pag_enabled" in family), row.name
        assert params.acts(SEG) == ("seg_enabled" in family), row.name
        assert {name: getattr(params, name) for name in family} == family, row.name
        if row.sag is not None:
            assert (params.scale, params.blur_sigma, params.start, params.end) == (0.75, 2.0, 0.0, 1.0)
    names = ("CFG + PAG + SEG", "CFG + SEG, sigma 2", "CFG + PAG on output 0")
    assert {row.describe() for row in family_rows() if row.name in names} == {
        "PAG 3; SEG 3, sigma inf", "SEG 3, sigma 2", "PAG 3 (output 0)"}


def test_quick_family_rows_sample_each_method_at_one_extra_pass_per_step(quick_family):
    rows = quick_family["rows"]  # 2 steps (a tenth of 20) of cond + uncond rows: 4 passes; each method adds 2
    methods = {name: name.count("SAG") + name.count("PAG") + name.count("SEG") for name in rows}
    assert {name: rows[name]["unet_passes_per_image"] for name in rows} == {
        name: 4 + 2 * methods[name] + {"CFG 3, 30 steps": 2, "CFG 3, 40 steps": 4}.get(name, 0) for name in rows}
    for name in rows:  # every method changes every seed's images, from CFG's or, alone, from no guidance's
        base = "no guidance" if name.endswith("alone") else "CFG"
        if methods[name]:
            assert all(a != b for a, b in zip(rows[name]["digests"], rows[base]["digests"])), name
    assert rows["CFG + PAG"]["mask_coverage"] is None and rows["CFG + SAG + PAG"]["mask_coverage"] > 0


def test_quick_family_page_is_written_alone_from_the_family_cells(quick_family):
    assert quick_family["docs"] == ["quality-family.md"]  # the page of every table is not rewritten
    tables = [[cell.strip() for cell in line.split("|")[1:-1]] for line in quick_family["page"].splitlines()
              if line.startswith("| ")]
    cost = {cells[0]: cells[-1] for cells in tables if len(cells) == 5 and cells[0] != "row"}
    assert cost == {name: f"{row['unet_passes_per_image']:.0f}" for name, row in quick_family["rows"].items()}
    summary = {cells[0]: cells[1] for cells in tables if len(cells) == 2}
    pooled = {cells[0]: cells[1:] for cells in tables if len(cells) == 6 and cells[0] != "change"}
    for change in ("CFG + PAG vs CFG", "CFG + SEG, sigma 2 vs CFG", "PAG alone vs no guidance",
                   "CFG + PAG vs CFG 3, 30 steps", "CFG + SAG + SEG vs CFG 3, 40 steps", "CFG + SAG + PAG vs CFG + PAG"):
        # the primary judge first (both seeds), then scorer 1 (both seeds) and the five scorers
        assert re.fullmatch(r"[+-]\d+\.\d\d \([0-2]/2\); [+-]\d+\.\d\d \([0-2]/2\); [0-5]/5 ↓", summary[change]), change
        assert pooled[change][0] == "2" and re.fullmatch(r"[0-2] of 2", pooled[change][3]), change  # pairs, better
    assert ["family", "CFG + PAG + SEG", "Euler a, 2", "3", "PAG 3; SEG 3, sigma inf"] in [
        cells[:5] for cells in tables]


def test_report_of_the_family_set_writes_the_family_page_only(monkeypatch):
    written = []
    monkeypatch.setattr(report, "write", lambda lab, docs: written.append("results"))
    monkeypatch.setattr(report, "write_family", lambda lab, docs: written.append("family"))
    monkeypatch.setattr(report, "write_masks", lambda lab, docs: written.append("masks"))
    threads = ["--threads", str(torch.get_num_threads())]
    cli.main(["report", "--sets", "family", *threads])
    assert written == ["family"]
    cli.main(["report", "--sets", "masks", *threads])
    assert written == ["family", "masks"]
    cli.main(["report", *threads])
    assert written == ["family", "masks", "results", "family", "masks"]


def test_the_masks_set_shares_the_samplers_cells_and_varies_only_the_mask():
    masks, samplers = ({row.name: row for row in rows_of([name])} for name in ("masks", "samplers"))
    for name in ("DPM++ 2M CFG", "DPM++ 2M CFG + SAG"):
        assert masks[name].key() == samplers[name].key()
    variants = [row for name, row in masks.items() if name not in samplers]
    assert [row.sampler for row in variants] == ["DPM++ 2M"] * 3
    assert len({row.key() for row in variants} | {samplers["DPM++ 2M CFG + SAG"].key()}) == 4
