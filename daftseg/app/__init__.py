"""``daftseg-app``: a local web app for box-prompted segmentation (open, draw boxes, propagate, save).

    daftseg-app --data ~/scans -m openvinomodels
    python -m daftseg.app --data ~/scans --no_browser

Needs the ``app`` extra (Starlette, uvicorn). The server listens on 127.0.0.1 only, unless
``--host`` is given; it reads and writes files under ``--data`` only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from daftseg.inference.options import add_precision_arguments

LOCALHOST = "127.0.0.1"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="daftseg-app",
        description="Open scans from a folder in the browser, draw boxes, see DAFT's masks at once, propagate "
                    "in 3D and save label maps on the scan's own grid (with the boxes as daftseg-segment JSON).")
    p.add_argument("--data", required=True, type=Path,
                   help="folder of scans: the app lists, reads and writes files under it only (uploads go to "
                        "DATA/uploads)")
    p.add_argument("-m", "--models_dir", default="openvinomodels", help="OpenVINO IR folder (default %(default)s)")
    p.add_argument("--port", type=int, default=8765, help="port (default %(default)s; 0: any free port)")
    p.add_argument("--host", default=None, metavar="ADDRESS",
                   help="listen on ADDRESS instead of 127.0.0.1 (e.g. 0.0.0.0): anyone who reaches it can read "
                        "and write the data folder; the app warns")
    add_precision_arguments(p)
    p.add_argument("--threads", type=int, default=0, help="OpenVINO inference threads (0: all cores)")
    p.add_argument("--cache_dir", default=None,
                   help="compiled-model cache folder (default: the batch script's, openvinocache; '' disables)")
    p.add_argument("--max_upload_mb", type=float, default=2048, help="largest upload in MiB (default %(default)s)")
    p.add_argument("--embeddings", type=int, default=32,
                   help="slice embeddings kept in memory, 4 MiB each (default %(default)s)")
    p.add_argument("--no_browser", action="store_true", help="do not open the browser")
    return p


def host_warning(host: str | None) -> str | None:
    """The warning printed when the server listens beyond this machine (None on 127.0.0.1)."""
    if host is None or host in (LOCALHOST, "localhost", "::1"):
        return None
    return (f"warning: listening on {host}: anyone who can reach this machine can open, read and overwrite "
            "files in the data folder and run models; the app has no login. Use it on a trusted network only.")


def make_config(args: argparse.Namespace):
    from daftseg.app.server import AppConfig

    if not args.data.is_dir():
        raise SystemExit(f"error: --data {args.data} is not a folder")
    if args.max_upload_mb <= 0 or args.embeddings < 1 or args.threads < 0:
        raise SystemExit("error: --max_upload_mb must be > 0, --embeddings >= 1, --threads >= 0")
    return AppConfig(args.data, Path(args.models_dir), args.precision, args.threads, args.cache_dir,
                     int(args.max_upload_mb * (1 << 20)), args.embeddings, args.fast)


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; 0 on a clean stop, 1 when the app cannot start."""
    args = build_parser().parse_args(argv)
    try:
        import uvicorn

        from daftseg.app.server import create_app
    except ImportError as err:
        print(f"error: the app needs the 'app' extra (pip install 'daftseg[app]'): {err}", file=sys.stderr)
        return 1
    config = make_config(args)
    if not Path(args.models_dir).is_dir():
        print(f"warning: models folder {args.models_dir} not found (pass -m FOLDER); scans open but cannot be "
              "segmented", file=sys.stderr)
    host = args.host or LOCALHOST
    warning = host_warning(args.host)
    if warning:
        print(warning, file=sys.stderr)
    app = create_app(config)
    if config.fast and Path(args.models_dir).is_dir():
        line, warnings = app.state.daft.segmenter.fast_mode_report()
        print(line, file=sys.stderr)
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=args.port, log_level="warning"))
    if not args.no_browser:
        _open_browser_when_up(server, host)
    server.run()
    return 0


def _open_browser_when_up(server, host: str) -> None:
    import threading
    import time
    import webbrowser

    def wait() -> None:
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1] if server.servers else 0
        webbrowser.open(f"http://{LOCALHOST if host in ('0.0.0.0', '::') else host}:{port}/")

    threading.Thread(target=wait, daemon=True).start()
