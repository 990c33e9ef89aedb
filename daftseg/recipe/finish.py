"""The recipe's last stage: the routing table next to ``openvinomodels/``, and the command that uses it.

``python -m daftseg.recipe.finish --routing 916bd4e --models_dir RUN/openvinomodels --out RUN/routing.toml``
copies the recipe's routing table (a shipped table's name or a file) to ``--out``, says which
models the table routes to that the folder lacks, and prints the ``PerfectMetaOpenVINO.py``
command for the run. A 916bd4e run routes CT to 3D, ultrasound to US and unmatched names to
general, which 93f1e55's default table would not do: its models are only used as trained with
this file.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from daftseg.atomic import atomic_write_bytes
from daftseg.inference.model_folder import model_available
from daftseg.inference.routing import RoutingTable, resolve_table

REPO = Path(__file__).resolve().parents[2]


def routed_models(table: RoutingTable) -> list[str]:
    """Every model a rule names, then the fallback, each once, in table order."""
    return list(dict.fromkeys([*(rule.model for rule in table.rules), table.fallback]))


def inference_line(models_dir: Path, routing: Path, python: str = "python") -> str:
    return shlex.join([python, "PerfectMetaOpenVINO.py", "-i", "IMGS", "-o", "SEGS", "-m", str(models_dir),
                       "--routing", str(routing)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m daftseg.recipe.finish", description=__doc__.split("\n")[0])
    p.add_argument("--routing", required=True, help="routing table: a shipped table's name (93f1e55, 916bd4e) "
                                                    "or a TOML file")
    p.add_argument("--models_dir", required=True, type=Path, help="the run's openvinomodels/ folder")
    p.add_argument("--out", required=True, type=Path, help="where to write the table (e.g. RUN/routing.toml)")
    args = p.parse_args(argv)
    try:
        source = resolve_table(args.routing)
        table = RoutingTable.load(source)
        atomic_write_bytes(args.out, source.read_bytes())
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    models = routed_models(table)
    missing = [m for m in models if not model_available(args.models_dir, m)]
    if len(missing) == len(models):
        print(f"error: {args.models_dir} holds none of the models {args.routing} routes to "
              f"({', '.join(models)})", file=sys.stderr)
        return 1
    if table.fallback in missing:
        print(f"warning: the fallback model {table.fallback} is not in {args.models_dir}: a case that no rule "
              f"matches, or whose model is missing, cannot be segmented", file=sys.stderr)
    others = [m for m in missing if m != table.fallback]
    if others:
        print(f"warning: {args.routing} routes to models not in {args.models_dir}: {', '.join(others)} (their "
              f"cases use the fallback {table.fallback})", file=sys.stderr)
    print(f"routing table {args.routing}: {args.out} ({len(models) - len(missing)} of {len(models)} routed models "
          f"present)")
    print(f"inference, from {REPO}:")
    print(f"  {inference_line(args.models_dir, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
