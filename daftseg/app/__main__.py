"""``python -m daftseg.app``."""

import sys

from daftseg.app import main

sys.exit(main())
