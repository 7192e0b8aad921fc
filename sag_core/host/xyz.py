"""X/Y/Z plot axes over the field table (webui scripts/xyz_grid.py): each axis's label, apply and confirm.

Each axis writes its value into the cell's job object (`p.sag_overrides`, a fresh dict per cell,
since X/Y/Z shallow-copies `p`), where the script reads it; an axis value switches its method on
(the first method for the shared window and layer when no method is on). Values are confirmed
before the plot runs any cell, the window's start and end against each other.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..params import FIELDS, FIELDS_BY_ATTR, OVERRIDES_ATTR, Field, SagParamError, SagParams

AXIS_PREFIX = "[SAG] "
SWEPT_ATTR = "sag_xyz_window_sweeps"
"""On the plot's `p`: {"start"/"end": values} of the window axes confirmed so far, for the next one to check."""
PENDING_ATTR = "sag_xyz_window_refusal"
"""On the plot's `p`: a window axis's clash with the UI's other bound, raised at the first cell unless a later
axis sweeps that bound (and then checks every combination itself)."""
WINDOW = ("start", "end")
JobParams = Callable[[Any], SagParams | None]


def axis_label(field: Field) -> str:
    return AXIS_PREFIX + (field.axis or field.attr.replace("_", " ").capitalize())


def axis_fields() -> tuple[Field, ...]:
    """The fields that get an axis: every number and every named choice."""
    return tuple(field for field in FIELDS if field.is_choice or not field.is_bool)


def apply_override(field: Field) -> Callable[[Any, Any, Any], None]:
    def apply(p: Any, value: Any, values: Any) -> None:
        refusal = getattr(p, PENDING_ATTR, None) if field.attr in WINDOW else None
        if refusal is not None:  # the first cell, before its job runs: X/Y/Z calls every apply, then the job
            raise refusal
        setattr(p, OVERRIDES_ATTR, {**(getattr(p, OVERRIDES_ATTR, None) or {}), field.attr: value})
    return apply


def confirm_values(field: Field, job_params: JobParams) -> Callable[[Any, Any], None]:
    """The axis's confirm: every value checked by its field; `job_params(p)` gives the UI's settings for the window."""
    def confirm(p: Any, values: Any) -> None:
        for value in values:
            field.check(value)
        if field.attr in WINDOW:
            confirm_window(p, field, values, job_params(p))
    return confirm


def confirm_window(p: Any, field: Field, values: Sequence[float], params: SagParams | None) -> None:
    """Refuse start/end values that would give some cell a start after its end.

    X/Y/Z confirms its axes in order (x, y, z) before any cell runs, each knowing only the axes
    confirmed before it. The other bound is the UI's (`params`), or every value of the other axis when
    one confirmed before this one sweeps it: then every combination is checked here. A clash with the
    UI's bound waits on `p` instead, since a later axis may sweep that bound, and is raised by the
    first cell's `apply`, before that cell's job runs.
    """
    swept = {**(getattr(p, SWEPT_ATTR, None) or {}), field.attr: tuple(values)}
    setattr(p, SWEPT_ATTR, swept)
    setattr(p, PENDING_ATTR, None)
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
