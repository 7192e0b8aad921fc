"""Stand-in for the webui's `modules` package (see tests/host/README.md)."""
