import logging


def get_root_logger(*args, **kwargs):
    return logging.getLogger("basicsr")


def img2tensor(*args, **kwargs):
    raise RuntimeError("basicsr is a stand-in on this test webui")


tensor2img = img2tensor
