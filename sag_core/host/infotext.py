"""The extension's entries in a picture's parameters (the webui's infotext): writing, and reading a paste.

Pure dict work over the field table in sag_core/params.py; the script hands over the webui's dicts.
"""

from __future__ import annotations

from typing import Any, Mapping, MutableMapping

from ..methods import PROMPT, METHODS
from ..params import FIELDS_BY_ATTR, INFOTEXT_FIELDS, SCALE, SagParamError, SagParams

SKIPPED_KEY = "SAG skipped steps"
FAILED_KEY = "SAG failed steps"
PROMPT_BRANCH = "prompt"
BRANCH_KEYS = tuple(method.branch_key for method in METHODS if method.branch_key)
"""The methods' keys that say a method guided the prompt rows (SAG at CFG scale 1 and below)."""
INFOTEXT_KEYS = tuple(f.infotext for f in INFOTEXT_FIELDS) + (SKIPPED_KEY, FAILED_KEY, *BRANCH_KEYS)
FORGE_KEYS = {"sag_scale": "scale", "sag_blur_sigma": "blur_sigma", "sag_threshold": "threshold"}
"""Forge's and reForge's SAG keys, read as ours when a picture has no SAG key of ours."""
MARKERS = tuple(FIELDS_BY_ATTR[attr].infotext for attr in SCALE.values())
"""The keys whose presence switches a method on."""


def read_pasted(params: MutableMapping[str, Any]) -> str | None:
    """Prepare pasted parameters for the controls; a refusal message (and no SAG keys left) if a value is bad.

    Forge's sag_* keys are read as ours; for each method that is on, its keys missing from the paste
    (and the shared ones) are filled with the defaults, so that the controls show the picture's settings.
    """
    if FIELDS_BY_ATTR["scale"].infotext not in params and "sag_scale" in params:
        if str(params.get("sag_enabled", "True")) != "False":
            for forge_key, attr in FORGE_KEYS.items():
                if forge_key in params:
                    params[FIELDS_BY_ATTR[attr].infotext] = params[forge_key]
    if not any(marker in params for marker in MARKERS):
        return None
    try:
        values = SagParams.from_infotext(params)
    except SagParamError as error:
        for key in INFOTEXT_KEYS:
            params.pop(key, None)
        return f"{error}. The pasted infotext leaves Self-Attention Guidance off"
    for key in values.infotext_keys_on():
        field = next(f for f in INFOTEXT_FIELDS if f.infotext == key)
        params[key] = getattr(values, field.attr)
    return None


def write_settings(extra: dict, params: SagParams | None) -> None:
    """Put this job's settings into `extra`, dropping stale ones; values already there keep their place."""
    written = params.infotext() if params is not None else {}
    for field in INFOTEXT_FIELDS:
        if field.infotext not in written:
            extra.pop(field.infotext, None)
    for key in BRANCH_KEYS:
        extra.pop(key, None)
    extra.update(written)


def write_branches(extra: dict, kinds: Mapping[str, str]) -> None:
    """Say in `extra` which methods with a branch key guide the prompt rows (`kinds`: method name -> row kind)."""
    for method in METHODS:
        if method.branch_key and kinds.get(method.name) == PROMPT:
            extra[method.branch_key] = PROMPT_BRANCH


def write_count(extra: dict, key: str, count: int) -> None:
    """Put a batch's step count into `extra` when there is one, else drop a stale one (cells share `extra`)."""
    if count:
        extra[key] = count
    else:
        extra.pop(key, None)
