"""SAG on the real webui page, in headless Chromium: the accordion, its hints, and a generation with preview.

Opt-in like the rest of tests/e2e (SAG_E2E_URL); needs playwright and /usr/bin/chromium, as the
browser test of the test host does. Element ids follow webui v1.10.1 (modules/ui.py, ui_common.py,
javascript/inputAccordion.js) and the script's own elem_ids.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from chromium import CHROMIUM, CHROMIUM_ARGS, DOCS_IMAGE_LIMIT
from sag_core.params import FIELDS_BY_ATTR

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT_PNG = ROOT / "out" / "e2e" / "sag-preview-gallery.png"
DOCS_JPG = ROOT / "docs" / "sag-preview.jpg"
ACCORDION = "script_txt2img_selfattention_guidance_enabled"
OPEN = re.compile(r"\bopen\b")


@pytest.fixture(scope="module")
def page(webui) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 1000}, color_scheme="light")
        context.set_default_timeout(60_000)
        tab = context.new_page()
        tab.goto(webui.url, wait_until="domcontentloaded")
        tab.locator(f"#{ACCORDION} .label-wrap").first.wait_for(state="visible")  # PAG, SEG nest inside
        tab.wait_for_function("() => typeof titles !== 'undefined' && 'SAG scale' in titles")  # our JS ran
        try:
            yield tab
        finally:
            browser.close()


def set_number(tab: Any, elem_id: str, value: int) -> None:
    box = tab.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.blur()


def test_the_accordion_is_closed_and_hinted_and_generates_a_preview(page, size, steps):
    from playwright.sync_api import expect

    accordion = page.locator(f"#{ACCORDION}")
    header = accordion.locator(".label-wrap").first
    expect(accordion).to_be_visible()
    expect(header).not_to_have_class(OPEN)  # (1.7+ also mirror this in a header checkbox; 1.6 has none)
    expect(page.locator("#script_img2img_selfattention_guidance_enabled")).to_be_attached()
    assert page.evaluate("() => titles['SAG scale']") == FIELDS_BY_ATTR["scale"].hint

    page.locator("#txt2img_prompt textarea").fill("a photo of a lighthouse on a rocky cliff at dusk")
    for elem_id, value in (("txt2img_width", size), ("txt2img_height", size), ("txt2img_steps", steps)):
        set_number(page, elem_id, value)
    page.locator("#txt2img_seed input[type=number]").fill("1234")
    header.click()
    expect(header).to_have_class(OPEN)  # opening the accordion ticks SAG (the infotext below shows it)
    scale_label = page.locator("#script_txt2img_selfattention_guidance_scale [data-testid=block-info]")
    expect(scale_label).to_have_attribute("title", FIELDS_BY_ATTR["scale"].hint)
    page.locator("#script_txt2img_selfattention_guidance_preview input[type=checkbox]").check()

    page.locator("#txt2img_generate").click()
    thumbnails = page.locator("#txt2img_gallery .thumbnails .thumbnail-item")  # the strip under the large view
    expect(thumbnails).to_have_count(2, timeout=int(os.environ.get("SAG_E2E_TIMEOUT", "1800")) * 1000)
    default_scale = os.environ.get("SAG_E2E_SAVED_SCALE", "").strip() or "0.75"  # see the last test
    expect(page.locator("#html_info_txt2img").last).to_contain_text(f"SAG scale: {default_scale}")

    page.mouse.move(0, 0)
    gallery = page.locator("#txt2img_gallery_container")
    ARTIFACT_PNG.parent.mkdir(parents=True, exist_ok=True)
    gallery.screenshot(path=str(ARTIFACT_PNG), animations="disabled")
    if os.environ.get("SAG_UPDATE_DOCS") == "1":
        thumbnails.nth(1).click()  # show the preview large, as a user looking at it would
        page.mouse.move(0, 0)
        gallery.screenshot(path=str(DOCS_JPG), type="jpeg", quality=85, animations="disabled")
        assert DOCS_JPG.stat().st_size < DOCS_IMAGE_LIMIT


def test_opening_pags_accordion_switches_pag_on_beside_sag(page, size, steps):
    """PAG's accordion nests in SAG's, folded; opening it ticks PAG (webui 1.6+ InputAccordion) and the
    generation's parameters name it."""
    from playwright.sync_api import expect

    header = page.locator(f"#{ACCORDION} .label-wrap").first
    if not OPEN.search(header.get_attribute("class") or ""):
        header.click()
    pag = page.locator("#script_txt2img_selfattention_guidance_pag_enabled .label-wrap").first
    expect(pag).to_be_visible()
    expect(pag).not_to_have_class(OPEN)
    assert page.evaluate("() => titles['PAG scale']") == FIELDS_BY_ATTR["pag_scale"].hint
    pag.click()
    expect(pag).to_have_class(OPEN)
    expect(page.locator("#script_txt2img_selfattention_guidance_pag_scale")).to_be_visible()
    page.locator("#txt2img_generate").click()
    expect(page.locator("#html_info_txt2img").last).to_contain_text(
        "PAG scale: 3.0", timeout=int(os.environ.get("SAG_E2E_TIMEOUT", "1800")) * 1000)
    pag.click()  # fold it again: PAG off for the tests after this one
    expect(pag).not_to_have_class(OPEN)


def test_a_scale_saved_in_ui_config_is_the_sliders_default_after_a_restart(page, size, steps):
    """Opt-in: start the webui with ui-config.json holding
    `"customscript/self_attention_guidance.py/txt2img/SAG scale/value": V` (what Settings → Defaults → Apply
    writes; the key's shape is pinned by tests/test_upgrade_keys.py) and set SAG_E2E_SAVED_SCALE=V.
    The webui applies saved defaults to its page only; API requests keep the code's defaults."""
    from playwright.sync_api import expect

    saved = os.environ.get("SAG_E2E_SAVED_SCALE", "").strip()
    if not saved:
        pytest.skip("set SAG_E2E_SAVED_SCALE to the SAG scale saved in the webui's ui-config.json")
    page.reload(wait_until="domcontentloaded")
    header = page.locator(f"#{ACCORDION} .label-wrap").first
    header.wait_for(state="visible")
    expect(page.locator("#script_txt2img_selfattention_guidance_scale input[type=number]")).to_have_value(saved)
    page.locator("#txt2img_prompt textarea").fill("a lighthouse at dusk")
    for elem_id, value in (("txt2img_width", size), ("txt2img_height", size), ("txt2img_steps", steps)):
        set_number(page, elem_id, value)
    header.click()
    expect(header).to_have_class(OPEN)
    page.locator("#txt2img_generate").click()
    expect(page.locator("#html_info_txt2img").last).to_contain_text(f"SAG scale: {saved}")
