"""``--int8``: NNCF post-training quantisation of an image encoder, gated by accuracy against the ground truth.

For model ``<Name>`` of a models folder that already holds its standard IR:

1. calibration cases (``calibration``), split into a calibration part (encoder inputs for NNCF) and
   a held-out part (the gate);
2. ``nncf.quantize`` (transformer model type, mixed preset, SmoothQuant on MatMuls, bias
   correction), or ``nncf.quantize_with_accuracy_control`` with ``--int8_accuracy_control``;
3. the gate (``agreement``): every held-out case segmented with the standard IR and with the INT8
   encoder as written (same prompt encoder and decoder, f32 precision hint). Where the cases have
   ground truth, their DSC decides (``--int8_max_dsc_drop`` on the mean, ``--int8_max_case_drop`` on
   any one case); cases without it are judged by the agreement with f32. A refusal writes nothing
   and the model fails with the numbers;
4. ``<Name>_image_encoder_int8.xml/.bin`` and the record ``<Name>_image_encoder_int8.json`` appear
   together (``atomic_paths``, the ``.xml`` last), next to the standard files. The record holds the
   standard ``.bin``'s size and modification time, which fast mode compares at load
   (``model_folder.int8_source_mismatch``) to notice an INT8 file older than a re-export.

NNCF is imported only here, when a model is quantised (``import_nncf`` names the pip command).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from daftseg.atomic import atomic_paths
from daftseg.inference.model_folder import file_stamp, image_encoder_file, int8_encoder_file, int8_files
from daftseg.quantize.agreement import (
    DEFAULT_MAX_CASE_DROP,
    DEFAULT_MAX_DSC_DROP,
    FALLBACK_MIN_AGREEMENT,
    Agreement,
    GateRules,
    Verdict,
    compare,
    ground_truth_score,
    judge,
    reference_maps,
)
from daftseg.quantize.calibration import (
    SLICES_PER_3D_CASE,
    CalibrationCase,
    CalibrationError,
    CalibrationSet,
    builtin_set,
    encoder_inputs,
    folder_set,
    split,
)
from daftseg.weights_fetch import sha256_file

Log = Callable[[str], None]

NNCF_REQUIREMENT = "nncf==3.4.0"
BIAS_CORRECTION = ("fast", "accurate", "none")
DEFAULT_SMOOTH_QUANT = 0.95  # NNCF's own default alpha for MatMuls of transformer models
DEFAULT_SUBSET_SIZE = 300  # NNCF's default
DEFAULT_HOLDOUT = 0.25
DEFAULT_MAX_DROP = 0.01
PRESET = "mixed"  # symmetric weights, asymmetric activations: NNCF's choice for transformers
F32 = {"INFERENCE_PRECISION_HINT": "f32"}


class Int8Error(RuntimeError):
    """A model's INT8 encoder was not written; the message is one line with the reason."""


def import_nncf():
    """``import nncf``, or an ``Int8Error`` naming the pip command."""
    try:
        import nncf
    except ImportError as e:
        raise Int8Error(f"--int8 needs NNCF, which is not installed ({e}): pip install {NNCF_REQUIREMENT} "
                        "(listed in model_conversion_requirements.txt; or pip install -e '.[quant]')") from None
    return nncf


@dataclass(frozen=True)
class Int8Settings:
    """The ``--int8*`` / ``--calibration*`` flags (see ``add_int8_arguments`` for their meaning)."""

    calibration: str | None = None
    calibration_mr: str | None = None
    holdout: float = DEFAULT_HOLDOUT
    subset_size: int = DEFAULT_SUBSET_SIZE
    smooth_quant: float = DEFAULT_SMOOTH_QUANT
    bias_correction: str = "fast"
    accuracy_control: bool = False
    validation: str | None = None
    max_drop: float = DEFAULT_MAX_DROP
    max_dsc_drop: float = DEFAULT_MAX_DSC_DROP
    max_case_drop: float = DEFAULT_MAX_CASE_DROP
    min_agreement: float | None = None  # opt-in

    @property
    def rules(self) -> GateRules:
        return GateRules(self.max_dsc_drop, self.max_case_drop, self.min_agreement)

    def check(self) -> None:
        """ValueError naming the flag whose value cannot be used."""
        if not 0 < self.holdout < 1:
            raise ValueError(f"--int8_holdout must be between 0 and 1 (exclusive), got {self.holdout}")
        if self.subset_size < 1:
            raise ValueError(f"--int8_subset_size must be at least 1, got {self.subset_size}")
        if self.smooth_quant != -1 and not 0 <= self.smooth_quant <= 1:
            raise ValueError(f"--int8_smooth_quant must be in [0, 1] or -1 (off), got {self.smooth_quant}")
        if self.bias_correction not in BIAS_CORRECTION:
            raise ValueError(f"--int8_bias_correction must be one of {BIAS_CORRECTION}")
        if not 0 <= self.max_drop <= 1:
            raise ValueError(f"--int8_max_drop must be in [0, 1], got {self.max_drop}")
        for flag, value in (("--int8_max_dsc_drop", self.max_dsc_drop), ("--int8_max_case_drop", self.max_case_drop)):
            if not 0 <= value <= 1:
                raise ValueError(f"{flag} must be in [0, 1], got {value}")
        if self.min_agreement is not None and not 0 <= self.min_agreement <= 1:
            raise ValueError(f"--int8_min_agreement must be in [0, 1], got {self.min_agreement}")
        if self.validation and not self.accuracy_control:
            raise ValueError("--int8_validation is used only with --int8_accuracy_control")


def add_int8_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--int8`` flags, the same for ``onnx2openvino.py`` and ``liteov.py``."""
    g = parser.add_argument_group(
        "INT8 image encoders (--int8; needs NNCF: pip install " + NNCF_REQUIREMENT + ")",
        "Also write <Name>_image_encoder_int8.xml/.bin and a record <Name>_image_encoder_int8.json next to the "
        "standard files, for the runtime's fast mode (the decoders are not quantised). The encoder is quantised "
        "with NNCF post-training quantisation, then gated: held-out cases are segmented with the standard IR "
        "and with the INT8 encoder (exact runtime, f32). Where the held-out cases have ground truth (the "
        "built-in synthetic set has), accuracy decides: the files are written only if the mean DSC drops by at "
        "most --int8_max_dsc_drop and no case by more than --int8_max_case_drop. Cases without ground truth "
        f"are judged by the agreement with the f32 label maps (mean Dice, at least {FALLBACK_MIN_AGREEMENT} or "
        "--int8_min_agreement). The output names the rule that decided and prints, per case, DSC f32, DSC "
        "INT8, their change and the agreement.")
    g.add_argument("--int8", action="store_true", help="quantise every image encoder written by this run")
    g.add_argument("--calibration", metavar="DIR", default=None,
                   help="calibration folder of challenge cases (imgs + boxes; ground truth from a gts key or "
                        "DIR/gts/ when the cases lie in DIR/imgs/) and/or training npz files (imgs + gts: boxes "
                        "from the labels). Model <Name> uses the files the routing table sends to it, or all "
                        "files when none is. Default: a built-in synthetic set of every modality plus the real "
                        "MR volume of --calibration_mr")
    g.add_argument("--calibration_mr", metavar="PATH", default=None,
                   help="MR volume (NIfTI) added to the built-in set as two 3D cases (lower and upper half); "
                        "'none' to skip it. Default: the demo's test_demo/scans/mni152_t1.nii.gz if present, "
                        "else the MNI152 T1 fetched into ~/.cache/daftseg/mni152; if it cannot be had, the "
                        "synthetic set is used alone (said in the output)")
    g.add_argument("--int8_holdout", type=float, default=DEFAULT_HOLDOUT, metavar="FRACTION",
                   help=f"share of the calibration cases held out for the gate, at least one case, chosen by "
                        f"a hash of the file name (default: {DEFAULT_HOLDOUT})")
    g.add_argument("--int8_subset_size", type=int, default=DEFAULT_SUBSET_SIZE, metavar="N",
                   help="at most this many encoder inputs for NNCF's statistics (2D case: its image; 3D case: "
                        f"up to {SLICES_PER_3D_CASE} slices in its boxes' z range) (default: {DEFAULT_SUBSET_SIZE})")
    g.add_argument("--int8_smooth_quant", type=float, default=DEFAULT_SMOOTH_QUANT, metavar="ALPHA",
                   help=f"SmoothQuant alpha for MatMul inputs, in [0, 1]; -1 disables SmoothQuant "
                        f"(default: {DEFAULT_SMOOTH_QUANT}, NNCF's default for transformers)")
    g.add_argument("--int8_bias_correction", choices=BIAS_CORRECTION, default="fast",
                   help="bias correction after quantisation: fast (NNCF's default), accurate (slower, layer "
                        "by layer) or none (default: fast)")
    g.add_argument("--int8_accuracy_control", action="store_true",
                   help="use NNCF's accuracy-controlled quantisation: layers are reverted to float until the "
                        "validation metric drops by at most --int8_max_drop. The metric is the mean Dice "
                        "against the ground truth when every validation case has one, else the agreement "
                        "with the f32 label maps (the output says which)")
    g.add_argument("--int8_validation", metavar="DIR", default=None,
                   help="validation folder for --int8_accuracy_control, read as --calibration "
                        "(default: the held-out cases)")
    g.add_argument("--int8_max_drop", type=float, default=DEFAULT_MAX_DROP, metavar="DROP",
                   help=f"largest absolute drop of the validation metric --int8_accuracy_control accepts "
                        f"(default: {DEFAULT_MAX_DROP})")
    g.add_argument("--int8_max_dsc_drop", type=float, default=DEFAULT_MAX_DSC_DROP, metavar="DROP",
                   help="refuse to write an INT8 encoder whose mean DSC against the ground truth, over the held-out "
                        "cases that have it, is lower than f32's by more than this; the model then fails (exit 1) "
                        f"(default: {DEFAULT_MAX_DSC_DROP})")
    g.add_argument("--int8_max_case_drop", type=float, default=DEFAULT_MAX_CASE_DROP, metavar="DROP",
                   help="refuse as well when any one held-out case's DSC drops by more than this (the refusal names "
                        f"the case) (default: {DEFAULT_MAX_CASE_DROP})")
    g.add_argument("--int8_min_agreement", type=float, default=None, metavar="DICE",
                   help="also require the INT8 label maps to agree with f32 at this mean Dice or better on all "
                        "held-out cases (opt-in; default: off). Cases without ground truth are always judged by "
                        f"agreement: at least this, else {FALLBACK_MIN_AGREEMENT}")


INT8_DESTS = ("calibration", "calibration_mr", "int8_holdout", "int8_subset_size", "int8_smooth_quant",
              "int8_bias_correction", "int8_accuracy_control", "int8_validation", "int8_max_drop",
              "int8_max_dsc_drop", "int8_max_case_drop", "int8_min_agreement")


def settings_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Int8Settings | None:
    """The settings of ``--int8`` (None without it); bad values end with ``parser.error``."""
    if not args.int8:
        given = [f"--{k}" for k in INT8_DESTS if getattr(args, k) != parser.get_default(k)]
        if given:
            parser.error(f"{', '.join(given)} only with --int8")
        return None
    settings = Int8Settings(
        calibration=args.calibration, calibration_mr=args.calibration_mr, holdout=args.int8_holdout,
        subset_size=args.int8_subset_size, smooth_quant=args.int8_smooth_quant,
        bias_correction=args.int8_bias_correction, accuracy_control=args.int8_accuracy_control,
        validation=args.int8_validation, max_drop=args.int8_max_drop, max_dsc_drop=args.int8_max_dsc_drop,
        max_case_drop=args.int8_max_case_drop, min_agreement=args.int8_min_agreement)
    try:
        settings.check()
    except ValueError as e:
        parser.error(str(e))
    return settings


# -- quantisation --------------------------------------------------------------------------------
def nncf_arguments(nncf, settings: Int8Settings, n_images: int) -> tuple[dict, object]:
    """(keyword arguments shared by ``nncf.quantize`` and ``quantize_with_accuracy_control``, the
    advanced quantisation parameters)."""
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
    )

    advanced = AdvancedQuantizationParameters(
        smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=settings.smooth_quant),
        disable_bias_correction=settings.bias_correction == "none")
    return {"preset": nncf.QuantizationPreset.MIXED, "model_type": nncf.ModelType.TRANSFORMER,
            "subset_size": min(settings.subset_size, n_images),
            "fast_bias_correction": settings.bias_correction != "accurate"}, advanced


def count_quantizers(model) -> int:
    """FakeQuantize nodes of a quantised OpenVINO model (0: NNCF quantised nothing)."""
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


@dataclass
class Int8Run:
    """What one model's quantisation produced (for the record and the messages)."""

    xml: Path
    agreement: Agreement
    verdict: Verdict
    seconds: float
    record: dict


def calibration_for(name: str, settings: Int8Settings, log: Log,
                    builtin: CalibrationSet | None = None) -> CalibrationSet:
    if settings.calibration:
        return folder_set(Path(settings.calibration), name, log=log)
    return builtin or builtin_set(settings.calibration_mr, log=log)


def export_int8(models_dir: Path, name: str, settings: Int8Settings = Int8Settings(), log: Log = print,
                calibration: CalibrationSet | None = None,
                split_cases: tuple[list[CalibrationCase], list[CalibrationCase]] | None = None) -> Int8Run:
    """Quantise ``<models_dir>/<name>_image_encoder.xml``, gate it, write the INT8 files and record.

    ``calibration`` replaces the set the settings name; ``split_cases`` replaces the split of it
    (calibration part, held-out part). Raises ``Int8Error`` (refused by the gate, or any failure);
    nothing ``_int8`` is written then.
    """
    from daftseg.inference.model_sessions import ModelError, encoder_session
    from daftseg.inference.openvino_runtime import import_openvino
    from daftseg.inference.sessions import SessionConfig, Sessions

    nncf = import_nncf()
    ov = import_openvino()
    models_dir = Path(models_dir)
    src = image_encoder_file(models_dir, name)
    out, out_bin, out_json = int8_files(models_dir, name)
    tag = f"[int8 {name}]"
    try:
        calib = calibration or calibration_for(name, settings, log)
        train, held_out = split_cases or split(calib.cases, settings.holdout)
    except CalibrationError as e:
        raise Int8Error(f"{out.name} not written: calibration: {e}") from None
    images = encoder_inputs(train)
    if not images:
        raise Int8Error(f"{out.name} not written: no calibration images")
    log(f"{tag} calibration: {calib.describe()}; {len(train)} cases give {len(images)} encoder inputs "
        f"(NNCF uses {min(settings.subset_size, len(images))}), {len(held_out)} held out for the gate")

    try:
        sessions = Sessions(models_dir, SessionConfig(precision="f32"))
        standard = sessions.model(name)
        reference, refused = reference_maps(standard, held_out)
    except ModelError as e:
        raise Int8Error(f"{out.name} not written: the standard model cannot run: {e}") from None
    if not reference:
        raise Int8Error(f"{out.name} not written: no held-out case could be segmented "
                        f"({'; '.join(f'{k}: {v}' for k, v in refused.items())})")

    stamp = file_stamp(src.with_suffix(".bin"))  # before reading: a re-export during the run shows as stale
    model = ov.Core().read_model(str(src))
    kwargs, advanced = nncf_arguments(nncf, settings, len(images))
    metric = ""
    start = time.perf_counter()
    if settings.accuracy_control:
        validation, metric, validate = _validation(name, settings, held_out, reference, standard, src, log)
        log(f"{tag} quantising with accuracy control: metric {metric} on {len(validation)} cases, "
            f"max drop {settings.max_drop}")
        quantized = nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(images), nncf.Dataset(validation), validate, max_drop=settings.max_drop,
            drop_type=nncf.DropType.ABSOLUTE, advanced_quantization_parameters=advanced, **kwargs)
    else:
        log(f"{tag} quantising (transformer, {PRESET} preset, SmoothQuant "
            f"{'off' if settings.smooth_quant < 0 else settings.smooth_quant}, bias correction "
            f"{settings.bias_correction})")
        quantized = nncf.quantize(model, nncf.Dataset(images), advanced_parameters=advanced, **kwargs)
    seconds = time.perf_counter() - start
    quantizers = count_quantizers(quantized)
    log(f"{tag} quantised in {seconds:.1f} s ({quantizers} FakeQuantize nodes)")
    if quantizers == 0:  # an "INT8" file that runs in float would only cost disk and a compile
        why = ("accuracy control reverted every quantised layer to float" if settings.accuracy_control
               else "NNCF quantised no layer")
        raise Int8Error(f"{out.name} not written: {why} (no FakeQuantize node left)")

    with atomic_paths([out_bin, out_json, out]) as (_, tmp_json, tmp_xml):
        ov.save_model(quantized, str(tmp_xml), compress_to_fp16=False)
        compiled = sessions.core.compile_model(str(tmp_xml), "CPU", F32)  # the gate checks what is written
        candidate = standard.with_encoder(encoder_session(compiled, out))
        log(f"{tag} gate: {len(reference)} held-out cases, INT8 encoder vs f32, exact runtime at f32")
        agreement = compare(candidate, held_out, reference, refused)
        for line in agreement.table():
            log(line)
        verdict = judge(agreement, settings.rules)
        log(f"{tag} gate rule: {verdict.rule}")
        for line in verdict.checks:
            log(f"    {line}")
        if not verdict.passed:
            raise Int8Error(refusal(out.name, verdict))
        record = make_record(name, src, calib, train, held_out, images, agreement, verdict, settings, seconds,
                             quantizers, metric, nncf, stamp)
        tmp_json.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    log(f"{tag} wrote {out} (+ .bin, .json): passed by {verdict.rule}")
    return Int8Run(out, agreement, verdict, seconds, record)


def refusal(file_name: str, verdict: Verdict) -> str:
    """The gate's one-line refusal, with the numbers of every rule that failed."""
    return f"{file_name} not written: " + "; ".join(verdict.failures)


def _validation(name: str, settings: Int8Settings, held_out: list[CalibrationCase], reference: dict,
                standard, src: Path, log: Log):
    """(validation cases, metric description, NNCF validation function) for accuracy control."""
    from daftseg.inference.model_sessions import encoder_session

    if settings.validation:
        try:
            cases = folder_set(Path(settings.validation), name, log=log).cases
        except CalibrationError as e:
            raise Int8Error(f"{name}: --int8_validation: {e}") from None
        ref, _ = reference_maps(standard, cases)
    else:
        cases, ref = held_out, reference
    cases = [c for c in cases if c.name in ref]
    if not cases:
        raise Int8Error(f"{name}: no validation case could be segmented")
    by_gts = all(c.gts is not None for c in cases)
    metric = "mean Dice against the ground truth (gts)" if by_gts else "agreement with the f32 label maps"

    def validate(compiled, data) -> tuple[float, list[float]]:
        model = standard.with_encoder(encoder_session(compiled, src))
        items = list(data)
        scores = (ground_truth_score(model, items) if by_gts
                  else [compare(model, [c], ref).per_case[c.name] for c in items])
        return float(sum(scores) / len(scores)), scores

    return cases, metric, validate


def make_record(name: str, src: Path, calib: CalibrationSet, train: Sequence[CalibrationCase],
                held_out: Sequence[CalibrationCase], images: list, agreement: Agreement, verdict: Verdict,
                settings: Int8Settings, seconds: float, quantizers: int, metric: str, nncf,
                stamp: dict | None = None) -> dict:
    """The JSON record written next to the INT8 encoder (keys documented in the README)."""
    import daftseg
    from daftseg.inference.openvino_runtime import import_openvino

    weights = src.with_suffix(".bin")
    return {
        "model": name,
        "int8_xml": int8_encoder_file(src.parent, name).name,
        "source_xml": src.name,
        "source_sha256": {p.name: sha256_file(p) for p in (src, weights)},
        "source_bin": {"file": weights.name, **(stamp or file_stamp(weights))},
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": {"daftseg": daftseg.__version__, "openvino": import_openvino().get_version(),
                     "nncf": nncf.__version__, "python": sys.version.split()[0]},
        "calibration": {"source": calib.source, "calibration_cases": [c.name for c in train],
                        "images": len(images), "images_used": min(settings.subset_size, len(images))},
        "held_out": [c.name for c in held_out],
        "agreement": {**agreement.record(),
                      "measure": "agreement: per case, mean over labels of the Dice of the INT8 and f32 label maps; "
                                 "dsc_f32, dsc_int8: of each map against the ground truth; change: dsc_int8 - dsc_f32"},
        "gate": verdict.record(settings.rules),
        "quantization": {"seconds": round(seconds, 1), "fake_quantize_nodes": quantizers, "preset": PRESET,
                         "model_type": "transformer", "accuracy_control_metric": metric or None},
        "settings": asdict(settings),
    }


def export_int8_models(models_dir: Path, names: Sequence[str], settings: Int8Settings, log: Log = print,
                       error: Log | None = None) -> list[str]:
    """``export_int8`` for each model; a failure is one ``error:`` line and the next model goes on.

    Returns the names that failed.
    """
    error = error or (lambda line: print(line, file=sys.stderr))
    failed = []
    builtin = None
    if names and not settings.calibration:
        builtin = builtin_set(settings.calibration_mr, log=log)  # the same for every model: made once
    for name in names:
        try:
            export_int8(models_dir, name, settings, log, calibration=builtin)
        except Int8Error as e:
            error(f"error: {e}")
            failed.append(name)
        except Exception as e:  # noqa: BLE001 - NNCF or OpenVINO failing on one model stops only that model
            error(f"error: {int8_encoder_file(models_dir, name).name} not written: {type(e).__name__}: {e}")
            failed.append(name)
    return failed
