"""Test-only webui extension for sd-webui-sag's end-to-end suite: records every U-Net call of one job.

Never install it for real use. It does nothing unless switched on through its script args (API:
`"alwayson_scripts": {"sag e2e unet calls": {"args": [true]}}`). While such a job runs, hooks on the
U-Net (`shared.sd_model.model.diffusion_model`) record, per call: the rows of `x`, the latent size, the
token count of `context` as the U-Net receives it, and, after the call, the `cond_mark` that
Mikubill/sd-webui-controlnet (scripts/hook.py, v1.1.455) leaves on the U-Net: 1 for each row it read as
a prompt (cond) row, 0 for each row it read as a negative-prompt (uncond) row; None without ControlNet.
`GET /sag-e2e/unet-calls` answers the last recorded job's calls.
"""

import gradio as gr

from modules import script_callbacks, scripts

TITLE = "SAG e2e unet calls"


class CallLog:
    """The calls of the job being recorded, and of the last one."""

    def __init__(self):
        self.calls = []
        self.handles = []

    def start(self, unet):
        self.stop()
        self.calls = []

        def before(module, args, kwargs):
            module.cond_mark = None
            x = args[0]
            context = kwargs.get("context", args[2] if len(args) > 2 else None)
            self.calls.append({"rows": int(x.shape[0]), "size": list(x.shape[-2:]),
                               "tokens": None if context is None else int(context.shape[1]), "marks": None})

        def after(module, args, output):
            mark = getattr(module, "cond_mark", None)
            if mark is not None and self.calls:
                self.calls[-1]["marks"] = [float(v) for v in mark.flatten(1)[:, 0].tolist()]

        self.handles = [unet.register_forward_pre_hook(before, with_kwargs=True),
                        unet.register_forward_hook(after)]

    def stop(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []


log = CallLog()


class SagE2eUnetCalls(scripts.Script):
    def title(self):
        return TITLE

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        with gr.Accordion(TITLE, open=False):
            enabled = gr.Checkbox(label="Record U-Net calls", value=False)
        return [enabled]

    def process(self, p, enabled=False, *args):
        if enabled:
            log.start(p.sd_model.model.diffusion_model)

    def postprocess(self, p, processed, enabled=False, *args):
        if enabled:
            log.stop()


def add_route(demo, app):
    app.add_api_route("/sag-e2e/unet-calls", lambda: log.calls, methods=["GET"])


script_callbacks.on_app_started(add_route)
