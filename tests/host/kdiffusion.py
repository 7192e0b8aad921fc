"""Load k_diffusion.sampling and k_diffusion.external without the package __init__.

The package __init__ imports every submodule, and k_diffusion.utils imports torchvision, which
PyPI's wheels cannot import beside the CPU torch. The samplers never use torchvision, so when it is
missing an empty stand-in satisfies that one import and is removed again right after; everything
else is the installed k-diffusion.
"""

import importlib
import importlib.util
import sys
import types


STUB_NAMES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


def _stub_torchvision() -> bool:
    """Stand in for torchvision if it cannot be imported; True if a stand-in was installed."""
    try:
        importlib.import_module("torchvision.transforms.functional")
        return False
    except Exception:
        pass
    for name in STUB_NAMES:
        module = types.ModuleType(name)
        module.__path__ = []
        sys.modules[name] = module
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    sys.modules["torchvision.transforms"].functional = sys.modules["torchvision.transforms.functional"]
    return True


def load_k_diffusion() -> types.ModuleType:
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion"]
    spec = importlib.util.find_spec("k_diffusion")
    package = types.ModuleType("k_diffusion")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["k_diffusion"] = package
    stubbed = _stub_torchvision()
    try:
        for name in ("utils", "sampling", "external"):
            setattr(package, name, importlib.import_module(f"k_diffusion.{name}"))
    finally:
        if stubbed:  # other packages (diffusers) probe for torchvision and must not find the stand-in
            for name in STUB_NAMES:
                sys.modules.pop(name, None)
    return package
