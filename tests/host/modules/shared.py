"""Follows modules/shared.py and modules/shared_state.py (v1.10.1): the options and job state SAG meets."""

import time
from types import SimpleNamespace


def default_opts() -> SimpleNamespace:
    return SimpleNamespace(
        batch_cond_uncond=True, skip_early_cond=0.0, s_min_uncond_all=False,
        pad_cond_uncond=False, pad_cond_uncond_v0=False, live_preview_content="Prompt",
        overlay_inpaint=True,
    )


class State:
    def __init__(self) -> None:
        self.interrupted = False
        self.skipped = False
        self.sampling_step = 0
        self.sampling_steps = 0
        self.job_timestamp = "0"
        self.time_start = None

    def begin(self, job: str = "(unknown)") -> None:
        """A new job starts (shared_state.State.begin, called once per UI or API request): its start time."""
        self.interrupted = self.skipped = False
        self.sampling_step = 0
        self.time_start = time.time()
        self.job = job


opts = default_opts()
loaded_hypernetworks: list = []
state = State()
sd_model = None
