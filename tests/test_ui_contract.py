"""The field table, the hover hints in javascript/ and install.py agree and behave."""

import json
import re
import subprocess
import sys
from pathlib import Path

from sag_core.hints import hints_script
from sag_core.params import FIELDS

ROOT = Path(__file__).resolve().parents[1]


def js_hints() -> dict:
    source = (ROOT / "javascript" / "sag_hints.js").read_text()
    body = re.search(r"var sagHints = (\{.*?\});", source, re.S).group(1)
    return json.loads(body)


def test_every_control_label_has_its_hover_hint_in_the_titles_map():
    assert js_hints() == {f.label: f.hint for f in FIELDS}


def test_the_hints_file_is_what_the_field_table_generates():
    """javascript/sag_hints.js is generated (`python -m sag_core.hints`); a hand edit or a new field fails here."""
    assert (ROOT / "javascript" / "sag_hints.js").read_text() == hints_script(FIELDS)


def test_hints_only_extend_the_webui_titles_map():
    source = (ROOT / "javascript" / "sag_hints.js").read_text()
    assert "window.titles = Object.assign(window.titles || {}, sagHints)" in source
    assert "document." not in source


def test_install_is_silent_and_installs_nothing(tmp_path):
    """The webui runs install.py at every start-up; host support is said once, when the script loads."""
    extension = tmp_path / "extensions" / "sd-webui-sag"
    extension.mkdir(parents=True)
    (extension / "install.py").write_text((ROOT / "install.py").read_text())
    result = subprocess.run([sys.executable, extension / "install.py"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    assert "import" not in (ROOT / "install.py").read_text()


def test_one_version_in_pyproject_changelog_readme_and_the_start_up_line():
    """The newest released changelog heading names the version (an "Unreleased" section may come first)."""
    from sag_core.version import __version__

    pyproject = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    changelog = re.search(r"^## (?!Unreleased)(\S+)", (ROOT / "CHANGELOG.md").read_text(), re.M).group(1)
    assert pyproject == changelog == __version__
    assert f"Version {__version__}" in (ROOT / "README.md").read_text()
    load = "from tests import host; host.use(); import harness; harness.load_extension()"
    result = subprocess.run([sys.executable, "-c", load], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(f"[Self-Attention Guidance] sd-webui-sag {__version__}") == 1


def test_license_and_metadata_name_the_extension_as_pyproject_does():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert 'license = { file = "LICENSE" }' in (ROOT / "pyproject.toml").read_text()
    metadata = (ROOT / "metadata.ini").read_text()
    assert re.search(r"^\[Extension\]\nName = sd-webui-sag$", metadata, re.M)
