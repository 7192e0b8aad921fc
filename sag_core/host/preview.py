"""Where the generated crop lies in the picture the user gets (inpainting "only masked"), as the webui composes it."""

from __future__ import annotations

from typing import Any

from ..preview import Box


def pasted_crop_box(p: Any, paste_to: Any, size: tuple[int, int], overlay_inpaint: bool) -> Box | None:
    """`paste_to` where the picture of `size` (width, height) is the original with the generated crop pasted
    back, else None.

    webui 1.8.0 to 1.10.1 (processing.py `apply_overlay`, `uncrop`): inpainting "only masked" pastes
    the crop at `p.paste_to` into an overlay-sized picture only when an overlay exists
    (`opts.overlay_inpaint` on and `p.overlay_images[i]`); otherwise the picture after the composite
    is the crop itself, whatever its size, and the mask covers it whole.
    """
    if paste_to is None or not overlay_inpaint:
        return None
    overlays = getattr(p, "overlay_images", None)
    index = getattr(p, "batch_index", 0)
    if overlays is None or index >= len(overlays) or overlays[index] is None:
        return None
    return tuple(paste_to) if tuple(size) == tuple(overlays[index].size) else None
