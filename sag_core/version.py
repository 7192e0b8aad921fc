"""The extension's version: one place, read by the start-up line, pyproject.toml and the changelog test."""

__version__ = "0.2.0"
