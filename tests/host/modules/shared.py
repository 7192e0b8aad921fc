"""Follows modules/shared.py and modules/shared_state.py (v1.10.1): the options and job state SAG meets."""

from types import SimpleNamespace


def default_opts() -> SimpleNamespace:
    return SimpleNamespace(
        batch_cond_uncond=True, skip_early_cond=0.0, s_min_uncond_all=False,
        pad_cond_uncond=False, pad_cond_uncond_v0=False, live_preview_content="Prompt",
    )


class State:
    def __init__(self) -> None:
        self.interrupted = False
        self.skipped = False
        self.sampling_step = 0
        self.sampling_steps = 0
        self.job_timestamp = "0"


opts = default_opts()
loaded_hypernetworks: list = []
state = State()
sd_model = None
