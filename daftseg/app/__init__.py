"""``daftseg-app``: a local web app for box-prompted segmentation (open, draw boxes, propagate, save).

    daftseg-app --data ~/scans -m openvinomodels
    python -m daftseg.app --data ~/scans --no_browser

Needs the ``app`` extra (Starlette, uvicorn). The server listens on 127.0.0.1 only, unless
``--host`` is given; it reads and writes files under ``--data`` only, and answers only the browser
that opened the link it prints (``guard.py``).

- ``cli.py``: the command line; ``handlers.py``: the HTTP API (``uploads.py``: uploads);
  ``guard.py``: the checks before any handler; ``core.py``: the open scans and models;
  ``state.py``: one open scan; ``paths.py``: what may be read and written.
"""

from daftseg.app.cli import main

__all__ = ["main"]
