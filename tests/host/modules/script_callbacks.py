"""Follows modules/script_callbacks.py (v1.10.1): the CFG callback params and how callbacks are called.

As in the webui, registration never de-duplicates, and an exception in a callback is logged and
swallowed (`reported` collects them for the tests) while generation goes on.
"""

from collections import namedtuple

ScriptCallback = namedtuple("ScriptCallback", ["script", "callback", "name"])
CATEGORIES = ("cfg_denoiser", "cfg_denoised", "cfg_after_cfg", "script_unloaded", "infotext_pasted",
              "before_ui", "model_loaded")
callback_map = {name: [] for name in CATEGORIES}
reported: list = []


class CFGDenoiserParams:
    def __init__(self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond,
                 denoiser=None):
        self.x = x
        self.image_cond = image_cond
        self.sigma = sigma
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.text_cond = text_cond
        self.text_uncond = text_uncond
        self.denoiser = denoiser


class CFGDenoisedParams:
    def __init__(self, x, sampling_step, total_sampling_steps, inner_model):
        self.x = x
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.inner_model = inner_model


class AfterCFGCallbackParams:
    def __init__(self, x, sampling_step, total_sampling_steps):
        self.x = x
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps


def _add(category, callback, name=None):
    callback_map[category].append(ScriptCallback("test", callback, name))


def _run(category, *args):
    for entry in list(callback_map[category]):
        try:
            entry.callback(*args)
        except Exception as error:  # the webui's report_exception: logged, not raised
            reported.append((category, error))


def on_cfg_denoiser(callback, *, name=None): _add("cfg_denoiser", callback, name)
def on_cfg_denoised(callback, *, name=None): _add("cfg_denoised", callback, name)
def on_cfg_after_cfg(callback, *, name=None): _add("cfg_after_cfg", callback, name)
def on_script_unloaded(callback, *, name=None): _add("script_unloaded", callback, name)
def on_infotext_pasted(callback, *, name=None): _add("infotext_pasted", callback, name)
def on_before_ui(callback, *, name=None): _add("before_ui", callback, name)
def on_model_loaded(callback, *, name=None): _add("model_loaded", callback, name)


def cfg_denoiser_callback(params): _run("cfg_denoiser", params)
def cfg_denoised_callback(params): _run("cfg_denoised", params)
def cfg_after_cfg_callback(params): _run("cfg_after_cfg", params)
def script_unloaded_callback(): _run("script_unloaded")
def infotext_pasted_callback(infotext, params): _run("infotext_pasted", infotext, params)
def before_ui_callback(): _run("before_ui")


def remove_callbacks_for_function(callback_func):
    for entries in callback_map.values():
        entries[:] = [entry for entry in entries if entry.callback != callback_func]


def clear_callbacks():
    for entries in callback_map.values():
        entries.clear()
    reported.clear()
