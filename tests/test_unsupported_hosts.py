"""Installed where it cannot run, the extension loads quietly, says why in one line and adds nothing;
where it can (A1111 1.6+, Forge, reForge), it adds its script, callbacks and axes.

Each host is imitated by what tells it apart (read from their sources: SD.Next's `shared.Backend`
(vladmandic/sdnext modules/shared.py), the `modules_forge` package that Forge and reForge import at
launch (modules/launch_utils.py), reForge's own `reforge_karras_rho` option (modules/shared_options.py),
A1111 before 1.6 without `ui_components.InputAccordion`). Each case runs in a fresh interpreter.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

IMITATE = {
    "sdnext": "from modules import shared; shared.Backend = object",
    "forge": "import types; sys.modules['modules_forge'] = types.ModuleType('modules_forge')",
    "reforge": ("import types; sys.modules['modules_forge'] = types.ModuleType('modules_forge'); "
                "opts = types.ModuleType('modules.shared_options'); "
                "opts.options_templates = {'reforge_karras_rho': None}; sys.modules['modules.shared_options'] = opts"),
    "a1111-1.5": "from modules import ui_components; del ui_components.InputAccordion",
    "a1111-1.10": "",
}
LOAD = """
import json, sys
from tests import host
host.use()
{imitate}
import harness
from modules import script_callbacks
ext = harness.load_extension()
ours = [name for name, entries in script_callbacks.callback_map.items()
        for entry in entries if 'self_attention_guidance' in getattr(entry.callback, '__module__', '')]
print('RESULT ' + json.dumps({{
    'scripts': [len(ext.txt2img.alwayson_scripts), len(ext.img2img.alwayson_scripts)],
    'callbacks': ours,
    'axes': [o.label for o in ext.xyz.axis_options if o.label.startswith('[SAG]')]}}))
"""


def load_in(host: str) -> tuple[list[str], dict]:
    result = subprocess.run([sys.executable, "-c", LOAD.format(imitate=IMITATE[host])], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("[Self-Attention Guidance]")]
    found = json.loads(result.stdout.split("RESULT ", 1)[1])
    return lines, found


@pytest.mark.parametrize("host,why", [
    ("sdnext", "SD.Next is not supported: it replaced SAG with Perturbed-Attention Guidance; use its "
               "'Attention guidance' setting under Guidance instead"),
    ("a1111-1.5", "this webui is older than 1.6.0, which SAG needs; update the webui (git pull)"),
])
def test_an_unsupported_host_gets_one_line_and_no_ui_callbacks_or_axes(host, why):
    from sag_core.version import __version__

    lines, found = load_in(host)
    assert lines == [f"[Self-Attention Guidance] sd-webui-sag {__version__} is inactive: {why}."]
    assert found == {"scripts": [0, 0], "callbacks": [], "axes": []}


@pytest.mark.parametrize("host", ["a1111-1.10", "forge", "reforge"])
def test_a_supported_webui_gets_the_script_its_callbacks_and_axes(host):
    lines, found = load_in(host)
    assert len(lines) == 1 and "inactive" not in lines[0]
    assert found["scripts"] == [1, 1]
    assert sorted(found["callbacks"]) == ["cfg_after_cfg", "cfg_denoised", "cfg_denoiser", "infotext_pasted",
                                          "script_unloaded"]
    assert found["axes"] == ["[SAG] Scale", "[SAG] Blur sigma", "[SAG] Threshold", "[SAG] Start", "[SAG] End",
                             "[SAG] PAG scale", "[SAG] SEG scale", "[SAG] SEG blur sigma", "[SAG] Layer"]
