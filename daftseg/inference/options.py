"""Inference options. The defaults reproduce DAFT 93f1e55 exactly; every other value is opt-in."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

# 3D slice embeddings (4 MiB each) kept for a later step: a few in memory, the rest in a temporary
# file (read back in milliseconds; encoding a slice takes about 0.3 s). 512 spilled slices (2 GiB
# of disk at most) cover any box set of a 512-slice volume; a typical CT needs far fewer (37 for 4
# organs in 120 slices). Beyond both bounds a slice is encoded again; outputs never change.
DEFAULT_MAX_CACHED_SLICES = 4
DEFAULT_MAX_SPILLED_SLICES = 512
# Compiled models kept at once in a long run (about 300 MB each); 0: no limit.
DEFAULT_MAX_LOADED_MODELS = 2
# OpenVINO inference precisions (SessionConfig.precision); f32 gives the same outputs on every CPU.
PRECISIONS = ("f32", "auto", "bf16")
DEFAULT_PRECISION = "f32"
# Fast mode (--fast): INT8 image encoders where the export wrote them (<Name>_image_encoder_int8.xml),
# every other graph at OpenVINO's best precision for the CPU (no hint: bf16 where native). Outputs
# are not DAFT's. An explicit --precision still wins.
FAST_PRECISION = "auto"
# Boxes per decoder call in fast mode. Measured on a 2-core AVX-512 BF16 EPYC with LiteMedSAM's
# decoder at bf16: 20 ms per box at batch 1, 20 ms at 4, 36 ms at 12; on a 2-core AVX2 CPU (f32)
# batching gave no speed-up either (issue 4). Batching is never faster where fast mode runs, so 1.
FAST_DECODE_BATCH = 1


def resolve_precision(precision: str | None, fast: bool) -> str:
    """The precision to run at: the one asked for, else f32 (exact) or OpenVINO's best (fast)."""
    if precision is None:
        return FAST_PRECISION if fast else DEFAULT_PRECISION
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def add_precision_arguments(parser: argparse.ArgumentParser) -> None:
    """``--precision`` and ``--fast`` for daftseg-segment and the app, as the batch script has them."""
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help=f"OpenVINO inference precision (default {DEFAULT_PRECISION}, as PerfectMetaOpenVINO.py; "
                             f"{FAST_PRECISION} with --fast)")
    parser.add_argument("--fast", action="store_true",
                        help="fast mode, as PerfectMetaOpenVINO.py --fast: INT8 image encoders where "
                             "<Name>_image_encoder_int8.xml exists, OpenVINO's best precision for the rest; outputs "
                             "differ from DAFT's; prints what it uses on this CPU")


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
    max_cached_slices: 3D slice embeddings kept in memory between uses.
    max_spilled_slices: more of them kept in a temporary file (0: none; beyond both bounds a slice
        is encoded again; results are identical either way).
    spill_dir: folder of that file (None: the system's temporary folder).
    """

    zmax_inclusive: bool = False
    box_from_fullres: bool = False
    clip_to_box: bool = False
    decode_batch: int = 1
    max_cached_slices: int = DEFAULT_MAX_CACHED_SLICES
    max_spilled_slices: int = DEFAULT_MAX_SPILLED_SLICES
    spill_dir: str | None = None

    @property
    def faithful(self) -> bool:
        """True when outputs equal DAFT 93f1e55's by construction."""
        return not (self.zmax_inclusive or self.box_from_fullres or self.clip_to_box) and self.decode_batch <= 1
