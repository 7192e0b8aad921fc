"""The rows of the quality lab: what each samples, grouped into the sets the lab runs.

A row is one job setting (sampler, steps, CFG scale, SAG's values, PAG's and SEG's, mask variant),
sampled once per model, training seed and sampling seed. Its key hashes only what changes the
samples, so a renamed row keeps its cached scores.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

SAG_DEFAULTS = {"scale": 0.75, "blur_sigma": 2.0, "threshold": 1.0, "start": 0.0, "end": 1.0}  # the extension's
MASKS = ("saliency", "random", "inverse")  # SAG's mask; one of the same coverage at random places; its complement
BRANCHES = ("auto", "negative")  # auto: the extension's choice (prompt branch at CFG <= 1); negative: always uncond
DEFAULT_CFG = 3.0
DEFAULT_STEPS = 20
INFINITE = 9999.0  # SEG's blur sigma that means infinite (uniform attention): the extension's and diffusers' default


def pag(scale: float = 3.0) -> dict:
    """PAG's named fields (sag_core/params.py) at `scale`; 3 is the paper's and diffusers' default with CFG."""
    return {"pag_enabled": True, "pag_scale": float(scale)}


UP_BLOCK = "output 0"  # the lab U-Net's first up-block attention (same 8x8 grid as its middle block)


def seg(scale: float = 3.0, sigma: float = INFINITE) -> dict:
    """SEG's named fields at `scale` and query blur `sigma` (tokens); 3 and infinite are diffusers' defaults."""
    return {"seg_enabled": True, "seg_scale": float(scale), "seg_blur_sigma": float(sigma)}


@dataclass(frozen=True)
class Row:
    """One table row. `sag` holds SAG's values that differ from the defaults (None = SAG off); `family`
    PAG's and SEG's named fields (None = both off)."""

    group: str
    name: str
    cfg_scale: float = DEFAULT_CFG
    sag: dict | None = None
    family: dict | None = None
    steps: int = DEFAULT_STEPS
    sampler: str = "Euler a"
    conditional: bool = True
    mask: str = "saliency"
    branch: str = "auto"
    baseline: str | None = None  # the row this one is compared with, seed by seed (same noise, same labels)
    best_cfg: bool = field(default=False)  # the CFG scale is the model's best on the frontier, set at run time

    def sag_values(self) -> dict | None:
        return None if self.sag is None else {**SAG_DEFAULTS, **self.sag}

    def script_values(self) -> tuple:
        """The script's inputs as one dict of named fields (SagParams.from_args): SAG's, PAG's and SEG's."""
        values = self.sag_values()
        named = {"enabled": False} if values is None else {"enabled": True, **values}
        return ({**named, **(self.family or {})},)

    def describe_sag(self) -> str:
        values = self.sag_values()
        if values is None:
            return "off"
        text = (f"{values['scale']:g} / {values['blur_sigma']:g} / {values['threshold']:g} / "
                f"{values['start']:g}-{values['end']:g}")
        extras = [self.mask + " mask"] if self.mask != "saliency" else []
        extras += ["negative branch"] if self.branch != "auto" else []
        return text + (f" ({', '.join(extras)})" if extras else "")

    def describe_family(self) -> str:
        """PAG's and SEG's settings, as "PAG 3; SEG 3, sigma inf"; "" when both are off."""
        family = self.family or {}
        parts = [f"PAG {family['pag_scale']:g}"] if family.get("pag_enabled") else []
        if family.get("seg_enabled"):
            sigma = family["seg_blur_sigma"]
            parts.append(f"SEG {family['seg_scale']:g}, sigma {'inf' if sigma >= INFINITE else f'{sigma:g}'}")
        return "; ".join(parts) + (f" ({family['layer']})" if "layer" in family else "")

    def describe(self) -> str:
        """The guidance methods' settings: SAG's (scale / sigma / threshold / window, or off), then PAG's and SEG's."""
        family = self.describe_family()
        if family and self.sag is None:
            return family
        return self.describe_sag() + (f"; {family}" if family else "")

    def key(self) -> str:
        """A short hash of what changes this row's samples (not its name, group or baseline).

        PAG's and SEG's fields enter only when set, so the rows made before them keep their keys (and cells).
        """
        what = {"cfg": self.cfg_scale, "sag": self.sag_values(), "steps": self.steps, "sampler": self.sampler,
                "conditional": self.conditional, "mask": self.mask, "branch": self.branch}
        if self.family:
            what["family"] = self.family
        return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]


NO_GUIDANCE, CFG = "no guidance", "CFG"
CFG_SCALES = (1.5, 2.0, 3.0, 4.0, 5.0, 7.0)


def cfg_name(scale: float, steps: int = DEFAULT_STEPS) -> str:
    return CFG if (scale, steps) == (DEFAULT_CFG, DEFAULT_STEPS) else (
        f"CFG {scale:g}" + (f", {steps} steps" if steps != DEFAULT_STEPS else ""))


def frontier_rows() -> list[Row]:
    """What a user can buy with U-Net passes: CFG's scales and steps, against CFG + SAG and its cheaper windows."""
    rows = [Row("frontier", NO_GUIDANCE, 1.0)]
    rows += [Row("frontier", cfg_name(scale), scale, baseline=None if scale == DEFAULT_CFG else CFG)
             for scale in CFG_SCALES]
    rows += [Row("frontier", cfg_name(DEFAULT_CFG, steps), steps=steps, baseline=CFG) for steps in (25, 30)]
    rows += [
        Row("frontier", "CFG + SAG", sag={}, baseline=CFG),
        Row("frontier", "best CFG + SAG", sag={}, best_cfg=True, baseline="best CFG"),
        Row("frontier", "best CFG", best_cfg=True, baseline=CFG),
        Row("frontier", "CFG + SAG 0-0.5", sag={"end": 0.5}, baseline=CFG),
        Row("frontier", "CFG + SAG 0.25-0.75", sag={"start": 0.25, "end": 0.75}, baseline=CFG),
        Row("frontier", "CFG + SAG 0.5-1", sag={"start": 0.5}, baseline=CFG),
        Row("frontier", "SAG alone", 1.0, sag={}, baseline=NO_GUIDANCE),
    ]
    return rows


def sampler_rows() -> list[Row]:
    """The same comparison under DPM++ 2M, DDIM and DDIM CFG++ (the webui scales CFG++'s CFG by 1/12.5).

    With SAG's passes spent on 30 steps instead, for the two samplers a user would switch to.
    """
    return [
        Row("samplers", "DPM++ 2M CFG", sampler="DPM++ 2M"),
        Row("samplers", "DPM++ 2M CFG + SAG", sampler="DPM++ 2M", sag={}, baseline="DPM++ 2M CFG"),
        Row("samplers", "DPM++ 2M CFG, 30 steps", steps=30, sampler="DPM++ 2M", baseline="DPM++ 2M CFG"),
        Row("samplers", "DDIM CFG", sampler="DDIM"),
        Row("samplers", "DDIM CFG + SAG", sampler="DDIM", sag={}, baseline="DDIM CFG"),
        Row("samplers", "DDIM CFG, 30 steps", steps=30, sampler="DDIM", baseline="DDIM CFG"),
        Row("samplers", "DDIM CFG++ 7.5", 7.5, sampler="DDIM CFG++"),
        Row("samplers", "DDIM CFG++ 7.5 + SAG", 7.5, sampler="DDIM CFG++", sag={}, baseline="DDIM CFG++ 7.5"),
    ]


def ablation_rows() -> list[Row]:
    """The paper's ablations on top of CFG: the mask (Table 5), blur sigma, scale, the CFG-1 branch, no class."""
    rows = [Row("mask", f"global blur, scale {scale:g}", sag={"threshold": 0.0, "scale": scale}, baseline=CFG)
            for scale in (0.1, 0.3, 0.5, 0.75)]
    rows += [
        Row("mask", "random mask, SAG's coverage", sag={}, mask="random", baseline=CFG),
        Row("mask", "inverse mask", sag={}, mask="inverse", baseline=CFG),
        Row("mask", "threshold 0.5", sag={"threshold": 0.5}, baseline=CFG),
        Row("mask", "threshold 1.5", sag={"threshold": 1.5}, baseline=CFG),
        Row("mask", "sigma 0 (plumbing check)", sag={"blur_sigma": 0.0}, baseline=CFG),
    ]
    rows += [Row("blur sigma", f"sigma {sigma:g}", sag={"blur_sigma": sigma}, baseline=CFG)
             for sigma in (1.0, 3.0, 4.0, 6.0)]
    rows += [Row("scale", f"scale {scale:g}", sag={"scale": scale}, baseline=CFG) for scale in (0.3, 1.0, 1.5, 2.0, 3.0)]
    rows += [
        Row("CFG 1", "SAG alone, negative branch", 1.0, sag={}, branch="negative", baseline=NO_GUIDANCE),
        Row("unconditional", "null class", 1.0, conditional=False),
        Row("unconditional", "null class, SAG", 1.0, sag={}, conditional=False, baseline="null class"),
    ]
    return rows


def sampler_mask_rows() -> list[Row]:
    """The mask ablations (Table 5) where SAG paid for its passes: DPM++ 2M, whose undertrained samples are grainy.

    The first two rows are the samplers set's own (the same keys, so their cells are shared)."""
    dpm = "DPM++ 2M"
    return [
        Row("sampler masks", f"{dpm} CFG", sampler=dpm),
        Row("sampler masks", f"{dpm} CFG + SAG", sampler=dpm, sag={}, baseline=f"{dpm} CFG"),
        Row("sampler masks", f"{dpm} random mask, SAG's coverage", sampler=dpm, sag={}, mask="random",
            baseline=f"{dpm} CFG"),
        Row("sampler masks", f"{dpm} inverse mask", sampler=dpm, sag={}, mask="inverse", baseline=f"{dpm} CFG"),
        Row("sampler masks", f"{dpm} global blur, scale 0.75", sampler=dpm, sag={"threshold": 0.0},
            baseline=f"{dpm} CFG"),
    ]


KEY_ROWS = (NO_GUIDANCE, CFG, "CFG 3, 25 steps", "CFG 3, 30 steps", "CFG + SAG", "CFG + SAG 0.5-1", "SAG alone")


def key_rows() -> list[Row]:
    """The frontier rows a user's question turns on (SAG against the same passes spent on steps): for extra seeds."""
    return [row for row in frontier_rows() if row.name in KEY_ROWS]


OPTION_ROWS = (NO_GUIDANCE, "SAG alone", "SAG alone, negative branch", "DDIM CFG", "DDIM CFG + SAG", "DDIM CFG++ 7.5",
               "DDIM CFG++ 7.5 + SAG")


def option_rows() -> list[Row]:
    """The rows behind two webui-option decisions: SAG's branch at CFG 1, and SAG's footing under DDIM CFG++."""
    rows = frontier_rows() + sampler_rows() + ablation_rows()
    return [row for row in rows if row.name in OPTION_ROWS]


def family_rows() -> list[Row]:
    """PAG and SEG beside SAG at their papers' settings (middle block), weaker, on an up-block, alone at CFG 1,
    combined, and CFG at equal cost.

    Each method costs one extra pass per guided step (40 -> 60 U-Net passes per image at 20 steps), two
    methods two: as 30 and 40 steps of CFG. The rows shared with the frontier keep its names and keys.
    """
    rows = [Row("family", NO_GUIDANCE, 1.0), Row("family", CFG, baseline=NO_GUIDANCE)]
    rows += [Row("family", cfg_name(DEFAULT_CFG, steps), steps=steps, baseline=CFG) for steps in (30, 40)]
    rows += [
        Row("family", "CFG + SAG", sag={}, baseline=CFG),
        Row("family", "CFG + PAG", family=pag(), baseline=CFG),
        Row("family", "CFG + PAG 1", family=pag(1.0), baseline=CFG),
        Row("family", "CFG + SEG", family=seg(), baseline=CFG),
        Row("family", "CFG + SEG 1", family=seg(1.0), baseline=CFG),
        Row("family", "CFG + SEG, sigma 2", family=seg(sigma=2.0), baseline=CFG),
        Row("family", "CFG + PAG on output 0", family={**pag(), "layer": UP_BLOCK}, baseline=CFG),
        Row("family", "CFG + SEG on output 0", family={**seg(), "layer": UP_BLOCK}, baseline=CFG),
        Row("family", "CFG + SAG + PAG", sag={}, family=pag(), baseline=CFG),
        Row("family", "CFG + SAG + SEG", sag={}, family=seg(), baseline=CFG),
        Row("family", "CFG + PAG + SEG", family={**pag(), **seg()}, baseline=CFG),
        Row("family", "SAG alone", 1.0, sag={}, baseline=NO_GUIDANCE),
        Row("family", "PAG alone", 1.0, family=pag(), baseline=NO_GUIDANCE),
        Row("family", "SEG alone", 1.0, family=seg(), baseline=NO_GUIDANCE),
    ]
    return rows


ROW_SETS = {"frontier": frontier_rows, "key": key_rows, "options": option_rows, "samplers": sampler_rows,
            "ablations": ablation_rows, "family": family_rows, "masks": sampler_mask_rows}


def quick_rows() -> list[Row]:
    """The smoke test's rows: each has an outcome the plumbing fixes (equal, or different, from CFG)."""
    return [
        Row("quick", CFG),
        Row("quick", "CFG + SAG", sag={}, baseline=CFG),
        Row("quick", "sigma 0 (plumbing check)", sag={"blur_sigma": 0.0}, baseline=CFG),
        Row("quick", "global blur, scale 0.75", sag={"threshold": 0.0}, baseline=CFG),
    ]


def rows_of(sets: list[str]) -> list[Row]:
    """The rows of the named sets, in order, each name once."""
    rows: dict[str, Row] = {}
    for name in sets:
        for row in ROW_SETS[name]():
            rows.setdefault(row.name, row)
    return list(rows.values())
