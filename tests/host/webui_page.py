"""A launchable txt2img page with the extension's UI and the webui page scripts it relies on.

For browser tests. The extension is loaded as `harness.load_extension` does; the page adds a prompt
box (`txt2img_prompt`, whose appearance is the webui's "UI loaded" signal) and a Generate button
whose click handler gets the prompt and all the script's inputs, as the webui's Generate passes
script args, and writes what the script would receive, as JSON, into a hidden textbox.

Scripts are injected into `<head>` the way webui v1.10.1 does it (modules/ui_gradio_extensions.py,
`reload_javascript`): by wrapping `gr.routes.templates.TemplateResponse` so the index page gets
extra tags before `</head>`. gradio 3.41 has no `head=` argument on `gr.Blocks` (it is dropped with a
warning), and `demo.load(_js=...)` would only run after the app has rendered, too late for scripts
that watch the page being built. The scripts are inlined rather than served with `file=` URLs,
so no `allowed_paths` are needed; the order is the webui's: its own scripts, then the extension's.
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from modules import script_callbacks, scripts
from sag_core.params import SagParamError, SagParams

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_PATH = ROOT / "scripts" / "self_attention_guidance.py"
HOST_JS_DIR = Path(__file__).resolve().parent / "javascript"
# webui's script.js first, then its javascript/ folder, then the extension's javascript/ folder.
PAGE_SCRIPTS = (
    HOST_JS_DIR / "ui_hooks.js",
    HOST_JS_DIR / "hints.js",
    HOST_JS_DIR / "inputAccordion.js",
    ROOT / "javascript" / "sag_hints.js",
)
PROMPT_ID = "txt2img_prompt"
GENERATE_ID = "txt2img_generate"
RECEIVED_ID = "sag_host_received"


@dataclass
class HostPage:
    blocks: gr.Blocks
    runner: scripts.ScriptRunner
    module: Any

    @property
    def script(self) -> Any:
        return self.runner.alwayson_scripts[0]


def script_params(module: Any, values: tuple) -> SagParams:
    """The SagParams that the script's process() builds from its args (spare input dropped as it does)."""
    return SagParams.from_script_args(values)


def received_json(module: Any, prompt: str, values: tuple) -> str:
    """JSON of the prompt, the script's raw args and the SagParams built from them (or the error)."""
    try:
        sag: dict[str, Any] = dataclasses.asdict(script_params(module, values))
    except SagParamError as error:
        sag = {"error": str(error)}
    return json.dumps({"prompt": prompt, "args": list(values), "sag": sag})


def build_page() -> HostPage:
    """Load the script file like the webui and build its txt2img UI in a launchable page."""
    script_callbacks.clear_callbacks()
    scripts.scripts_data.clear()
    module = scripts.load_extension_script(str(SCRIPT_PATH))
    runner = scripts.ScriptRunner(is_img2img=False)
    for data in scripts.scripts_data:
        runner.add(data.script_class)
    with gr.Blocks(title="SAG test host", analytics_enabled=False) as blocks:
        prompt = gr.Textbox(label="Prompt", elem_id=PROMPT_ID)
        runner.create_ui()
        generate = gr.Button("Generate", elem_id=GENERATE_ID)
        output = gr.Textbox(visible=False, elem_id=RECEIVED_ID)
        script = runner.alwayson_scripts[0]
        generate.click(lambda text, *values: received_json(module, text, values),
                       inputs=[prompt, *runner.inputs[script.args_from:script.args_to]], outputs=output)
    return HostPage(blocks, runner, module)


def head_html() -> str:
    """The `<script>` tags injected into the page's `<head>`, in load order."""
    tags = []
    for path in PAGE_SCRIPTS:
        source = path.read_text(encoding="utf-8").replace("</script", "<\\/script")
        tags.append(f'<script type="text/javascript">/* {path.name} */\n{source}</script>')
    return "\n".join(tags)


@contextmanager
def head_injected(html: str) -> Iterator[None]:
    """While open, every gradio page served gets `html` before `</head>` (restored on exit)."""
    templates = gr.routes.templates
    had_own = "TemplateResponse" in vars(templates)
    original = templates.TemplateResponse

    def template_response(*args: Any, **kwargs: Any) -> Any:
        response = original(*args, **kwargs)
        response.body = response.body.replace(b"</head>", f"{html}\n</head>".encode("utf-8"), 1)
        response.init_headers()
        return response

    templates.TemplateResponse = template_response
    try:
        yield
    finally:
        if had_own:
            templates.TemplateResponse = original
        else:
            del templates.TemplateResponse


@contextmanager
def serve(page: HostPage, port: int) -> Iterator[str]:
    """Serve `page` with its scripts on 127.0.0.1:`port`; yields the URL and closes the server after."""
    with head_injected(head_html()):
        page.blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                           share=False, quiet=True, show_api=False)
        try:
            yield f"http://127.0.0.1:{port}/"
        finally:
            page.blocks.close()
