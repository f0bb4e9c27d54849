"""lmms-eval's internvl_hf with a press (budget per tile)."""

from __future__ import annotations

from lmms_eval.models.chat.internvl_hf import InternVLHf as _ChatInternVLHf
from prunesid.eval.models import PressedModel


class InternVLHf(PressedModel, _ChatInternVLHf):
    """``prunesid_internvl_hf``: lmms-eval's internvl_hf (InternVL3 / 3.5 ``-hf`` checkpoints,
    e.g. ``OpenGVLab/InternVL3-1B-hf``) with a press; ``budget`` per tile (and thumbnail)."""

    model_id = "prunesid_internvl_hf"
    processor_attr = "processor"
    is_simple = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # The press re-encodes each image with the checkpoint's own tiling: lmms-eval's
        # min_patches / max_patches must be the processor's, or every prompt would disagree.
        layout = self.prunesid_vlm.family.layout
        ours = (layout.min_patches, layout.max_patches)
        if self.prunesid_settings.press is not None and (self.min_patches, self.max_patches) != ours:
            raise ValueError(
                f"--model_args min_patches={self.min_patches}, max_patches={self.max_patches} differ from the checkpoint's "
                f"tiling ({ours[0]}, {ours[1]}); under a press leave them at the processor's"
            )
