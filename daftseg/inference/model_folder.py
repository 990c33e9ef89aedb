"""The file names of a model folder: the one place the runtime, the app, the demo, export and the recipe take them from.

For each model ``<Name>`` (DAFT's names, spec §6, §7.1) an OpenVINO folder holds
``<Name>_image_encoder.xml``/``.bin`` and ``<Name>_mask_decoder.xml``/``.bin``; an ONNX folder holds
the same graphs as ``.onnx``. All models share a prompt encoder and ``positional_encoding.npy``
(1,256,64,64). The prompt encoder is looked up as ``lite_medsam_prompt_encoder.xml`` (93f1e55),
then ``prompt_encoder.xml`` (916bd4e), then ``<Name>_prompt_encoder.xml``; DAFT's prompt encoders
all hold the same frozen weights. Fast mode's INT8 image encoder is ``<Name>_image_encoder_int8.xml``
/``.bin``, with the export gate's record ``<Name>_image_encoder_int8.json``, which also holds the size
and modification time of the standard ``.bin`` it was made from (``int8_source_mismatch``).

Standard library only: the challenge container copies ``daftseg/inference`` alone, and export and
the recipe import this without loading OpenVINO.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

IMAGE_ENCODER = "image_encoder"
PROMPT_ENCODER = "prompt_encoder"
MASK_DECODER = "mask_decoder"
GRAPH_NAMES = (IMAGE_ENCODER, PROMPT_ENCODER, MASK_DECODER)  # the order export writes them in
XML, BIN, ONNX = "xml", "bin", "onnx"
POSITIONAL_ENCODING = "positional_encoding.npy"
INT8_SUFFIX = "_int8"
LITE_MEDSAM = "lite_medsam"  # LiteMedSAM's model name; its prompt encoder is the one DAFT shipped for all
SHARED_PROMPT_ENCODERS = (f"{LITE_MEDSAM}_{PROMPT_ENCODER}.{XML}", f"{PROMPT_ENCODER}.{XML}")
INT8_ENCODER = f"{IMAGE_ENCODER}{INT8_SUFFIX}"  # named like a graph: <Name>_image_encoder_int8.xml


def graph_stem(name: str, graph: str) -> str:
    """``<name>_<graph>``, e.g. ``CT_image_encoder``."""
    return f"{name}_{graph}"


def graph_file(name: str, graph: str, ext: str = XML) -> str:
    """``<name>_<graph>.<ext>``, e.g. ``CT_mask_decoder.xml``."""
    return f"{graph_stem(name, graph)}.{ext}"


def split_graph_stem(stem: str) -> tuple[str, str] | None:
    """(model name, graph) of a stem ``<Name>_<graph>``; None if it ends in no graph name."""
    for graph in GRAPH_NAMES:
        if stem.endswith(f"_{graph}"):
            return stem[: -len(graph) - 1], graph
    return None


def model_name(file_name: str, graph: str = IMAGE_ENCODER, ext: str = XML) -> str | None:
    """``<Name>`` of a file called ``<Name>_<graph>.<ext>``; None for any other file name."""
    suffix = f"_{graph}.{ext}"
    return file_name[: -len(suffix)] if file_name.endswith(suffix) else None


def image_encoder_file(folder: str | Path, name: str, ext: str = XML) -> Path:
    return Path(folder) / graph_file(name, IMAGE_ENCODER, ext)


def mask_decoder_file(folder: str | Path, name: str, ext: str = XML) -> Path:
    return Path(folder) / graph_file(name, MASK_DECODER, ext)


def model_files(folder: str | Path, name: str) -> tuple[Path, Path]:
    """(image encoder, mask decoder) IR paths of model ``name``: what makes it runnable."""
    return image_encoder_file(folder, name), mask_decoder_file(folder, name)


def prompt_encoder_files(folder: str | Path, name: str) -> list[Path]:
    """The prompt encoders model ``name`` may use, in the order the runtime looks for them."""
    return [Path(folder) / f for f in (*SHARED_PROMPT_ENCODERS, graph_file(name, PROMPT_ENCODER))]


def find_prompt_encoder(folder: str | Path, name: str) -> Path | None:
    """The first of ``prompt_encoder_files`` that exists; None if none does."""
    return next((p for p in prompt_encoder_files(folder, name) if p.is_file()), None)


def positional_encoding_file(folder: str | Path) -> Path:
    return Path(folder) / POSITIONAL_ENCODING


def int8_encoder_file(folder: str | Path, name: str) -> Path:
    """``<Name>_image_encoder_int8.xml``: written by ``--int8`` at export, read only in fast mode."""
    return Path(folder) / graph_file(name, INT8_ENCODER)


def int8_record_file(folder: str | Path, name: str) -> Path:
    """``<Name>_image_encoder_int8.json``: the export gate's record of the INT8 encoder."""
    return int8_encoder_file(folder, name).with_suffix(".json")


def int8_files(folder: str | Path, name: str) -> tuple[Path, Path, Path]:
    """(.xml, .bin, .json record) of model ``name``'s INT8 image encoder."""
    xml = int8_encoder_file(folder, name)
    return xml, xml.with_suffix(f".{BIN}"), int8_record_file(folder, name)


def ir_complete(xml: str | Path) -> bool:
    """True if the IR ``xml`` and its weights (``.bin``) both exist."""
    xml = Path(xml)
    return xml.is_file() and xml.with_suffix(f".{BIN}").is_file()


def model_available(folder: str | Path, name: str) -> bool:
    """True if both IR files of ``name`` (and their weights) exist."""
    return all(ir_complete(p) for p in model_files(folder, name))


def model_names(folder: str | Path) -> list[str]:
    """Sorted names of every ``<Name>_image_encoder.xml`` in ``folder``, complete or not ([] without the folder)."""
    pattern = graph_file("*", IMAGE_ENCODER)
    return sorted(n for p in Path(folder).glob(pattern) if (n := model_name(p.name)) is not None)


def int8_model_names(folder: str | Path) -> list[str]:
    """Sorted names of the models of ``folder`` that have an INT8 image encoder (.xml and .bin)."""
    pattern = graph_file("*", INT8_ENCODER)
    return sorted(model_name(p.name, INT8_ENCODER) for p in Path(folder).glob(pattern) if ir_complete(p))


def file_stamp(path: str | Path) -> dict:
    """What the INT8 record keeps of the standard encoder's weights: size in bytes and modification time
    in whole seconds (a copy that keeps times but drops their sub-second part still matches)."""
    st = Path(path).stat()
    mtime = int(st.st_mtime)
    return {"size": st.st_size, "mtime": mtime,
            "mtime_utc": datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def int8_source_mismatch(folder: str | Path, name: str) -> str | None:
    """Why ``name``'s INT8 encoder was not made from the standard ``.bin`` now in ``folder`` (size or
    modification time differ from its record's ``source_bin``), or None. Cheap: two ``stat`` calls, no
    hashing. None too where it cannot tell: no record, or one written before records held the stamp."""
    try:
        made_from = json.loads(int8_record_file(folder, name).read_text("utf-8"))["source_bin"]
        size, mtime = int(made_from["size"]), int(made_from["mtime"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    weights = image_encoder_file(folder, name, BIN)
    try:
        now = file_stamp(weights)
    except OSError:
        return f"{weights.name} is missing"
    if (now["size"], now["mtime"]) == (size, mtime):
        return None
    return (f"{weights.name} is {now['size']} bytes, modified {now['mtime_utc']}; the INT8 encoder was made from "
            f"{size} bytes modified {made_from.get('mtime_utc', mtime)}")


def int8_agreement(folder: str | Path, name: str) -> tuple[float, float] | None:
    """(mean, worst) agreement with f32 that the export's gate recorded for ``name``'s INT8
    encoder (``int8_record_file``); None without a readable record."""
    try:
        record = json.loads(int8_record_file(folder, name).read_text("utf-8"))
        return float(record["agreement"]["mean"]), float(record["agreement"]["worst"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
