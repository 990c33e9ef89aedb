"""File name -> model name, from the routing table in ``daftseg/configs/modalities.toml`` (spec §7.3).

The table is a list of rules tried in order; the first match wins. A rule has a ``model`` and
either ``startswith`` or ``contains``, a list of case-sensitive patterns. A name no rule matches
goes to ``fallback`` (DAFT printed "no match found" and used lite_medsam), and so does a name whose
routed model has no files in the models folder, with a warning, so that a folder holding only
``lite_medsam_*`` still works.

Two tables ship with the package and can be named instead of given by path: ``93f1e55`` (the
default, ``modalities.toml``) and ``916bd4e`` (``modalities_916bd4e.toml``). Without a table
argument the environment variable ``DAFTSEG_ROUTING`` (a name or a path) chooses one, so the
challenge container (``predict.sh``) and the app follow it too.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("daftseg.inference")

# package data: installed with the wheel, so the default works outside a checkout too
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_TABLE = CONFIG_DIR / "modalities.toml"
SHIPPED_TABLES = {"93f1e55": DEFAULT_TABLE, "916bd4e": CONFIG_DIR / "modalities_916bd4e.toml"}
ROUTING_ENV = "DAFTSEG_ROUTING"
RULE_KINDS = ("startswith", "contains")
# a model name becomes part of a file name (<models_dir>/<name>_image_encoder.xml): nothing in it
# may lead out of the models folder
_NOT_IN_MODEL_NAME = ("/", "\\", ":", "\0", "..")


# what a model name typed by a user (daftseg-segment --model, the app) may hold: it becomes part of a
# file name, so letters, digits, '_', '-', '.' only (stricter than a routing table's)
MODEL_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def is_plain_model_name(name: object) -> bool:
    """True for a non-empty name of letters, digits, '_', '-' and '.' that does not start with '.'."""
    return isinstance(name, str) and bool(name) and set(name) <= MODEL_NAME_CHARS and not name.startswith(".")


def scan_case_name(is_3d: bool, modality: str | None) -> str:
    """The case name a scan outside the challenge format is routed by: ``3DBox_<modality>`` or
    ``2DBox_<modality>`` (``2DBox_`` without one), the name the converters would give it."""
    return f"{'3D' if is_3d else '2D'}Box_{modality or ''}"


def check_model_name(name: object, source: str, where: str) -> str:
    """``name`` if it is a plain file-name part, else a ValueError naming the table, rule and reason."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"routing table {source}: {where}: the model must be a non-empty string, got {name!r}")
    bad = [c for c in _NOT_IN_MODEL_NAME if c in name]
    if bad or Path(name).is_absolute():
        raise ValueError(f"routing table {source}: {where}: model {name!r} is not a plain name (model names "
                         f"become file names in the models folder: no path separators, ':', NUL or '..')")
    return name


def resolve_table(table: str | Path | None = None) -> Path:
    """The file of a routing table given as a path or as a shipped table's name (``93f1e55``,
    ``916bd4e``); an existing file of that name wins. None or '': ``$DAFTSEG_ROUTING``, else 93f1e55's."""
    if not table:
        table = os.environ.get(ROUTING_ENV) or DEFAULT_TABLE
    if str(table) in SHIPPED_TABLES and not Path(table).is_file():
        return SHIPPED_TABLES[str(table)]
    return Path(table)


@dataclass(frozen=True)
class Rule:
    model: str
    kind: str  # "startswith" | "contains"
    patterns: tuple[str, ...]

    def matches(self, name: str) -> bool:
        if self.kind == "startswith":
            return name.startswith(self.patterns)
        return any(p in name for p in self.patterns)


@dataclass(frozen=True)
class Route:
    """Where a case goes: ``model`` is what runs, ``routed`` what the table said (None: no rule)."""

    model: str
    routed: str | None
    rule: int | None  # 1-based index of the matching rule
    fell_back: bool


class RoutingTable:
    def __init__(self, rules: list[Rule], fallback: str) -> None:
        self.rules = rules
        self.fallback = fallback
        self._warned: set[str] = set()

    @classmethod
    def load(cls, path: str | Path | None = None) -> RoutingTable:
        """Read the ``[[route]]`` rules and ``fallback`` of a TOML table: a file, or a shipped table's
        name (``resolve_table``; default: ``$DAFTSEG_ROUTING``, else daftseg/configs/modalities.toml)."""
        path = resolve_table(path)
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"routing table {path} not found (pass --routing FILE, or the name of a "
                                    f"shipped table: {', '.join(SHIPPED_TABLES)})") from None
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"routing table {path}: {e}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> RoutingTable:
        fallback = data.get("fallback")
        if not isinstance(fallback, str) or not fallback:
            raise ValueError(f"routing table {source}: a string 'fallback' model is required")
        check_model_name(fallback, source, "fallback")
        rules = []
        for i, entry in enumerate(data.get("route", []), start=1):
            kinds = [k for k in RULE_KINDS if k in entry]
            if "model" not in entry or len(kinds) != 1:
                raise ValueError(f"routing table {source}: rule {i} needs 'model' and exactly one of {RULE_KINDS}")
            patterns = entry[kinds[0]]
            patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
            rules.append(Rule(check_model_name(entry["model"], source, f"rule {i}"), kinds[0], patterns))
        return cls(rules, fallback)

    def match(self, name: str) -> tuple[str | None, int | None]:
        """(model, 1-based rule index) of the first rule matching ``name``, or (None, None)."""
        for i, rule in enumerate(self.rules, start=1):
            if rule.matches(name):
                return rule.model, i
        return None, None

    def route(self, name: str, available: Callable[[str], bool] | None = None, warn: bool = True) -> Route:
        """The model to run for file ``name``; falls back (with a warning) if the routed one is absent."""
        routed, rule = self.match(name)
        if routed is None:
            if warn:
                log.warning("%s: no routing rule matches; using the fallback model %s", name, self.fallback)
            return Route(self.fallback, None, None, True)
        if available is not None and routed != self.fallback and not available(routed):
            if warn and routed not in self._warned:  # once per model, not once per case
                self._warned.add(routed)
                log.warning("model %s has no files; cases routed to it use the fallback model %s",
                            routed, self.fallback)
            return Route(self.fallback, routed, rule, True)
        return Route(routed, routed, rule, False)
