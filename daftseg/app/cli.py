"""``daftseg-app``'s command line: check the flags, build the app, print its link, serve."""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
import webbrowser
from pathlib import Path

from daftseg.app.core import AppConfig
from daftseg.inference.options import add_precision_arguments

LOCALHOST = "127.0.0.1"
WILDCARDS = ("0.0.0.0", "::", "")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="daftseg-app",
        description="Open scans from a folder in the browser, draw boxes, see DAFT's masks at once, propagate "
                    "in 3D and save label maps on the scan's own grid (with the boxes as daftseg-segment JSON). "
                    "Prints a link with a secret token: only a browser that opened it (or a script sending "
                    "'Authorization: Bearer TOKEN') is answered.")
    p.add_argument("--data", required=True, type=Path,
                   help="folder of scans: the app lists, reads and writes files under it only (uploads go to "
                        "DATA/uploads)")
    p.add_argument("-m", "--models_dir", default="openvinomodels", help="OpenVINO IR folder (default %(default)s)")
    p.add_argument("--port", type=int, default=8765, help="port (default %(default)s; 0: any free port)")
    p.add_argument("--host", default=None, metavar="ADDRESS",
                   help="listen on ADDRESS instead of 127.0.0.1 (e.g. 0.0.0.0): anyone who reaches it and has "
                        "the link can read and write the data folder; the app warns")
    p.add_argument("--token", default=None, metavar="VALUE",
                   help="the secret the link carries (default: a new random one at each start); fix it for "
                        "scripts and tests")
    add_precision_arguments(p)
    # in the app --fast is where the Fast switch starts: scans whose model has no INT8 encoder stay exact
    p._option_string_actions["--fast"].help = (
        "start each scan's Fast switch on where its model has an INT8 image encoder "
        "(<Name>_image_encoder_int8.xml): fast mode as PerfectMetaOpenVINO.py --fast, outputs differ from DAFT's")
    p.add_argument("--threads", type=int, default=0, help="OpenVINO inference threads (0: all cores)")
    p.add_argument("--cache_dir", default=None,
                   help="compiled-model cache folder (default: the batch script's, openvinocache; '' disables)")
    p.add_argument("--max_upload_mb", type=float, default=2048, help="largest upload in MiB (default %(default)s)")
    p.add_argument("--embeddings", type=int, default=32,
                   help="slice embeddings kept in memory, 4 MiB each (default %(default)s)")
    p.add_argument("--no_prefetch", action="store_true",
                   help="do not encode a 3D box's slices in the background while you draw (Propagate then "
                        "encodes them; for a machine busy with other work)")
    p.add_argument("--no_browser", action="store_true", help="do not open the browser (the link is printed)")
    return p


def host_warning(host: str | None) -> str | None:
    """The warning printed when the server listens beyond this machine (None on 127.0.0.1)."""
    if host is None or host in (LOCALHOST, "localhost", "::1"):
        return None
    return (f"warning: listening on {host}: anyone who can reach this machine and has the link can open, read "
            "and overwrite files in the data folder and run models. Use it on a trusted network only.")


def host_names(host: str | None) -> tuple[str, ...]:
    """Names a browser may use for this machine when listening on ``host`` (beyond loopback)."""
    if host is None:
        return ()
    if host not in WILDCARDS:
        return (host,)
    names = {socket.gethostname(), socket.getfqdn()}
    try:
        names.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    return tuple(sorted(n for n in names if n))


def make_config(args: argparse.Namespace) -> AppConfig:
    if not args.data.is_dir():
        raise SystemExit(f"error: --data {args.data} is not a folder")
    if args.max_upload_mb <= 0 or args.embeddings < 1 or args.threads < 0:
        raise SystemExit("error: --max_upload_mb must be > 0, --embeddings >= 1, --threads >= 0")
    if args.token is not None and (len(args.token) < 8 or not args.token.isascii() or not args.token.isprintable()
                                   or any(c in args.token for c in " ;,\"\\")):
        raise SystemExit("error: --token needs at least 8 printable ASCII characters, without spaces, ';', ',', "
                         "quotes or backslashes")
    return AppConfig(args.data, Path(args.models_dir), args.precision, args.threads, args.cache_dir,
                     int(args.max_upload_mb * (1 << 20)), args.embeddings, args.fast, not args.no_prefetch,
                     args.token, host_names(args.host))


def link(host: str, port: int, token: str) -> str:
    shown = LOCALHOST if host in WILDCARDS else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/?token={token}"


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; 0 on a clean stop, 1 when the app cannot start."""
    args = build_parser().parse_args(argv)
    try:
        import uvicorn

        from daftseg.app.handlers import create_app
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
        line, warnings = app.state.daft.segmenter_for(True).fast_mode_report()
        print(line, file=sys.stderr)
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
    # no access log: request lines would write the token of the link into the terminal's scrollback
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=args.port, log_level="warning", access_log=False))
    announce_when_up(server, host, args.port, app.state.token, args.data, open_browser=not args.no_browser)
    server.run()
    return 0


def announce_when_up(server, host: str, port: int, token: str, data: Path, open_browser: bool) -> None:
    """Once the server listens: print the link (the port is known only then with --port 0), open it."""

    def wait() -> None:
        while not getattr(server, "started", True):
            if getattr(server, "should_exit", False):
                return
            time.sleep(0.05)
        servers = getattr(server, "servers", None)
        bound = servers[0].sockets[0].getsockname()[1] if servers else port
        url = link(host, bound, token)
        print(f"daftseg-app: serving {data} on {url}", flush=True)
        if open_browser:
            webbrowser.open(url)

    threading.Thread(target=wait, daemon=True, name="daftseg-app-link").start()
