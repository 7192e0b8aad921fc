"""A test-only fourth method, "CFG momentum": no extra pass, state across steps, and a change to how CFG combines.

Its term is scale * m, m = decay * m_previous + (cond - uncond): at decay 0 it is plain CFG at
(CFG scale + scale), which lets a test hold it against the host's own CFG. tests/test_fourth_method.py
registers it with the one registry line and checks it everywhere a method appears.
"""

from __future__ import annotations

from sag_core.fields import Field
from sag_core.methods.base import PROMPT, UNCOND, Method


class CfgMomentum(Method):
    name = "momentum"
    predictions = (PROMPT, UNCOND)
    fields = (Field("momentum_enabled", "CFG momentum", None, False, hint="Switch the test-only CFG momentum on."),
              Field("momentum_scale", "Momentum scale", "Momentum scale", 1.0, 0.0, 5.0, 0.1, hint="Its strength."),
              Field("momentum_decay", "Momentum decay", "Momentum decay", 0.0, 0.0, 0.9, 0.1, hint="Its memory."))

    def new_state(self) -> dict:
        return {"m": None, "steps": 0}

    def extra(self, step):
        return None

    def term(self, step, extra, prediction):
        state, diff = step.state, step.pred_cond - step.pred_uncond
        state["m"] = diff if state["m"] is None else step.settings.momentum_decay * state["m"] + diff
        state["steps"] += 1
        return step.settings.momentum_scale * state["m"]


MOMENTUM = CfgMomentum()
