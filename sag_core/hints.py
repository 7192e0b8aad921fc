"""The browser's hover hints, generated from the field table: `python -m sag_core.hints` writes javascript/sag_hints.js.

The webui serves an extension's javascript/ folder as static files, so the hints are a generated file
kept in the repository; tests/test_ui_contract.py fails when it is not what the table generates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from .fields import Field

HINTS_PATH = Path(__file__).resolve().parents[1] / "javascript" / "sag_hints.js"


def hints_script(fields: Sequence[Field]) -> str:
    """The JavaScript that adds every field's label -> hint to the webui's `titles` map (javascript/hints.js)."""
    hints = json.dumps({field.label: field.hint for field in fields}, indent=8, ensure_ascii=False)
    return ("// Hover hints for the Self-Attention Guidance controls, generated from the field table by\n"
            "// `python -m sag_core.hints` (do not edit: tests/test_ui_contract.py checks it is current).\n"
            "// The webui's javascript/hints.js keeps a global `titles` map from visible label text to tooltip\n"
            "// text and applies it to new elements; this file only adds our labels to that map (no DOM work).\n"
            "(function() {\n"
            f"    var sagHints = {hints[:-1]}    }};\n"
            "    window.titles = Object.assign(window.titles || {}, sagHints);\n"
            "})();\n")


if __name__ == "__main__":
    from .params import FIELDS

    HINTS_PATH.write_text(hints_script(FIELDS))
    print(f"wrote {HINTS_PATH}")
