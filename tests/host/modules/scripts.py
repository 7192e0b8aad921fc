"""Follows modules/scripts.py and modules/script_loading.py (v1.10.1) for AlwaysVisible scripts.

`ScriptRunner` slices `p.script_args` per script and, like the webui's dispatchers, logs and
swallows an exception raised by any script method (`errors` collects them for the tests).
Scripts of the "Script" dropdown (`show` true but not AlwaysVisible) get their inputs after the
always-on ones, and `run` hands a job to the one whose index `script_args[0]` holds (0 = "None").
"""

import importlib.util
import os
import re
import sys
from collections import namedtuple

AlwaysVisible = object()


class PostprocessImageArgs:
    def __init__(self, image):
        self.image = image

ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])
scripts_data: list = []


class Script:
    name = None
    section = None
    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    tabname = None
    group = None
    create_group = True
    infotext_fields = None
    paste_field_names = None

    def title(self):
        raise NotImplementedError()

    def show(self, is_img2img):
        return True

    def ui(self, is_img2img):
        pass

    def elem_id(self, item_id):
        need_tabname = self.show(True) == self.show(False)
        tabkind = "img2img" if self.is_img2img else "txt2img"
        tabname = f"{tabkind}_" if need_tabname else ""
        title = re.sub(r"[^a-z_0-9]", "", re.sub(r"\s", "_", self.title().lower()))
        return f"script_{tabname}{title}_{item_id}"

    def setup(self, p, *args): pass
    def before_process(self, p, *args): pass
    def process(self, p, *args): pass
    def before_process_batch(self, p, *args, **kwargs): pass
    def process_batch(self, p, *args, **kwargs): pass
    def process_before_every_sampling(self, p, *args, **kwargs): pass
    def before_hr(self, p, *args): pass
    def postprocess_batch(self, p, *args, **kwargs): pass
    def postprocess_image(self, p, pp, *args): pass
    def postprocess_image_after_composite(self, p, pp, *args): pass
    def postprocess(self, p, processed, *args): pass


def load_module(path):
    """Like script_loading.load_module: module named by the file's basename, not put in sys.modules."""
    spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_extension_script(path):
    """Like scripts.load_scripts for one extension file: its directory on sys.path while it loads."""
    basedir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    sys.path.insert(0, basedir)
    try:
        module = load_module(path)
    finally:
        sys.path.remove(basedir)
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, Script) and obj is not Script:
            scripts_data.append(ScriptClassData(obj, path, basedir, module))
    return module


class ScriptRunner:
    def __init__(self, is_img2img=False):
        self.is_img2img = is_img2img
        self.alwayson_scripts = []
        self.selectable_scripts = []
        self.inputs = [None]
        self.infotext_fields = []
        self.paste_field_names = []
        self.errors = []

    def add(self, script_class, path=None):
        script = script_class()
        script.filename = path
        script.is_img2img = self.is_img2img
        script.is_txt2img = not self.is_img2img
        script.tabname = "img2img" if self.is_img2img else "txt2img"
        if script.show(self.is_img2img) is AlwaysVisible:
            script.alwayson = True
            self.alwayson_scripts.append(script)
        elif script.show(self.is_img2img):
            self.selectable_scripts.append(script)
        return script

    def create_ui(self):
        """Call each script's ui() (inside a gr.Blocks) and record its slice of the flat input list.

        As setup_ui does: the always-on scripts first, then (after the dropdown at index 0) the selectable ones.
        """
        for script in self.alwayson_scripts + self.selectable_scripts:
            script.args_from = len(self.inputs)
            controls = script.ui(script.is_img2img)
            for control in controls or []:
                control.custom_script_source = os.path.basename(script.filename or "")
            script.name = script.title().lower()
            self.inputs.extend(controls or [])
            script.args_to = len(self.inputs)
            self.infotext_fields.extend(script.infotext_fields or [])
            self.paste_field_names.extend(script.paste_field_names or [])

    def run(self, p, *args):
        """ScriptRunner.run: the selected dropdown script runs the whole job (it calls process_images itself)."""
        script_index = args[0]
        if script_index == 0 or script_index is None:
            return None
        script = self.selectable_scripts[script_index - 1]
        return script.run(p, *args[script.args_from:script.args_to])

    def default_args(self):
        return [None] + [c.value for c in self.inputs[1:]]

    def _each(self, method, p, *args, **kwargs):
        for script in self.alwayson_scripts:
            try:
                script_args = p.script_args[script.args_from:script.args_to]
                getattr(script, method)(p, *args, *script_args, **kwargs)
            except Exception as error:
                self.errors.append((method, error))

    def before_process(self, p): self._each("before_process", p)
    def process(self, p): self._each("process", p)
    def process_batch(self, p, **kwargs): self._each("process_batch", p, **kwargs)
    def process_before_every_sampling(self, p, **kwargs): self._each("process_before_every_sampling", p, **kwargs)
    def before_hr(self, p): self._each("before_hr", p)
    def postprocess_batch(self, p, images, **kwargs): self._each("postprocess_batch", p, images=images, **kwargs)

    def postprocess_image(self, p, image):
        """Returns the image each script may have replaced (the webui passes one PostprocessImageArgs)."""
        pp = PostprocessImageArgs(image)
        self._each("postprocess_image", p, pp)
        return pp.image

    def postprocess_image_after_composite(self, p, image):
        pp = PostprocessImageArgs(image)
        self._each("postprocess_image_after_composite", p, pp)
        return pp.image

    def postprocess(self, p, processed):
        for script in self.alwayson_scripts:
            try:
                script.postprocess(p, processed, *p.script_args[script.args_from:script.args_to])
            except Exception as error:
                self.errors.append(("postprocess", error))
