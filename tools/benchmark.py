"""Measure what SAG (and PAG, SEG) costs over CFG-only, on the real ldm U-Net and k-diffusion through the test host.

Everything runs in one process on CPU. Step times are job time / steps; every variant of a table row
is repeated round-robin with the others (order reversed every other round) and the medians are
compared, so machine noise hits all variants alike. Absolute times mean little here: the ratios are
the result. A target gets a verdict only when every round's ratio falls on one side of it; where the
rounds straddle it, the machine's noise is larger than the margin and the verdict is "not measurable
now". Run: python -m tools.benchmark [--quick] [--sizes 32 64 96] [--steps 4] [--repeats 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator
from unittest import mock

import torch
from torch.profiler import ProfilerActivity, profile

from tests import host

host.use()

import harness  # noqa: E402
from ldm.modules.diffusionmodules.openaimodel import UNetModel  # noqa: E402
from models import TinyLatentDiffusion, rerandomise  # noqa: E402
from modules import script_callbacks, scripts, sd_hijack_unet, shared  # noqa: E402
from sag_core import extra_pass  # noqa: E402
from sag_core.attention_hook import SaliencyRecorder  # noqa: E402
from sag_core.perturbation import PerturbedSelfAttention  # noqa: E402
from sag_core.run import SagRun  # noqa: E402
from sag_core.saliency import saliency_from_qk  # noqa: E402

MiB = 2 ** 20
JOB_ARGS = {"cfg": (False,), "disabled": (False, 0.75, 2.0, 1.0), "sag": (True, 0.75, 2.0, 1.0),
            "full-map": (True, 0.75, 2.0, 1.0), "window": (True, 0.75, 2.0, 1.0, 0.0, 0.5)}
FAMILY = {"sag": ("enabled",), "pag": ("pag_enabled",), "seg": ("seg_enabled",), "sag+pag": ("enabled", "pag_enabled"),
          "sag+seg": ("enabled", "seg_enabled"), "pag+seg": ("pag_enabled", "seg_enabled"),
          "all": ("enabled", "pag_enabled", "seg_enabled"), "all, one call each": ("enabled", "pag_enabled", "seg_enabled")}
"""The methods of each family variant (the script's switches); the last with the batched extra call split per method."""
JOB_ARGS.update({kind: ({switch: True for switch in switches},) for kind, switches in FAMILY.items() if kind != "sag"})
Result = tuple[float, torch.Tensor]


def bench_model(channels: int, seed: int) -> TinyLatentDiffusion:
    """An SD1-shaped U-Net (channel_mult 1,2,4,4, 8 heads, attention at /4 and /8) of `channels` base width."""
    unet = UNetModel(image_size=32, in_channels=4, out_channels=4, model_channels=channels, num_res_blocks=1,
                     attention_resolutions=[4, 8], channel_mult=(1, 2, 4, 4), num_heads=8,
                     use_spatial_transformer=True, transformer_depth=1, context_dim=32, legacy=False)
    return TinyLatentDiffusion(rerandomise(unet, seed).eval())


# The comparison SAG, "like the other extensions" (ComfyUI's nodes_sag.py, ashen-sensored's webui SAG):
# the middle block's attn1 forward is replaced by an explicit softmax(QK^T * scale) attention over the
# whole batch (cond and uncond rows, in every U-Net call, the SAG pass included), whose output is
# probs @ V and whose map gives the uncond rows' saliency. Everything else (callbacks, mask, blur,
# extra uncond pass) is our SagRun, so the only difference measured is how saliency is obtained.
class FullMapRecorder(SaliencyRecorder):
    """Takes saliency from the attention map the replaced forward computed, not from a recomputation."""

    def begin_attention(self, tokens: int) -> None:
        """Nothing to do before the forward: the map does not exist yet."""

    def take_map(self, probs: torch.Tensor, rows: int) -> None:
        """Keep the uncond rows' saliency from a (rows * heads, N, N) map, placed as the recorder places them."""
        call_rows = self.guided_rows_of_call(probs.shape[-1])
        if call_rows:
            maps = probs.unflatten(0, (rows, -1))[call_rows]
            self.add(call_rows, maps.mean(1).sum(1))


def full_map_forward(attention: Any, recorder: FullMapRecorder, x: torch.Tensor,
                     context: torch.Tensor | None = None, mask: Any = None, **kwargs: Any) -> torch.Tensor:
    """ldm CrossAttention with the whole (B * heads, N, N) probability map made explicit."""
    context = x if context is None else context
    rows, tokens, _ = x.shape
    split = [t.unflatten(-1, (attention.heads, -1)).transpose(1, 2).flatten(0, 1)
             for t in (attention.to_q(x), attention.to_k(context), attention.to_v(context))]
    probs = (split[0] @ split[1].transpose(-1, -2) * attention.scale).softmax(dim=-1)
    recorder.take_map(probs, rows)
    out = (probs @ split[2]).unflatten(0, (rows, -1)).transpose(1, 2).reshape(rows, tokens, -1)
    return attention.to_out(out)


class FullMapRun(SagRun):
    """SagRun whose saliency comes from the full-map forward installed on the middle attn1."""

    def __init__(self, params: Any, *args: Any) -> None:
        super().__init__(params, *args)
        self.recorder = FullMapRecorder(self.tracker, params.smooth_mask)

    def attach(self, unet: torch.nn.Module, model: torch.nn.Module | None = None, layer: Any = None) -> None:
        super().attach(unet, model, layer)
        attention = self.layer.attentions[0]
        attention.forward = partial(full_map_forward, attention, self.recorder)

    def detach(self) -> None:
        if self.layer is not None:
            vars(self.layer.attentions[0]).pop("forward", None)
        super().detach()


@contextlib.contextmanager
def extension_absent() -> Iterator[scripts.ScriptRunner]:
    """The webui without the extension: no callbacks registered and a ScriptRunner with no scripts."""
    saved = {name: list(entries) for name, entries in script_callbacks.callback_map.items()}
    reported = list(script_callbacks.reported)
    script_callbacks.clear_callbacks()
    try:
        yield scripts.ScriptRunner()
    finally:
        for name, entries in saved.items():
            script_callbacks.callback_map[name][:] = entries
        script_callbacks.reported[:0] = reported


def timed_job(runner: scripts.ScriptRunner, sag: tuple, size: int, steps: int) -> Result:
    """Seconds per sampling step of one Euler a txt2img job at latent `size`, and its output latent."""
    start = time.perf_counter()
    processed = harness.run_job(runner, sag, steps=steps, width=size * 8, height=size * 8, sampler_name="Euler a")
    return (time.perf_counter() - start) / steps, processed.samples


def run_variant(ext: harness.Extension, kind: str, size: int, steps: int) -> Result:
    """One job of a variant: cfg / disabled (SAG off), sag, window (0 to 0.5), full-map, absent."""
    if kind == "absent":
        with extension_absent() as bare:
            return timed_job(bare, (False,), size, steps)
    if kind == "full-map":
        with mock.patch("sag_core.host.a1111.SagRun", FullMapRun):
            return timed_job(ext.txt2img, JOB_ARGS[kind], size, steps)
    if kind == "all, one call each":
        with mock.patch("sag_core.run.predict_together", one_call_each):
            return timed_job(ext.txt2img, JOB_ARGS[kind], size, steps)
    return timed_job(ext.txt2img, JOB_ARGS[kind], size, steps)


def one_call_each(parts: list, predict: Callable, layer: Any = None) -> list[torch.Tensor]:
    """The extra pass without batching: each method's rows in a call of their own (what batching saves)."""
    return [extra_pass.predict_together([part], predict, layer)[0] for part in parts]


def interleaved(ext: harness.Extension, kinds: list[str], size: int, steps: int,
                repeats: int) -> tuple[dict[str, list[float]], dict[str, torch.Tensor]]:
    """Seconds per step of each variant over round-robin repeats (after a short warm-up each), last outputs."""
    for kind in kinds:
        run_variant(ext, kind, size, 1)
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    outputs: dict[str, torch.Tensor] = {}
    for repeat in range(repeats):
        for kind in kinds if repeat % 2 == 0 else kinds[::-1]:
            seconds, outputs[kind] = run_variant(ext, kind, size, steps)
            times[kind].append(seconds)
    return times, outputs


TARGET_SIZE = 64
"""The latent size (512 px) the step-time targets are set at; smaller sizes cost relatively more per pass."""
MIN_ROUNDS = 3
"""Fewer interleaved rounds than this say nothing about the noise, so they give no verdict."""
BUSY_SPREAD = 1.10
"""A variant whose step time varies more than this (max / min over the rounds) was measured on a busy machine."""


def round_ratios(times: dict[str, list[float]], num: str, den: str) -> list[float]:
    """num/den in each round, each round's pair run back to back."""
    return [a / b for a, b in zip(times[num], times[den])]


def paired_ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of num/den."""
    return statistics.median(round_ratios(times, num, den))


def spread(values: list[float]) -> float:
    """max / min of a variant's step times over the rounds: 1.0 is a quiet machine."""
    return max(values) / min(values)


HOOKS = [(SaliencyRecorder, "observe_keys"), *((PerturbedSelfAttention, name) for name in
                                                 ("_before", "_on_projection", "_after"))]
"""Our hook functions that run inside U-Net calls: SAG's saliency work and PAG's and SEG's perturbation."""


def time_split(ext: harness.Extension, kind: str, size: int, steps: int) -> dict[str, float]:
    """One job's seconds in total, inside the U-Net's forward, and inside our hooks (SAG's saliency, PAG's and
    SEG's perturbation), which run within U-Net calls."""
    unet = shared.sd_model.model.diffusion_model
    totals, starts = {"unet": 0.0, "hooks": 0.0}, []

    def timed(function: Callable) -> Callable:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals["hooks"] += time.perf_counter() - start
        return run

    def after_unet(*_: Any) -> None:
        totals["unet"] += time.perf_counter() - starts.pop()

    handles = [unet.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter())),
               unet.register_forward_hook(after_unet)]
    try:
        with contextlib.ExitStack() as patches:
            for owner, name in HOOKS:
                patches.enter_context(mock.patch.object(owner, name, timed(getattr(owner, name))))
            seconds, _ = run_variant(ext, kind, size, steps)
    finally:
        for handle in handles:
            handle.remove()
    return {**totals, "total": seconds * steps}


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (the profiler's C++ start/stop lines)."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def peak_allocated(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Peak bytes live above the level at entry while `fn` runs: CPU allocator events of torch.profiler."""
    from torch._C._profiler import _EventType
    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    events, allocations = list(prof.profiler.kineto_results.experimental_event_tree()), []
    while events:
        event = events.pop()
        events.extend(event.children)
        if event.tag == _EventType.Allocation:
            allocations.append(event)
    allocations.sort(key=lambda e: e.start_time_ns)
    if not allocations:
        return 0, result
    first = allocations[0].extra_fields
    base = first.total_allocated - first.alloc_size
    return max(e.extra_fields.total_allocated for e in allocations) - base, result


def calibration_pattern() -> torch.Tensor:
    """Allocates 32 and 16 MiB, frees the 32, then 8 + 8 MiB: the peak is 48 MiB."""
    first = torch.ones(32 * MiB, dtype=torch.uint8)
    second = torch.ones(16 * MiB, dtype=torch.uint8)
    del first
    return second[:8 * MiB] + torch.ones(8 * MiB, dtype=torch.uint8)


def full_map_saliency(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """Saliency from the whole (B, heads, N, N) probability map at once."""
    probs = torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1)
    return probs.mean(dim=1).sum(dim=1)


def saliency_memory(tokens: int, heads: int, dim: int) -> dict[str, float]:
    """Peak extra MiB of chunked and full-map saliency at (1, heads, tokens, dim), and their largest difference."""
    generator = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, heads, tokens, dim, generator=generator) for _ in range(2))
    chunked_peak, chunked = peak_allocated(lambda: saliency_from_qk(q, k, dim ** -0.5))
    full_peak, full = peak_allocated(lambda: full_map_saliency(q, k, dim ** -0.5))
    return {"chunked": chunked_peak / MiB, "full": full_peak / MiB, "diff": (chunked - full).abs().max().item(),
            "check": peak_allocated(calibration_pattern)[0] / MiB}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"short mode: 32x32 only, 4 steps, {MIN_ROUNDS} rounds (off check too), N=1024")
    parser.add_argument("--sizes", type=int, nargs="+", help="latent sizes (pixels = 8x; default 32 64 96, --quick 32)")
    parser.add_argument("--steps", type=int, default=4, help="sampling steps per job")
    parser.add_argument("--repeats", type=int, default=4, help="interleaved rounds per table row")
    parser.add_argument("--off-repeats", type=int, default=12, help="rounds of the disabled-vs-absent pair")
    parser.add_argument("--channels", type=int, default=64, help="U-Net base width (the tests use 32)")
    parser.add_argument("--tokens", type=int, default=4096, help="N for the saliency memory measurement")
    parser.add_argument("--heads", type=int, default=20)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1, the steadiest on a shared machine; 0: torch's default)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats, args.off_repeats, args.tokens = 4, MIN_ROUNDS, MIN_ROUNDS, 1024
    args.sizes = args.sizes or ([32] if args.quick else [32, TARGET_SIZE, 96])
    if args.repeats < MIN_ROUNDS or args.off_repeats < MIN_ROUNDS:
        parser.error(f"--repeats and --off-repeats must be at least {MIN_ROUNDS}: fewer rounds cannot show the noise")
    return args


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


@dataclass(frozen=True)
class Measured:
    """Each round's ratio of a pair of variants, and the larger spread of the two variants' step times."""

    ratios: list[float]
    spread: float


def measured(times: dict[str, list[float]], num: str, den: str) -> Measured:
    return Measured(round_ratios(times, num, den), max(spread(times[num]), spread(times[den])))


def verdict(result: Measured, target: float, text: str) -> str:
    """PASS when every round's ratio is at most `target`, MISS when every one is above it; NOT MEASURABLE NOW when
    the rounds straddle the target (noise larger than the margin), are too few, or come from a busy machine
    (a variant's spread above BUSY_SPREAD). With the median and the rounds' range."""
    ratios = result.ratios
    low, high = min(ratios), max(ratios)
    if len(ratios) < MIN_ROUNDS or low <= target < high or result.spread > BUSY_SPREAD:
        word = "NOT MEASURABLE NOW"
    else:
        word = "PASS" if high <= target else "MISS"
    return (f"  {word:<18}  {text} <= {target:g}: {statistics.median(ratios):.3f} "
            f"(rounds {low:.3f} to {high:.3f})")


def check(ok: bool, text: str) -> str:
    """A verdict on something noise cannot move (bit identity, a memory peak, a numerical difference)."""
    return f"  {'PASS' if ok else 'MISS':<18}  {text}"


def noise_line(spreads: dict[str, float]) -> str:
    """The rounds' spread per table entry, and a warning only where it shows a busy machine."""
    worst = max(spreads.values())
    line = ("noise: largest max/min step time of a variant over the rounds: "
            + ", ".join(f"{name} {value:.2f}" for name, value in spreads.items()))
    if worst > BUSY_SPREAD:
        line += (f"; above {BUSY_SPREAD:g}, so the machine was busy: verdicts near a target read 'not measurable "
                 "now'; rerun on a quiet machine (--threads 1 is the steadiest)")
    return line


def step_table(ext: harness.Extension, args: argparse.Namespace, main_size: int) -> tuple[Measured, Measured]:
    """Print CFG / SAG / full-map step times per size; SAG/CFG at the main size, and with the 0..0.5 window."""
    print("latent  pixels    mid tokens  CFG s/step  SAG s/step  SAG/CFG  full-map s/step  full-map/CFG  "
          "max|ours-full-map|")
    main = window = Measured([float("nan")], float("inf"))
    spreads = {}
    for size in args.sizes:
        kinds = ["cfg", "sag", "full-map"] + (["window"] if size == main_size else [])
        times, out = interleaved(ext, kinds, size, args.steps, args.repeats)
        med = {kind: statistics.median(values) for kind, values in times.items()}
        if size == main_size:
            main, window = measured(times, "sag", "cfg"), measured(times, "window", "cfg")
        agree = (out["sag"] - out["full-map"]).abs().max().item()
        spreads[f"{size}x{size}"] = max(spread(values) for values in times.values())
        print(f"{size}x{size:<4}{size * 8}x{size * 8:<5} {math.ceil(size / 8) ** 2:>10}  {med['cfg']:>10.3f}  "
              f"{med['sag']:>10.3f}  {paired_ratio(times, 'sag', 'cfg'):>7.3f}  {med['full-map']:>15.3f}  "
              f"{paired_ratio(times, 'full-map', 'cfg'):>12.3f}  {agree:>18.1e}")
    print(noise_line(spreads))
    print(f"\nguidance window start=0 end=0.5 at {main_size}x{main_size}: SAG/CFG = {statistics.median(window.ratios):.3f}")
    return main, window


def family_table(ext: harness.Extension, args: argparse.Namespace, size: int,
                 splits: dict[str, dict[str, float]]) -> dict[str, Measured]:
    """Print each method's and each combination's step time over CFG, interleaved in one run, beside each single
    method's U-Net-time floor (from `splits`, see job_splits); return each round's ratios."""
    kinds = ["cfg", *FAMILY]
    times, _ = interleaved(ext, kinds, size, args.steps, args.repeats)
    results = {kind: measured(times, kind, "cfg") for kind in FAMILY}
    floors = unet_floors(splits)
    print(f"\nSAG, PAG, SEG and their combinations at {size}x{size} (extra U-Net rows per step: 1 per image per method, "
          "in one batched call). U-Net floor: the job's time inside U-Net calls over CFG's (one job each), the "
          "least the step ratio can be; our hooks: their share of the job (they run inside U-Net calls)")
    print("variant              s/step  over CFG  rounds          U-Net floor  our hooks")
    print(f"{'CFG':<20} {statistics.median(times['cfg']):>7.3f}  {1.0:>8.3f}")
    for kind in FAMILY:
        floor = f"{floors[kind][0]:>11.3f}  {floors[kind][1]:>9.2%}" if kind in floors else ""
        ratios = results[kind].ratios
        print(f"{kind:<20} {statistics.median(times[kind]):>7.3f}  {statistics.median(ratios):>8.3f}  "
              f"{min(ratios):.3f}-{max(ratios):.3f}   {floor}")
    print(noise_line({kind: spread(values) for kind, values in times.items()}))
    return results


SPLIT_KINDS = ("cfg", "sag", "pag", "seg")


def job_splits(ext: harness.Extension, args: argparse.Namespace, size: int) -> dict[str, dict[str, float]]:
    """One job each of CFG, SAG, PAG and SEG, timed by time_split: read by the family table and the split report."""
    return {kind: time_split(ext, kind, size, args.steps) for kind in SPLIT_KINDS}


def unet_floors(splits: dict[str, dict[str, float]]) -> dict[str, tuple[float, float]]:
    """For SAG, PAG and SEG alone: the U-Net time of a job over CFG's, and our hooks' share of the job's time."""
    cfg = splits["cfg"]
    return {kind: (splits[kind]["unet"] / cfg["unet"], splits[kind]["hooks"] / splits[kind]["total"])
            for kind in SPLIT_KINDS if kind != "cfg"}


def off_check(ext: harness.Extension, args: argparse.Namespace) -> tuple[Measured, bool]:
    """Print and return the disabled/absent step time ratio and whether their outputs are bit-identical."""
    size, steps = args.sizes[0], 2 * args.steps  # longer jobs, more rounds: the effect sought is tiny
    times, out = interleaved(ext, ["absent", "disabled"], size, steps, args.off_repeats)
    result = measured(times, "disabled", "absent")
    ratios = result.ratios
    identical = torch.equal(out["disabled"], out["absent"])
    print(f"extension disabled vs absent at {size}x{size} ({args.off_repeats} rounds of {steps} steps): "
          f"{statistics.median(times['disabled']):.4f} vs {statistics.median(times['absent']):.4f} s/step, "
          f"ratio {statistics.median(ratios):.4f} (rounds {min(ratios):.4f} to {max(ratios):.4f}); "
          f"bit-identical: {identical}")
    return result, identical


def split_report(splits: dict[str, dict[str, float]], size: int) -> None:
    """Print where a SAG job's time goes (from `splits`, see job_splits): outside U-Net calls, in the saliency
    hook, in U-Net calls."""
    cfg, sag = splits["cfg"], splits["sag"]
    print(f"one job each at {size}x{size}, timed with forward pre/post hooks on diffusion_model: time outside "
          f"U-Net calls: SAG {1 - sag['unet'] / sag['total']:.1%}, CFG {1 - cfg['unet'] / cfg['total']:.1%}; "
          f"saliency hooks (inside U-Net) {sag['hooks'] / sag['total']:.2%} of SAG; "
          f"U-Net time SAG/CFG {sag['unet'] / cfg['unet']:.3f} (the cost of the extra uncond pass alone)")


def memory_report(args: argparse.Namespace) -> dict[str, float]:
    """Print and return the saliency memory comparison."""
    mem = saliency_memory(args.tokens, args.heads, args.head_dim)
    print(f"\nsaliency memory at N={args.tokens}, {args.heads} heads x {args.head_dim}, batch 1: peak bytes live "
          f"above the level at entry, from torch.profiler profile_memory CPU allocation events "
          f"(method check: a known 48.0 MiB peak reads {mem['check']:.1f} MiB)")
    print(f"  chunked saliency_from_qk: {mem['chunked']:.1f} MiB   full map softmax(qk^T): {mem['full']:.1f} MiB   "
          f"max |difference| {mem['diff']:.1e}")
    return mem


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"cores: os.cpu_count()={os.cpu_count()}, torch.get_num_threads()={torch.get_num_threads()}; "
          f"torch {torch.__version__}; load average {load()} (other work on the cores skews the ratios)")
    sd_hijack_unet.apply_optimizations()
    harness.reset_host_state()
    shared.sd_model = bench_model(args.channels, args.seed)
    ext = harness.load_extension()
    main_size = TARGET_SIZE if TARGET_SIZE in args.sizes else args.sizes[-1]
    params = sum(p.numel() for p in shared.sd_model.parameters()) / 1e6
    print(f"U-Net: ldm UNetModel, {args.channels} base channels, {params:.1f}M parameters; Euler a, {args.steps} "
          f"steps, batch 1, CFG 7; {args.repeats} interleaved rounds: median times, ratios = median of per-round "
          "ratios\n")
    main_result, window = step_table(ext, args, main_size)
    splits = job_splits(ext, args, main_size)
    family = family_table(ext, args, main_size, splits)
    off, identical = off_check(ext, args)
    split_report(splits, main_size)
    mem = memory_report(args)

    problems = ext.txt2img.errors + script_callbacks.reported
    if problems:
        print(f"\nWARNING: errors swallowed by the host during the runs: {problems}")
    print(f"\ntargets (load average at the end: {load()})")
    if main_size == TARGET_SIZE:
        print(verdict(main_result, 1.52, f"SAG/CFG at {main_size}x{main_size}"))
        print(verdict(window, 1.27, "window 0..0.5 SAG/CFG"))
        for kind in ("sag", "pag", "seg"):
            print(verdict(family[kind], 1.55, f"{kind.upper()} alone over CFG"))
        print(verdict(family["all"], 2.6, "all three in one batched call over CFG"))
    else:
        print(f"  {'NO VERDICT':<18}  step-time targets are set at {TARGET_SIZE}x{TARGET_SIZE} latents; this run's "
              f"table is at {main_size}x{main_size} (--quick: add --sizes {TARGET_SIZE})")
    print(verdict(off, 1.005, "disabled/absent step time"))
    print(check(identical, f"disabled output bit-identical to absent: {identical}"))
    print(check(mem["chunked"] <= 64, f"chunked saliency peak <= 64 MiB: {mem['chunked']:.1f} MiB "
                                      f"(full map {mem['full']:.1f} MiB)"))
    print(check(mem["diff"] <= 1e-5, f"chunked equals full map within 1e-5: {mem['diff']:.1e}"))


if __name__ == "__main__":
    main()
