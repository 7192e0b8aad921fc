"""Loads the extension into the test host the way the webui does, and runs jobs through it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import torch

from modules import processing, script_callbacks, scripts, shared
from modules.prompt_parser import MulticondBatch

SCRIPT_PATH = Path(__file__).resolve().parents[2] / "scripts" / "self_attention_guidance.py"
XYZ_PATH = Path(__file__).resolve().parent / "scripts" / "xyz_grid.py"
SD_UPSCALE_PATH = Path(__file__).resolve().parent / "scripts" / "sd_upscale.py"


@dataclass
class Extension:
    module: Any
    xyz: Any
    txt2img: scripts.ScriptRunner
    img2img: scripts.ScriptRunner

    @property
    def script(self) -> Any:
        return self.txt2img.alwayson_scripts[0]


def load_extension() -> Extension:
    """Execute the script file as the webui's loader does, then build both tabs' UI with gradio."""
    script_callbacks.clear_callbacks()
    scripts.scripts_data.clear()
    scripts.load_extension_script(str(XYZ_PATH))  # the webui's root scripts load before extensions
    module = scripts.load_extension_script(str(SCRIPT_PATH))
    scripts.load_extension_script(str(SCRIPT_PATH.parent / "sag_xyz_axes.py"))
    script_callbacks.before_ui_callback()
    runners = []
    for is_img2img in (False, True):
        runner = scripts.ScriptRunner(is_img2img)
        for data in scripts.scripts_data:
            if data.script_class.__module__ != "xyz_grid.py":
                runner.add(data.script_class, data.path)
        with gr.Blocks():
            runner.create_ui()
        runners.append(runner)
    xyz = next(data.module for data in scripts.scripts_data if data.script_class.__module__ == "xyz_grid.py")
    return Extension(module, xyz, *runners)


def conds(batch: int = 1, *, tokens: int = 77, uncond_tokens: int | None = None, and_prompts: int = 1,
          dim: int = 32, seed: int = 7) -> tuple[MulticondBatch, torch.Tensor]:
    """Random text conditionings: `and_prompts` sub-prompts per image with equal weights."""
    generator = torch.Generator().manual_seed(seed)
    tensor = torch.randn(batch * and_prompts, tokens, dim, generator=generator)
    conds_list = [[(i * and_prompts + j, 1.0 / and_prompts) for j in range(and_prompts)] for i in range(batch)]
    uncond = torch.randn(batch, uncond_tokens or tokens, dim, generator=generator)
    return MulticondBatch(conds_list, tensor), uncond


def sag_script(runner: scripts.ScriptRunner) -> Any:
    """The SAG script among the runner's always-on scripts, or None."""
    return next((script for script in runner.alwayson_scripts if script.title() == "Self-Attention Guidance"), None)


def sag_args(runner: scripts.ScriptRunner, *values: Any) -> list:
    """The job's flat script_args with the SAG script's slice set to `values` (defaults elsewhere)."""
    args = runner.default_args()
    script = sag_script(runner)
    if script is not None:
        args[script.args_from:script.args_from + len(values)] = list(values)
    return args


def api_script_args(runner: scripts.ScriptRunner, args: list) -> list:
    """Follows Api.init_script_args (modules/api/api.py, v1.10.1): defaults, then at most the script's
    number of inputs copied from the request's `args`, the rest silently dropped."""
    script_args = runner.default_args()
    script = sag_script(runner)
    for index in range(min(script.args_to - script.args_from, len(args))):
        script_args[script.args_from + index] = args[index]
    return script_args


def run_job(runner: scripts.ScriptRunner, sag: tuple = (False,), batch: int = 1, cond_kwargs: dict | None = None,
            api_args: list | None = None, **p_fields: Any) -> processing.Processed:
    """One job with the SAG slice set to `sag` as the UI would, or to `api_args` as the API would."""
    cond, uncond = conds(batch, **(cond_kwargs or {}))
    p = processing.StableDiffusionProcessing(cond=cond, uncond=uncond, batch_size=batch, **p_fields)
    p.scripts = runner
    p.script_args = tuple(api_script_args(runner, api_args) if api_args is not None else sag_args(runner, *sag))
    return processing.process_images(p)


def img2img_with_sd_upscale(ext: Extension) -> scripts.ScriptRunner:
    """An img2img runner as the webui builds one: SAG always on, the SD upscale stand-in in the Script dropdown."""
    runner = scripts.ScriptRunner(is_img2img=True)
    runner.add(ext.module.SelfAttentionGuidanceScript, str(SCRIPT_PATH))
    runner.add(scripts.load_module(str(SD_UPSCALE_PATH)).Script, str(SD_UPSCALE_PATH))
    with gr.Blocks():
        runner.create_ui()
    return runner


def dropdown_index(runner: scripts.ScriptRunner, title: str | None) -> int:
    """The Script dropdown's index of `title`, 0 for None (api.py: script_name_to_index + 1)."""
    if title is None:
        return 0
    return [script.title().lower() for script in runner.selectable_scripts].index(title.lower()) + 1


def job_with_args(runner: scripts.ScriptRunner, args: list, batch: int, **p_fields: Any) -> Any:
    cond, uncond = conds(batch)
    p = processing.StableDiffusionProcessing(cond=cond, uncond=uncond, batch_size=batch, **p_fields)
    p.scripts, p.script_args = runner, tuple(args)
    return p


def run_ui_job(runner: scripts.ScriptRunner, script: str | None = None, script_values: tuple = (),
               sag: tuple = (False,), batch: int = 1, **p_fields: Any) -> processing.Processed:
    """One Generate click (modules/img2img.py and txt2img.py, v1.10.1, under call_queue's `state.begin`):
    script_args with the dropdown's index first, `ScriptRunner.run`, and process_images when it returns None."""
    shared.state.begin()
    args = sag_args(runner, *sag)
    args[0] = dropdown_index(runner, script)
    if script is not None:
        selected = runner.selectable_scripts[args[0] - 1]
        args[selected.args_from:selected.args_from + len(script_values)] = list(script_values)
    p = job_with_args(runner, args, batch, **p_fields)
    processed = runner.run(p, *p.script_args)
    return processed if processed is not None else processing.process_images(p)


def run_api_job(runner: scripts.ScriptRunner, script_name: str | None = None, script_values: tuple = (),
                infotext_script: str | None = None, sag: tuple = (False,), batch: int = 1,
                **p_fields: Any) -> processing.Processed:
    """One API request (modules/api/api.py, v1.10.1, img2imgapi/text2imgapi): with `script_name`, its index + 1
    at script_args[0] and `ScriptRunner.run`; without, process_images directly, script_args[0] left at 0 or,
    when the request's infotext has a "Script" line, at that text (`apply_infotext` fills the dropdown's slot)."""
    shared.state.begin(job="scripts_img2img" if runner.is_img2img else "scripts_txt2img")
    args = sag_args(runner, *sag)
    args[0] = infotext_script if infotext_script is not None else 0
    if script_name is None:
        return processing.process_images(job_with_args(runner, args, batch, **p_fields))
    args[0] = dropdown_index(runner, script_name)
    selected = runner.selectable_scripts[args[0] - 1]
    args[selected.args_from:selected.args_from + len(script_values)] = list(script_values)
    p = job_with_args(runner, args, batch, **p_fields)
    return runner.run(p, *p.script_args)


def assert_unhooked() -> None:
    """No hook of SAG, PAG or SEG left anywhere on the current model's U-Net."""
    unet = shared.sd_model.model.diffusion_model
    hooked = [name for name, module in unet.named_modules() if module._forward_pre_hooks or module._forward_hooks]
    assert not hooked, f"hooks left on {hooked}"


def reset_host_state() -> None:
    shared.opts = shared.default_opts()
    shared.state = shared.State()
    shared.loaded_hypernetworks.clear()
