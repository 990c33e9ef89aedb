"""One model's compiled graphs: image encoder, prompt encoder and mask decoder, with the shared PE."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class ModelError(RuntimeError):
    """A model artefact is missing or does not have DAFT's tensor names and shapes."""


class GraphSession:
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


def encoder_session(compiled, path: Path) -> GraphSession:
    """An image-encoder session over an OpenVINO compiled model (DAFT's tensor names checked)."""
    return GraphSession(compiled, Path(path), ("image",), ("image_embedding",))


class ModelSessions:
    """Image encoder + (shared) prompt encoder + mask decoder of one model."""

    def __init__(self, name: str, encoder: GraphSession, prompt_encoder: GraphSession, decoder: GraphSession,
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

    def with_encoder(self, encoder: GraphSession) -> ModelSessions:
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
