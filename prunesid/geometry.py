"""Where patch tokens sit on the user's image.

A vision tower sees a resized, cropped or padded copy of the image (a *view*: the whole image
for LLaVA-1.5, the base image and every tile for LLaVA-NeXT). ``PatchGrid`` records one view's
patch lattice and the rectangle it covers in the original image's pixels, so overlays can be
drawn on the image the user uploaded rather than on the model's 336 x 336 input.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PatchGrid:
    """The patch lattice of one view.

    ``box`` is ``(x0, y0, x1, y1)`` in original-image pixels (floats). It may reach beyond the
    image where the processor padded (LLaVA-NeXT tiles) and may cover only part of it where
    the processor center-cropped (LLaVA-1.5); patch ``i`` is row ``i // cols``, column
    ``i % cols``, in row-major order as the tower emits them.
    """

    rows: int
    cols: int
    box: tuple[float, float, float, float]
    label: str = "image"

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"PatchGrid needs rows, cols >= 1, got {self.rows} x {self.cols}")
        x0, y0, x1, y1 = self.box
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"PatchGrid box must have x1 > x0 and y1 > y0, got {self.box}")

    @property
    def num_patches(self) -> int:
        return self.rows * self.cols

    def patch_box(self, index: int) -> tuple[float, float, float, float]:
        """The rectangle patch ``index`` covers, in original-image pixels."""
        if not 0 <= index < self.num_patches:
            raise ValueError(f"patch index {index} is outside 0..{self.num_patches - 1}")
        row, col = divmod(index, self.cols)
        x0, y0, x1, y1 = self.box
        width, height = (x1 - x0) / self.cols, (y1 - y0) / self.rows
        return (x0 + col * width, y0 + row * height, x0 + (col + 1) * width, y0 + (row + 1) * height)


def center_crop_grid(
    image_size: tuple[int, int], resized: tuple[int, int], crop: tuple[int, int], patch: int
) -> PatchGrid:
    """Grid of a view made by resizing ``image_size`` to ``resized`` and center-cropping ``crop``.

    All sizes are ``(width, height)``. The crop offset follows the image processors'
    integer rule: ``(resized - crop) // 2``; a crop larger than the resized image pads.
    """
    (width, height), (rw, rh), (cw, ch) = image_size, resized, crop
    scale_x, scale_y = width / rw, height / rh
    left, top = (rw - cw) // 2, (rh - ch) // 2
    box = (left * scale_x, top * scale_y, (left + cw) * scale_x, (top + ch) * scale_y)
    return PatchGrid(rows=ch // patch, cols=cw // patch, box=box)
