"""Hostile and careless input, table-driven on the CLI and over HTTP: every case gets a one-line typed error
(exit 2 / HTTP 4xx), never a traceback, a 500 or damaged data; one bad input fails only itself, in a batch of
files and in a micro-batch of concurrent requests; the server refuses cross-site and foreign-Host requests,
holds no half-open connection past its header deadline, and tells the truth when the disk fills."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port, serving, solid_image
from PIL import Image
from starlette.testclient import TestClient

from vecclf.cli import main
from vecclf.server import create_app

RED, BLUE = (220, 30, 30), (30, 40, 220)


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def tall(width: int = 1, height: int = 40_000) -> Image.Image:
    """Within the pixel limit, but of an extreme aspect ratio."""
    return Image.new("RGB", (width, height), RED)


@pytest.fixture(scope="module")
def colour_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "store"
    assert main(["init", "--store", str(path), "--model", "tiny-clip"]) == 0
    folder = path.parent / "photos"
    for name, rgb in (("red", RED), ("blue", BLUE)):
        (folder / name).mkdir(parents=True)
        for i in range(3):
            solid_image(rgb, seed=i).save(folder / name / f"{i}.png")
    assert main(["import", "--store", str(path), str(folder)]) == 0
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------------ CLI
CLI_CASES = [
    (["predict", "--text", "x", "--k", "0"], 2, "between 1 and"),
    (["predict", "--text", "x", "--k", "-3"], 2, "between 1 and"),
    (["predict", "--text", "x", "--k", "nan"], 2, "not an integer"),
    (["predict", "--text", "x", "--k", "\u0661"], 2, "not an integer"),  # an Arabic-Indic digit
    (["predict", "--text", "x", "--top", "1e9"], 2, "not an integer"),
    (["predict", "--text", "x", "--unknown-quantile", "nan"], 2, "[0, 0.5)"),
    (["predict", "--text", "x", "--unknown-quantile", "0.5"], 2, "[0, 0.5)"),
    (["predict", "--text", "x", "--unknown-quantile=-inf"], 2, "[0, 0.5)"),
    (["train", "--C", "nan"], 2, "[1e-06, 1e+06]"),
    (["train", "--C", "inf"], 2, "[1e-06, 1e+06]"),
    (["train", "--C", "0"], 2, "[1e-06, 1e+06]"),
    (["train", "--C", "-1"], 2, "[1e-06, 1e+06]"),
    (["train", "--C", "4e-320"], 2, "[1e-06, 1e+06]"),  # a denormal
    (["eval", "--folds", "1"], 2, "between 2 and"),
    (["eval", "--folds", "1000"], 2, "between 2 and"),
    (["serve", "--port", "70000"], 2, "between 0 and 65535"),
    (["delete", "abc"], 2, "not an integer"),
    (["delete", "0"], 2, "between 1 and"),
    (["delete", "99999999999999999999"], 2, "between 1 and"),
    (["concepts", "add", "a\u200bb"], 2, "invisible formatting"),
    (["concepts", "add", "evil\u202etxt.exe"], 2, "invisible formatting"),
    (["concepts", "add", "bell\x07"], 2, "control character"),
    (["concepts", "add", "caf\udce9"], 2, "lone surrogate"),  # argv bytes that are not UTF-8
    (["add", "--text", "x", "--concept", "line\u2028break"], 2, "separator"),
    (["concepts", "threshold", "red", "nan"], 2, "between -1 and 1"),
    (["concepts", "threshold", "red", "2"], 2, "between -1 and 1"),
    (["concepts", "rename", "red"], 2, "usage"),
    (["inputs", "--limit", "0"], 2, "between 1 and"),
    (["inputs", "--kind", "audio"], 2, "invalid choice"),
    (["predict", "--text", "\x00"], 2, "NUL"),
    (["predict", "/dev/zero"], 2, "the limit for an image"),
    (["add", "/dev/zero", "--concept", "z"], 2, "the limit for an image"),
    (["predict", "--text", "x", "--out", "/nonexistent/dir/p.csv"], 2, "cannot write"),
]


@pytest.mark.parametrize(("argv", "code", "needle"), CLI_CASES, ids=[" ".join(a)[:40] for a, _, _ in CLI_CASES])
def test_cli_hostile_input_is_one_line(colour_store, capsys, argv, code, needle) -> None:
    before = main(["info", "--store", str(colour_store), "--json"])
    counts = json.loads(capsys.readouterr().out)["inputs"]
    try:
        got = main([*argv, "--store", str(colour_store)])
    except SystemExit as exc:  # argparse's own usage errors
        got = int(exc.code or 0)
    _, err = capsys.readouterr()
    assert got == code, err
    assert needle in err and "Traceback" not in err and "internal error" not in err
    assert main(["info", "--store", str(colour_store), "--json"]) == before == 0
    assert json.loads(capsys.readouterr().out)["inputs"] == counts  # nothing stored, nothing lost


def test_cli_files_fifos_and_names_that_are_not_utf8(colour_store, tmp_path, capsys) -> None:
    store = ["--store", str(colour_store)]
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    started = time.monotonic()
    code, _, err = run(capsys, "predict", *store, str(fifo))  # no writer: must not wait for one
    assert code == 2 and time.monotonic() - started < 30
    raw = os.fsencode(tmp_path) + b"/caf\xe9.txt"  # a file name that is not UTF-8
    with open(raw, "wb") as f:
        f.write(b"first\nsecond \x00 nul\n\xff\xfe not utf-8\nthird\n")
    code, out, err = run(capsys, "add", *store, os.fsdecode(raw), "--concept", "lines", "--json")
    report = json.loads(out)
    assert code == 0 and len(report["added"]) == 2 and len(report["failures"]) == 2  # each line on its own
    assert all("caf\\xe9.txt" in a["source"] for a in report["added"])  # shown escaped, stored as valid text
    assert {f["source"].rsplit(":", 1)[1] for f in report["failures"]} == {"2", "3"}
    run(capsys, "delete", *store, *[str(a["id"]) for a in report["added"]])
    run(capsys, "concepts", *store, "delete", "lines")
    folder = tmp_path / "import"
    (folder / "ok").mkdir(parents=True)
    (folder / "ok" / "a.txt").write_text("an ok line\n")
    bad = os.fsencode(folder) + b"/bad\xff"
    os.mkdir(bad)
    with open(bad + b"/b.txt", "wb") as f:
        f.write(b"a line under a name that is not UTF-8\n")
    code, out, err = run(capsys, "import", *store, str(folder), "--json")
    report = json.loads(out)
    assert code == 0 and [Path(a["source"]).name for a in report["added"]] == ["a.txt:1"]
    assert "cannot name a concept" in report["failures"][0]["reason"] and "damaged" not in err
    run(capsys, "delete", *store, str(report["added"][0]["id"]))
    run(capsys, "concepts", *store, "delete", "ok")


def test_cli_table_errors_name_their_line(colour_store, tmp_path, capsys) -> None:
    store = ["--store", str(colour_store)]
    table = tmp_path / "t.jsonl"
    table.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y"}\n{"text": "c", broken}\n')
    code, _, err = run(capsys, "import", *store, str(table))
    assert code == 2 and "t.jsonl:4" in err
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("text,label\na,x\nb,y,extra\n")
    code, _, err = run(capsys, "import", *store, str(csv_file))
    assert code == 2 and "t.csv:3" in err


def test_cli_bad_label_in_a_batch_stores_the_rest_and_says_so(colour_store, tmp_path, capsys) -> None:
    store = ["--store", str(colour_store)]
    table = tmp_path / "labels.csv"
    rows = [("good one", "alpha"), ("bad label", "unknown"), ("good two", "beta"), ("zero width", "a\u200bb")]
    table.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows), encoding="utf-8")
    code, out, _ = run(capsys, "import", *store, str(table), "--json")
    report = json.loads(out)
    assert code == 0 and sorted(a["source"].rsplit(":", 1)[1] for a in report["added"]) == ["2", "4"]
    assert sorted(f["source"].rsplit(":", 1)[1] for f in report["failures"]) == ["3", "5"]
    listed = json.loads(run(capsys, "inputs", *store, "--kind", "text", "--json")[1])["inputs"]
    assert {r["text"] for r in listed} == {"good one", "good two"}  # exactly what the report says
    run(capsys, "delete", *store, *[str(a["id"]) for a in report["added"]])
    run(capsys, "concepts", *store, "delete", "alpha")
    run(capsys, "concepts", *store, "delete", "beta")


def test_cli_odd_photos_in_a_batch_fail_alone(colour_store, tmp_path, capsys) -> None:
    store = ["--store", str(colour_store)]
    photos = []
    for i, img in enumerate([solid_image(RED, seed=7), tall(), solid_image(BLUE, seed=8), tall(40_000, 1)]):
        photos.append(tmp_path / f"{i}.png")
        img.save(photos[-1])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, out, _ = run(capsys, "predict", *store, *map(str, photos), str(broken), "--json")
    body = json.loads(out)
    assert code == 0 and len(body["predictions"]) == 4 and [f["source"] for f in body["failures"]] == [str(broken)]
    assert [p["nearest"] for p in body["predictions"]][::2] == ["red", "blue"]


# ------------------------------------------------------------------------------------------------ HTTP
def _b64(img: Image.Image) -> str:
    return base64.b64encode(png(img)).decode()


HTTP_CASES = [
    ("post", "/train", {"content": b'{"C": NaN}'}, 400),
    ("post", "/train", {"content": b'{"C": Infinity}'}, 400),
    ("post", "/train", {"content": b'{"C": 4e-320}'}, 400),
    ("post", "/train", {"content": b'{"C": 0}'}, 400),
    ("post", "/train", {"content": b'{"C": 1e7}'}, 400),
    ("post", "/predict", {"content": b'{"text": "x", "k": 1e400}'}, 400),
    ("post", "/predict", {"content": b'{"text": "x", "k": true}'}, 400),
    ("post", "/predict", {"content": b'{"text": "x", "k": 2.5}'}, 400),
    ("post", "/predict", {"content": b'{"text": "x", "top": -1}'}, 400),
    ("post", "/predict", {"content": b'{"text": "x", "unknown_quantile": NaN}'}, 400),
    ("post", "/predict", {"content": b'{"text": "x", "unknown_quantile": 0.5}'}, 400),
    ("post", "/evaluate", {"content": b'{"folds": 1}'}, 400),
    ("post", "/predict", {"content": b'{"text": "\\ud800"}'}, 400),
    ("post", "/predict", {"content": b'{"text": "x\\u0000"}'}, 400),
    ("post", "/predict", {"content": b'\xff\xfe{"text": "x"}'}, 400),
    ("post", "/inputs", {"content": b'{"text": "x", "concepts": ["a\\u200bb"]}'}, 400),
    ("post", "/inputs", {"content": b'{"text": "x", "concepts": ["\\u202egnp.exe"]}'}, 400),
    ("post", "/inputs", {"content": b'{"text": "x", "concepts": ["\\udcff"]}'}, 400),
    ("put", "/concepts/red/threshold", {"content": b'{"threshold": NaN}'}, 400),
    ("put", "/concepts/red/threshold", {"content": b'{"threshold": 1.5}'}, 400),
    ("patch", "/concepts/red", {"content": b'{"new_name": "a\\u2029b"}'}, 400),
    ("get", "/inputs/%EF%BC%91", {}, 400),  # a full-width digit
    ("get", "/inputs/1e3", {}, 400),
    ("get", "/inputs/-1", {}, 400),
    ("get", "/inputs/99999999999999999999", {}, 400),
    ("delete", "/inputs/%D9%A1", {}, 400),  # an Arabic-Indic digit
    ("delete", "/concepts/%00", {}, 400),
    ("get", "/inputs?limit=1e3", {}, 400),
    ("get", "/inputs?cursor=%EF%BC%91", {}, 400),
    ("get", "/inputs?kind=audio", {}, 400),
    ("post", "/predict", {"content": b"text=x", "headers": {"content-type": "text/plain"}}, 400),
    ("post", "/inputs", {"content": b"text=x", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 400),
]


@pytest.fixture(scope="module")
def client(colour_store, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A server over a copy of the colour store, open for the whole module (the other tests open the original)."""
    copy = tmp_path_factory.mktemp("served") / "store"
    shutil.copytree(colour_store, copy)
    with TestClient(create_app(copy), base_url="http://localhost") as c:
        yield c


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"), HTTP_CASES, ids=[f"{m} {p} {k}"[:60] for m, p, k, _ in HTTP_CASES]
)
def test_http_hostile_input_is_a_typed_4xx(client, method, path, kwargs, status) -> None:
    before = client.get("/inputs").json()["total"]
    headers = {"content-type": "application/json", **kwargs.pop("headers", {})} if "content" in kwargs else {}
    r = client.request(method.upper(), path, headers=headers, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["type"] and error["message"] and "Traceback" not in r.text
    assert client.get("/inputs").json()["total"] == before


def test_http_upload_names_and_partial_failures(client) -> None:
    files = [
        ("file", ("a\x00b.png", png(solid_image(RED, seed=5)), "image/png")),
        ("file", ("x" * 300 + ".png", png(tall()), "image/png")),
        ("file", ("../../etc/passwd", b"not an image", "image/png")),
    ]
    r = client.post("/predict", files=files)
    body = r.json()
    assert r.status_code == 200 and len(body["predictions"]) == 2 and len(body["failures"]) == 1
    names = [p["source"] for p in body["predictions"]] + [f["source"] for f in body["failures"]]
    assert all("\x00" not in n and "/" not in n and len(n.encode()) <= 255 for n in names)
    assert body["predictions"][0]["nearest"] == "red"
    r = client.post("/predict", files=[files[2]])
    assert r.status_code == 400 and "passwd" in r.json()["error"]["message"]


def test_http_cross_site_and_foreign_hosts_are_refused(colour_store) -> None:
    with TestClient(create_app(colour_store), base_url="http://localhost") as c:
        count = c.get("/inputs").json()["total"]
        simple = {"content": b'{"texts": ["planted"], "concepts": ["red"]}'}
        for headers in (
            {"content-type": "text/plain", "origin": "http://evil.example"},  # a form or fetch() "simple" request
            {"content-type": "application/json", "origin": "http://evil.example"},
            {"content-type": "application/json", "origin": "null"},  # sandboxed frames and file:// pages
            {"content-type": "application/json", "sec-fetch-site": "cross-site"},
            {"content-type": "application/json", "origin": "http://localhost.evil.example"},
        ):
            r = c.post("/inputs", headers=headers, **simple)
            assert r.status_code in (400, 403), (headers, r.text)
        for host in ("evil.example", "127.0.0.1.nip.io", "localhost.evil.example:8000"):  # DNS rebinding
            r = c.get("/inputs", headers={"host": host})
            assert r.status_code == 403 and "allowed-host" in r.json()["error"]["message"]
        assert c.get("/inputs").json()["total"] == count
        ok = c.post(
            "/predict", json={"text": "x"}, headers={"origin": "http://localhost", "sec-fetch-site": "same-origin"}
        )
        assert ok.status_code == 200  # the page's own requests still work
    with TestClient(create_app(colour_store, allowed_hosts=["vecclf.lan"]), base_url="http://vecclf.lan") as c:
        assert c.get("/inputs").status_code == 200


def test_http_bearer_scheme_is_case_insensitive_and_errors_name_no_paths(colour_store) -> None:
    with TestClient(create_app(colour_store, token="s3cret"), base_url="http://localhost") as c:
        for scheme in ("Bearer", "bearer", "BEARER"):
            assert c.get("/concepts", headers={"authorization": f"{scheme} s3cret"}).status_code == 200
        for wrong in ("Bearer nope", "Basic czNjcmV0", "s3cret", "Bearer"):
            assert c.get("/concepts", headers={"authorization": wrong}).status_code == 401
        bad = {"authorization": "Bearer s3cret"}
        r = c.post("/evaluate", headers=bad, json={"method": "head", "folds": 20})
        text = r.text
        assert str(colour_store) not in text and "/tmp" not in text


def test_read_only_server_refuses_writes_before_any_work(colour_store) -> None:
    with TestClient(create_app(colour_store, read_only=True), base_url="http://localhost") as c:
        for method, path, body in (
            ("post", "/train", {}),
            ("post", "/inputs", {"text": "x"}),
            ("post", "/evaluate", {}),
            ("delete", "/concepts/red", None),
        ):
            started = time.monotonic()
            r = c.request(method.upper(), path, json=body)
            assert r.status_code == 409 and "read-only" in r.json()["error"]["message"]
            assert time.monotonic() - started < 1.0


# ------------------------------------------------------------------------------------------------ live server
def test_micro_batch_isolates_bad_inputs_among_concurrent_requests(colour_store, tmp_path) -> None:
    with serving(colour_store, tmp_path / "server.log", "--read-only") as url:
        results: dict[str, list[int]] = {"good": [], "odd": []}
        wrong: list[str] = []

        def good(n: int) -> None:
            with httpx.Client(base_url=url, timeout=120) as http:
                r = http.post("/predict", json={"image_base64": _b64(solid_image(BLUE, seed=20 + n))})
                results["good"].append(r.status_code)
                if r.status_code == 200 and r.json()["predictions"][0]["nearest"] != "blue":
                    wrong.append(r.text[:200])

        def odd(n: int) -> None:
            with httpx.Client(base_url=url, timeout=120) as http:
                shape = (1, 40_000) if n % 2 else (40_000, 1)
                broken = base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(64)).decode()
                r = http.post("/predict", json={"image_base64": _b64(tall(*shape))})
                b = http.post("/predict", json={"image_base64": broken})
                results["odd"] += [r.status_code, b.status_code]

        threads = [threading.Thread(target=good, args=(n,)) for n in range(16)]
        threads += [threading.Thread(target=odd, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert results["good"] == [200] * 16 and not wrong  # no innocent request failed beside the odd ones
        assert all(s in (200, 400, 413) for s in results["odd"]) and 500 not in results["odd"]


def test_half_open_connections_are_closed_at_the_header_deadline(colour_store, tmp_path) -> None:
    with serving(colour_store, tmp_path / "server.log", "--read-only", "--header-timeout", "1") as url:
        host, port = url.removeprefix("http://").split(":")
        socks = []
        for _ in range(200):
            s = socket.create_connection((host, int(port)))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")  # headers never finish
            s.settimeout(10)
            socks.append(s)
        time.sleep(2.5)
        closed = 0
        for s in socks:
            try:
                closed += s.recv(1024) == b""
            except (TimeoutError, ConnectionResetError):
                closed += 0
            s.close()
        assert closed == len(socks)
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200  # and the server still answers


def test_serve_errors_are_one_line(colour_store, tmp_path) -> None:
    env = {**os.environ, "VECCLF_STORE": str(tmp_path / "missing")}

    def serve(*args: str, store: Path | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "vecclf.cli", "serve", *args]
        e = env if store is None else {**env, "VECCLF_STORE": str(store)}
        return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=120)

    done = serve("--port", str(free_port()))
    assert done.returncode == 1 and "no vecclf store" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        done = serve("--port", str(busy.getsockname()[1]), store=colour_store)
    assert done.returncode == 2 and "cannot listen" in done.stderr and "Traceback" not in done.stderr
    done = serve("--host", "256.1.1.1", store=colour_store)
    assert done.returncode == 2 and "cannot listen" in done.stderr
    with serving(colour_store, tmp_path / "reader.log", "--read-only") as url:  # a reader holds the store
        pid = httpx.get(f"{url}/healthz").status_code and _server_pid(colour_store, url)
        done = serve("--port", str(free_port()), store=colour_store)  # a writer cannot open beside it
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert "read-only" in done.stderr and f"pid {pid}" in done.stderr  # names the holder, not the caller


def _server_pid(store: Path, url: str) -> int:
    """The pid of the reader serving ``url``, from the notes readers leave (other readers may hold it too)."""
    port = url.rsplit(":", 1)[1].encode()
    notes = [int(p.name) for p in (store / "store.readers").glob("*") if p.name.isdigit()]
    assert notes, "a read-only server leaves a note naming itself"
    alive = [pid for pid in notes if Path(f"/proc/{pid}/cmdline").exists()]
    ours = [pid for pid in alive if port in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    assert len(ours) == 1
    return ours[0]


def test_disk_full_cli_add_reports_exactly_what_was_stored(small_disk, tmp_path, capsys) -> None:
    store = small_disk / "store"
    assert main(["init", "--store", str(store), "--model", "tiny-clip"]) == 0
    capsys.readouterr()
    stat = os.statvfs(small_disk)
    (small_disk / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 400_000))
    lines = tmp_path / "many.txt"
    lines.write_text("".join(f"{n} " + "y" * 1500 + "\n" for n in range(3000)))
    code, out, err = run(capsys, "add", "--store", str(store), str(lines), "--concept", "c", "--json")
    report = json.loads(out)
    assert code == 1 and "No space left" in report["error"] and "stopped part way" in err
    assert 0 < len(report["added"]) < 3000
    (small_disk / "filler").unlink()
    code, out, _ = run(capsys, "inputs", "--store", str(store), "--limit", "1000", "--json")
    listed = json.loads(out)
    assert code == 0 and listed["total"] == len(report["added"])  # the report told the truth: no more, no less
    assert {r["id"] for r in listed["inputs"]} == {a["id"] for a in report["added"]}
