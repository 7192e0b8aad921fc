"""Opt-in end-to-end suite: runs only when SAG_E2E_URL names a running webui started with --api.

    SAG_E2E_URL           the webui with this extension installed, e.g. http://127.0.0.1:7860
    SAG_E2E_BASELINE_URL  optional: the same webui, same model and settings, started with
                          --disable-extra-extensions (for "off equals the webui without SAG")
    SAG_E2E_SIZE          image side in pixels (default 256; a multiple of 8)
    SAG_E2E_STEPS         sampling steps per image (default 8)
    SAG_E2E_TIMEOUT       seconds to wait for one request (default 1800)
    SAG_E2E_CONTROLNET_MODEL  optional: the ControlNet model for test_webui_controlnet.py, by its listed name
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from webui_client import WebuiClient  # noqa: E402

URL_VARIABLE = "SAG_E2E_URL"


def _timeout() -> float:
    return float(os.environ.get("SAG_E2E_TIMEOUT", "1800"))


@pytest.fixture(scope="session")
def webui() -> WebuiClient:
    url = os.environ.get(URL_VARIABLE, "").strip()
    if not url:
        pytest.skip(f"end-to-end suite: set {URL_VARIABLE} to a running webui started with --api")
    client = WebuiClient(url, _timeout())
    answer = client.get("/sdapi/v1/scripts")
    if answer.status != 200:
        pytest.fail(f"{url}/sdapi/v1/scripts answered HTTP {answer.status}: is the webui started with --api?")
    return client


@pytest.fixture(scope="session")
def baseline() -> WebuiClient:
    url = os.environ.get("SAG_E2E_BASELINE_URL", "").strip()
    if not url:
        pytest.skip("set SAG_E2E_BASELINE_URL to the same webui started with --disable-extra-extensions")
    return WebuiClient(url, _timeout())


@pytest.fixture(scope="session")
def size() -> int:
    side = int(os.environ.get("SAG_E2E_SIZE", "256"))
    assert side % 8 == 0 and side >= 64, "SAG_E2E_SIZE must be a multiple of 8, at least 64"
    return side


@pytest.fixture(scope="session")
def steps() -> int:
    return int(os.environ.get("SAG_E2E_STEPS", "8"))
