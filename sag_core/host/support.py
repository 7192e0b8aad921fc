"""Which hosts run this extension: AUTOMATIC1111's webui 1.6 and newer; the forks are told apart and named."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any


def unsupported_host(shared: Any, ui_components: Any) -> str | None:
    """Why SAG cannot run in this webui (its `modules.shared` and `modules.ui_components`), or None where it can.

    Each fork is told apart by what only it has (SD.Next: `shared.Backend`; Forge and reForge: the
    `modules_forge` package, reForge's own options), so A1111 is never mistaken for one of them.
    """
    if hasattr(shared, "Backend") or hasattr(shared, "native"):
        return ("SD.Next is not supported: it replaced SAG with Perturbed-Attention Guidance; use its "
                "'Attention guidance' setting under Guidance instead")
    if "modules_forge" in sys.modules or importlib.util.find_spec("modules_forge") is not None:
        shared_options = sys.modules.get("modules.shared_options")
        fork = "reForge" if "reforge_karras_rho" in getattr(shared_options, "options_templates", {}) else "Forge"
        return (f"{fork} is not supported: it has its own SAG; use its built-in "
                "'SelfAttentionGuidance Integrated' script instead")
    if not hasattr(ui_components, "InputAccordion"):
        return "this webui is older than 1.6.0, which SAG needs; update the webui (git pull)"
    return None
