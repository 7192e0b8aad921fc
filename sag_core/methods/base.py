"""What a guidance method declares (its fields, rows, degradation and term) and what a guided step shows it.

A method is a small object: the run (sag_core/run.py) asks each acting method, at each guided step,
for its rows of the one extra model pass (`extra`), runs that pass for all of them together, and
adds up their `term`s after CFG. A method that needs no extra pass returns None from `extra`; one
that keeps state across steps (a momentum) makes it in `new_state`, which the run keeps per batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Union

import torch

from ..conditioning import Conditioning
from ..fields import Field
from ..spaces import EpsSpace, X0Space

OutputSpace = Union[X0Space, EpsSpace]
MaskFunction = Callable[[torch.Tensor, tuple, tuple, float], torch.Tensor]

UNCOND, PROMPT = "uncond", "prompt"
"""Row kinds a host tells apart in a step: each image's uncond row, and each image's first prompt row."""


@dataclass(frozen=True)
class RunOptions:
    """Choices beyond the user's settings, for experiments such as the lab's ablations (users never set them).

    `sag_branch`: "auto" guides the uncond rows, or the prompt's at CFG scale 1 and below; "negative"
    always the uncond rows. `mask`: replaces `saliency_mask(saliency, grid, size, threshold)`.
    """

    sag_branch: str = "auto"
    mask: MaskFunction | None = None


@dataclass(frozen=True)
class Step:
    """One guided step as a method sees it: its rows (one per image) and what the host predicted for them.

    `saliency` (rows, H*W) over `size` is the self-attention saliency of these rows, recorded only for
    methods that ask for it. `pred_cond` / `pred_uncond` are the host's predictions of each image's
    first prompt row and uncond row where the step has them (None otherwise), for methods that
    recombine CFG; `settings` are the job's SagParams and `state` this method's state for the batch.
    """

    x: torch.Tensor
    sigma: torch.Tensor
    out: torch.Tensor
    cond: Conditioning
    space: OutputSpace
    settings: Any
    cfg_scale: float = 7.0
    options: RunOptions = RunOptions()
    saliency: torch.Tensor | None = None
    size: tuple = ()
    pred_cond: torch.Tensor | None = None
    pred_uncond: torch.Tensor | None = None
    state: Any = None


@dataclass(frozen=True)
class Extra:
    """A method's rows of the extra pass: inputs, noise levels, conditioning and an attention perturbation.

    With `prediction` set the pass is not needed for these rows (their prediction is already known);
    `target` is what the prediction is compared with and `mask` where the method acted (for the preview).
    """

    x: torch.Tensor
    sigma: torch.Tensor
    cond: Conditioning
    perturbation: Any = None
    prediction: torch.Tensor | None = None
    target: torch.Tensor | None = None
    mask: torch.Tensor | None = None


class Method:
    """A guidance method: subclasses set the class attributes and implement `extra` and `term`.

    `fields` lists its settings, its on/off switch first and its scale second (the scale's infotext
    key marks the method as on in a picture's parameters); `layout` gives the rows of its controls
    in its accordion (default: one row of every field but the switch).
    """

    name: str = ""
    fields: tuple[Field, ...] = ()
    layout: tuple[tuple[str, ...], ...] = ()
    records_saliency: bool = False
    predictions: tuple[str, ...] = ()
    """Further row kinds whose host predictions the method reads (Step.pred_cond, Step.pred_uncond): a method
    that recombines CFG names (PROMPT, UNCOND)."""
    branch_key: str | None = None
    """An infotext key that says, when the method guides the prompt rows, that it does (None: never said)."""

    def __init__(self) -> None:
        self.fields = tuple(dataclasses.replace(field, method=self.name) for field in type(self).fields)
        if not self.layout:
            self.layout = (tuple(field.attr for field in self.fields[1:]),)

    @property
    def switch(self) -> str:
        """The attr of the method's on/off field."""
        return self.fields[0].attr

    @property
    def scale(self) -> str:
        """The attr of the method's scale field: the method acts when it is on and this is not 0."""
        return self.fields[1].attr

    def rows(self, cfg_scale: float, options: RunOptions) -> str:
        """Which rows of a step the method guides (UNCOND or PROMPT) at this CFG scale."""
        return PROMPT

    def new_state(self) -> Any:
        """The method's state at the start of a batch (None: it keeps none)."""
        return None

    def extra(self, step: Step) -> Extra | None:
        """The method's rows of the extra pass at this step, or None when it needs none."""
        raise NotImplementedError

    def term(self, step: Step, extra: Extra | None, prediction: torch.Tensor | None) -> torch.Tensor:
        """The method's term, added to the CFG result: from the step, its extra rows and their prediction."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<method {self.name}>"
