"""Load every known checkpoint layout strictly; save clean, self-describing files atomically.

Layouts (spec §2.4): a plain state dict (``lite_medsam.pth``, ``models/<Name>.pth``), a dict
holding ``model`` (DAFT training checkpoints) or ``state_dict`` (EfficientViT ``l0.pt``), with
keys optionally prefixed ``module.`` (DataParallel/DDP) or ``_orig_mod.`` (torch.compile).

Files are read with ``torch.load(weights_only=True)``: tensors and plain Python data only, so a
checkpoint cannot run code while it loads. The one known layout that needs more is 916bd4e's
training checkpoint, whose ``np_rng_state`` is ``np.random.get_state()`` (a NumPy uint32 array);
the NumPy globals that rebuild arrays and scalars are allow-listed for that (``ALLOWED_GLOBALS``).
A file that asks for any other global is refused with its name, unless the caller passes
``trust=True`` (the scripts' ``--trust_checkpoint``), which unpickles it fully.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from daftseg.atomic import atomic_path
from daftseg.trust import TRUST_FLAG

WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read, is refused, or does not fit the model."""


def _numpy_globals() -> list[Any]:
    """What unpickling NumPy arrays and scalars needs, under NumPy 1.x's and 2.x's module names.

    ``_reconstruct`` / ``scalar`` rebuild an array / scalar from raw bytes and a dtype; the dtype
    classes are those of the values such checkpoints hold (uint32 RNG keys; float and int losses
    or counters). None of them calls anything named by the file.
    """
    try:
        from numpy._core import multiarray  # NumPy 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core import multiarray
    entries: list[Any] = [np.ndarray, np.dtype]
    entries += [type(np.dtype(t)) for t in (np.uint32, np.int64, np.float32, np.float64, np.bool_)]
    # a file names the module that pickled it: numpy.core (NumPy 1.x) or numpy._core (NumPy 2)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        entries += [(multiarray._reconstruct, f"{module}._reconstruct"),
                    (multiarray.scalar, f"{module}.scalar")]
    return entries


ALLOWED_GLOBALS = _numpy_globals()


def _global_name(entry: Any) -> str:
    if isinstance(entry, tuple):
        return entry[1]
    return f"{entry.__module__}.{entry.__qualname__}"


ALLOWED_NAMES = frozenset(_global_name(e) for e in ALLOWED_GLOBALS)


def read_checkpoint(path: str | os.PathLike, trust: bool = False, name: str | None = None) -> Any:
    """``torch.load`` on CPU, weights only: tensors, plain data and ``ALLOWED_GLOBALS``.

    A file that needs any other Python global is refused with a ``CheckpointError`` naming the
    file and the globals, and nothing in it runs. With ``trust=True`` such a file is unpickled in
    full (``weights_only=False``), which runs whatever code it carries: only for files the user
    knows. ``name`` names the file in messages (default: ``path``).
    """
    path = Path(path)
    name = str(path) if name is None else name
    if not path.is_file():
        raise CheckpointError(f"{name}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        wanted = unsafe_globals(path, e)
        if not wanted:
            reason = _first_line(e)
            raise CheckpointError(f"{name}: cannot be read as a torch checkpoint ({reason})") from None
        if not trust:
            raise CheckpointError(
                f"{name}: refused: loading it needs the Python global(s) {', '.join(wanted)}, which no known "
                f"checkpoint layout holds; unpickling them can run code stored in the file. If you "
                f"know where the file comes from and trust it, rerun with {TRUST_FLAG}") from None
    except Exception as e:  # any other failure of torch.load: the file is not a readable checkpoint
        raise CheckpointError(f"{name}: cannot be read as a torch checkpoint ({_first_line(e)})") from e
    print(f"warning: {name}: unpickling {', '.join(wanted)} in full ({TRUST_FLAG})", file=sys.stderr)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{name}: cannot be read as a torch checkpoint ({_first_line(e)})") from e


# torch's weights-only errors: "GLOBAL print was not an allowed global", "unsupported GLOBAL
# posix.system whose module posix is blocked", "Can only build ... but got <class 'X'>"
_REFUSED_PATTERNS = (re.compile(r"GLOBAL (\S+) "), re.compile(r"but got <class '([^']+)'>"))


def unsafe_globals(path: Path, error: BaseException) -> list[str]:
    """The globals outside the allow-list that ``path`` asks for (empty: it is no pickle that names any).

    Read from the pickle's opcodes, executing nothing; else (a legacy non-zip file, or a type
    the unpickler refused to build) from the weights-only error, which names the first one.
    """
    try:
        names = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except (RuntimeError, ValueError, OSError, pickle.UnpicklingError):
        names = set()
    wanted = sorted(n for n in names if n not in ALLOWED_NAMES)
    if not wanted:  # legacy file, or an allowed global building a type that is not (a float16 dtype)
        names = {m.group(1) for pattern in _REFUSED_PATTERNS for m in pattern.finditer(str(error))}
        wanted = sorted(n for n in names if n not in ALLOWED_NAMES)
    return wanted


def _first_line(error: BaseException) -> str:
    """The informative line of a torch.load error (the weights-only unpickler's own reason, if any)."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text[text.index(marker) + len(marker):]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def extract_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The model state dict inside any known layout, with wrapper prefixes stripped."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{source}: no state dict found (expected a dict of tensors, "
                              f"or one under 'model' or 'state_dict')")
    return {strip_prefixes(k): v for k, v in obj.items()}


def strip_prefixes(key: str) -> str:
    """Remove leading ``module.`` / ``_orig_mod.`` (repeatedly, prefixes only, never substrings)."""
    changed = True
    while changed:
        changed = False
        for p in WRAPPER_PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def select_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Entries under ``prefix`` (e.g. ``"image_encoder."``) with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def check_compatible(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise a readable CheckpointError listing missing keys, unexpected keys and shape mismatches."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict) if state_dict[k].shape != expected[k].shape
    )
    if missing or unexpected or shapes:
        raise CheckpointError(_report(source, type(module).__name__, missing, unexpected, shapes))


def load_weights(module: nn.Module, source: str | os.PathLike | Mapping, prefix: str = "",
                 name: str | None = None, trust: bool = False) -> nn.Module:
    """Strictly load a checkpoint (path or already-read object) into ``module``.

    ``prefix`` selects a sub-tree of the checkpoint, e.g. ``"image_encoder."`` to take LiteMedSAM's
    encoder out of ``lite_medsam.pth``. ``name`` names the source in errors (default: the path).
    ``trust`` is ``read_checkpoint``'s. The module keeps its train/eval mode.
    """
    if name is None:
        name = str(source) if isinstance(source, (str, os.PathLike)) else "checkpoint"
    obj = read_checkpoint(source, trust) if isinstance(source, (str, os.PathLike)) else source
    state_dict = extract_state_dict(obj, name)
    if prefix:
        state_dict = select_prefix(state_dict, prefix)
        if not state_dict:
            raise CheckpointError(f"{name}: no keys under {prefix!r}")
    check_compatible(module, state_dict, name)
    module.load_state_dict(state_dict, strict=True)
    return module


def clean_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """State dict of a possibly DDP- or compile-wrapped module, under the official key names."""
    for attr in ("module", "_orig_mod"):
        while hasattr(module, attr) and isinstance(getattr(module, attr), nn.Module):
            module = getattr(module, attr)
    return {strip_prefixes(k): v.detach().cpu() for k, v in module.state_dict().items()}


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the target folder, then rename over ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def _report(source: str, model: str, missing: list[str], unexpected: list[str], shapes: list[str]) -> str:
    def block(title: str, items: list[str]) -> str:
        shown = "\n".join(f"    {i}" for i in items[:20])
        more = f"\n    ... and {len(items) - 20} more" if len(items) > 20 else ""
        return f"  {title} ({len(items)}):\n{shown}{more}" if items else ""

    parts = [block("missing keys", missing), block("unexpected keys", unexpected),
             block("shape mismatches", shapes)]
    return f"{source} does not fit {model}:\n" + "\n".join(p for p in parts if p)
