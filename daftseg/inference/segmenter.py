"""``Segmenter``: the Python API over sessions, routing and the 2D/3D algorithms.

    seg = Segmenter("openvinomodels")
    segs = seg.segment(imgs, boxes, name="2DBox_US_0001.npz")   # or model="lite_medsam"
    result = seg.segment_file("case.npz")                        # result.segs, result.model, ...
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from daftseg.inference.model_folder import (
    int8_agreement,
    int8_encoder_file,
    int8_model_names,
    int8_source_mismatch,
)
from daftseg.inference.npz_io import Case, label_dtype, make_case, output_dtype, read_case
from daftseg.inference.options import (
    DEFAULT_MAX_LOADED_MODELS,
    FAST_DECODE_BATCH,
    InferenceOptions,
    resolve_precision,
)
from daftseg.inference.routing import Route, RoutingTable
from daftseg.inference.sessions import SessionConfig, Sessions

log = logging.getLogger("daftseg.inference")


@dataclass
class CaseResult:
    """What one case produced: ``segs`` and what it took."""

    name: str
    segs: np.ndarray  # labels; uint8 up to 255 boxes (``write_segs`` writes uint16, as DAFT)
    model: str
    route: Route
    boxes: int
    slices: int  # distinct slices segmented (1 for 2D, 0 without boxes)
    encoder_calls: int
    seconds: float
    mid_slices: list[int] = field(default_factory=list)  # 3D: each box's middle slice (for overlays)
    notes: list[str] = field(default_factory=list)


class Segmenter:
    """Box-prompted segmentation with DAFT's per-modality OpenVINO models.

    Args:
        models_dir: folder with ``<Name>_image_encoder.xml``, ``<Name>_mask_decoder.xml``, a prompt
            encoder and ``positional_encoding.npy``.
        cache_dir, threads, max_loaded_models: see ``SessionConfig``.
        precision: see ``SessionConfig``; None: f32, or OpenVINO's best with ``fast``.
        options: ``InferenceOptions`` (defaults: DAFT's exact behaviour).
        routing: a ``RoutingTable``, the path of its TOML file or a shipped table's name (``93f1e55``,
            ``916bd4e``); default ``$DAFTSEG_ROUTING``, else daftseg/configs/modalities.toml.
        fast: fast mode (opt-in, outputs are not DAFT's): INT8 image encoders where the export wrote
            ``<Name>_image_encoder_int8.xml``, every other graph at OpenVINO's best precision for the
            CPU unless ``precision`` says otherwise, and ``FAST_DECODE_BATCH`` boxes per decoder call
            unless ``options`` asks for more.
    """

    def __init__(self, models_dir: str | Path = "openvinomodels", cache_dir: str | None = None,
                 threads: int = 0, precision: str | None = None, options: InferenceOptions | None = None,
                 routing: RoutingTable | str | Path | None = None,
                 max_loaded_models: int = DEFAULT_MAX_LOADED_MODELS, fast: bool = False) -> None:
        self.options = options or InferenceOptions()
        if fast and self.options.decode_batch <= 1 < FAST_DECODE_BATCH:
            self.options = replace(self.options, decode_batch=FAST_DECODE_BATCH)
        precision = resolve_precision(precision, fast)
        # one box per decoder call (the default) lets every graph be compiled at batch 1, which
        # Sessions does only where OpenVINO reports an f32 precision (bit-identical there)
        fixed = 1 if self.options.decode_batch <= 1 else None
        self.sessions = Sessions(models_dir, SessionConfig(cache_dir, threads, precision, fixed,
                                                           max_loaded_models, int8=fast))
        self.routing = routing if isinstance(routing, RoutingTable) else RoutingTable.load(routing)

    def fast_mode_report(self, cpu_flags: Callable[[], frozenset[str] | None] | None = None
                         ) -> tuple[str, list[str]]:
        """(one line saying what fast mode uses on this CPU, warnings); see ``daftseg.inference.cpu``.

        cpu_flags: returns the CPU's flags, None if unknown (default: read from the operating system).
        """
        from daftseg.inference.cpu import cpu_info, fast_mode_report, read_cpu_flags

        info = cpu_info(self.sessions.core, self.sessions.precision, (cpu_flags or read_cpu_flags)())
        folder = self.sessions.models_dir
        names = int8_model_names(folder)
        stale = {name: why for name in names if (why := int8_source_mismatch(folder, name))}
        models = {name: int8_agreement(folder, name) for name in names if name not in stale}
        line, warnings = fast_mode_report(info, models, folder)
        warnings += [f"{int8_encoder_file(folder, name).name} was made from another {name} encoder ({why}): {name} "
                     "runs its standard image encoder; export it again with --int8" for name, why in stale.items()]
        return line, warnings

    def route(self, name: str, warn: bool = True) -> Route:
        """The model that a file called ``name`` runs with (fallback if its files are absent)."""
        return self.routing.route(Path(name).name, self.sessions.available, warn)

    def segment(self, imgs: np.ndarray, boxes: np.ndarray, name: str = "", model: str | None = None,
                is_3d: bool | None = None) -> np.ndarray:
        """``segs`` for arrays as in a challenge npz (uint16, as DAFT writes it).

        The model is ``model``, else routed from the file name ``name``, else the fallback model.
        3D or not: ``is_3d``, else the name (``3D*``), else whether ``boxes`` is (N,6).
        """
        if is_3d is None and not name:
            is_3d = np.asarray(boxes).ndim == 2 and np.asarray(boxes).shape[1] == 6
        if model is None and not name:
            model = self.routing.fallback
        case = make_case(name or ("3D_array" if is_3d else "2D_array"), imgs, boxes, is_3d=is_3d)
        segs = self.run(case, model=model).segs
        return segs.astype(output_dtype(segs), copy=False)

    def segment_file(self, path: str | Path) -> CaseResult:
        """Read, validate and segment one challenge npz (raises ``CaseError`` for bad input)."""
        return self.run(read_case(path))

    def run(self, case: Case, model: str | None = None) -> CaseResult:
        """Segment a validated ``Case``.

        Boxes DAFT segments oddly (inverted, outside the image or volume) are logged as warnings
        naming the case and the box, and kept in ``CaseResult.notes``.
        """
        from daftseg.inference.boxes import box_notes
        from daftseg.inference.case2d import segment_2d
        from daftseg.inference.case3d import segment_3d

        t0 = time.perf_counter()
        route = Route(model, model, None, False) if model else self.route(case.name)
        n = len(case.boxes)
        notes = list(case.notes)
        for note in box_notes(case.boxes, case.spatial_shape, case.is_3d, self.options.zmax_inclusive):
            log.warning("%s: %s", case.name, note)
            notes.append(note)
        mids: list[int] = []
        if n == 0:  # documented: no boxes -> an all-zero label map, no model needed
            segs = np.zeros(case.spatial_shape, label_dtype(n))
            slices = calls = 0
        else:
            sessions = self.sessions.model(route.model)
            before = sessions.encoder_calls
            if case.is_3d:
                res = segment_3d(sessions, case.imgs, case.boxes, self.options)
                segs, slices, mids = res.segs, res.slices, [p.mid for p in res.plans]
            else:
                segs, slices = segment_2d(sessions, case.imgs, case.boxes, self.options), 1
            calls = sessions.encoder_calls - before
        return CaseResult(case.name, segs, route.model, route, n, slices, calls,
                          time.perf_counter() - t0, mids, notes)
