"""Mini-Gemini in lmms-eval: lmms-eval has no class, so this one runs the library's own MGM model code."""

from __future__ import annotations

from prunesid.eval.library_models import LibraryModel


class MiniGemini(LibraryModel):
    """``prunesid_mini_gemini``: Mini-Gemini (MGM, MGM-HD: ``YanweiLi/MGM-7B``, ``-7B-HD``, ...,
    or the built-ins ``tiny-random-mgm`` / ``tiny-random-mgm-hd``) through the library's own
    MGM model code; ``budget`` per view (MGM-HD feeds 5 x N)."""

    model_id = "prunesid_mini_gemini"
    default_pretrained = "YanweiLi/MGM-7B"

    @property
    def family_names(self) -> tuple[str, ...]:
        from prunesid.families.mini_gemini.checkpoint import MODEL_TYPES

        return tuple(MODEL_TYPES)
