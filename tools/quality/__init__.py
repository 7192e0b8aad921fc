"""The quality lab: is SAG worth its extra U-Net passes, against spending them on CFG? Measured on CPU.

Trains (or loads from the cache) small class-conditional diffusion models on the ldm U-Net the webui
runs (weights.py, models.py), on a procedural set of shapes (data.py), and small scoring classifiers.
Samples every row (rows.py) through the test host's webui path with our real script (host.py), one
cell per model, training seed, row and sampling seed, each cached as soon as it is done (cells.py,
runner.py), so a stopped run resumes where it stopped. The report (report/) is rebuilt from the cache
alone. Run it as `python -m tools.quality` (cli.py).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
