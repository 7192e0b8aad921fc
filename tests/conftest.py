"""Puts the test host (tests/host) and the repository root on sys.path for every test."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "tests" / "host", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
