"""Installing SAG the way a user does: Extensions → Install from URL, then Apply and restart UI.

Opt-in and destructive for the webui it drives: set SAG_E2E_INSTALL_URL to a running webui (1.7 or newer,
started restartable as webui.sh starts it, i.e. with SD_WEBUI_RESTART set, and with --api) that does not
have SAG yet. SAG_E2E_REPO_URL is the git URL to install from (default: this checkout, as file://; the
webui clones its committed HEAD). The installed list is saved to out/e2e/ (and docs/ with SAG_UPDATE_DOCS=1).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from chromium import CHROMIUM, CHROMIUM_ARGS, DOCS_IMAGE_LIMIT
from sag_core.params import FIELDS_BY_ATTR
from webui_client import WebuiClient

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT_PNG = ROOT / "out" / "e2e" / "sag-installed.png"
DOCS_PNG = ROOT / "docs" / "sag-installed.png"
DIRNAME = "sd-webui-sag"
OPEN = re.compile(r"\bopen\b")


@pytest.fixture(scope="module")
def fresh_webui() -> WebuiClient:
    url = os.environ.get("SAG_E2E_INSTALL_URL", "").strip()
    if not url:
        pytest.skip("set SAG_E2E_INSTALL_URL to a restartable webui without SAG to test installing from URL")
    client = WebuiClient(url, 600)
    if "self-attention guidance" in client.get("/sdapi/v1/scripts").body.get("txt2img", []):
        pytest.skip(f"{url} already has SAG installed; this test needs a webui without it")
    return client


def main_tab(page: Any, name: str) -> None:
    page.locator("#tabs > .tab-nav > button", has_text=name).click()


def test_install_from_url_then_restart_shows_sag_in_both_tabs_and_it_generates(fresh_webui):
    sync_api = pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect

    repo_url = os.environ.get("SAG_E2E_REPO_URL", ROOT.as_uri())
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 1000}, color_scheme="light").new_page()
        page.set_default_timeout(120_000)
        try:
            page.goto(fresh_webui.url, wait_until="domcontentloaded")
            main_tab(page, "Extensions")
            page.locator("#tabs_extensions > .tab-nav > button", has_text="Install from URL").click()
            page.get_by_label("URL for extension's git repository").fill(repo_url)
            page.get_by_label("Local directory name").fill(DIRNAME)
            page.locator("#tab_extensions").get_by_role("button", name="Install", exact=True).click()
            expect(page.locator("#extension_install_result").first).to_contain_text("Installed into", timeout=300_000)

            page.locator("#tabs_extensions > .tab-nav > button", has_text="Installed").click()
            installed = page.locator("#extensions_installed_html").first
            expect(installed).to_contain_text(DIRNAME)
            ARTIFACT_PNG.parent.mkdir(parents=True, exist_ok=True)
            installed.screenshot(path=str(ARTIFACT_PNG))
            if os.environ.get("SAG_UPDATE_DOCS") == "1":
                installed.screenshot(path=str(DOCS_PNG))
                assert DOCS_PNG.stat().st_size < DOCS_IMAGE_LIMIT

            page.locator("#tab_extensions").get_by_role("button", name="Apply and restart UI").click()
            accordion = page.locator("#script_txt2img_selfattention_guidance_enabled")
            accordion.wait_for(state="visible", timeout=600_000)  # the page reloads itself once the webui is back
            page.wait_for_function("() => typeof titles !== 'undefined' && 'SAG scale' in titles")
            assert page.evaluate("() => titles['SAG scale']") == FIELDS_BY_ATTR["scale"].hint
            expect(page.locator("#script_img2img_selfattention_guidance_enabled")).to_be_attached()

            page.locator("#txt2img_prompt textarea").fill("a lighthouse at dusk")
            for elem_id, value in (("txt2img_width", 128), ("txt2img_height", 128), ("txt2img_steps", 4)):
                box = page.locator(f"#{elem_id} input[type=number]")
                box.fill(str(value))
                box.blur()
            header = accordion.locator(".label-wrap").first
            header.click()
            expect(header).to_have_class(OPEN)
            page.locator("#txt2img_generate").click()
            expect(page.locator("#html_info_txt2img").last).to_contain_text("SAG scale: 0.75", timeout=600_000)
        finally:
            browser.close()
