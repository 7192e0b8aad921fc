"""The one parameter object shared by the UI, the API, X/Y/Z and infotext, and its field table."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, Mapping, Sequence


class SagParamError(ValueError):
    """A SAG setting was refused; the message names the field, the value and what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"Self-Attention Guidance: {message}")
        self.field = field


def shown(value: Any) -> str:
    """`value` as a message shows it: its repr, shortened when long (an int of hundreds of digits)."""
    try:
        text = repr(value)
    except ValueError:  # an int longer than Python prints (sys.get_int_max_str_digits)
        return f"an integer of {value.bit_length()} bits"
    return text if len(text) <= 40 else f"{text[:20]}...{text[-8:]} ({len(text)} characters)"


@dataclass(frozen=True)
class Field:
    """One SAG setting: where it lives on `SagParams`, how it is shown, and what it accepts."""

    attr: str
    label: str
    infotext: str | None
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    hint: str = ""

    @property
    def is_bool(self) -> bool:
        return isinstance(self.default, bool)

    def describe_range(self) -> str:
        if self.is_bool:
            return "true or false"
        return f"a number from {self.minimum:g} to {self.maximum:g}"

    def check(self, value: Any) -> Any:
        """Return `value` as this field's type, or raise SagParamError naming the field."""
        if self.is_bool:
            if isinstance(value, bool):
                return value
            raise SagParamError(self.attr, f"{self.attr} ({self.label}) must be true or false; got {shown(value)}")
        if isinstance(value, bool) or not isinstance(value, Real):
            raise self._refusal(value)
        try:
            number = float(value)
        except OverflowError:  # an int or Fraction beyond float range (10**400 from a script or the API)
            raise self._refusal(value) from None
        if not math.isfinite(number) or not self.minimum <= number <= self.maximum:
            raise self._refusal(value)
        return number

    def _refusal(self, value: Any) -> SagParamError:
        return SagParamError(self.attr, f"{self.attr} ({self.label}) must be {self.describe_range()}; "
                                        f"got {shown(value)}")

    def parse_text(self, text: str) -> Any:
        """Read this field from infotext, where every value is a string."""
        if self.is_bool:
            lowered = text.strip().lower()
            if lowered in ("true", "false"):
                return lowered == "true"
            raise SagParamError(self.attr, f"{self.infotext} must be True or False; got {shown(text)}")
        try:
            return self.check(float(text))
        except ValueError as error:
            if isinstance(error, SagParamError):
                raise
            raise SagParamError(
                self.attr, f"{self.infotext} must be {self.describe_range()}; got {shown(text)}") from None


FIELDS: tuple[Field, ...] = (
    Field("enabled", "Self-Attention Guidance", "SAG enabled", False,
          hint="Switch Self-Attention Guidance on: one extra uncond U-Net pass per guided step."),
    Field("scale", "SAG scale", "SAG scale", 0.75, -2.0, 5.0, 0.05,
          hint="How hard SAG pushes away from the blurred prediction. 0 switches the effect off; 0.5 to 1 is typical, "
               "with every sampler (DDIM CFG++ too). At CFG scale 1 and below SAG sharpens the prompt's prediction."),
    Field("blur_sigma", "SAG blur sigma", "SAG blur sigma", 2.0, 0.0, 10.0, 0.1,
          hint="Gaussian blur strength (in latent pixels) applied where self-attention is concentrated. 1 to 3 is typical."),
    Field("threshold", "SAG mask threshold", "SAG threshold", 1.0, 0.0, 4.0, 0.05,
          hint="Tokens receiving more than this multiple of the average self-attention are blurred. 1 means above average."),
    Field("start", "SAG start", "SAG start", 0.0, 0.0, 1.0, 0.01,
          hint="Fraction of the sampling pass at which SAG starts guiding."),
    Field("end", "SAG end", "SAG end", 1.0, 0.0, 1.0, 0.01,
          hint="Fraction of the sampling pass after which SAG stops guiding."),
    Field("preview", "Show where SAG acted", None, False,
          hint="After the images, add one picture per image showing where SAG blurred, averaged over the guided "
               "steps, drawn over the result. The images themselves do not change."),
)

FIELDS_BY_ATTR: dict[str, Field] = {f.attr: f for f in FIELDS}

INFOTEXT_FIELDS: tuple[Field, ...] = tuple(f for f in FIELDS if f.infotext is not None)
"""Fields written to and read from infotext (display options such as the preview are not)."""

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


@dataclass(frozen=True)
class SagParams:
    """Validated SAG settings; building one with a bad value raises SagParamError."""

    enabled: bool = False
    scale: float = 0.75
    blur_sigma: float = 2.0
    threshold: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preview: bool = False

    def __post_init__(self) -> None:
        for field in FIELDS:
            object.__setattr__(self, field.attr, field.check(getattr(self, field.attr)))
        if self.start > self.end:
            raise SagParamError("start", f"start ({self.start:g}) must not be after end ({self.end:g})")

    @property
    def active(self) -> bool:
        """Whether sampling needs any SAG work at all (scale 0 is plain CFG)."""
        return self.enabled and self.scale != 0.0

    def in_window(self, progress: float) -> bool:
        """Whether a denoiser call at `progress` (step / total steps, 0..1) is guided."""
        return self.start <= progress and (progress < self.end or self.end >= 1.0)

    def replace(self, **changes: Any) -> "SagParams":
        return dataclasses.replace(self, **changes)

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> "SagParams":
        """These settings with per-job overrides applied; any override also switches SAG on."""
        if not overrides:
            return self
        return self.replace(enabled=True, **dict(overrides))

    @classmethod
    def from_args(cls, args: Sequence[Any]) -> "SagParams":
        """From script args: the positional list in UI order, or one dict of named fields.

        The webui's API pads `args` with the UI defaults up to the script's length, so a dict may be
        followed by default values; anything else after it is refused.
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
        return cls(**{field.attr: value for field, value in zip(FIELDS, args)})

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
        """From parsed infotext: enabled when the scale key is present, else the defaults (off)."""
        scale_key = FIELDS_BY_ATTR["scale"].infotext
        if scale_key not in infotext:
            return cls()
        values = {f.attr: f.parse_text(str(infotext[f.infotext])) for f in INFOTEXT_FIELDS if f.infotext in infotext}
        values["enabled"] = True
        return cls(**values)

    def as_args(self) -> list[Any]:
        """The positional list in UI order (the inverse of from_args)."""
        return [getattr(self, f.attr) for f in FIELDS]

    def infotext(self) -> dict[str, Any]:
        """Infotext entries: none when off; scale always (it marks SAG as on); others when not default."""
        if not self.enabled:
            return {}
        entries: dict[str, Any] = {}
        for field in INFOTEXT_FIELDS[1:]:
            value = getattr(self, field.attr)
            if field.attr == "scale" or value != field.default:
                entries[field.infotext] = value
        return entries
