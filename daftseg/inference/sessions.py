"""OpenVINO sessions: one Core, each model compiled when first needed, the shared prompt encoder and PE.

The file names of a model folder are ``model_folder``'s; one model's compiled graphs are
``model_sessions.ModelSessions``; batch-fixed copies in the cache folder are ``static_ir``'s.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daftseg.inference import model_folder
from daftseg.inference.mapped_files import release_mapped_pages
from daftseg.inference.model_sessions import GraphSession, ModelError, ModelSessions
from daftseg.inference.openvino_runtime import import_openvino, precision_name, reported_precision
from daftseg.inference.options import DEFAULT_MAX_LOADED_MODELS, DEFAULT_PRECISION, PRECISIONS
from daftseg.inference.static_ir import fix_batch, static_ir, usable_cache_dir

log = logging.getLogger("daftseg.inference")

# graphs are reshaped to a fixed batch only at this precision (see SessionConfig.fixed_batch)
STATIC_BATCH_PRECISION = "f32"
EMBEDDING_SHAPE = (1, 256, 64, 64)


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
        cache folder the reshaped IR is saved there once (``static_ir.static_ir_path``), so later processes
        load it as fast as the original.
    max_loaded_models: compiled models kept at once in a long run (0: no limit); the least
        recently used is released first. Each costs about 300 MB; cases are processed in sorted
        order, so a modality's cases come together and a released model is rarely needed again
        (it then loads again from the cache in well under a second).
    int8: fast mode: a model's image encoder is ``<Name>_image_encoder_int8.xml`` where that file
        exists (``model_folder.int8_encoder_file``) and was made from the standard ``.bin`` now there
        (size and modification time as its record says, ``model_folder.int8_source_mismatch``), else
        its standard encoder (with one warning per model naming both files).
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
        self._prompt_encoders: dict[Path, GraphSession] = {}
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
        self._cache_dir = usable_cache_dir(self.config.cache_dir)
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

    def _compile(self, path: Path, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> GraphSession:
        if not path.is_file():
            raise ModelError(f"model file {path} is missing")
        core, cache = self.core, self._cache_dir  # the cache folder was checked once, with the core
        props = self.config.compile_properties()
        batch = self.static_batch()
        if batch is None:
            compiled = core.compile_model(str(path), "CPU", props)
        else:
            if cache:
                compiled = core.compile_model(str(static_ir(core, path, batch, Path(cache))), "CPU", props)
            else:
                model = core.read_model(str(path))
                fix_batch(model, batch)
                compiled = core.compile_model(model, "CPU", props)
            got = precision_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
            if got != STATIC_BATCH_PRECISION:  # the core said f32, the compiled graph says otherwise
                log.debug("%s compiled at %s precision: compiling the graph as stored", path.name, got)
                compiled = core.compile_model(str(path), "CPU", props)
        release_mapped_pages([self.models_dir, *([cache] if cache else [])])
        return GraphSession(compiled, path, inputs, outputs)

    # -- artefacts ----------------------------------------------------------------------------
    def available(self, name: str) -> bool:
        return model_folder.model_available(self.models_dir, name)

    def encoder_path(self, name: str) -> Path:
        """The image encoder ``name`` runs with: the INT8 one in fast mode where it exists, else the standard."""
        standard = model_folder.image_encoder_file(self.models_dir, name)
        if not self.config.int8:
            return standard
        int8 = model_folder.int8_encoder_file(self.models_dir, name)
        if not model_folder.ir_complete(int8):
            why = f"model {name} has no {int8.name} (+ .bin) in {self.models_dir}: fast mode runs its standard image encoder"
        elif stale := model_folder.int8_source_mismatch(self.models_dir, name):
            why = (f"{int8} was not made from {standard.with_suffix('.bin')} ({stale}): fast mode runs the standard "
                   f"image encoder {standard.name}; export it again with --int8 (a copy of the folder must keep "
                   "modification times: cp -p, rsync -t)")
        else:
            return int8
        if name not in self._warned_int8:
            self._warned_int8.add(name)
            log.warning("%s", why)
        return standard

    def prompt_encoder_path(self, name: str) -> Path:
        path = model_folder.find_prompt_encoder(self.models_dir, name)
        if path is None:
            looked_for = ", ".join(p.name for p in model_folder.prompt_encoder_files(self.models_dir, name))
            raise ModelError(f"no prompt encoder in {self.models_dir} (looked for {looked_for})")
        return path

    def positional_encoding(self) -> np.ndarray:
        """The dense positional encoding (1,256,64,64) float32 shared by all models."""
        with self._lock:
            if self._pe is None:
                path = model_folder.positional_encoding_file(self.models_dir)
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
                enc_path, dec_path = model_folder.model_files(self.models_dir, name)
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

