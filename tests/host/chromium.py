"""Debian's Chromium as both browser tests launch it (never a browser downloaded by playwright)."""

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# Headless as root, and no background connections: this machine's closed network refuses them.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS_IMAGE_LIMIT = 150 * 1024
"""Largest size, in bytes, of a screenshot kept in docs/."""
