"""Inference options. The defaults reproduce DAFT 93f1e55 exactly; every other value is opt-in."""

from __future__ import annotations

from dataclasses import dataclass

# Slice embeddings (4 MiB each) kept for later use in 3D: at most 256 MiB, whatever the volume depth.
# A slice needed by both sweeps (between the boxes' middle slices) is re-encoded when it was
# evicted; 64 covers typical CT box sets (e.g. 37 such slices for 4 organs in 120 slices).
DEFAULT_MAX_CACHED_SLICES = 64


@dataclass(frozen=True)
class InferenceOptions:
    """How a case is segmented.

    zmax_inclusive: segment a 3D box's z_max slice too (the LiteMedSAM baseline; DAFT excludes it).
    box_from_fullres: 3D propagation box from the full-resolution mask (916bd4e's C++), not from
        the mask resized to 256.
    clip_to_box: keep only mask pixels inside the prompt box (rows y_min..y_max, columns
        x_min..x_max), the clipping DAFT's code intended; in 3D each slice is clipped to the box's xy
        extent before it prompts the next slice.
    decode_batch: boxes per prompt-encoder/decoder call (2D: boxes of the image; 3D: boxes on the
        same slice). 1 is exact; larger values are faster but OpenVINO may choose other kernels for
        other batch sizes, which can flip pixels whose logit is within ~1e-6 of 0.
    max_cached_slices: 3D slice embeddings kept between uses (a slice evicted early is encoded
        again; results are identical).
    """

    zmax_inclusive: bool = False
    box_from_fullres: bool = False
    clip_to_box: bool = False
    decode_batch: int = 1
    max_cached_slices: int = DEFAULT_MAX_CACHED_SLICES

    @property
    def faithful(self) -> bool:
        """True when outputs equal DAFT 93f1e55's by construction."""
        return not (self.zmax_inclusive or self.box_from_fullres or self.clip_to_box) and self.decode_batch <= 1
