"""Independent reference implementations the tests compare the package with (never import daftseg here)."""
