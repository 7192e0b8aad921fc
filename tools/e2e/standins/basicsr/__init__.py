"""Import stand-in for the e2e test webuis 1.6/1.7 (see gfpgan/__init__.py): the names their CodeFormer and
Real-ESRGAN modules import; the architecture registry only hands back what it registers."""
