"""The mask preview never changes or displaces an image a script reads.

A script of the Script dropdown runs the job itself (webui v1.10.1 `ScriptRunner.run`, chosen by
`script_args[0]`) and may read `processed.images` by position, as SD upscale does with its tiles
(tests/host/scripts/sd_upscale.py). Such jobs get no previews and one console line saying why;
plain jobs, from the UI or the API, still get theirs.
"""

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import harness
from sag_core.host.jobs import selectable_script_title

ON = (True, 0.75, 2.0, 1.0, 0.0, 1.0)
PREVIEW = ON + (True,)
NO_PREVIEW = ON + (False,)
SKIPPED_LINE = "[Self-Attention Guidance] mask preview skipped"
TILED = dict(batch=3, steps=4, width=128, height=128, denoising_strength=0.6)  # 9 tiles of a 256x256 picture

pytestmark = pytest.mark.usefixtures("sd1_host")


@pytest.fixture(scope="module")
def runner(ext):
    return harness.img2img_with_sd_upscale(ext)


def source() -> Image.Image:
    rng = np.random.default_rng(5)
    return Image.fromarray(rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8))


def upscale(runner, sag, via_api=False):
    """SD upscale of the 256x256 source in 128x128 tiles overlapping by 32, three tiles per batch."""
    if via_api:
        return harness.run_api_job(runner, "SD upscale", (32,), sag=sag, init_images=[source()], **TILED)
    return harness.run_ui_job(runner, "SD upscale", (32,), sag=sag, init_images=[source()], **TILED)


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def skipped_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith(SKIPPED_LINE)]


def test_sd_upscale_picture_is_bit_identical_with_the_preview_on_and_off(runner):
    tiler = runner.selectable_scripts[0]
    unguided = upscale(runner, (False,))
    without = upscale(runner, NO_PREVIEW)
    without_counts = [len(batch.images) for batch in tiler.batches]
    shown = upscale(runner, PREVIEW)

    assert [len(batch.images) for batch in tiler.batches] == without_counts == [3, 3, 3]
    assert len(shown.images) == len(without.images) == 1
    assert np.array_equal(pixels(shown.images[0]), pixels(without.images[0]))
    assert np.abs(pixels(without.images[0]).astype(int) - pixels(unguided.images[0])).mean() > 0.25  # SAG acted


def test_the_skipped_preview_is_told_once_per_job_naming_the_script(runner, capsys):
    upscale(runner, PREVIEW)  # three process_images calls, one line
    first = skipped_lines(capsys)
    upscale(runner, PREVIEW)  # the next job is told again
    second = skipped_lines(capsys)
    upscale(runner, NO_PREVIEW)

    assert len(first) == len(second) == 1 and "'SD upscale'" in first[0]
    assert skipped_lines(capsys) == []


def test_a_script_chosen_by_the_apis_script_name_gets_no_previews_either(runner, capsys):
    through_api = upscale(runner, PREVIEW, via_api=True)
    from_ui = upscale(runner, NO_PREVIEW)
    assert len(through_api.images) == 1
    assert np.array_equal(pixels(through_api.images[0]), pixels(from_ui.images[0]))
    assert len(skipped_lines(capsys)) == 1


def test_plain_jobs_on_the_same_tab_keep_their_previews(runner, capsys):
    """Dropdown "None" from the UI (index 0); from the API without script_name, whatever a pasted infotext's
    "Script" line put in the dropdown's slot (api.py apply_infotext), process_images runs directly."""
    job = dict(sag=PREVIEW, batch=2, steps=4)
    from_ui = harness.run_ui_job(runner, None, **job)
    from_api = harness.run_api_job(runner, **job)
    pasted = harness.run_api_job(runner, infotext_script="SD upscale", **job)

    for processed in (from_ui, from_api, pasted):
        assert len(processed.images) == 4  # two images, then their previews
        assert all((pixels(preview) != pixels(image)).any() for image, preview
                   in zip(processed.images[:2], processed.images[2:]))
        assert np.array_equal(pixels(processed.images[0]), pixels(from_ui.images[0]))
    assert skipped_lines(capsys) == []


@pytest.mark.parametrize(("first_arg", "title"), [
    (0, None), (None, None), ("None", None), ("SD upscale", None), (True, None), (1, "SD upscale"), (7, "script #7"),
])
def test_only_a_positive_dropdown_index_names_a_script_that_runs_the_job(ext, runner, first_arg, title):
    p = SimpleNamespace(scripts=runner, script_args=(first_arg, *runner.default_args()[1:]))
    assert selectable_script_title(p) == title


def test_a_job_without_script_args_is_a_plain_job(ext):
    for script_args in (None, (), []):
        assert selectable_script_title(SimpleNamespace(scripts=None, script_args=script_args)) is None
