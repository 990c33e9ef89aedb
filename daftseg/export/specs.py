"""The three exported graphs: DAFT's file suffixes, tensor names, shapes and dynamic axes. No torch.

A ``GraphSpec`` is the contract with every runtime (DAFT's ``PerfectMetaOpenVINO.py``, its C++ port
and ours): file ``<name>_<suffix>.{onnx,xml}`` (named by ``daftseg.inference.model_folder``), inputs and outputs in this order, string dims dynamic.
The only deliberate difference from DAFT (spec §6.1, §12 item 16) is the mask decoder: DAFT fixed
every shape at batch 1; here N prompts share one image embedding (or B embeddings pair with B
prompts), so a runtime can decode many boxes per call while batch-1 calls keep working.
"""

from __future__ import annotations

from dataclasses import dataclass

from daftseg.inference import model_folder

Dim = int | str  # an int is fixed, a string names a dynamic axis


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[Dim, ...]


@dataclass(frozen=True)
class GraphSpec:
    suffix: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def file_stem(self, name: str) -> str:
        return model_folder.graph_stem(name, self.suffix)

    def file_name(self, name: str, ext: str) -> str:
        """``<name>_<suffix>.<ext>``, ``ext`` one of ``model_folder.XML``, ``model_folder.ONNX``."""
        return model_folder.graph_file(name, self.suffix, ext)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """``torch.onnx.export``'s ``dynamic_axes``: tensor name -> {axis: dim name}."""
        axes = {t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)}
                for t in self.inputs + self.outputs}
        return {k: v for k, v in axes.items() if v}


IMAGE_ENCODER = GraphSpec(
    model_folder.IMAGE_ENCODER,
    inputs=(TensorSpec("image", ("batch_size", 3, 256, 256)),),
    outputs=(TensorSpec("image_embedding", ("batch_size", 256, 64, 64)),),
)
PROMPT_ENCODER = GraphSpec(
    model_folder.PROMPT_ENCODER,
    # boxes [x_min, y_min, x_max, y_max] in 256-space, one per batch entry
    inputs=(TensorSpec("boxes", ("batch_size", 1, 1, 4)),),
    outputs=(TensorSpec("sparse_embeddings", ("batch_size", 2, 256)),
             TensorSpec("dense_embeddings", ("batch_size", 256, 64, 64))),
)
MASK_DECODER = GraphSpec(
    model_folder.MASK_DECODER,
    inputs=(
        # 1 (broadcast to every prompt) or num_prompts (embedding i pairs with prompt i)
        TensorSpec("image_embeddings", ("embedding_batch", 256, 64, 64)),
        TensorSpec("image_pe", (1, 256, 64, 64)),
        TensorSpec("sparse_prompt_embeddings", ("num_prompts", 2, 256)),
        TensorSpec("dense_prompt_embeddings", ("num_prompts", 256, 64, 64)),
    ),
    outputs=(TensorSpec("low_res_masks", ("num_prompts", 1, 256, 256)),
             TensorSpec("iou_predictions", ("num_prompts", 1))),
)
GRAPHS: tuple[GraphSpec, ...] = (IMAGE_ENCODER, PROMPT_ENCODER, MASK_DECODER)
# Shapes of the export self-checks: DAFT's batch-1 encoder use and a 3-box decoder call. The
# decoder is traced with 2 prompts, so a size baked in by the tracer shows up as an error.
CHECK_SIZES = {"batch_size": 1, "num_prompts": 3, "embedding_batch": 1}
