"""How a refused setting reaches the user: the UI shows `SagParamError: message`, the API answers HTTP 422."""

from __future__ import annotations

from typing import Any, Callable, Iterable

from ..params import FIELDS_BY_ATTR, SagParamError, shown


def client_error_type() -> type[SagParamError]:
    """SagParamError as the webui's API answers a bad request: HTTP 422 with the message, no traceback logged.

    modules/api/api.py `handle_exception` (1.6.0 to 1.10.1) answers with the exception's `status_code` and
    `detail` and logs a traceback unless it is a fastapi HTTPException. The UI shows `type: message` as before.
    """
    try:
        from fastapi import HTTPException
    except ImportError:
        return SagParamError

    class Refused(SagParamError, HTTPException):
        def __init__(self, field: str, message: str, value: Any = None) -> None:
            super().__init__(field, message, value)
            self.status_code, self.detail, self.headers = 422, str(self), None

        def __str__(self) -> str:
            return str(self.args[0])

    Refused.__name__ = Refused.__qualname__ = SagParamError.__name__
    return Refused


def refusal_message(error: Exception, loaded_layers: Callable[[], Iterable[str]]) -> tuple[str, str]:
    """(field, message) for a refused job: a bad layer name is told with the loaded model's layers."""
    field = getattr(error, "field", "layer")
    message = str(error).removeprefix("Self-Attention Guidance: ")
    label = FIELDS_BY_ATTR["layer"].label
    if isinstance(error, LookupError):
        message = f"layer ({label}): {error}"
    elif field == "layer" and getattr(error, "value", None) is not None:
        layers = ", ".join(loaded_layers()) or "none"
        message = f"layer ({label}) must be one of the loaded model's self-attention layers: {layers}; " \
                  f"got {shown(error.value)}"
    return field, message
