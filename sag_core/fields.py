"""A setting's row in the field table (label, infotext key, default, range, hint, X/Y/Z axis), and its refusals."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

SHARED, DISPLAY = "shared", "display"
"""Field owners that are no method: settings every method shares (window, layer), and display options."""


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
    method: str = SHARED
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
