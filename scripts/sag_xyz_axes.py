"""X/Y/Z plot axes for the SAG settings, registered once into the webui's own xyz_grid module.

Each axis writes its value into the cell's job object (`p.sag_overrides`, a fresh dict per cell,
since X/Y/Z shallow-copies `p`), where the SAG script reads it; an axis value switches SAG on.
"""

from __future__ import annotations

from typing import Any, Callable

from modules import script_callbacks, scripts
from sag_core.params import FIELDS, OVERRIDES_ATTR, Field

AXIS_PREFIX = "[SAG] "
XYZ_MODULE_NAMES = ("xyz_grid.py", "scripts.xyz_grid")
SCRIPT_MODULE_NAME = "self_attention_guidance.py"


def axis_label(field: Field) -> str:
    return AXIS_PREFIX + field.attr.replace("_", " ").capitalize()


def find_xyz_module() -> Any | None:
    """The xyz_grid module the webui loaded (never a second import of it), or None."""
    for data in scripts.scripts_data:
        if data.script_class.__module__ in XYZ_MODULE_NAMES and hasattr(data.module, "AxisOption"):
            return data.module
    return None


def sag_runs_here() -> bool:
    """Whether the SAG script itself is active in this webui (it stays inactive on hosts it does not support)."""
    for data in scripts.scripts_data:
        if data.script_class.__module__ == SCRIPT_MODULE_NAME:
            return getattr(data.module, "UNSUPPORTED", None) is None
    return False


def apply_override(field: Field) -> Callable[[Any, Any, Any], None]:
    def apply(p: Any, value: Any, values: Any) -> None:
        setattr(p, OVERRIDES_ATTR, {**(getattr(p, OVERRIDES_ATTR, None) or {}), field.attr: value})
    return apply


def confirm_values(field: Field) -> Callable[[Any, Any], None]:
    def confirm(p: Any, values: Any) -> None:
        for value in values:
            field.check(value)
    return confirm


def register_axes() -> None:
    """Add one axis per numeric SAG field, unless an earlier UI build already added them."""
    xyz = find_xyz_module()
    if xyz is None or not sag_runs_here() or any(option.label.startswith(AXIS_PREFIX) for option in xyz.axis_options):
        return
    for field in FIELDS:
        if not field.is_bool:
            xyz.axis_options.append(xyz.AxisOption(
                axis_label(field), float, apply_override(field), confirm=confirm_values(field)))


script_callbacks.on_before_ui(register_axes)
