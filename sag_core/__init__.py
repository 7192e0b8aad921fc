"""Self-Attention Guidance (Hong et al., ICCV 2023) and its successors as small torch functions and hooks.

This package knows nothing of the webui or gradio: `scripts/` adapts the host to it. The layers are
described in docs/architecture.md; importing the package itself loads nothing, so that the method
registry (sag_core/methods) is read only when the field table (sag_core/params.py) is first built.
"""

from .version import __version__

__all__ = ["__version__"]
