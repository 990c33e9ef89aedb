"""``python -m daftseg.quantize``: see ``daftseg.quantize.cli``."""

import sys

from daftseg.quantize.cli import main

sys.exit(main(sys.argv[1:]))
