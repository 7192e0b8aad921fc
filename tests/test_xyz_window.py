"""X/Y/Z: `[SAG] Start` and `[SAG] End` values are checked against the other bound before any cell runs.

The other bound is the UI's (the SAG script's slice of `p.script_args`) or, when another axis sweeps
it, each of that axis's values. X/Y/Z confirms x, then y, all before the first cell, and each cell
calls every axis's `apply` before its job (scripts/xyz_grid.py `Script.run` / `process_axis` / `cell`,
webui 1.6.0 and 1.10.1; tests/host/scripts/xyz_grid.py). Two swept bounds are checked at the second
one's confirm; a clash with the UI's bound at the first cell's `apply`, as a later axis may sweep it.
"""

import pytest

import harness
from modules import processing
from sag_core.params import SagParamError

pytestmark = pytest.mark.usefixtures("sd1_host")


def option(ext, label):
    return next(o for o in ext.xyz.axis_options if o.label == label)


def plot_job(ext, *sag):
    cond, uncond = harness.conds(1)
    p = processing.StableDiffusionProcessing(cond=cond, uncond=uncond, steps=2)
    p.scripts = ext.txt2img
    p.script_args = tuple(harness.sag_args(ext.txt2img, *sag))
    return p


@pytest.fixture
def cells_run(monkeypatch):
    """The jobs the plot started (each cell's `process_images`)."""
    started = []
    run = processing.process_images
    monkeypatch.setattr(processing, "process_images", lambda p: started.append(p) or run(p))
    return started


def test_a_start_axis_beyond_the_uis_end_is_refused_before_any_cell_runs(ext, cells_run):
    p = plot_job(ext, False, 0.75, 2.0, 1.0, 0.0, 0.5)
    with pytest.raises(SagParamError, match=r"start \(0\.8 on the \[SAG\] Start axis\) must not be after "
                                            r"end \(0\.5, SAG end in the UI\)"):
        ext.xyz.sweep(p, option(ext, "[SAG] Start"), ["0.2", "0.8"])
    assert cells_run == []


def test_an_end_axis_before_the_uis_start_is_refused_before_any_cell_runs(ext, cells_run):
    p = plot_job(ext, True, 0.75, 2.0, 1.0, 0.4, 1.0)
    with pytest.raises(SagParamError, match=r"start \(0\.4, SAG start in the UI\) must not be after "
                                            r"end \(0\.3 on the \[SAG\] End axis\)"):
        ext.xyz.sweep(p, option(ext, "[SAG] End"), ["1", "0.3"])
    assert cells_run == []


@pytest.mark.parametrize("x_axis,x_values,y_axis,y_values,start,end", [
    ("[SAG] Start", ["0", "0.6"], "[SAG] End", ["1", "0.5"], "0\\.6", "0\\.5"),
    ("[SAG] End", ["0.5", "1"], "[SAG] Start", ["0.2", "0.7"], "0\\.7", "0\\.5"),
])
def test_both_bounds_swept_refuse_a_bad_combination_before_any_cell_runs(ext, cells_run, x_axis, x_values, y_axis,
                                                                          y_values, start, end):
    p = plot_job(ext, False)
    with pytest.raises(SagParamError, match=rf"start \({start} on the \[SAG\] Start axis\) must not be after "
                                            rf"end \({end} on the \[SAG\] End axis\)"):
        ext.xyz.sweep_xy(p, option(ext, x_axis), x_values, option(ext, y_axis), y_values)
    assert cells_run == []


def test_a_good_window_sweep_runs_every_cell_with_its_own_window(ext, cells_run):
    p = plot_job(ext, False, 0.75, 2.0, 1.0, 0.0, 0.5)  # the UI's end 0.5 is never used: the Y axis sets it
    cells = ext.xyz.sweep_xy(p, option(ext, "[SAG] Start"), ["0.2", "0.6"], option(ext, "[SAG] End"), ["0.8", "1"])
    assert len(cells_run) == 4
    assert [cell.infotexts for cell in cells] == [
        ["SAG scale: 0.75, SAG start: 0.2, SAG end: 0.8"], ["SAG scale: 0.75, SAG start: 0.6, SAG end: 0.8"],
        ["SAG scale: 0.75, SAG start: 0.2"], ["SAG scale: 0.75, SAG start: 0.6"]]


def test_bad_ui_settings_and_huge_numbers_are_refused_at_confirm(ext, cells_run):
    p = plot_job(ext, True, 9.0)
    with pytest.raises(SagParamError, match=r"scale \(SAG scale\) must be a number from -2 to 5; got 9"):
        ext.xyz.sweep(p, option(ext, "[SAG] Start"), ["0.1"])
    with pytest.raises(SagParamError, match=r"end \(SAG end\) must be a number from 0 to 1; got 1000000000"):
        option(ext, "[SAG] End").confirm(plot_job(ext, False), [0.5, 10**400])
    assert cells_run == []
