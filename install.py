"""Run by the webui at every start-up: SAG needs no packages beyond the webui's own.

It only checks, without importing anything of the webui, that the webui is 1.6 or newer (the CFG
denoiser module and InputAccordion that SAG relies on arrived in 1.6.0), and says so if not.
"""

from __future__ import annotations

import os
import sys

NEEDED = os.path.join("modules", "sd_samplers_cfg_denoiser.py")


def webui_root(extension_dir: str) -> str:
    """extensions/<this extension>/ sits two levels below the webui's root."""
    return os.path.dirname(os.path.dirname(os.path.abspath(extension_dir)))


def check(root: str) -> str | None:
    """A message for the user if the webui at `root` is too old for SAG, else None."""
    if os.path.isdir(os.path.join(root, "modules")) and not os.path.exists(os.path.join(root, NEEDED)):
        return ("[Self-Attention Guidance] This extension needs AUTOMATIC1111 webui 1.6.0 or newer; "
                "this webui is older. Update the webui (git pull) to use SAG.")
    return None


if __name__ == "__main__":
    message = check(webui_root(os.path.dirname(__file__)))
    if message:
        print(message, file=sys.stdout)
