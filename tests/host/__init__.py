"""The test host: a stand-in for the parts of the AUTOMATIC1111 webui (v1.10.1) the extension talks to (README.md).

Its modules are the webui's top-level ones (`modules`, `scripts`) and the host's own (`harness`, `models`, ...),
imported by those names once `use()` has run, never as `tests.host.*` (that would load second copies).
"""

import sys
from pathlib import Path

WEBUI_ROOT = Path(__file__).resolve().parent


def use() -> None:
    """Put the stand-in webui root first on sys.path, as the webui's launch does, so `import modules` finds it."""
    root = str(WEBUI_ROOT)
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
