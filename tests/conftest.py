import os
import sys
from pathlib import Path

# tests import their shared helpers (fixture_weights.py, ...) as top-level modules
sys.path.insert(0, str(Path(__file__).parent))

# Busy-waiting OpenMP threads double torch's CPU time on a shared 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
