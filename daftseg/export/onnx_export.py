"""PyTorch -> ONNX for SAM models, checked against PyTorch with ONNX Runtime (``export_onnx.py``).

For every weights file ``<models_dir>/<Name>.pth`` this writes ``<Name>_image_encoder.onnx``,
``<Name>_prompt_encoder.onnx``, ``<Name>_mask_decoder.onnx`` (tensor names in ``specs.py``) and
one shared ``positional_encoding.npy`` into ``out_dir`` (spec §6.1). With
``--shared_prompt_encoder`` the prompt encoder is written once, as ``prompt_encoder.onnx``, as
DAFT 916bd4e did (spec §11.2 step 9: it kept ``3D_prompt_encoder.onnx`` under that name and
deleted the others); every model's prompt encoder must then equal it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from daftseg.atomic import atomic_path, atomic_paths
from daftseg.export.graphs import dense_pe, graph_modules
from daftseg.export.runners import CheckError, OnnxGraph, Tolerance, compare, random_inputs
from daftseg.export.specs import (
    CHECK_SIZES,
    GRAPHS,
    IMAGE_ENCODER,
    MASK_DECODER,
    PROMPT_ENCODER,
    GraphSpec,
)
from daftseg.inference.model_folder import ONNX, POSITIONAL_ENCODING
from daftseg.trust import add_trust_argument

DEFAULT_OPSET = 17
# the one prompt encoder of a 916bd4e-style export; the runtime looks for prompt_encoder.xml
SHARED_PROMPT_ENCODER = f"{PROMPT_ENCODER.suffix}.{ONNX}"
# ONNX Runtime vs PyTorch, both float32: only kernel-order differences are expected.
# Measured with the fixture weights: about 1e-5 on embeddings, 6e-6 on logits, 1e-6 on IoU.
ONNX_TOLERANCE = Tolerance(atol=1e-3, rtol=1e-4)

Log = Callable[[str], None]


def tracing_inputs(model: nn.Module, spec: GraphSpec) -> tuple[torch.Tensor, ...]:
    """Example inputs for ``torch.onnx.export``: batch 2 / two prompts, so no dynamic axis is traced at 1."""
    g = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[[[20.0, 30.0, 120.0, 150.0]]], [[[60.0, 10.0, 200.0, 90.0]]]])  # (2, 1, 1, 4)
    if spec is IMAGE_ENCODER:
        return (torch.rand(1, 3, 256, 256, generator=g),)
    if spec is PROMPT_ENCODER:
        return (boxes,)
    if spec is MASK_DECODER:
        with torch.no_grad():
            sparse, dense = model.prompt_encoder(points=None, boxes=boxes, masks=None)
        return torch.randn(1, 256, 64, 64, generator=g), dense_pe(model), sparse, dense
    raise ValueError(f"no tracing inputs for {spec.suffix}")


def export_graph(module: nn.Module, spec: GraphSpec, example: tuple[torch.Tensor, ...],
                 path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Trace ``module`` to ONNX at ``path`` (atomically) with the spec's names and dynamic axes."""
    import onnx  # optional dependency: export environment only

    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # The tracer warns at every Python-level shape test (e.g. the decoder's "one embedding?"
        # branch); those are intended, and the self-check at other shapes catches a wrong one.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # harmless exporter notice for strided slices (EfficientViT's attention), once per node
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        # dynamo=False is deliberate (no onnxscript needed, DAFT's exporter); torch says it is legacy
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="The feature will be removed")
        torch.onnx.export(
            module, example, str(tmp), input_names=spec.input_names, output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes(), opset_version=opset, do_constant_folding=True, dynamo=False,
        )
        model = onnx.load(str(tmp))
        declare_output_shapes(model, spec)
        onnx.checker.check_model(model, full_check=True)  # full_check: strict shape inference too
        onnx.save(model, str(tmp))
    return Path(path)


def declare_output_shapes(model: object, spec: GraphSpec) -> None:
    """Write the spec's output shapes into an ONNX model (in place).

    The TorchScript exporter cannot infer sizes computed from runtime shapes and names them
    e.g. "Reshapelow_res_masks_dim_1"; a runtime reading the graph should see DAFT's sizes.
    """
    outputs = {o.name: o for o in model.graph.output}
    for t in spec.outputs:
        dims = outputs[t.name].type.tensor_type.shape.dim
        if len(dims) != len(t.shape):
            raise ValueError(f"{t.name}: exported rank {len(dims)} differs from the declared {t.shape}")
        for dim, want in zip(dims, t.shape, strict=True):
            if isinstance(want, str):
                dim.dim_param = want
            else:
                dim.dim_value = want


def torch_outputs(module: nn.Module, spec: GraphSpec, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a graph wrapper in PyTorch on named numpy inputs -> {output name: array}."""
    with torch.no_grad():
        out = module(*(torch.from_numpy(np.asarray(feeds[n])) for n in spec.input_names))
    out = out if isinstance(out, tuple) else (out,)
    return {n: o.detach().numpy() for n, o in zip(spec.output_names, out, strict=True)}


def check_graph(module: nn.Module, spec: GraphSpec, path: str | os.PathLike, image_pe: np.ndarray,
                log: Log = print) -> dict[str, float]:
    """ONNX Runtime vs PyTorch on random inputs at ``CHECK_SIZES``; prints and returns max abs diffs."""
    graph = OnnxGraph(path)
    feeds = random_inputs(graph.inputs, CHECK_SIZES, seed=1, image_pe=image_pe)
    return compare(Path(path).stem, "ONNX Runtime vs PyTorch", graph(feeds), torch_outputs(module, spec, feeds),
                   ONNX_TOLERANCE, log)


def export_model(model: nn.Module, out_dir: str | os.PathLike, name: str, opset: int = DEFAULT_OPSET,
                 check: bool = True, log: Log = print,
                 positional_encoding: torch.Tensor | np.ndarray | None = None,
                 graphs: Sequence[GraphSpec] = GRAPHS, file_names: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Write ``<name>_{image_encoder,prompt_encoder,mask_decoder}.onnx`` into ``out_dir``.

    The graphs (``graphs``: all three by default; ``file_names``: suffix -> another file name)
    and ``positional_encoding.npy`` when given are written under temporary names, each graph is
    checked against PyTorch (``CheckError`` beyond ``ONNX_TOLERANCE``), and only then are all of
    them renamed into place together. A failed check or any error on the way leaves ``out_dir`` as
    it was: earlier files untouched, nothing new. Returns suffix -> path.
    """
    out_dir = Path(out_dir)
    modules = graph_modules(model)
    pe = dense_pe(model).numpy()
    names = file_names or {}
    paths = {spec.suffix: out_dir / names.get(spec.suffix, spec.file_name(name, ONNX)) for spec in graphs}
    finals = list(paths.values())
    if positional_encoding is not None:
        finals.append(out_dir / POSITIONAL_ENCODING)
    with atomic_paths(finals) as temps:
        for spec, tmp in zip(graphs, temps, strict=False):
            export_graph(modules[spec.suffix], spec, tracing_inputs(model, spec), tmp, opset)
            if check:
                check_graph(modules[spec.suffix], spec, tmp, pe, log)
        if positional_encoding is not None:
            _write_positional_encoding(positional_encoding, temps[-1])
    for path in finals:
        log(f"  wrote {path}")
    return paths


def save_positional_encoding(pe: torch.Tensor | np.ndarray, out_dir: str | os.PathLike) -> Path:
    """``positional_encoding.npy``: float32 (1, 256, 64, 64), the decoder's ``image_pe`` input."""
    path = Path(out_dir) / POSITIONAL_ENCODING
    with atomic_path(path) as tmp:
        _write_positional_encoding(pe, tmp)
    return path


def _write_positional_encoding(pe: torch.Tensor | np.ndarray, path: Path) -> None:
    pe = pe.numpy() if isinstance(pe, torch.Tensor) else pe
    if pe.shape != (1, 256, 64, 64):
        raise ValueError(f"positional encoding has shape {pe.shape}, expected (1, 256, 64, 64)")
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(pe, dtype=np.float32))


def positional_encoding_from(weights: str | os.PathLike, trust: bool = False) -> torch.Tensor:
    """The dense PE of any SAM-style weights file (LiteMedSAM or EfficientViT-SAM).

    Only the prompt encoder is read; ``trust`` is ``read_checkpoint``'s.
    """
    from daftseg.checkpoints import load_weights
    from daftseg.models.sam import build_prompt_encoder

    prompt_encoder = load_weights(build_prompt_encoder(), weights, prefix="prompt_encoder.", trust=trust)
    with torch.no_grad():
        return prompt_encoder.get_dense_pe().to(torch.float32)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="export_onnx.py",
        description="Export every <models_dir>/<Name>.pth to <Name>_{image_encoder,prompt_encoder,mask_decoder}"
                    ".onnx plus positional_encoding.npy, each graph checked against PyTorch with ONNX Runtime.")
    p.add_argument("--models_dir", default="models", help="folder of weights files <Name>.pth (default: models)")
    p.add_argument("--out_dir", default="onnxmodels", help="output folder (default: onnxmodels)")
    p.add_argument("--names", nargs="+", metavar="NAME",
                   help="export only these models (file names without .pth); default: every *.pth")
    p.add_argument("--arch", default="efficientvit_sam_l0",
                   help="registry name of the architecture of the weights (default: efficientvit_sam_l0)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default: {DEFAULT_OPSET})")
    p.add_argument("--pe_from", metavar="NAME_OR_PATH",
                   help="weights whose prompt encoder provides positional_encoding.npy (and, with "
                        "--shared_prompt_encoder, prompt_encoder.onnx): a model name in models_dir or a path "
                        "(e.g. lite_medsam.pth); default: the first exported model (all DAFT models share "
                        "LiteMedSAM's)")
    p.add_argument("--shared_prompt_encoder", action="store_true",
                   help=f"write one {SHARED_PROMPT_ENCODER} (from --pe_from) instead of <Name>_prompt_encoder.onnx "
                        "per model, as DAFT 916bd4e; an error if a model's prompt encoder differs from it")
    add_trust_argument(p, "each models/<Name>.pth")
    return p


def select_weights(models_dir: Path, names: Sequence[str] | None) -> list[Path]:
    """Sorted ``*.pth`` of ``models_dir``, or exactly ``names``; FileNotFoundError names what is missing."""
    if not models_dir.is_dir():
        raise FileNotFoundError(f"{models_dir}: no such folder")
    if names:
        paths = [models_dir / f"{n.removesuffix('.pth')}.pth" for n in names]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"no such weights file: {', '.join(missing)}")
        return paths
    paths = sorted(models_dir.glob("*.pth"))
    if not paths:
        raise FileNotFoundError(f"{models_dir}: no *.pth weights files")
    return paths


def pe_source(pe_from: str | None, models_dir: Path, first: Path) -> Path:
    """``--pe_from``: a file path, else a model name in ``models_dir``; by default the first model."""
    if not pe_from:
        return first
    if Path(pe_from).is_file():
        return Path(pe_from)
    return models_dir / f"{pe_from.removesuffix('.pth')}.pth"


def prompt_encoder_state(weights: str | os.PathLike, trust: bool = False) -> dict[str, torch.Tensor]:
    """The ``prompt_encoder.*`` tensors of a SAM-style weights file (keys without the prefix)."""
    from daftseg.checkpoints import load_weights
    from daftseg.models.sam import build_prompt_encoder

    return load_weights(build_prompt_encoder(), weights, prefix="prompt_encoder.", trust=trust).state_dict()


def max_state_difference(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    if a.keys() != b.keys():
        return float("inf")
    return max((float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel()), default=0.0)


def export_shared_prompt_encoder(weights: Path, arch: str, out_dir: Path, opset: int, log: Log = print,
                                 trust: bool = False) -> Path:
    """``prompt_encoder.onnx`` from the prompt encoder of ``weights``, checked against PyTorch."""
    from daftseg.checkpoints import load_weights
    from daftseg.models import build_model

    model = load_weights(build_model(arch), weights, trust=trust).eval()
    log(f"{SHARED_PROMPT_ENCODER} from {weights}")
    return export_model(model, out_dir, "", opset, log=log, graphs=(PROMPT_ENCODER,),
                        file_names={PROMPT_ENCODER.suffix: SHARED_PROMPT_ENCODER})[PROMPT_ENCODER.suffix]


def run(models_dir: Path, out_dir: Path, names: Sequence[str] | None, arch: str, opset: int,
        pe_from: str | None, log: Log = print, trust: bool = False,
        shared_prompt_encoder: bool = False) -> list[Path]:
    """Export every selected model; ``positional_encoding.npy`` is written with the first one.

    Each model's files appear together and only once its checks pass (``export_model``); a
    failure stops the run, keeping the models exported before it. ``shared_prompt_encoder``:
    one ``prompt_encoder.onnx`` from the ``pe_from`` weights, written first, and no per-model
    prompt encoders; if any model's prompt encoder differs from it, nothing is written
    (``CheckError``).
    """
    from daftseg.checkpoints import load_weights
    from daftseg.models import build_model

    weights = select_weights(models_dir, names)
    pe_path = pe_source(pe_from, models_dir, weights[0])
    pe = positional_encoding_from(pe_path, trust)
    log(f"{POSITIONAL_ENCODING} from {pe_path}")
    written: list[Path] = []
    graphs = GRAPHS
    shared: dict[str, torch.Tensor] = {}
    if shared_prompt_encoder:
        graphs = tuple(g for g in GRAPHS if g is not PROMPT_ENCODER)
        shared = prompt_encoder_state(pe_path, trust)
        # all checked before anything is written: a mismatch found after an hour of export helps no one
        for path in weights:
            diff = max_state_difference(prompt_encoder_state(path, trust), shared)
            if diff > 0:
                raise CheckError(f"{path.stem}'s prompt encoder differs from {pe_path}'s (max abs difference "
                                 f"{diff:.3g}): it cannot use the shared {SHARED_PROMPT_ENCODER}; export "
                                 f"without --shared_prompt_encoder")
        written.append(export_shared_prompt_encoder(pe_path, arch, out_dir, opset, log, trust))
    for i, path in enumerate(weights, 1):
        start = time.perf_counter()
        log(f"[{i}/{len(weights)}] {path.stem}: {arch} from {path}")
        model = load_weights(build_model(arch), path, trust=trust).eval()
        paths = export_model(model, out_dir, path.stem, opset, log=log,
                             positional_encoding=pe if i == 1 else None, graphs=graphs)
        if i == 1:
            written.append(out_dir / POSITIONAL_ENCODING)
        written += paths.values()
        pe_diff = float((dense_pe(model) - pe).abs().max())
        if pe_diff > 1e-6:
            # the runtime feeds the one shared file to every decoder; say so when it is not this model's
            log(f"  note: {path.stem}'s positional encoding differs from {POSITIONAL_ENCODING} "
                f"by up to {pe_diff:.2e}")
        log(f"  done in {time.perf_counter() - start:.1f} s")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from daftseg.checkpoints import CheckpointError

    try:
        run(Path(args.models_dir), Path(args.out_dir), args.names, args.arch, args.opset, args.pe_from,
            trust=args.trust_checkpoint, shared_prompt_encoder=args.shared_prompt_encoder)
    except (CheckpointError, CheckError, FileNotFoundError, KeyError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)  # KeyError str() adds quotes
        return 1
    return 0
