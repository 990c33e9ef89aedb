"""Reading a recipe file: shared distillations, shared general fine-tunings, and the models.

A recipe (``daftseg/configs/recipe_*.toml``) has

- ``[distill.<id>]``: a distillation run (``epochs``, ``datacsv``, ``valcsv``, ``nopretrain``);
- ``[general.<id>]``: a general fine-tuning run from the merge of ``distill`` (``epochs``, ...);
- ``[[model]]``: one ``models/<name>.pth``, taken from a distillation (``distill = id``: the
  modelmerge output itself), a general fine-tuning (``general = id``), or a DAFT run on top of
  a general fine-tuning (``general = id`` plus a ``[model.daft]`` table with ``epochs`` and a
  file selection: ``subset`` (prefixes, as ``-data_subset``) or ``regex`` (matched on the file's
  basename, as 916bd4e's ``modalities3D.py``)); or ``litemedsam = true`` (the original
  LiteMedSAM, exported as ``lite_medsam_*``, not trained);
- ``[batch]``: the global batch of distillation and fine-tuning;
- ``[validation]`` (optional): ``patience``, and ``checkpoint`` = ``best`` or ``latest`` (which
  checkpoint the next stage starts from);
- ``[lists]`` (optional): where the CSV names are looked up when ``--csv_dir`` is not given:
  ``shipped = "93f1e55"`` (the original's own lists, package data) or ``dir = "datasplit"``
  (default ``.``);
- ``[export]`` (optional): ``routing`` (the routing table written next to ``openvinomodels/``: a
  shipped table's name or a path; default ``93f1e55``), ``shared_prompt_encoder`` (one
  ``prompt_encoder`` graph for all models) and ``pe_from`` (the model it comes from).

A run id named by several models is trained once.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daftseg.inference.routing import SHIPPED_TABLES

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
SHIPPED_LISTS = "93f1e55"  # daftseg/configs/split_93f1e55/


class RecipeError(ValueError):
    """The recipe file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class RunSpec:
    """One training run: distillation, general fine-tuning or DAFT."""

    id: str
    epochs: int
    datacsv: str = ""
    valcsv: str = ""
    subset: str = ""
    regex: str = ""
    every_slice: bool = False
    nopretrain: bool = False
    source: str = ""  # general: the distillation id it starts from


@dataclass(frozen=True)
class ModelSpec:
    name: str
    distill: str = ""
    general: str = ""
    daft: RunSpec | None = None
    litemedsam: bool = False


@dataclass
class Recipe:
    name: str
    path: Path
    description: str
    distill_batch: int
    finetune_batch: int
    distill: dict[str, RunSpec] = field(default_factory=dict)
    general: dict[str, RunSpec] = field(default_factory=dict)
    models: list[ModelSpec] = field(default_factory=list)
    patience: int = 0  # used only by runs with a valcsv
    checkpoint: str = "latest"
    lists_shipped: str = ""  # "93f1e55": the package's copy of the original's lists
    lists_dir: str = ""  # default --csv_dir
    routing: str = "93f1e55"
    shared_prompt_encoder: bool = False
    pe_from: str = ""


_RUN_KEYS = {"epochs", "datacsv", "valcsv", "subset", "regex", "every_slice", "nopretrain", "distill"}


def _run(where: str, rid: str, table: dict[str, Any], defaults: dict[str, Any]) -> RunSpec:
    unknown = set(table) - _RUN_KEYS
    if unknown:
        raise RecipeError(f"{where}: unknown keys {sorted(unknown)}")
    merged = {**defaults, **table}
    if not isinstance(merged.get("epochs"), int) or merged["epochs"] < 1:
        raise RecipeError(f"{where}: 'epochs' must be a positive integer")
    if merged.get("subset") and merged.get("regex"):
        raise RecipeError(f"{where}: give 'subset' (prefixes) or 'regex', not both")
    if merged.get("regex"):
        try:
            re.compile(merged["regex"])
        except re.error as e:
            raise RecipeError(f"{where}: invalid regex {merged['regex']!r}: {e}") from None
    return RunSpec(id=rid, epochs=merged["epochs"], datacsv=merged.get("datacsv", ""),
                   valcsv=merged.get("valcsv", ""), subset=merged.get("subset", ""),
                   regex=merged.get("regex", ""), every_slice=bool(merged.get("every_slice", False)),
                   nopretrain=bool(merged.get("nopretrain", False)), source=merged.get("distill", ""))


def resolve_path(name_or_path: str) -> Path:
    """A recipe file, or the name of a shipped one (``93f1e55`` -> ``configs/recipe_93f1e55.toml``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = CONFIG_DIR / f"recipe_{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    known = sorted(f.stem.removeprefix("recipe_") for f in CONFIG_DIR.glob("recipe_*.toml"))
    raise RecipeError(f"{name_or_path}: no such recipe file; shipped recipes: {', '.join(known)}")


def load_recipe(name_or_path: str) -> Recipe:
    path = resolve_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: not valid TOML: {e}") from None
    batch = data.get("batch", {})
    validation = data.get("validation", {})
    defaults = data.get("defaults", {})
    lists = data.get("lists", {})
    export = data.get("export", {})
    for table, keys, given in (("lists", {"shipped", "dir"}, lists),
                               ("export", {"routing", "shared_prompt_encoder", "pe_from"}, export)):
        if set(given) - keys:
            raise RecipeError(f"{path} [{table}]: unknown keys {sorted(set(given) - keys)}")
    recipe = Recipe(name=data.get("name", path.stem), path=path, description=data.get("description", ""),
                    distill_batch=int(batch.get("distill", 7)), finetune_batch=int(batch.get("finetune", 96)),
                    patience=int(validation.get("patience", 0)),
                    checkpoint=validation.get("checkpoint", "latest"),
                    lists_shipped=str(lists.get("shipped", "")), lists_dir=str(lists.get("dir", "")),
                    routing=str(export.get("routing", "93f1e55")),
                    shared_prompt_encoder=bool(export.get("shared_prompt_encoder", False)),
                    pe_from=str(export.get("pe_from", "")))
    if recipe.checkpoint not in ("latest", "best"):
        raise RecipeError(f"{path}: [validation] checkpoint must be 'latest' or 'best'")
    if recipe.lists_shipped not in ("", SHIPPED_LISTS):
        raise RecipeError(f"{path} [lists]: shipped = {recipe.lists_shipped!r}: the package ships "
                          f"{SHIPPED_LISTS!r} only")
    if recipe.lists_shipped and recipe.lists_dir:
        raise RecipeError(f"{path} [lists]: give 'shipped' or 'dir', not both")
    if recipe.routing not in SHIPPED_TABLES:
        table = Path(recipe.routing)
        recipe.routing = str(table if table.is_absolute() else (path.parent / table).resolve())
        if not Path(recipe.routing).is_file():
            raise RecipeError(f"{path} [export]: routing = {table}: no such file, nor a shipped table "
                              f"({', '.join(SHIPPED_TABLES)})")
    for rid, table in data.get("distill", {}).items():
        recipe.distill[rid] = _run(f"{path} [distill.{rid}]", rid, table, defaults)
    for rid, table in data.get("general", {}).items():
        run = _run(f"{path} [general.{rid}]", rid, table, defaults)
        if run.source not in recipe.distill:
            raise RecipeError(f"{path} [general.{rid}]: distill = {run.source!r} is not a [distill.*] entry")
        recipe.general[rid] = run
    names: set[str] = set()
    for i, m in enumerate(data.get("model", [])):
        where = f"{path} [[model]] #{i + 1}"
        name = m.get("name", "")
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
            raise RecipeError(f"{where}: 'name' must be a plain file name, got {name!r}")
        if name in names:
            raise RecipeError(f"{where}: model {name!r} appears twice")
        names.add(name)
        daft = None
        if "daft" in m:
            daft_defaults = {k: v for k, v in defaults.items() if k in ("valcsv", "datacsv")}
            daft = _run(f"{where} daft", name, m["daft"], daft_defaults)
        spec = ModelSpec(name=name, distill=m.get("distill", ""), general=m.get("general", ""), daft=daft,
                         litemedsam=bool(m.get("litemedsam", False)))
        sources = [bool(spec.distill), bool(spec.general), spec.litemedsam]
        if sum(sources) != 1:
            raise RecipeError(f"{where}: give exactly one of 'distill', 'general', 'litemedsam'")
        if spec.distill and spec.distill not in recipe.distill:
            raise RecipeError(f"{where}: distill = {spec.distill!r} is not a [distill.*] entry")
        if spec.general and spec.general not in recipe.general:
            raise RecipeError(f"{where}: general = {spec.general!r} is not a [general.*] entry")
        if daft is not None and not spec.general:
            raise RecipeError(f"{where}: a DAFT run needs 'general' (the fine-tuning it starts from)")
        recipe.models.append(spec)
    if not recipe.models:
        raise RecipeError(f"{path}: no [[model]] entries")
    return recipe
