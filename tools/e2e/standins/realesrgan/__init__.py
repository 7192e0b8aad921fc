"""Import stand-in for the e2e test webuis 1.6/1.7 (see gfpgan/__init__.py): the Real-ESRGAN upscalers raise."""


class RealESRGANer:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("realesrgan is a stand-in on this test webui")
