class SRVGGNetCompact:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("realesrgan is a stand-in on this test webui")
