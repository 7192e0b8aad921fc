"""X/Y/Z plot axes for every method's settings, registered once into the webui's own xyz_grid module.

The axes themselves (labels, apply, confirm) are built from the field table in sag_core/host/xyz.py;
this file finds the webui's xyz_grid module and the SAG script's slice of a job's args.
"""

from __future__ import annotations

from typing import Any

from modules import script_callbacks, scripts
from sag_core.host.xyz import AXIS_PREFIX, apply_override, axis_fields, axis_label, confirm_values
from sag_core.params import OVERRIDES_ATTR, SagParams

XYZ_MODULE_NAMES = ("xyz_grid.py", "scripts.xyz_grid")
SCRIPT_MODULE_NAME = "self_attention_guidance.py"


def find_xyz_module() -> Any | None:
    """The xyz_grid module the webui loaded (never a second import of it), or None."""
    for data in scripts.scripts_data:
        if data.script_class.__module__ in XYZ_MODULE_NAMES and hasattr(data.module, "AxisOption"):
            return data.module
    return None


def sag_module() -> Any | None:
    """The SAG script's module as the webui loaded it, or None."""
    for data in scripts.scripts_data:
        if data.script_class.__module__ == SCRIPT_MODULE_NAME:
            return data.module
    return None


def sag_runs_here() -> bool:
    """Whether the SAG script itself is active in this webui (it stays inactive on hosts it does not support)."""
    module = sag_module()
    return module is not None and getattr(module, "UNSUPPORTED", None) is None


def job_params(p: Any) -> SagParams | None:
    """The settings a cell starts from: the SAG script's slice of `p.script_args` (the UI's), parsed as its
    `process` parses it; None when `p` runs no SAG script."""
    runner, module = getattr(p, "scripts", None), sag_module()
    script = next((s for s in getattr(runner, "alwayson_scripts", ()) if type(s).__module__ == SCRIPT_MODULE_NAME),
                  None)
    if script is None or module is None:
        return None
    args = p.script_args[script.args_from:script.args_to]
    return SagParams.from_script_args(args).with_overrides(getattr(p, OVERRIDES_ATTR, None))


def register_axes() -> None:
    """Add one axis per numeric or named-choice field, unless an earlier UI build already added them."""
    xyz = find_xyz_module()
    if xyz is None or not sag_runs_here() or any(option.label.startswith(AXIS_PREFIX) for option in xyz.axis_options):
        return
    for field in axis_fields():
        choices = {"choices": lambda f=field: list(f.choices)} if field.is_choice else {}
        xyz.axis_options.append(xyz.AxisOption(axis_label(field), str if field.is_choice else float,
                                               apply_override(field), confirm=confirm_values(field, job_params),
                                               **choices))


script_callbacks.on_before_ui(register_axes)
