"""A stand-in for the parts of Forge's `backend` package (lllyasviel/stable-diffusion-webui-forge at dfdcbab6)
that the extension's Forge adapter talks to: the conditioning entries, the cond/uncond batch function,
the sampling function with its post-CFG functions, the U-Net patcher and the k-model around the U-Net.

Each module names the Forge file it follows and what it leaves out. The U-Net inside is the test
host's real ldm U-Net (its module names are those of Forge's backend/nn/unet.py).
"""
