"""The extension's accordion in a real browser: headless Chromium on the test host page.

The page (tests/host/webui_page.py) carries the webui's page scripts that the UI depends on
(hints, InputAccordion header checkbox) and a Generate button that reports what the script would
receive. Needs Debian's /usr/bin/chromium and the playwright package (never `playwright install`);
without them the test is skipped locally and fails when the CI variable is set.
Set SAG_UPDATE_DOCS=1 to rewrite docs/sag-accordion.png as well.
"""

from __future__ import annotations

import json
import os
import re
import socket
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from chromium import CHROMIUM, CHROMIUM_ARGS, DOCS_IMAGE_LIMIT
import webui_page
from sag_core.params import FIELDS, FIELDS_BY_ATTR, PAG, SEG, SWITCH

ROOT = Path(__file__).resolve().parents[1]
ARTIFACT_PNG = ROOT / "out" / "browser" / "sag-accordion-open.png"
DOCS_PNG = ROOT / "docs" / "sag-accordion.png"
TIMEOUT_MS = 10_000
# Non-default values inside each slider's range (start before end).
SET_VALUES = {"scale": 1.25, "blur_sigma": 3.5, "threshold": 1.4, "start": 0.15, "end": 0.85}
FOLDED = [f for f in FIELDS if f.method in (PAG, SEG) and f.attr not in SWITCH.values()]
"""PAG's and SEG's settings: inside their own accordions, folded until used."""
SHOWN = [f for f in FIELDS[1:] if f not in FOLDED]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def require_browser() -> Any:
    """playwright.sync_api, or skip (locally) / fail (in CI) saying what is missing."""
    missing = []
    try:
        from playwright import sync_api
    except ImportError:
        sync_api = None
        missing.append("the playwright package (pip install -r requirements-test.txt)")
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if missing:
        reason = "browser UI test needs " + " and ".join(missing)
        if in_ci():
            pytest.fail(reason + "; CI is set, so this is a failure", pytrace=False)
        pytest.skip(reason)
    return sync_api


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def sync_api() -> Any:
    return require_browser()


@pytest.fixture(scope="module")
def expect(sync_api: Any) -> Any:
    return sync_api.expect


@pytest.fixture(scope="module")
def host(sync_api: Any) -> Iterator[tuple[webui_page.HostPage, str]]:
    page = webui_page.build_page()
    with webui_page.serve(page, free_port()) as url:
        yield page, url


@pytest.fixture(scope="module")
def browser(sync_api: Any) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def ui(host: tuple[webui_page.HostPage, str], browser: Any) -> Iterator["Ui"]:
    page, url = host
    context = browser.new_context(viewport={"width": 960, "height": 720}, color_scheme="light")
    # CI has no internet: gradio's font stylesheets and iframe-resizer get an empty answer at once
    # (aborting them instead holds gradio's first render back by seconds).
    context.route(lambda address: not address.startswith(url), lambda route: route.fulfill(body=""))
    context.set_default_timeout(TIMEOUT_MS)
    try:
        tab = context.new_page()
        tab.goto(url, wait_until="domcontentloaded")
        ui = Ui(tab, page.script)
        ui.header_checkbox.wait_for(state="attached")  # inputAccordion.js has run
        yield ui
    finally:
        context.close()


class Ui:
    """The SAG accordion on the host page, addressed by the script's own elem_ids."""

    def __init__(self, tab: Any, script: Any) -> None:
        self.tab = tab
        self.script = script
        self.accordion_id = script.elem_id("enabled")
        self.accordion = tab.locator(f"#{self.accordion_id}")
        self.header = self.accordion.locator(".label-wrap").first  # PAG's and SEG's accordions nest inside
        self.header_checkbox = tab.locator(f"#{self.accordion_id}-visible-checkbox")

    def slider(self, attr: str) -> Any:
        return self.tab.locator(f"#{self.script.elem_id(attr)}")

    def inner_header(self, attr: str) -> Any:
        """The header of PAG's or SEG's own accordion (attr: its switch)."""
        return self.slider(attr).locator(".label-wrap").first

    def label(self, attr: str) -> Any:
        if attr == "enabled":
            return self.header.locator("span").first
        if attr in SWITCH.values():
            return self.inner_header(attr).locator("span").first
        if FIELDS_BY_ATTR[attr].is_bool:
            return self.slider(attr).locator("label span").first
        return self.slider(attr).locator("[data-testid=block-info]")

    def checkbox(self, attr: str) -> Any:
        return self.slider(attr).locator("input[type=checkbox]")

    def set_number(self, attr: str, value: float) -> None:
        box = self.slider(attr).locator("input[type=number]")
        box.fill(str(value))
        box.blur()

    def generate(self) -> dict:
        """Press Generate and return the SagParams fields the script received (webui_page.received_json)."""
        token = uuid.uuid4().hex
        self.tab.locator(f"#{webui_page.PROMPT_ID} textarea").fill(token)
        self.tab.locator(f"#{webui_page.GENERATE_ID}").click()
        output = f"#{webui_page.RECEIVED_ID} textarea"
        self.tab.wait_for_function("([sel, token]) => document.querySelector(sel).value.includes(token)",
                                   arg=[output, token])
        result = json.loads(self.tab.locator(output).input_value())
        assert result["prompt"] == token
        assert all(spare is None for spare in result["args"][len(FIELDS):]), result["args"]
        return result["sag"]

    def screenshot(self, path: Path) -> int:
        """Save a PNG cropped to the accordion; returns its size in bytes."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tab.mouse.move(0, 0)
        self.accordion.screenshot(path=str(path), animations="disabled")
        return path.stat().st_size


OPEN = re.compile(r"(^|\s)open(\s|$)")


def defaults() -> dict:
    return {f.attr: f.default for f in FIELDS}


def open_accordion(ui: Ui, expect: Any) -> None:
    """Click the accordion's header, as a user opens it; the header checkbox follows (linked)."""
    ui.header.click()
    expect(ui.header).to_have_class(OPEN)
    expect(ui.header_checkbox).to_be_checked()


def test_fresh_page_accordion_is_closed_off_and_hinted(ui: Ui, expect: Any) -> None:
    expect(ui.accordion).to_be_visible()
    expect(ui.header).not_to_have_class(OPEN)
    expect(ui.header_checkbox).not_to_be_checked()
    for field in FIELDS[1:]:
        expect(ui.slider(field.attr)).to_be_hidden()
    assert ui.generate() == defaults()

    # The hover hints of javascript/sag_hints.js, set as `title` by the page's hints script.
    open_accordion(ui, expect)
    for method in (PAG, SEG):
        ui.inner_header(SWITCH[method]).click()
    for field in FIELDS:
        label = ui.label(field.attr)
        expect(label).to_have_text(field.label)
        expect(label).to_have_attribute("title", field.hint)
    # sag_hints.js adds to the webui's map rather than replacing it.
    assert ui.tab.evaluate("() => titles['Generate']") == "Run the job with the settings above (test host)"


def test_opening_enables_and_every_slider_reaches_the_script(ui: Ui, expect: Any) -> None:
    open_accordion(ui, expect)
    for field in SHOWN:
        expect(ui.slider(field.attr)).to_be_visible()
    for field in FOLDED:
        expect(ui.slider(field.attr)).to_be_hidden()
    assert ui.generate() == {**defaults(), "enabled": True}
    if os.environ.get("SAG_UPDATE_DOCS") == "1":
        assert ui.screenshot(DOCS_PNG) < DOCS_IMAGE_LIMIT

    for attr, value in SET_VALUES.items():
        ui.set_number(attr, value)
    assert ui.generate() == {**defaults(), "enabled": True, **SET_VALUES}
    ui.checkbox("preview").check()
    assert ui.generate() == {**defaults(), "enabled": True, **SET_VALUES, "preview": True}

    scale = FIELDS_BY_ATTR["scale"]
    ui.slider("scale").locator("input[type=range]").press("ArrowRight")  # keyboard: one step up
    received = ui.generate()
    assert received["scale"] == pytest.approx(SET_VALUES["scale"] + scale.step)
    assert received == {**defaults(), "enabled": True, **SET_VALUES, "preview": True, "scale": received["scale"]}
    assert ui.screenshot(ARTIFACT_PNG) > 0


def test_header_checkbox_switches_off_without_closing(ui: Ui, expect: Any) -> None:
    open_accordion(ui, expect)
    ui.header_checkbox.click()
    expect(ui.header_checkbox).not_to_be_checked()
    expect(ui.header).to_have_class(OPEN)
    assert ui.generate()["enabled"] is False
    ui.header_checkbox.click()
    expect(ui.header_checkbox).to_be_checked()
    expect(ui.header).to_have_class(OPEN)
    assert ui.generate()["enabled"] is True



def test_opening_pags_and_segs_accordions_switches_each_on_and_their_settings_reach_the_script(
        ui: Ui, expect: Any) -> None:
    open_accordion(ui, expect)
    ui.header_checkbox.click()  # SAG off, the accordion stays open: PAG and SEG alone
    for method in (PAG, SEG):
        header = ui.inner_header(SWITCH[method])
        header.click()
        expect(header).to_have_class(OPEN)
        expect(ui.tab.locator(f"#{ui.script.elem_id(SWITCH[method])}-visible-checkbox")).to_be_checked()
    for field in FOLDED:
        expect(ui.slider(field.attr)).to_be_visible()
    ui.set_number("pag_scale", 2.5)
    ui.set_number("seg_blur_sigma", 4)
    received = ui.generate()
    assert received == {**defaults(), "pag_enabled": True, "seg_enabled": True, "pag_scale": 2.5,
                        "seg_blur_sigma": 4.0}
