"""``python -m daftseg.quantize MODELS_DIR``: INT8 image encoders for a folder that already holds the
standard IR (DAFT's released ``openvinomodels/``, an earlier export), without converting again.

The same quantisation, gate and files as ``onnx2openvino.py --int8`` / ``liteov.py --int8``; by default
for every model of the folder whose INT8 encoder is missing or was made from another standard encoder
(``--names`` picks models, ``--force`` redoes current ones). Exit 0 when every model asked for has a
current INT8 encoder, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from daftseg.inference.model_folder import (
    int8_model_names,
    int8_source_mismatch,
    model_available,
    model_names,
)


def build_parser() -> argparse.ArgumentParser:
    from daftseg.quantize.int8 import add_int8_arguments

    p = argparse.ArgumentParser(prog="python -m daftseg.quantize",
                                description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("models_dir", type=Path, help="folder of OpenVINO IR (<Name>_image_encoder.xml, ...)")
    p.add_argument("--names", nargs="+", metavar="NAME", default=None,
                   help="models to quantise (default: each one without a current INT8 encoder)")
    p.add_argument("--force", action="store_true", help="quantise again where a current INT8 encoder exists")
    add_int8_arguments(p)
    p.set_defaults(int8=True)  # the whole point of this command
    return p


def wanted(folder: Path, names: Sequence[str] | None, force: bool) -> tuple[list[str], list[str]]:
    """(models to quantise, models skipped because their INT8 encoder is current)."""
    candidates = list(names) if names else [n for n in model_names(folder) if model_available(folder, n)]
    current = set(int8_model_names(folder))
    skip = [] if force else [n for n in candidates if n in current and not int8_source_mismatch(folder, n)]
    return [n for n in candidates if n not in skip], skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from daftseg.quantize.int8 import Int8Error, export_int8_models, import_nncf, settings_from_args

    settings = settings_from_args(args, parser)
    if not args.models_dir.is_dir():
        parser.error(f"{args.models_dir} is not a folder")
    missing = [n for n in args.names or [] if not model_available(args.models_dir, n)]
    if missing:
        parser.error(f"no standard IR for {', '.join(missing)} in {args.models_dir}")
    todo, skipped = wanted(args.models_dir, args.names, args.force)
    for name in skipped:
        print(f"{name}: its INT8 encoder is current (--force quantises it again)")
    if not todo:
        return 0
    try:
        import_nncf()
    except Int8Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 1 if export_int8_models(args.models_dir, todo, settings) else 0
