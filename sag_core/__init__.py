"""Self-Attention Guidance (Hong et al., ICCV 2023) as small torch functions.

This package knows nothing of the webui or gradio: `scripts/` adapts the host to it.
"""

from .params import FIELDS, Field, SagParamError, SagParams
from .version import __version__

__all__ = ["FIELDS", "Field", "SagParamError", "SagParams", "__version__"]
