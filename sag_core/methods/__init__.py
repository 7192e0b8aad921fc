"""The guidance methods, one file each, and the one registry every part of the extension is driven by.

To add a method: write its file (its equation, fields, rows, degradation and term; see base.py) and
append it to METHODS. Append only: the positional API and old infotexts read fields by their order.
"""

from .base import PROMPT, UNCOND, Extra, Method, RunOptions, Step
from .pag import PAG
from .sag import SAG
from .seg import SEG

METHODS: tuple[Method, ...] = (SAG, PAG, SEG)

__all__ = ["METHODS", "PROMPT", "UNCOND", "Extra", "Method", "RunOptions", "Step"]
