"""Follows modules/ui_loadsave.py (v1.10.1, the same in 1.6 to 1.9): the keys under which the webui keeps
users' UI defaults in ui-config.json, and how a saved value is applied to a component at start-up.

`UiLoadsave.add_block(block, path)` walks a tab's blocks (path "txt2img" or "img2img", as modules/ui.py
calls it) and, for each labelled component, builds `{path}/{label}/{field}`, prefixed by
`customscript/{script file name}/` for a script's controls (ScriptRunner.create_script_ui_inner sets
`custom_script_source`). Only the component types SAG uses are handled: Slider, Checkbox, Number, Dropdown
(a saved value outside its choices is ignored), InputAccordion.
"""

import gradio as gr

from modules.ui_components import InputAccordion


class UiLoadsave:
    def __init__(self, ui_settings=None):
        self.ui_settings = dict(ui_settings or {})

    def add_component(self, path, x):
        def apply_field(obj, field, condition=None):
            key = f"{path}/{field}"
            if getattr(obj, "custom_script_source", None) is not None:
                key = f"customscript/{obj.custom_script_source}/{key}"
            saved_value = self.ui_settings.get(key, None)
            if isinstance(obj, gr.Accordion) and isinstance(x, InputAccordion) and field == "value":
                field = "open"
            if saved_value is None:
                self.ui_settings[key] = getattr(obj, field)
            elif condition is None or condition(saved_value):
                if isinstance(obj, gr.Number) and field == "value":
                    saved_value = float(saved_value)
                setattr(obj, field, saved_value)

        if type(x) in [gr.Slider, gr.Checkbox, gr.Number, gr.Dropdown] and x.visible:
            apply_field(x, "visible")
        if type(x) == gr.Slider:
            for field in ("value", "minimum", "maximum", "step"):
                apply_field(x, field)
        if type(x) in [gr.Checkbox, gr.Number]:
            apply_field(x, "value")
        if type(x) == gr.Dropdown:
            choices = [choice[1] if isinstance(choice, tuple) else choice for choice in x.choices]
            apply_field(x, "value", lambda value: value in choices)
        if type(x) == InputAccordion:
            if hasattr(x, "custom_script_source"):
                x.accordion.custom_script_source = x.custom_script_source
            if x.accordion.visible:
                apply_field(x.accordion, "visible")
            apply_field(x, "value")
            apply_field(x.accordion, "value")

    def add_block(self, x, path=""):
        if hasattr(x, "children"):
            for c in x.children:
                self.add_block(c, path)
        elif getattr(x, "label", None) is not None:
            self.add_component(f"{path}/{x.label}", x)
