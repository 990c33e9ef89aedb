"""The ``--trust_checkpoint`` flag, shared by every script that loads weights (no torch import, so
``--help`` stays fast)."""

from __future__ import annotations

import argparse

TRUST_FLAG = "--trust_checkpoint"


def add_trust_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup, what: str) -> None:
    """Add ``--trust_checkpoint``; ``what`` names the files it applies to (e.g. "the --checkpoint file")."""
    parser.add_argument(TRUST_FLAG, action="store_true",
                        help=f"load {what} even when it holds Python objects beyond tensors and plain data, by "
                             "unpickling in full, which runs any code stored in it: only for files you trust. "
                             "Without it such files are refused")
