"""Which job is sampling now: a guard around one job object's `sample`, and the stack of sampling jobs;
which Script-dropdown script runs a job.

A host's job object (the webui's StableDiffusionProcessing) runs its sampling in `p.sample`; a nested
job (an inpainting pass an extension runs from a post-processing hook) samples inside another's
lifetime. The guidance of a job is active exactly while its own `sample` runs, so a nested job never
meets the outer job's guidance and the outer job finds its own again at its next batch. Nothing here
imports the webui: the job object is read by the attribute names its docstrings cite.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Generic, Protocol, TypeVar

GUARD_BASE = "__sag_unguarded_class__"  # on a job's guarded class: the class it replaced
GUARD_STASH = "__sag_stashed_sample__"  # and an instance `p.sample` set before the guard, or None


class Detachable(Protocol):
    def detach(self) -> None:
        """Remove every hook this job's guidance holds on the model."""


G = TypeVar("G", bound=Detachable)


class SamplingJobs(Generic[G]):
    """The guidance of the jobs whose `sample` is running now, innermost last; empty between jobs."""

    def __init__(self) -> None:
        self._running: list[G] = []

    def push(self, generation: G) -> None:
        if self._running:
            self._running[-1].detach()  # re-attached at the outer job's next guided step
        self._running.append(generation)

    def pop(self, generation: G) -> None:
        generation.detach()
        self._running = [running for running in self._running if running is not generation]

    def get(self) -> G | None:
        return self._running[-1] if self._running else None

    def clear(self) -> None:
        for generation in self._running:
            generation.detach()
        self._running = []


def guard_sampling(p: Any, jobs: SamplingJobs, end: Callable[[Any], None], *, generation: Detachable | None = None,
                   error: Exception | None = None) -> None:
    """Guard this job's `p.sample`: raise `error` instead of sampling, or run it with `generation` in `jobs`.

    Exceptions from script methods are swallowed by the webui, so a refused setting fails the job
    here, where the UI and the API report it. `p.sample` spans one batch's sampling, hires pass
    included, and nothing else: the generation is active (and may hook the U-Net) only inside it,
    and is detached in a finally; on an exception `end(p)` runs, since no later hook of the job will.

    The guard is a per-job subclass of `p`'s class (same names), whose `sample` guards only `p`
    itself: a shallow copy made later (`copy(p)`, as extensions make) shares the class but samples
    itself, unguarded. An instance `p.sample` another extension set earlier is kept and called inside.
    """
    unguard_sampling(p)
    base, owner = type(p), weakref.ref(p)
    stashed = vars(p).pop("sample", None)

    def sample(self, *args, **kwargs):
        def unguarded():
            return stashed(*args, **kwargs) if stashed is not None else base.sample(self, *args, **kwargs)

        if self is not owner() or not isinstance(self, guarded):
            return unguarded()
        try:
            if error is not None:
                raise error
            if generation is None:
                return unguarded()
            jobs.push(generation)
            try:
                return unguarded()
            finally:
                jobs.pop(generation)
        except BaseException:
            end(self)  # the job ends here: its postprocess, which would undo the guard, never runs
            raise

    guarded = type(base.__name__, (base,), {
        "__slots__": (), "__qualname__": base.__qualname__, "__module__": base.__module__,
        "sample": sample, GUARD_BASE: base, GUARD_STASH: stashed})
    p.__class__ = guarded


def unguard_sampling(p: Any) -> None:
    """Give `p` back its own class (and an extension's earlier `p.sample`); for a copy of a job too."""
    guarded = type(p)
    base = guarded.__dict__.get(GUARD_BASE)
    if base is None:
        return
    p.__class__ = base
    stashed = guarded.__dict__[GUARD_STASH]
    if stashed is not None and "sample" not in vars(p):
        p.sample = stashed


def selectable_script_title(p: Any) -> str | None:
    """The title of the Script-dropdown script running this job, or None when no such script runs it.

    webui 1.6.0 to 1.10.1: `p.script_args[0]` is the dropdown's index (gr.Dropdown type="index", 0 =
    "None"), from the UI (txt2img.py, img2img.py pass the args to `ScriptRunner.run`) and from the API
    (api.py `init_script_args`: `script_name`'s index + 1). A nonzero index makes `ScriptRunner.run`
    hand the job to `selectable_scripts[index - 1].run`, which calls process_images itself on `p` or on
    copies that share its script_args. Without `script_name` the API calls process_images directly,
    even where a pasted infotext put the dropdown's text there (api.py `apply_infotext`, 1.8+): so
    only an int above 0 counts.
    """
    args = getattr(p, "script_args", None)
    index = args[0] if args else None
    if not isinstance(index, int) or isinstance(index, bool) or index <= 0:
        return None
    selectable = getattr(getattr(p, "scripts", None), "selectable_scripts", None) or []
    try:
        return str(selectable[index - 1].title())
    except Exception:  # a runner without the list, or a script whose title fails: still a selectable run
        return f"script #{index}"


def preview_blocker(p: Any) -> str | None:
    """Why this job's previews must not be added (they would displace images a script reads), or None."""
    title = selectable_script_title(p) if p is not None else None
    return f"the Script dropdown's '{title}' runs this job and reads its images by position" if title else None
