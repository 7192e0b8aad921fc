"""SAG beside an extension that runs a nested job from postprocess_image, as ADetailer does.

Needs the test-only extension tests/e2e/extensions/sag-e2e-nested-job installed in the webui beside
SAG (skipped otherwise). Its nested job inpaints a fixed picture, so the same nested job can be compared
across the outer job's settings, and leaves the outer images as they are; it reports, per outer image,
the nested image's hash and in how many of its steps a hook sat on the U-Net's middle self-attention.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from test_webui_api import ON, OFF, generate, job
from webui_client import WebuiClient

NESTED = "sag e2e nested job"
ON_WITH_PREVIEW = [True, 0.75, 2.0, 1.0, 0.0, 1.0, True]
REPORT = re.compile(r"SAG e2e inner: (\w+) hooked (\d+)/(\d+)")


@pytest.fixture(scope="module")
def nested_webui(webui: WebuiClient) -> WebuiClient:
    if NESTED not in webui.get("/sdapi/v1/scripts").body["txt2img"]:
        pytest.skip("install tests/e2e/extensions/sag-e2e-nested-job into the webui beside SAG")
    return webui


def with_nested(payload: dict, include_sag: bool, rearm: bool = True) -> dict:
    return {**payload, "alwayson_scripts": {NESTED: {"args": [True, include_sag, rearm]}}}


def reports(answer) -> list[tuple[str, int, int]]:
    """(nested image hash, hooked steps, steps) for each outer image."""
    found = [REPORT.search(text) for text in answer.infotexts]
    assert all(found), answer.infotexts
    return [(m.group(1), int(m.group(2)), int(m.group(3))) for m in found]


def assert_no_hook_now(webui: WebuiClient) -> None:
    counts = webui.get("/sag-e2e/hooks").body
    assert counts["middle_attn1"] == 0 and counts["middle_transformer"] == 0, counts


FAMILY = [{"enabled": True, "pag_enabled": True, "seg_enabled": True}]  # SAG, PAG and SEG in the outer job


@pytest.mark.parametrize("outer", [ON, FAMILY], ids=["sag", "sag-pag-seg"])
@pytest.mark.parametrize("rearm", [True, False], ids=["adetailer-flow", "plain-nested-job"])
def test_a_nested_job_without_sag_is_untouched_by_the_outer_sag(nested_webui, size, steps, rearm, outer):
    payload = job(size, steps, n_iter=2)
    outer_on = generate(nested_webui, with_nested(payload, False, rearm), outer)
    outer_off = generate(nested_webui, with_nested(payload, False, rearm), OFF)
    plain_on = generate(nested_webui, payload, outer)
    assert_no_hook_now(nested_webui)

    on_reports, off_reports = reports(outer_on), reports(outer_off)
    assert all(hooked == 0 and total > 0 for _, hooked, total in on_reports), on_reports
    assert [digest for digest, _, _ in on_reports] == [digest for digest, _, _ in off_reports]
    assert len(outer_on.images) == len(plain_on.images) == 2
    for nested, plain in zip(outer_on.images, plain_on.images):  # both outer batches guided
        assert np.array_equal(nested, plain)
    assert all("SAG scale: 0.75" in text for text in outer_on.infotexts)


def test_a_nested_job_with_sag_gets_its_own_and_the_outer_sag_resumes_after_it(nested_webui, size, steps):
    payload = job(size, steps, n_iter=2)
    outer = generate(nested_webui, with_nested(payload, True), ON)
    without = generate(nested_webui, with_nested(payload, False), ON)
    plain_on = generate(nested_webui, payload, ON)
    assert_no_hook_now(nested_webui)

    nested_reports = reports(outer)
    assert all(hooked == total > 0 for _, hooked, total in nested_reports), nested_reports
    assert all(a[0] != b[0] for a, b in zip(nested_reports, reports(without)))
    for nested, plain in zip(outer.images, plain_on.images):
        assert np.array_equal(nested, plain)


def test_previews_and_skipped_counts_stay_with_the_job_that_made_them(nested_webui, size, steps):
    payload = job(size, steps, n_iter=2)
    outer = generate(nested_webui, with_nested(payload, True), ON_WITH_PREVIEW)
    plain = generate(nested_webui, payload, ON_WITH_PREVIEW)
    assert len(outer.images) == len(plain.images) == 4  # two images, then their two previews
    for nested, alone in zip(outer.images, plain.images):
        assert np.array_equal(nested, alone)
    assert not any("SAG skipped steps" in text for text in outer.infotexts)
