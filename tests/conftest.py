"""Every test runs in the test host (tests/host), the stand-in webui: its root goes first on sys.path."""

import pytest

from tests import host

host.use()


@pytest.fixture(scope="module")
def ext():
    """The extension loaded into the test host as the webui loads it, with both tabs' UI built."""
    import harness
    from modules import sd_hijack_unet

    sd_hijack_unet.apply_optimizations()
    return harness.load_extension()


@pytest.fixture
def sd1_host(ext):
    """A fresh host state and SD1-like model per test; afterwards no hook and no swallowed error."""
    import harness
    from models import TinyLatentDiffusion, tiny_unet
    from modules import script_callbacks, shared

    harness.reset_host_state()
    shared.sd_model = TinyLatentDiffusion(tiny_unet())
    for runner in (ext.txt2img, ext.img2img):
        runner.errors.clear()
    script_callbacks.reported.clear()
    yield
    harness.assert_unhooked()
    assert not ext.txt2img.errors and not ext.img2img.errors and not script_callbacks.reported
