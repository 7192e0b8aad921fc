class RRDBNet:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("basicsr is a stand-in on this test webui")
