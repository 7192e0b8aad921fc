"""Import stand-in for the e2e test webuis 1.6/1.7, which import gfpgan at start-up (their requirements pin gfpgan,
basicsr and realesrgan, which 1.8 dropped and which do not install beside torch 2.14). Face restoration and the
upscalers are never used by the tests: using them raises."""


class GFPGANer:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("gfpgan is a stand-in on this test webui")
