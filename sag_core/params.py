"""The one parameter object shared by the UI, the API, X/Y/Z and infotext, built from the methods' field tables.

The field table is the registered methods' fields (sag_core/methods) and the shared ones below, in
positional order: the order of 0.2.0 and later releases (POSITIONS), then any other field in registry
order. `SagParams` is a frozen dataclass made from that table, so a field exists in one place only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from .fields import DISPLAY, SHARED, Field, SagParamError, shown
from .methods import METHODS, Method

__all__ = ["DISPLAY", "FIELDS", "FIELDS_BY_ATTR", "Field", "METHODS", "METHODS_BY_NAME", "SHARED", "SagParamError",
           "SagParams", "shown"]

SAG, PAG, SEG = "sag", "pag", "seg"
LAYERS = ("middle", *(f"output {n}" for n in range(12)), *(f"input {n}" for n in range(1, 12)))
"""Layer names the field accepts (ldm's U-Net blocks); the loaded model decides which of them exist."""
LEGACY_COUNT = 7
"""Positional values of 0.2.0 (enabled ... preview); its UI sent a spare None after them, now read as a default."""
POSITIONS = ("enabled", "scale", "blur_sigma", "threshold", "start", "end", "preview", "pag_enabled", "pag_scale",
             "seg_enabled", "seg_scale", "seg_blur_sigma", "layer", "smooth_mask")
"""The released positional order (0.2.0's seven, then later releases' appended); new fields follow it."""

SHARED_FIELDS: tuple[Field, ...] = (
    Field("start", "SAG start", "SAG start", 0.0, 0.0, 1.0, 0.01,
          hint="Fraction of the sampling pass at which SAG (and PAG, SEG) starts guiding."),
    Field("end", "SAG end", "SAG end", 1.0, 0.0, 1.0, 0.01,
          hint="Fraction of the sampling pass after which SAG (and PAG, SEG) stops guiding."),
    Field("preview", "Show where SAG acted", None, False, method=DISPLAY,
          hint="After the images, add one picture per image showing where SAG blurred, averaged over the guided "
               "steps, drawn over the result. The images themselves do not change."),
    Field("layer", "Guided attention layer", "SAG layer", "middle", choices=LAYERS,
          hint="The U-Net block whose self-attention SAG reads and PAG and SEG perturb: the middle block (the "
               "papers' choice) or an output (up) or input (down) block, numbered as in the model."),
)
"""The settings every method shares (the guided window and layer) and the display options."""


def field_table(methods: Sequence[Method]) -> tuple[Field, ...]:
    """Every field of `methods` and the shared ones, in positional order; refuses a name used twice."""
    fields = [*(field for method in methods for field in method.fields), *SHARED_FIELDS]
    attrs = [field.attr for field in fields]
    twice = sorted({attr for attr in attrs if attrs.count(attr) > 1})
    if twice:
        raise ValueError(f"fields declared twice: {', '.join(twice)}")
    rank = {attr: position for position, attr in enumerate(POSITIONS)}
    return tuple(sorted(fields, key=lambda field: rank.get(field.attr, len(POSITIONS))))


FIELDS: tuple[Field, ...] = field_table(METHODS)
METHODS_BY_NAME: dict[str, Method] = {method.name: method for method in METHODS}
SWITCH = {method.name: method.switch for method in METHODS}
"""Each method's on/off field; a method acts when it is on and its scale is not 0."""
SCALE = {method.name: method.scale for method in METHODS}
"""Each method's scale field; its infotext key marks the method as on in a picture's parameters."""
FIRST = METHODS[0].name
"""The method a shared setting switches on when an override sets it and no method is on (SAG)."""


FIELDS_BY_ATTR: dict[str, Field] = {f.attr: f for f in FIELDS}

INFOTEXT_FIELDS: tuple[Field, ...] = tuple(f for f in FIELDS if f.infotext is not None)
"""Fields written to and read from infotext (display options such as the preview are not)."""

VALUE_FIELDS: tuple[Field, ...] = tuple(f for f in INFOTEXT_FIELDS if f.attr not in SWITCH.values())
"""The infotext fields a picture's parameters carry (the switches are read from the scale keys)."""

OVERRIDES_ATTR = "sag_overrides"
"""Attribute of a job object carrying per-job overrides {attr: value}, as X/Y/Z cells set them."""


def values_sent_after_dict(tail: Sequence[Any]) -> int:
    """How many values a client sent after a dict of named fields, as far as can be told.

    The webui's API pads a script's args with its UI defaults, so the client's own values end at
    the last one that differs from its position's default (or lies beyond the script's inputs).
    """
    sent = 0
    for position, value in enumerate(tail, start=1):
        if position >= len(FIELDS) or value != FIELDS[position].default:
            sent = position
    return sent


def without_spare_slot(args: tuple) -> tuple:
    """The script's values without its last, spare input when that is empty (None, as the UI sends it).

    The webui's API drops positional values beyond a script's inputs without a word (Api.init_script_args);
    a filled spare input is kept, so that SagParams.from_args sees the list is too long and refuses it.
    """
    if len(args) == len(FIELDS) + 1 and args[-1] is None:
        return tuple(args[:-1])
    return tuple(args)


class _Settings:
    """The behaviour of SagParams; its fields come from the field table (see `SagParams` below)."""

    def __post_init__(self) -> None:
        for field in FIELDS:
            object.__setattr__(self, field.attr, field.check(getattr(self, field.attr)))
        if self.start > self.end:
            raise SagParamError("start", f"start ({self.start:g}) must not be after end ({self.end:g})")

    def acts(self, method: str) -> bool:
        """Whether `method` (a registered method's name) is on with a scale that changes anything."""
        return getattr(self, SWITCH[method]) and getattr(self, SCALE[method]) != 0.0

    @property
    def active(self) -> bool:
        """Whether sampling needs any work at all (every method off or at scale 0 is plain CFG)."""
        return any(self.acts(method) for method in SWITCH)

    @property
    def switched_on(self) -> bool:
        """Whether any method is switched on (its settings then go into the infotext, even at scale 0)."""
        return any(getattr(self, SWITCH[method]) for method in SWITCH)

    def in_window(self, progress: float) -> bool:
        """Whether a denoiser call at `progress` (step / total steps, 0..1) is guided."""
        return self.start <= progress and (progress < self.end or self.end >= 1.0)

    def acting(self) -> tuple[Method, ...]:
        """The registered methods that act, in registry order."""
        return tuple(method for method in METHODS if self.acts(method.name))

    def replace(self, **changes: Any) -> "SagParams":
        return dataclasses.replace(self, **changes)

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> "SagParams":
        """These settings with per-job overrides applied; an override switches its method on (a shared
        setting switches SAG on when no method is)."""
        if not overrides:
            return self
        switches = {SWITCH[FIELDS_BY_ATTR[attr].method] for attr in overrides
                    if attr in FIELDS_BY_ATTR and FIELDS_BY_ATTR[attr].method in SWITCH}
        if not switches and not self.switched_on:
            switches = {SWITCH[FIRST]}
        return self.replace(**{switch: True for switch in switches}, **dict(overrides))

    @classmethod
    def from_args(cls, args: Sequence[Any]) -> "SagParams":
        """From script args: the positional list in UI order, or one dict of named fields.

        The webui's API pads `args` with the UI defaults up to the script's length, so a dict may be
        followed by default values; anything else after it is refused. A None after 0.2.0's seven
        values (where its UI sent a spare None) takes the field's default.
        """
        if args and isinstance(args[0], Mapping):
            sent = values_sent_after_dict(args[1:])
            if sent:
                raise SagParamError(
                    "args", "args: named fields given as a dict must be the only value in args; "
                    f"got {sent} more value(s) after it")
            return cls.from_mapping(args[0])
        if len(args) > len(FIELDS):
            raise SagParamError(
                "args", f"args: more than {len(FIELDS)} positional values; at most {len(FIELDS)} are accepted "
                f"({', '.join(f.attr for f in FIELDS)})")
        return cls(**{field.attr: value for position, (field, value) in enumerate(zip(FIELDS, args))
                      if not (position >= LEGACY_COUNT and value is None)})

    @classmethod
    def from_script_args(cls, args: Sequence[Any]) -> "SagParams":
        """From the script's slice of a job's args, as the UI or the API filled it (spare input included)."""
        return cls.from_args(without_spare_slot(tuple(args)))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "SagParams":
        """From named fields; missing ones take their defaults, unknown ones are refused."""
        unknown = [key for key in values if key not in FIELDS_BY_ATTR]
        if unknown:
            raise SagParamError(
                str(unknown[0]), f"unknown field {unknown[0]!r}; known fields are {', '.join(FIELDS_BY_ATTR)}")
        return cls(**dict(values))

    @classmethod
    def from_infotext(cls, infotext: Mapping[str, str]) -> "SagParams":
        """From parsed infotext: each method on when its scale key is present; the defaults (off) without any."""
        values = {f.attr: f.parse_text(str(infotext[f.infotext])) for f in INFOTEXT_FIELDS if f.infotext in infotext}
        for method in SWITCH:
            values[SWITCH[method]] = FIELDS_BY_ATTR[SCALE[method]].infotext in infotext
        if not any(values[SWITCH[method]] for method in SWITCH):
            return cls()
        return cls(**values)

    def as_args(self) -> list[Any]:
        """The positional list in UI order (the inverse of from_args)."""
        return [getattr(self, f.attr) for f in FIELDS]

    def infotext(self) -> dict[str, Any]:
        """Infotext entries: each method's scale when it is on (it marks it as on), with its other settings
        and the shared ones when not default; nothing when every method is off."""
        entries: dict[str, Any] = {}
        for field in VALUE_FIELDS:
            on = self.switched_on if field.method == SHARED else getattr(self, SWITCH[field.method])
            value = getattr(self, field.attr)
            if on and (field.attr in SCALE.values() or value != field.default):
                entries[field.infotext] = value
        return entries

    def infotext_keys_on(self) -> list[str]:
        """The infotext keys of the methods that are on and of the shared fields (when any is): what a
        paste sets, so that keys left out of a picture's parameters reset their controls to the defaults."""
        return [field.infotext for field in VALUE_FIELDS
                if (self.switched_on if field.method == SHARED else getattr(self, SWITCH[field.method]))]


SagParams = dataclasses.make_dataclass(
    "SagParams", [(f.attr, type(f.default), dataclasses.field(default=f.default)) for f in FIELDS],
    bases=(_Settings,), frozen=True, namespace={"__module__": __name__})
SagParams.__doc__ = "Validated settings of every registered method; building one with a bad value raises SagParamError."
