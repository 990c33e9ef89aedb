"""OpenVINO sessions: one Core, each model compiled when first needed, the shared prompt encoder and PE.

Artefacts (DAFT's names, spec §6, §7.1) in ``models_dir``:
``<Name>_image_encoder.xml``, ``<Name>_mask_decoder.xml``, a prompt encoder and
``positional_encoding.npy`` (1,256,64,64). The prompt encoder is looked up as
``lite_medsam_prompt_encoder.xml`` (93f1e55), then ``prompt_encoder.xml`` (916bd4e), then
``<Name>_prompt_encoder.xml``; DAFT's prompt encoders all hold the same frozen weights.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from daftseg.inference.mapped_files import release_mapped_pages
from daftseg.inference.options import DEFAULT_MAX_LOADED_MODELS, DEFAULT_PRECISION, PRECISIONS

log = logging.getLogger("daftseg.inference")

# graphs are reshaped to a fixed batch only at this precision (see SessionConfig.fixed_batch)
STATIC_BATCH_PRECISION = "f32"
SHARED_PROMPT_ENCODERS = ("lite_medsam_prompt_encoder.xml", "prompt_encoder.xml")
POSITIONAL_ENCODING = "positional_encoding.npy"
EMBEDDING_SHAPE = (1, 256, 64, 64)


class ModelError(RuntimeError):
    """A model artefact is missing or does not have DAFT's tensor names and shapes."""


def import_openvino() -> ModuleType:
    """``import openvino`` without its model-conversion API.

    The package's ``__init__`` also imports ``openvino.tools.ovc`` (convert_model, with telemetry,
    http and email modules): about 0.45 s and 18 MB per process that inference never uses, paid on
    every case because the challenge harness starts one process per case. It is hidden during the
    import (``__init__`` skips it on ImportError) and ``openvino.convert_model`` is put back as a
    lazy wrapper, so later users of the same process see the normal API.
    """
    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    hide = "openvino.tools.ovc" not in sys.modules
    if hide:
        sys.modules["openvino.tools.ovc"] = None  # type: ignore[assignment]
    try:
        import openvino
    finally:
        if hide and sys.modules.get("openvino.tools.ovc", 0) is None:
            del sys.modules["openvino.tools.ovc"]
    if not hasattr(openvino, "convert_model"):
        def convert_model(*args, **kwargs):
            from openvino.tools.ovc import convert_model as real
            return real(*args, **kwargs)
        openvino.convert_model = convert_model
    return openvino


@dataclass(frozen=True)
class SessionConfig:
    """How models are compiled.

    cache_dir: OpenVINO compiled-model cache folder (None: no cache). If it cannot be created or
        written, inference goes on without a cache (with a warning).
    threads: ``INFERENCE_NUM_THREADS`` (0: OpenVINO's default, all cores).
    precision: ``f32`` (the default) sets ``INFERENCE_PRECISION_HINT`` f32: the same outputs on
        every CPU, as DAFT's submission was scored (a CPU without bf16) and as its later C++
        runtime forces. ``auto`` sets no hint, exactly as DAFT's Python script: OpenVINO's default,
        bf16 on CPUs with native bf16 (AVX512-BF16, AMX), else f32. ``bf16`` asks for bf16 (CPUs
        without it run f32).
    fixed_batch: compile every graph with a dynamic batch dimension at this batch (None: as
        stored), but only where the precision OpenVINO reports is f32 (``Sessions.static_batch``):
        there the reshape is bit-identical to the stored graph (tested on real-sized models);
        under bf16 OpenVINO picks other kernels for static shapes and outputs change. The runtime
        calls each graph with one image and, by default, one box, so 1 is the default: static
        shapes make the mask decoder about 15% faster and the process about 30 MB smaller. With a
        cache folder the reshaped IR is saved there once (``static_ir_path``), so later processes
        load it as fast as the original.
    max_loaded_models: compiled models kept at once in a long run (0: no limit); the least
        recently used is released first. Each costs about 300 MB; cases are processed in sorted
        order, so a modality's cases come together and a released model is rarely needed again
        (it then loads again from the cache in well under a second).
    int8: fast mode: a model's image encoder is ``<Name>_image_encoder_int8.xml`` where that file
        exists (``int8_encoder_file``), else its standard encoder (with one warning per model).
        False (the default) never reads an INT8 file.
    """

    cache_dir: str | None = None
    threads: int = 0
    precision: str = DEFAULT_PRECISION
    fixed_batch: int | None = 1
    max_loaded_models: int = DEFAULT_MAX_LOADED_MODELS
    int8: bool = False

    def precision_hint(self) -> str | None:
        """The ``INFERENCE_PRECISION_HINT`` to set (None for ``auto``: OpenVINO decides, as DAFT)."""
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        return None if self.precision == "auto" else self.precision

    def compile_properties(self) -> dict[str, object]:
        hint = self.precision_hint()
        props: dict[str, object] = {}
        if hint:
            props["INFERENCE_PRECISION_HINT"] = hint
        if self.threads > 0:
            props["INFERENCE_NUM_THREADS"] = int(self.threads)
        return props


def precision_name(value: object) -> str:
    """OpenVINO's element type (``ov.Type``) or its name as a short name: ``f32``, ``bf16``, ``f16``."""
    name = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(name, name)


def reported_precision(core) -> str:
    """The inference precision the CPU plugin of ``core`` reports it will use (``f32``, ``bf16``, ...).

    With no hint this is OpenVINO's default for the CPU (bf16 where it has native bf16); with a
    hint set on the core, the hint as the plugin accepted it (bf16 asked on a CPU without it: f32).
    """
    return precision_name(core.get_property("CPU", "INFERENCE_PRECISION_HINT"))


def model_files(models_dir: Path, name: str) -> tuple[Path, Path]:
    """(image encoder, mask decoder) IR paths of model ``name``."""
    return Path(models_dir) / f"{name}_image_encoder.xml", Path(models_dir) / f"{name}_mask_decoder.xml"


INT8_SUFFIX = "_int8"


def int8_encoder_file(models_dir: Path, name: str) -> Path:
    """``<Name>_image_encoder_int8.xml``: the INT8 image encoder written by ``--int8`` at export,
    read only in fast mode (``SessionConfig.int8``); its agreement record is the same stem ``.json``."""
    return Path(models_dir) / f"{name}_image_encoder{INT8_SUFFIX}.xml"


def int8_agreement(models_dir: str | Path, name: str) -> tuple[float, float] | None:
    """(mean, worst) agreement with f32 that the export's gate recorded next to ``name``'s INT8
    encoder (``<Name>_image_encoder_int8.json``); None without a readable record."""
    try:
        record = json.loads(int8_encoder_file(Path(models_dir), name).with_suffix(".json").read_text("utf-8"))
        return float(record["agreement"]["mean"]), float(record["agreement"]["worst"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ir_complete(xml: Path) -> bool:
    """True if the IR ``xml`` and its weights (``.bin``) both exist."""
    return xml.is_file() and xml.with_suffix(".bin").is_file()


def int8_model_names(models_dir: str | Path) -> list[str]:
    """Models of ``models_dir`` that have an INT8 image encoder (.xml and .bin)."""
    suffix = f"_image_encoder{INT8_SUFFIX}.xml"
    return sorted(p.name[: -len(suffix)] for p in Path(models_dir).glob(f"*{suffix}") if ir_complete(p))


def model_available(models_dir: Path, name: str) -> bool:
    """True if both IR files of ``name`` (and their weights) exist."""
    return all(ir_complete(p) for p in model_files(models_dir, name))


class _Session:
    """One compiled model and its infer request; returns copies of the named outputs."""

    def __init__(self, compiled, path: Path, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
        self.path = path
        self.compiled = compiled
        names = {n for port in compiled.inputs for n in port.get_names()}
        out_names = {n for port in compiled.outputs for n in port.get_names()}
        missing = [n for n in inputs if n not in names] + [n for n in outputs if n not in out_names]
        if missing:
            raise ModelError(f"{path.name}: no tensor named {', '.join(missing)} "
                             f"(inputs: {sorted(names)}, outputs: {sorted(out_names)})")
        self.outputs = outputs
        self.request = compiled.create_infer_request()

    def static_batch(self, input_name: str) -> int | None:
        """The fixed size of dim 0 of ``input_name``, or None if it is dynamic."""
        dim = self.compiled.input(input_name).get_partial_shape()[0]
        return dim.get_length() if dim.is_static else None

    def __call__(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        # Shared inputs: the decoder reads three 4 MiB inputs per box, which would be copied first
        # (C-contiguous float32 arrays are wrapped as they are; others are still copied).
        # share_outputs avoids copying outputs we do not keep (e.g. iou_predictions); we copy ours.
        self.request.infer(inputs, share_inputs=True, share_outputs=True)
        return tuple(self.request.get_tensor(n).data.copy() for n in self.outputs)


def encoder_session(compiled, path: Path) -> _Session:
    """An image-encoder session over an OpenVINO compiled model (DAFT's tensor names checked)."""
    return _Session(compiled, Path(path), ("image",), ("image_embedding",))


class ModelSessions:
    """Image encoder + (shared) prompt encoder + mask decoder of one model."""

    def __init__(self, name: str, encoder: _Session, prompt_encoder: _Session, decoder: _Session,
                 positional_encoding: np.ndarray) -> None:
        self.name = name
        self.encoder = encoder
        self.prompt_encoder = prompt_encoder
        self.decoder = decoder
        self.positional_encoding = positional_encoding
        # DAFT's released decoders are exported with fixed batch-1 shapes (spec §6.1).
        self.decoder_max_batch = decoder.static_batch("sparse_prompt_embeddings")
        self.prompt_max_batch = prompt_encoder.static_batch("boxes")
        self.encoder_calls = 0
        self.decoder_calls = 0

    def with_encoder(self, encoder: _Session) -> ModelSessions:
        """The same prompt encoder, decoder and PE with another image encoder (e.g. an INT8 candidate)."""
        return ModelSessions(self.name, encoder, self.prompt_encoder, self.decoder, self.positional_encoding)

    def encode(self, image: np.ndarray) -> np.ndarray:
        """(1,3,256,256) float32 in [0,1] -> image embedding (1,256,64,64) float32."""
        self.encoder_calls += 1
        (emb,) = self.encoder({"image": image})
        return emb

    def decode(self, embedding: np.ndarray, boxes256: np.ndarray, batch: int = 1) -> np.ndarray:
        """Low-res logits (N,256,256) for N boxes (N,4) in 256-space on one (1,256,64,64) embedding.

        ``batch`` boxes go through the prompt encoder and decoder per call (capped at the models'
        fixed batch). batch=1 is the faithful default: OpenVINO may pick other kernels for larger
        batches, which can change the last bits of the logits (``InferenceOptions.decode_batch``).
        """
        boxes = np.asarray(boxes256, np.float32).reshape(-1, 1, 1, 4)
        batch = max(1, batch)
        for cap in (self.decoder_max_batch, self.prompt_max_batch):
            batch = min(batch, cap) if cap else batch
        out = np.empty((boxes.shape[0], 256, 256), np.float32)
        for start in range(0, boxes.shape[0], batch):
            chunk = boxes[start:start + batch]
            sparse, dense = self.prompt_encoder({"boxes": chunk})
            (logits,) = self.decoder({"image_embeddings": embedding, "image_pe": self.positional_encoding,
                                      "sparse_prompt_embeddings": sparse, "dense_prompt_embeddings": dense})
            self.decoder_calls += 1
            out[start:start + len(chunk)] = logits.reshape(len(chunk), 256, 256)
        return out


class Sessions:
    """Models of one folder, compiled lazily (only those a case needs) with one OpenVINO Core."""

    def __init__(self, models_dir: str | Path, config: SessionConfig | None = None) -> None:
        self.models_dir = Path(models_dir)
        self.config = config or SessionConfig()
        self.config.compile_properties()  # validate early
        self._core = None
        self._cache_dir: str | None = None  # usable cache folder, set with the core
        self._precision = ""  # the inference precision OpenVINO reports, set with the core
        self._models: dict[str, ModelSessions] = {}
        self._prompt_encoders: dict[Path, _Session] = {}
        self._pe: np.ndarray | None = None
        self._lock = threading.RLock()
        self._prefetch: threading.Thread | None = None
        self._warned_int8: set[str] = set()

    # -- OpenVINO core ---------------------------------------------------------------------------
    @property
    def core(self):
        with self._lock:
            if self._core is None:
                self._set_core(import_openvino().Core())
            return self._core

    def _set_core(self, core) -> None:
        """Configure ``core`` (cache folder, precision hint) and read back the precision in effect."""
        self._cache_dir = _usable_cache_dir(self.config.cache_dir)
        if self._cache_dir:
            core.set_property({"CACHE_DIR": self._cache_dir})
        hint = self.config.precision_hint()
        if hint:  # on the core too, so that what it reports is what every compile gets
            core.set_property("CPU", {"INFERENCE_PRECISION_HINT": hint})
        self._precision = reported_precision(core)
        self._core = core

    @property
    def precision(self) -> str:
        """The inference precision OpenVINO reports for this session's models (``f32``, ``bf16``)."""
        _ = self.core
        return self._precision

    def static_batch(self) -> int | None:
        """The batch graphs are compiled at: ``config.fixed_batch`` at an f32 precision, else None (as stored).

        Decided from what OpenVINO reports, not from the flag: ``auto`` is f32 on some CPUs and
        bf16 on others, and ``bf16`` runs f32 where the CPU lacks it.
        """
        return self.config.fixed_batch if self.precision == STATIC_BATCH_PRECISION else None

    def _compile(self, path: Path, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> _Session:
        if not path.is_file():
            raise ModelError(f"model file {path} is missing")
        core, cache = self.core, self._cache_dir  # the cache folder was checked once, with the core
        props = self.config.compile_properties()
        batch = self.static_batch()
        if batch is None:
            compiled = core.compile_model(str(path), "CPU", props)
        else:
            if cache:
                compiled = core.compile_model(str(self._static_ir(path, batch, Path(cache))), "CPU", props)
            else:
                model = core.read_model(str(path))
                fix_batch(model, batch)
                compiled = core.compile_model(model, "CPU", props)
            got = precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
            if got != STATIC_BATCH_PRECISION:  # the core said f32, the compiled graph says otherwise
                log.debug("%s compiled at %s precision: compiling the graph as stored", path.name, got)
                compiled = core.compile_model(str(path), "CPU", props)
        release_mapped_pages([self.models_dir, *([cache] if cache else [])])
        return _Session(compiled, path, inputs, outputs)

    def _static_ir(self, path: Path, batch: int, cache: Path) -> Path:
        """``path`` itself if its batch is already fixed, else its reshaped copy in the cache folder."""
        derived = static_ir_path(cache, path, batch, import_openvino().get_version())
        marker = derived.with_suffix(".same")  # the source needed no reshape: use it as it is
        if derived.is_file():
            return derived
        if marker.is_file():
            return path
        model = self.core.read_model(str(path))
        try:
            if not fix_batch(model, batch):
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
                return path
            _save_ir_atomically(model, derived)
        except (OSError, RuntimeError) as e:  # OpenVINO reports failed writes as RuntimeError
            log.warning("cannot write %s (%s); compiling %s as stored", derived, e, path.name)
            return path
        return derived

    # -- artefacts ----------------------------------------------------------------------------
    def available(self, name: str) -> bool:
        return model_available(self.models_dir, name)

    def encoder_path(self, name: str) -> Path:
        """The image encoder ``name`` runs with: the INT8 one in fast mode where it exists, else the standard."""
        standard = model_files(self.models_dir, name)[0]
        if not self.config.int8:
            return standard
        int8 = int8_encoder_file(self.models_dir, name)
        if ir_complete(int8):
            return int8
        if name not in self._warned_int8:
            self._warned_int8.add(name)
            log.warning("model %s has no %s (+ .bin) in %s: fast mode runs its standard image encoder",
                        name, int8.name, self.models_dir)
        return standard

    def prompt_encoder_path(self, name: str) -> Path:
        for candidate in (*SHARED_PROMPT_ENCODERS, f"{name}_prompt_encoder.xml"):
            if (self.models_dir / candidate).is_file():
                return self.models_dir / candidate
        raise ModelError(f"no prompt encoder in {self.models_dir} (looked for "
                         f"{', '.join(SHARED_PROMPT_ENCODERS)}, {name}_prompt_encoder.xml)")

    def positional_encoding(self) -> np.ndarray:
        """The dense positional encoding (1,256,64,64) float32 shared by all models."""
        with self._lock:
            if self._pe is None:
                path = self.models_dir / POSITIONAL_ENCODING
                if not path.is_file():
                    raise ModelError(f"{path} is missing (the prompt encoder's dense PE, written at export)")
                pe = np.load(path, allow_pickle=False)
                if pe.shape != EMBEDDING_SHAPE:
                    raise ModelError(f"{path} has shape {pe.shape}, expected {EMBEDDING_SHAPE}")
                self._pe = np.ascontiguousarray(pe, np.float32)
            return self._pe

    def model(self, name: str) -> ModelSessions:
        """The compiled sessions of model ``name`` (compiled on first use)."""
        with self._lock:
            if name not in self._models:
                enc_path, dec_path = model_files(self.models_dir, name)
                for p in (enc_path, dec_path):
                    if not p.is_file():
                        raise ModelError(f"model {name!r}: {p} is missing")
                pe_path = self.prompt_encoder_path(name)
                if pe_path not in self._prompt_encoders:
                    self._prompt_encoders[pe_path] = self._compile(
                        pe_path, ("boxes",), ("sparse_embeddings", "dense_embeddings"))
                pos = self.positional_encoding()
                self._make_room()  # before compiling the new one, so both are never held at once
                encoder = self._compile(self.encoder_path(name), ("image",), ("image_embedding",))
                decoder = self._compile(dec_path, ("image_embeddings", "image_pe", "sparse_prompt_embeddings",
                                                   "dense_prompt_embeddings"), ("low_res_masks",))
                self._models[name] = ModelSessions(name, encoder, self._prompt_encoders[pe_path], decoder, pos)
            self._models[name] = self._models.pop(name)  # most recently used last
            return self._models[name]

    def _make_room(self) -> None:
        """Release least recently used models until one more fits within ``max_loaded_models``."""
        if self.config.max_loaded_models <= 0:
            return
        while len(self._models) >= self.config.max_loaded_models:
            name = next(iter(self._models))
            log.debug("releasing compiled model %s", name)
            del self._models[name]

    def prefetch(self, name: str) -> None:
        """Start compiling ``name`` in a background thread (errors surface at ``model(name)``).

        In a fresh process this overlaps loading the compiled models with reading the case.
        """
        def work() -> None:
            try:
                self.model(name)
            except Exception as e:  # noqa: BLE001 - reported again by the foreground call
                log.debug("background compile of %s failed: %s", name, e)

        if self._prefetch is None or not self._prefetch.is_alive():
            self._prefetch = threading.Thread(target=work, daemon=True)
            self._prefetch.start()

    def join_prefetch(self) -> None:
        """Wait for a background compile (never leave one running at interpreter exit)."""
        if self._prefetch is not None:
            self._prefetch.join()

    def loaded(self) -> list[str]:
        return sorted(self._models)


STATIC_IR_FOLDER = "daftseg-static-ir"


def static_ir_path(cache_dir: Path, source: Path, batch: int, ov_version: str) -> Path:
    """Where the batch-``batch`` copy of IR ``source`` lives in ``cache_dir``.

    The name changes whenever the source files change (size, modification time), so a model
    replaced under the same name is never served from a stale copy.
    """
    key = [str(Path(source).resolve()), str(batch), ov_version]
    for f in (source, source.with_suffix(".bin")):
        st = f.stat()
        key += [str(st.st_size), str(st.st_mtime_ns)]
    data = "\0".join(key).encode()
    digest = f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"  # zlib is loaded anyway; hashlib is not
    return Path(cache_dir) / STATIC_IR_FOLDER / f"{source.stem}.b{batch}.{digest}.xml"


def fix_batch(model, batch: int) -> bool:
    """Set every dynamic dimension 0 of ``model``'s inputs to ``batch``; False if none was dynamic."""
    shapes = {}
    for port in model.inputs:
        shape = port.get_partial_shape()
        if shape.rank.is_static and len(shape) and shape[0].is_dynamic:
            shape[0] = batch
            shapes[port.get_any_name()] = shape
    if shapes:
        model.reshape(shapes)
    return bool(shapes)


def _save_ir_atomically(model, xml: Path) -> None:
    """``xml`` and its ``.bin`` appear complete or not at all (the .xml is moved in last)."""
    ov = import_openvino()
    xml.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=xml.parent))
    try:
        # the weights keep their stored precision (FP16-compressed IR stays FP16 plus Convert)
        ov.save_model(model, str(tmp / xml.name), compress_to_fp16=False)
        os.replace(tmp / xml.with_suffix(".bin").name, xml.with_suffix(".bin"))
        os.replace(tmp / xml.name, xml)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_warned_cache: set[str] = set()


def _usable_cache_dir(cache_dir: str | None) -> str | None:
    """``cache_dir`` if it exists or can be created and is writable, else None (with one warning)."""
    if not cache_dir:
        return None
    try:
        os.makedirs(cache_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_dir):
            pass
        return str(cache_dir)
    except OSError as e:
        if cache_dir not in _warned_cache:
            _warned_cache.add(cache_dir)
            log.warning("model cache folder %s is not usable (%s); compiling without a cache", cache_dir, e)
        return None
