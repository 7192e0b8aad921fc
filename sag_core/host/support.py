"""Which hosts run this extension: AUTOMATIC1111's webui 1.6 and newer, Forge and reForge; SD.Next is refused."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any


def unsupported_host(shared: Any, ui_components: Any) -> str | None:
    """Why SAG cannot run in this webui (its `modules.shared` and `modules.ui_components`), or None where it can.

    SD.Next is told apart by what only it has (`shared.Backend`), so A1111 is never mistaken for it.
    """
    if hasattr(shared, "Backend") or hasattr(shared, "native"):
        return ("SD.Next is not supported: it replaced SAG with Perturbed-Attention Guidance; use its "
                "'Attention guidance' setting under Guidance instead")
    if not hasattr(ui_components, "InputAccordion"):
        return "this webui is older than 1.6.0, which SAG needs; update the webui (git pull)"
    return None


def forge_family() -> str | None:
    """"Forge" or "reForge" where the host is one of the Forge family (the `modules_forge` package it imports at
    launch; reForge by its own `reforge_karras_rho` option), None on A1111."""
    if "modules_forge" not in sys.modules and importlib.util.find_spec("modules_forge") is None:
        return None
    shared_options = sys.modules.get("modules.shared_options")
    return "reForge" if "reforge_karras_rho" in getattr(shared_options, "options_templates", {}) else "Forge"
