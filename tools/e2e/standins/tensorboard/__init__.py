"""Import stand-in for the e2e test webuis 1.6/1.7: their textual-inversion module imports
torch.utils.tensorboard at start-up, which imports tensorboard (not in the venv; the tests never train).

Any tensorboard.* module is made on import, and any name in it (and any attribute of that) is a class that raises
when instantiated.
"""
import importlib.abc
import importlib.machinery
import sys

__version__ = "2.13.0"  # torch.utils.tensorboard asks for 1.15 or later


class _AnyAttribute(type):
    def __getattr__(cls, name):  # e.g. tensorboard.compat.tf.io.gfile, read at import
        if name.startswith("__"):
            raise AttributeError(name)
        return _StandIn


class _StandIn(metaclass=_AnyAttribute):
    def __init__(self, *args, **kwargs):
        raise RuntimeError("tensorboard is a stand-in on this test webui")


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _StandIn


class _Modules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(__name__ + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__path__ = []
        module.__getattr__ = __getattr__


sys.meta_path.insert(0, _Modules())
