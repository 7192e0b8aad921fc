"""The one parameter object shared by the UI, the API, X/Y/Z and infotext, and its field table."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, Mapping, Sequence


SAG, PAG, SEG = "sag", "pag", "seg"
SHARED, DISPLAY = "shared", "display"
METHODS = (SAG, PAG, SEG)
SWITCH = {SAG: "enabled", PAG: "pag_enabled", SEG: "seg_enabled"}
"""Each method's on/off field; a method acts when it is on and its scale is not 0."""
SCALE = {SAG: "scale", PAG: "pag_scale", SEG: "seg_scale"}
"""Each method's scale field; its infotext key marks the method as on in a picture's parameters."""
LAYERS = ("middle", *(f"output {n}" for n in range(12)), *(f"input {n}" for n in range(1, 12)))
"""Layer names the field accepts (ldm's U-Net blocks); the loaded model decides which of them exist."""
LEGACY_COUNT = 7
"""Positional values of 0.2.0 (enabled ... preview); its UI sent a spare None after them, now read as a default."""


class SagParamError(ValueError):
    """A SAG setting was refused; the message names the field, the value and what is allowed.

    `value` is the refused value where one field's check refused it (None otherwise).
    """

    def __init__(self, field: str, message: str, value: Any = None) -> None:
        super().__init__(f"Self-Attention Guidance: {message}")
        self.field = field
        self.value = value


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
    method: str = SAG
    choices: tuple[str, ...] = ()
    axis: str | None = None  # the X/Y/Z axis label after "[SAG] "; None: the attr's words
    widget: str = "slider"  # for numbers: "slider", or "number" where a slider cannot reach every value

    @property
    def is_bool(self) -> bool:
        return isinstance(self.default, bool)

    @property
    def is_choice(self) -> bool:
        return bool(self.choices)

    def describe_range(self) -> str:
        if self.is_bool:
            return "true or false"
        if self.is_choice:
            return "one of " + ", ".join(self.choices)
        return f"a number from {self.minimum:g} to {self.maximum:g}"

    def check(self, value: Any) -> Any:
        """Return `value` as this field's type, or raise SagParamError naming the field."""
        if self.is_choice:
            if isinstance(value, str) and value.strip() in self.choices:
                return value.strip()
            raise self._refusal(value)
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
                                        f"got {shown(value)}", value)

    def parse_text(self, text: str) -> Any:
        """Read this field from infotext, where every value is a string."""
        if self.is_bool:
            lowered = text.strip().lower()
            if lowered in ("true", "false"):
                return lowered == "true"
            raise SagParamError(self.attr, f"{self.infotext} must be True or False; got {shown(text)}")
        if self.is_choice:
            try:
                return self.check(text)
            except SagParamError:
                raise SagParamError(self.attr, f"{self.infotext} must be {self.describe_range()}; "
                                               f"got {shown(text)}") from None
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
    Field("start", "SAG start", "SAG start", 0.0, 0.0, 1.0, 0.01, method=SHARED,
          hint="Fraction of the sampling pass at which SAG (and PAG, SEG) starts guiding."),
    Field("end", "SAG end", "SAG end", 1.0, 0.0, 1.0, 0.01, method=SHARED,
          hint="Fraction of the sampling pass after which SAG (and PAG, SEG) stops guiding."),
    Field("preview", "Show where SAG acted", None, False, method=DISPLAY,
          hint="After the images, add one picture per image showing where SAG blurred, averaged over the guided "
               "steps, drawn over the result. The images themselves do not change."),
    Field("pag_enabled", "Perturbed-Attention Guidance", None, False, method=PAG,
          hint="Switch Perturbed-Attention Guidance on: one extra prompt-branch pass per guided step with the "
               "chosen layer's self-attention replaced by the identity, and the result pushed away from it."),
    Field("pag_scale", "PAG scale", "PAG scale", 3.0, 0.0, 10.0, 0.1, method=PAG, axis="PAG scale",
          hint="How hard PAG pushes away from the prediction with identity self-attention; the paper uses 3 "
               "(with CFG) to 5 (without). 0 switches the effect off."),
    Field("seg_enabled", "Smoothed Energy Guidance", None, False, method=SEG,
          hint="Switch Smoothed Energy Guidance on: one extra prompt-branch pass per guided step with the chosen "
               "layer's queries blurred over the image, and the result pushed away from it."),
    Field("seg_scale", "SEG scale", "SEG scale", 3.0, 0.0, 10.0, 0.1, method=SEG, axis="SEG scale",
          hint="How hard SEG pushes away from the prediction with blurred attention; the paper uses 3. "
               "0 switches the effect off."),
    Field("seg_blur_sigma", "SEG blur sigma", "SEG blur sigma", 9999.0, 0.0, 9999.0, 0.5, method=SEG,
          axis="SEG blur sigma", widget="number",
          hint="Gaussian blur of the queries, in tokens of the chosen layer; 9999 means infinite (every token "
               "attends alike), the paper's default. Smaller values perturb less."),
    Field("layer", "Guided attention layer", "SAG layer", "middle", method=SHARED, choices=LAYERS,
          hint="The U-Net block whose self-attention SAG reads and PAG and SEG perturb: the middle block (the "
               "papers' choice) or an output (up) or input (down) block, numbered as in the model."),
    Field("smooth_mask", "SAG smooth mask", "SAG smooth mask", False,
          hint="Upsample SAG's attention map to the latent bilinearly before the threshold, so the blurred region "
               "follows smooth outlines instead of the paper's nearest-neighbour token squares."),
)

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


@dataclass(frozen=True)
class SagParams:
    """Validated settings of SAG, PAG and SEG; building one with a bad value raises SagParamError."""

    enabled: bool = False
    scale: float = 0.75
    blur_sigma: float = 2.0
    threshold: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preview: bool = False
    pag_enabled: bool = False
    pag_scale: float = 3.0
    seg_enabled: bool = False
    seg_scale: float = 3.0
    seg_blur_sigma: float = 9999.0
    layer: str = "middle"
    smooth_mask: bool = False

    def __post_init__(self) -> None:
        for field in FIELDS:
            object.__setattr__(self, field.attr, field.check(getattr(self, field.attr)))
        if self.start > self.end:
            raise SagParamError("start", f"start ({self.start:g}) must not be after end ({self.end:g})")

    def acts(self, method: str) -> bool:
        """Whether `method` (SAG, PAG or SEG) is on with a scale that changes anything."""
        return getattr(self, SWITCH[method]) and getattr(self, SCALE[method]) != 0.0

    @property
    def active(self) -> bool:
        """Whether sampling needs any work at all (every method off or at scale 0 is plain CFG)."""
        return any(self.acts(method) for method in METHODS)

    @property
    def switched_on(self) -> bool:
        """Whether any method is switched on (its settings then go into the infotext, even at scale 0)."""
        return any(getattr(self, SWITCH[method]) for method in METHODS)

    def in_window(self, progress: float) -> bool:
        """Whether a denoiser call at `progress` (step / total steps, 0..1) is guided."""
        return self.start <= progress and (progress < self.end or self.end >= 1.0)

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
            switches = {SWITCH[SAG]}
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
        for method in METHODS:
            values[SWITCH[method]] = FIELDS_BY_ATTR[SCALE[method]].infotext in infotext
        if not any(values[SWITCH[method]] for method in METHODS):
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
