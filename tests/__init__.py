"""The extension's tests; `tests.host` is the stand-in webui they (and tools/) run the extension in."""
