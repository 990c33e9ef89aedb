"""daftseg-app refuses what another web page in the same browser could send it (issue 29): a foreign
Host (DNS rebinding), a request without the launch's token, a foreign Origin, a body a cross-site
page can send without a preflight. Each refusal reads and writes nothing (the data folder is
byte-for-byte unchanged); the printed link and a script's bearer token get in."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from app_support import write_data
from ov_toy_models import toy_models_dir  # noqa: F401 - pytest fixture
from snapshots import tree_snapshot

pytest.importorskip("starlette", reason="the app extra (starlette) is not installed")
from starlette.testclient import TestClient

from daftseg.app.core import AppConfig
from daftseg.app.handlers import create_app

TOKEN = "guard-test-token-42"
BASE = "http://127.0.0.1:8765"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}
EVIL = "http://evil.example"


@pytest.fixture
def data(tmp_path):
    folder = write_data(tmp_path / "data")
    (folder / "notes_seg.png").write_bytes(b"the user's own file")
    return folder


@pytest.fixture
def client(data, toy_models_dir):  # noqa: F811
    app = create_app(AppConfig(data, toy_models_dir, cache_dir="", token=TOKEN, max_upload_bytes=1 << 20))
    return TestClient(app, base_url=BASE)


def _opened(client) -> int:
    return len(client.app.state.daft.scans)


def _open_with_bearer(client) -> str:
    r = client.post("/api/open", json={"path": "photo.png"}, headers=BEARER)
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_a_foreign_host_is_refused_before_anything_is_read(client, data):
    before = tree_snapshot(data)
    for host in ("evil.example:8765", "evil.example", "127.0.0.1:9999", "127.0.0.1.evil.example:8765", ""):
        r = client.get("/api/files", headers={**BEARER, "Host": host})
        assert r.status_code == 403, (host, r.text)
        assert "ct.nii.gz" not in r.text and "not this app's address" in r.json()["error"]
        r = client.post("/api/open", json={"path": "ct.nii.gz"}, headers={**BEARER, "Host": host})
        assert r.status_code == 403
    assert _opened(client) == 0 and tree_snapshot(data) == before
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "LOCALHOST:8765"):
        assert client.get("/api/files", headers={**BEARER, "Host": host}).status_code == 200, host


def test_no_token_or_a_wrong_one_is_refused_with_how_to_get_in(client, data):
    before = tree_snapshot(data)
    wrong = [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"},
             {"Cookie": "daftseg_token_8765=nope"}, {"Cookie": f"daftseg_token_9999={TOKEN}"}]
    for headers in wrong:
        r = client.get("/api/files", headers=headers)
        assert r.status_code == 403 and "open the link daftseg-app printed" in r.json()["error"], headers
        assert client.post("/api/open", json={"path": "ct.nii.gz"}, headers=headers).status_code == 403
        assert client.get("/static/app.js", headers=headers).status_code == 403
    page = client.get("/?token=nope")
    assert page.status_code == 403 and "set-cookie" not in page.headers and "open the link" in page.text
    assert client.get("/").status_code == 403
    assert _opened(client) == 0 and tree_snapshot(data) == before


def test_the_printed_link_sets_a_strict_cookie_that_lets_the_page_in(client):
    page = client.get(f"/?token={TOKEN}")
    assert page.status_code == 200 and "<canvas" in page.text
    cookie = page.headers["set-cookie"]
    assert cookie.startswith(f"daftseg_token_8765={TOKEN};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    # the client's cookie jar now holds it, as the browser's does: the page's own requests get in
    assert client.get("/api/files").status_code == 200
    assert client.get("/static/app.js").status_code == 200
    assert client.post("/api/open", json={"path": "photo.png"}).status_code == 200


def test_a_script_with_the_bearer_token_gets_in(client):
    assert {f["path"] for f in client.get("/api/files", headers=BEARER).json()["files"]} >= {"ct.nii.gz"}
    sid = _open_with_bearer(client)
    r = client.post(f"/api/scans/{sid}/boxes", json={"box": {"coords": [15, 10, 45, 40]}}, headers=BEARER)
    assert r.status_code == 200 and r.json()["boxes"]


def test_a_foreign_origin_cannot_change_anything(client, data):
    sid = _open_with_bearer(client)
    before = tree_snapshot(data)
    for origin in (EVIL, "null", "http://127.0.0.1:9999", "https://127.0.0.1:8765", "http://localhost.evil:8765"):
        headers = {**BEARER, "Origin": origin}
        r = client.post(f"/api/scans/{sid}/boxes", json={"box": {"coords": [1, 1, 9, 9]}}, headers=headers)
        assert r.status_code == 403 and "refused" in r.json()["error"], origin
        r = client.post(f"/api/scans/{sid}/save", json={"output": "notes_seg.png", "overwrite": True},
                        headers=headers)
        assert r.status_code == 403
        assert client.delete(f"/api/scans/{sid}/boxes/1", headers=headers).status_code == 403
    assert client.get(f"/api/scans/{sid}/state", headers=BEARER).json()["boxes"] == []
    assert tree_snapshot(data) == before
    own = {**BEARER, "Origin": BASE}
    assert client.post(f"/api/scans/{sid}/boxes", json={"box": {"coords": [1, 1, 9, 9]}}, headers=own).status_code == 200


def test_the_attack_of_the_issue_replaces_no_file(client, data):
    """The request a cross-site page can send without asking: text/plain, foreign Origin, no preflight."""
    sid = _open_with_bearer(client)
    client.post(f"/api/scans/{sid}/boxes", json={"box": {"coords": [15, 10, 45, 40]}}, headers=BEARER)
    before = tree_snapshot(data)
    attack = b'{"output": "notes_seg.png", "overwrite": true}'
    for headers in ({"Origin": EVIL, "Content-Type": "text/plain"}, {**BEARER, "Content-Type": "text/plain"},
                    {**BEARER, "Content-Type": "application/x-www-form-urlencoded"},
                    {**BEARER, "Content-Type": "multipart/form-data; boundary=x"}, BEARER):
        r = client.post(f"/api/scans/{sid}/save", content=attack, headers=headers)
        assert r.status_code in (403, 415), (headers, r.status_code)
        if "Authorization" in headers:
            assert r.status_code == 415 and "application/json" in r.json()["error"]
    assert tree_snapshot(data) == before and (data / "notes_seg.png").read_bytes() == b"the user's own file"
    ok = client.post(f"/api/scans/{sid}/save", content=attack, headers={**BEARER, **JSON})
    assert ok.status_code == 200 and (data / "notes_seg.png").read_bytes() != b"the user's own file"


def test_uploads_follow_the_same_rules(client, data):
    png = (data / "photo.png").read_bytes()
    before = tree_snapshot(data)
    octets = {"Content-Type": "application/octet-stream"}
    refused = [({**octets}, 403), ({**BEARER, **octets, "Host": "evil.example:8765"}, 403),
               ({**BEARER, **octets, "Origin": EVIL}, 403), ({**BEARER, "Content-Type": "text/plain"}, 415),
               ({**BEARER, "Content-Type": "multipart/form-data; boundary=x"}, 415), (BEARER, 415)]
    for headers, status in refused:
        r = client.post("/api/upload?name=mine.png", content=png, headers=headers)
        assert r.status_code == status, (headers, r.text)
    assert tree_snapshot(data) == before
    r = client.post("/api/upload?name=mine.png", content=png, headers={**BEARER, **octets})
    assert r.status_code == 200 and (data / "uploads" / "mine.png").read_bytes() == png


def test_no_cors_is_ever_granted(client):
    pre = client.options("/api/open", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST",
                                               "Access-Control-Request-Headers": "content-type"})
    assert pre.status_code in (403, 405) and not any(k.lower().startswith("access-control") for k in pre.headers)
    r = client.get("/api/files", headers={**BEARER, "Origin": EVIL})
    assert not any(k.lower().startswith("access-control") for k in r.headers)


def test_the_host_given_with_host_is_answered(data, toy_models_dir):  # noqa: F811
    app = create_app(AppConfig(data, toy_models_dir, cache_dir="", token=TOKEN, allowed_hosts=("192.168.1.5",)))
    client = TestClient(app, base_url="http://192.168.1.5:8765")
    assert client.get("/api/files", headers=BEARER).status_code == 200
    assert client.get("/api/files", headers={**BEARER, "Host": "evil.example:8765"}).status_code == 403
    r = client.post("/api/open", json={"path": "photo.png"}, headers={**BEARER, "Origin": "http://192.168.1.5:8765"})
    assert r.status_code == 200


def test_a_launch_prints_its_link_and_only_it_gets_in(data, toy_models_dir, tmp_path):  # noqa: F811
    """The command as a user runs it: --no_browser --port 0 still prints where it serves; the token
    is in that line only."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "daftseg.app", "--data", str(data), "-m", str(toy_models_dir),
                             "--no_browser", "--port", "0", "--cache_dir", ""],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(r"daftseg-app: serving (.+) on (http://127\.0\.0\.1:(\d+)/\?token=([\w-]+))\n", line)
        assert match, line
        assert Path(match[1]) == data
        url, port, token = match[2], int(match[3]), match[4]
        assert len(token) >= 20
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200
            cookie = page.headers["Set-Cookie"].split(";", 1)[0]
        files = urllib.request.Request(f"http://127.0.0.1:{port}/api/files", headers={"Cookie": cookie})
        with urllib.request.urlopen(files, timeout=30) as r:
            assert b"ct.nii.gz" in r.read()
        for headers in ({}, {"Cookie": cookie, "Host": f"evil.example:{port}"}):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/api/files", headers=headers),
                                       timeout=30)
            assert refused.value.code == 403
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert token not in out + err  # the link's line was read above; nothing else shows the token


def test_two_launches_have_different_tokens(data, toy_models_dir):  # noqa: F811
    tokens = {create_app(AppConfig(data, toy_models_dir, cache_dir="")).state.token for _ in range(2)}
    assert len(tokens) == 2 and all(len(t) >= 20 for t in tokens)


def test_a_fixed_token_is_checked_and_used(data, toy_models_dir):  # noqa: F811
    from daftseg.app import cli

    def config(*extra):
        return cli.make_config(cli.build_parser().parse_args(["--data", str(data), "-m", str(toy_models_dir), *extra]))

    for bad in ("short", "has space in it", "semi;colon-token", "quote\"token1"):
        with pytest.raises(SystemExit, match="--token"):
            config("--token", bad)
    fixed = config("--token", "a-fixed-token-for-scripts")
    app = create_app(fixed)
    assert app.state.token == "a-fixed-token-for-scripts"
    client = TestClient(app, base_url=BASE)
    assert client.get("/api/files", headers={"Authorization": "Bearer a-fixed-token-for-scripts"}).status_code == 200
    assert cli.link("0.0.0.0", 9000, "t0ken") == "http://127.0.0.1:9000/?token=t0ken"
    assert cli.link("::1", 9000, "t0ken") == "http://[::1]:9000/?token=t0ken"
