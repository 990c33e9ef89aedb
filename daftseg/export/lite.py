"""LiteMedSAM -> ONNX -> OpenVINO IR (``liteov.py``, spec §6.3).

Writes ``lite_medsam_{image_encoder,prompt_encoder,mask_decoder}.onnx`` into ``onnx_dir`` and the
matching ``.xml/.bin`` into ``ov_dir``, with the tensor names of ``graphs.py``. Unlike DAFT's
script it also writes ``positional_encoding.npy`` into both folders, so a folder holding only
LiteMedSAM is complete for the runtime (DAFT relied on ``export_onnx.py`` for that file).
With ``--int8`` it also writes ``lite_medsam_image_encoder_int8.xml/.bin/.json`` into ``ov_dir``
(``daftseg.quantize.int8``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from daftseg.export.graphs import dense_pe, graph_modules
from daftseg.export.onnx_export import DEFAULT_OPSET, export_model, tracing_inputs
from daftseg.export.runners import CheckError
from daftseg.export.specs import GRAPHS
from daftseg.inference.model_folder import LITE_MEDSAM, POSITIONAL_ENCODING, XML
from daftseg.trust import add_trust_argument

Log = Callable[[str], None]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="liteov.py",
        description="Export LiteMedSAM (lite_medsam.pth) to lite_medsam_{image_encoder,prompt_encoder,mask_decoder}"
                    " ONNX and OpenVINO IR plus positional_encoding.npy, each checked numerically.")
    p.add_argument("--checkpoint", default="work_dir/LiteMedSAM/lite_medsam.pth",
                   help="LiteMedSAM weights (default: work_dir/LiteMedSAM/lite_medsam.pth)")
    p.add_argument("--onnx_dir", default="liteonnx", help="ONNX output folder (default: liteonnx)")
    p.add_argument("--ov_dir", default="liteov", help="OpenVINO IR output folder (default: liteov)")
    p.add_argument("--fp32", action="store_true",
                   help="store FP32 IR weights; default: FP16-compressed weights as DAFT's release")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default: {DEFAULT_OPSET})")
    p.add_argument("--direct", action="store_true",
                   help="make the IR from the PyTorch modules with openvino.convert_model (checked against "
                        "PyTorch) instead of converting the ONNX files; the ONNX files are written either way")
    add_trust_argument(p, "the --checkpoint file")
    from daftseg.quantize.int8 import add_int8_arguments

    add_int8_arguments(p)
    return p


def run(checkpoint: Path, onnx_dir: Path, ov_dir: Path, compress_to_fp16: bool = True,
        opset: int = DEFAULT_OPSET, direct: bool = False, log: Log = print,
        trust: bool = False) -> list[Path]:
    """Export and check; each folder's files (three graphs + ``positional_encoding.npy``) appear
    together, only after their checks pass."""
    from daftseg.checkpoints import load_weights
    from daftseg.models import build_model

    start = time.perf_counter()
    log(f"{LITE_MEDSAM}: litemedsam from {checkpoint}")
    model = load_weights(build_model("litemedsam"), checkpoint, trust=trust).eval()
    pe = dense_pe(model)
    onnx_paths = export_model(model, onnx_dir, LITE_MEDSAM, opset, log=log, positional_encoding=pe)
    pe_copy = [(onnx_dir / POSITIONAL_ENCODING, ov_dir / POSITIONAL_ENCODING)]
    written = [onnx_dir / POSITIONAL_ENCODING, *onnx_paths.values()]
    if direct:
        from daftseg.export.openvino_direct import export_modules

        modules = graph_modules(model)
        items = [(modules[spec.suffix], spec, tracing_inputs(model, spec),
                  ov_dir / spec.file_name(LITE_MEDSAM, XML)) for spec in GRAPHS]
        written += export_modules(items, compress_to_fp16, image_pe=pe.numpy(), log=log, copies=pe_copy)
    else:
        from daftseg.export.openvino_convert import convert_group

        pairs = [(path, ov_dir / f"{path.stem}.xml") for path in onnx_paths.values()]
        written += convert_group(pairs, compress_to_fp16, image_pe=pe.numpy(), log=log, copies=pe_copy)
    log(f"  done in {time.perf_counter() - start:.1f} s")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from daftseg.checkpoints import CheckpointError
    from daftseg.quantize.int8 import Int8Error, export_int8_models, import_nncf, settings_from_args

    int8 = settings_from_args(args, parser)
    try:
        if int8:
            import_nncf()  # before the export, not after minutes of it
        run(Path(args.checkpoint), Path(args.onnx_dir), Path(args.ov_dir), not args.fp32, args.opset,
            args.direct, trust=args.trust_checkpoint)
    except (CheckpointError, CheckError, Int8Error) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if int8 and export_int8_models(Path(args.ov_dir), [LITE_MEDSAM], int8):
        return 1
    return 0
