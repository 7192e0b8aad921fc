"""What a SagRun holds to record one step, for unit tests of the hooks: a RowTracker, SAG's SaliencyRecorder
and their hooks on one U-Net, behind the old single-object interface (begin, finish, observe_*).

Not a stand-in for the webui: a test utility kept beside the host so that hook tests read as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

from sag_core.attention_hook import SaliencyHook, SaliencyRecorder
from sag_core.layers import MIDDLE, find_layer
from sag_core.tracking import RowTracker, RowTrackingHook


@dataclass(frozen=True)
class Recorded:
    """A step's record: the guided rows' saliency over `size`, and the conditioning of the guided and other rows."""

    saliency: Optional[torch.Tensor]
    size: tuple[int, int]
    cond: Any = None
    other_cond: Any = None


class Recording:
    """Row tracking and saliency recording of the guided rows, hooked on `unet` (and the sampler's `model`)."""

    def __init__(self, unet: Optional[torch.nn.Module] = None, model: Optional[torch.nn.Module] = None,
                 layer: str = MIDDLE, smooth: bool = False) -> None:
        self.tracker = RowTracker()
        self.recorder = SaliencyRecorder(self.tracker, smooth)
        self.hooks = [] if unet is None else [RowTrackingHook(unet, self.tracker, model),
                                              SaliencyHook(find_layer(unet, layer), self.recorder)]

    @property
    def installed(self) -> bool:
        return bool(self.hooks) and all(hook.installed for hook in self.hooks)

    def install(self) -> "Recording":
        for hook in self.hooks:
            hook.install()
        return self

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()

    def __enter__(self) -> "Recording":
        return self.install()

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def begin(self, x: torch.Tensor, rows: Sequence[int], cond_rows: Sequence[int] = ()) -> None:
        self.tracker.begin(x, {"guided": list(rows), "other": list(cond_rows)})
        self.recorder.begin(x, rows)

    def finish(self) -> Optional[Recorded]:
        size = self.tracker.size
        conds = self.tracker.finish()
        saliency = self.recorder.finish()
        if conds is None or saliency is None:
            return None
        return Recorded(saliency, size, conds["guided"], conds["other"])

    def __getattr__(self, name: str) -> Any:
        """observe_model_call / observe_unet_input go to the tracker, the attention's observations to the recorder."""
        if name in ("observe_model_call", "observe_unet_input"):
            return getattr(self.tracker, name)
        return getattr(self.recorder, name)
