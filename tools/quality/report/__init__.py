"""The quality lab's report, rebuilt from the cell cache alone: tables (markdown) and the frontier plot (PNG).

Per model and training seed, every row with cached cells gets: FD per sampling seed (mean ± standard
deviation over seeds) and pooled over its seeds' samples, KID, precision and recall, the recognised
share, the chroma against the real images', the mask coverage and the U-Net passes per image; and
its change from its baseline row on the same seeds. The judges' tables give every change under
every judge: the FD of five scoring classifiers and a patch distance that is no classifier (cells
that keep their images only). Nothing here samples; missing cells are left out. The family page
(PAG and SEG beside SAG) and the masks page are written alone from their rows' cells, which a partial
cache may hold.
"""

from .family_page import write_family
from .main_page import write
from .masks_page import write_masks

__all__ = ["write", "write_family", "write_masks"]
