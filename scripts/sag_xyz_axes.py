"""X/Y/Z plot axes for the SAG, PAG and SEG settings, registered once into the webui's own xyz_grid module.

Each axis writes its value into the cell's job object (`p.sag_overrides`, a fresh dict per cell,
since X/Y/Z shallow-copies `p`), where the SAG script reads it; an axis value switches its method on
(SAG for the shared window and layer when no method is on).
Values are confirmed before the plot runs any cell, the window's start and end against each other.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from modules import script_callbacks, scripts
from sag_core.params import FIELDS, FIELDS_BY_ATTR, OVERRIDES_ATTR, Field, SagParamError, SagParams

AXIS_PREFIX = "[SAG] "
XYZ_MODULE_NAMES = ("xyz_grid.py", "scripts.xyz_grid")
SCRIPT_MODULE_NAME = "self_attention_guidance.py"
SWEPT_ATTR = "sag_xyz_window_sweeps"
"""On the plot's `p`: {"start"/"end": values} of the window axes confirmed so far, for the next one to check."""
PENDING_ATTR = "sag_xyz_window_refusal"
"""On the plot's `p`: a window axis's clash with the UI's other bound, raised at the first cell unless a later
axis sweeps that bound (and then checks every combination itself)."""
WINDOW = ("start", "end")


def axis_label(field: Field) -> str:
    return AXIS_PREFIX + (field.axis or field.attr.replace("_", " ").capitalize())


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


def apply_override(field: Field) -> Callable[[Any, Any, Any], None]:
    def apply(p: Any, value: Any, values: Any) -> None:
        refusal = getattr(p, PENDING_ATTR, None) if field.attr in WINDOW else None
        if refusal is not None:  # the first cell, before its job runs: X/Y/Z calls every apply, then the job
            raise refusal
        setattr(p, OVERRIDES_ATTR, {**(getattr(p, OVERRIDES_ATTR, None) or {}), field.attr: value})
    return apply


def confirm_values(field: Field) -> Callable[[Any, Any], None]:
    def confirm(p: Any, values: Any) -> None:
        for value in values:
            field.check(value)
        if field.attr in WINDOW:
            confirm_window(p, field, values)
    return confirm


def confirm_window(p: Any, field: Field, values: Sequence[float]) -> None:
    """Refuse start/end values that would give some cell a start after its end.

    X/Y/Z confirms its axes in order (x, y, z) before any cell runs, each knowing only the axes
    confirmed before it. The other bound is the UI's, or every value of the other axis when one
    confirmed before this one sweeps it: then every combination is checked here. A clash with the
    UI's bound waits on `p` instead, since a later axis may sweep that bound, and is raised by the
    first cell's `apply`, before that cell's job runs.
    """
    swept = {**(getattr(p, SWEPT_ATTR, None) or {}), field.attr: tuple(values)}
    setattr(p, SWEPT_ATTR, swept)
    setattr(p, PENDING_ATTR, None)
    params = job_params(p)
    if params is None:
        return
    for start in swept.get("start", (params.start,)):
        for end in swept.get("end", (params.end,)):
            if start > end:
                refusal = SagParamError(field.attr, f"start ({start:g}{origin('start', swept)}) must not be "
                                                    f"after end ({end:g}{origin('end', swept)})")
                if all(bound in swept for bound in WINDOW):
                    raise refusal
                setattr(p, PENDING_ATTR, refusal)
                return


def origin(attr: str, swept: dict) -> str:
    """Where a window bound of a refused cell comes from, for the message."""
    field = FIELDS_BY_ATTR[attr]
    return f" on the {axis_label(field)} axis" if attr in swept else f", {field.label} in the UI"


def register_axes() -> None:
    """Add one axis per numeric or named-choice field, unless an earlier UI build already added them."""
    xyz = find_xyz_module()
    if xyz is None or not sag_runs_here() or any(option.label.startswith(AXIS_PREFIX) for option in xyz.axis_options):
        return
    for field in FIELDS:
        if field.is_choice:
            xyz.axis_options.append(xyz.AxisOption(axis_label(field), str, apply_override(field),
                                                   confirm=confirm_values(field), choices=lambda f=field: list(f.choices)))
        elif not field.is_bool:
            xyz.axis_options.append(xyz.AxisOption(
                axis_label(field), float, apply_override(field), confirm=confirm_values(field)))


script_callbacks.on_before_ui(register_axes)
