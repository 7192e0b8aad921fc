"""What the lab takes from the test host (the stand-in webui, tests/host) and from the extension it runs there.

The one place the lab imports them, so that a moved name of either is fixed here alone.
"""

from tests import host

host.use()

import harness  # noqa: E402
from models import TinyLatentDiffusion, sd_alphas_cumprod  # noqa: E402
from modules import processing, sd_hijack_unet, shared  # noqa: E402
from modules.prompt_parser import MulticondBatch  # noqa: E402
from sag_core.attention_hook import find_middle_self_attention  # noqa: E402
from sag_core.blur import gaussian_blur_2d  # noqa: E402
from sag_core.run import RUN_OPTIONS_ATTR, RunOptions  # noqa: E402
from sag_core.saliency import saliency_mask  # noqa: E402

__all__ = ["RUN_OPTIONS_ATTR", "MulticondBatch", "RunOptions", "TinyLatentDiffusion", "find_middle_self_attention",
           "gaussian_blur_2d", "harness", "processing", "saliency_mask", "sd_alphas_cumprod", "sd_hijack_unet",
           "shared"]
