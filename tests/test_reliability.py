"""Disk full, paths that leave what the user named, concurrent HTTP clients, slow clients, read-only opens."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import faiss
import httpx
import numpy as np
import pytest
from conftest import serving, solid_image

from vecclf.classifier import ConceptClassifier
from vecclf.cli import main
from vecclf.errors import StoreError, StoreLockedError
from vecclf.store import NewInput, Store


def _unit(rng: np.random.Generator, d: int = 64) -> np.ndarray:
    v = rng.normal(size=d).astype(np.float32)
    return v / np.linalg.norm(v)


def _make_store(path: Path, tiny_embedder) -> Store:  # type: ignore[no-untyped-def]
    return Store.create(path, spec=tiny_embedder.spec, identity=tiny_embedder.identity, spaces=tiny_embedder.spaces())


def test_disk_full_keeps_acknowledged_writes(small_disk, tiny_embedder) -> None:
    store = _make_store(small_disk / "store", tiny_embedder)
    stat = os.statvfs(small_disk)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 150_000))  # leave ~150 KB
    rng = np.random.default_rng(0)
    acked: list[int] = []
    with pytest.raises(StoreError, match="No space left on device"):
        for i in range(5000):
            acked += store.add([NewInput("text", "joint", f"h{i}", _unit(rng), text="x" * 2000, concepts=("a",))])
    assert store.count() == len(acked) > 0  # the failed add left nothing behind, in memory either
    with pytest.raises(StoreError, match="could not save the index"):
        store.flush()  # the FAISS save cannot fit either: a typed error, the temp file removed
    assert not list(small_disk.glob("store/*.tmp"))
    filler.unlink()
    store.close()
    with Store.open(small_disk / "store") as again:
        assert [r.id for r in again.get(acked)] == acked
        assert again.count() == len(acked) and len(again.vectors("joint")[0]) == len(acked)
        new = again.add([NewInput("text", "joint", "after", _unit(rng), text="y")])
        assert again.get(new)[0].text == "y"


def test_injected_index_write_failure_leaves_previous_state(tmp_path, tiny_embedder, monkeypatch) -> None:
    rng = np.random.default_rng(1)
    store = _make_store(tmp_path / "store", tiny_embedder)
    first = store.add([NewInput("text", "joint", f"a{i}", _unit(rng), text="a") for i in range(5)])
    store.flush()
    index_file = tmp_path / "store" / "faiss-joint.index"
    saved = index_file.read_bytes()
    second = store.add([NewInput("text", "joint", f"b{i}", _unit(rng), text="b") for i in range(3)])

    def full_disk(index: object, path: str) -> None:
        Path(path).write_bytes(b"partial")
        raise RuntimeError(f"write error in {path}: (No space left on device)")

    monkeypatch.setattr(faiss, "write_index", full_disk)
    with pytest.raises(StoreError, match="No space left on device"):
        store.close()
    monkeypatch.undo()
    assert index_file.read_bytes() == saved and not list((tmp_path / "store").glob("*.tmp"))
    with Store.open(tmp_path / "store") as again:  # the stale index is detected and rebuilt from DuckDB
        assert again.count() == 8 and [r.id for r in again.get(first + second)] == first + second
        _, found = again.search("joint", again.vectors("joint", second[-1:])[1], 1)
        assert found[0, 0] == second[-1]


def test_folder_symlinks_leaving_the_folder_are_not_read(tmp_path, tiny_embedder, capsys) -> None:
    outside = tmp_path / "private"
    outside.mkdir()
    solid_image((10, 10, 10)).save(outside / "secret.png")
    folder = tmp_path / "photos" / "cats"
    folder.mkdir(parents=True)
    solid_image((200, 10, 10)).save(folder / "ok.png")
    (folder / "sub").mkdir()
    solid_image((10, 200, 10)).save(folder / "sub" / "ok2.png")
    (folder / "leak.png").symlink_to(outside / "secret.png")
    (folder / "leakdir").symlink_to(outside)
    (folder / "inside.png").symlink_to(folder / "ok.png")  # stays inside: allowed
    (folder / "loop").symlink_to(folder)  # a loop back inside: not followed
    (tmp_path / "photos" / "dogs").symlink_to(outside)  # a concept folder that leaves the root
    with ConceptClassifier(_make_store(tmp_path / "store", tiny_embedder), tiny_embedder) as clf:
        report = clf.import_path(tmp_path / "photos")
        sources = sorted(Path(a["source"]).name for a in report.added + report.duplicates)
        assert sources == ["inside.png", "ok.png", "ok2.png"]  # inside.png is ok.png again: a duplicate
        assert len(report.added) == 2 and len(report.duplicates) == 1
        reasons = {Path(f.source).name: f.reason for f in report.failures}
        assert set(reasons) == {"leak.png", "leakdir", "dogs"} and all("leaves" in r for r in reasons.values())
        report = clf.add([folder], ["cats"], keep_duplicates=True)
        assert sorted(Path(a["source"]).name for a in report.added) == ["inside.png", "ok.png", "ok2.png"]
        assert "secret" not in str([r.source for r in clf.store.get(list(range(1, clf.store.count() + 1)))])
        dotted = clf.add([tmp_path / "photos" / "cats" / ".." / "cats" / "ok.png"], ["cats"])  # `..` the user typed
        assert len(dotted.duplicates) == 1 and Path(dotted.duplicates[0]["source"]).name == "ok.png"
    store = str(tmp_path / "store")
    assert main(["add", "bad\x00name.png", "--concept", "x", "--store", store]) == 2
    assert "NUL" in capsys.readouterr().err


def test_upload_file_names_cannot_place_files(tmp_path, tiny_embedder) -> None:
    from starlette.testclient import TestClient
    from test_video import make_video

    from vecclf.server import create_app

    video = make_video(tmp_path / "clip.mp4", [(200, 0, 0), (0, 0, 200)])
    target = tmp_path / "escaped.mp4"
    with ConceptClassifier(_make_store(tmp_path / "store", tiny_embedder), tiny_embedder) as clf:
        with TestClient(create_app(clf.store.path, classifier=clf), base_url="http://localhost") as client:
            name = "../" * 12 + str(target).lstrip("/")
            r = client.post("/inputs", files={"file": (name, video.read_bytes(), "video/mp4")}, data={"concept": "v"})
            assert r.status_code == 201, r.text
    assert not target.exists()


def test_read_only_opens_share_a_store_and_writers_are_named(tmp_path, tiny_embedder) -> None:
    path = tmp_path / "store"
    with _make_store(path, tiny_embedder) as s:
        s.add([NewInput("text", "joint", "a", _unit(np.random.default_rng(2)), text="a")])
    code = (
        "import sys, time\nfrom vecclf.store import Store\n"
        "s = Store.open(sys.argv[1], read_only=sys.argv[2] == 'ro')\nprint(s.count(), flush=True)\ntime.sleep(30)\n"
    )
    readers = [
        subprocess.Popen([sys.executable, "-c", code, str(path), "ro"], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        assert [r.stdout.readline().strip() for r in readers] == ["1", "1"]  # type: ignore[union-attr]
        with Store.open(path, read_only=True) as third:  # and this process too, all at once
            assert third.count() == 1
    finally:
        for r in readers:
            r.kill()
            r.communicate()
    writer = subprocess.Popen([sys.executable, "-c", code, str(path), "rw"], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "1"  # type: ignore[union-attr]
        for read_only in (False, True):  # DuckDB lets no other process in beside a writer: fail fast, name it
            with pytest.raises(StoreLockedError, match=f"pid {writer.pid}"):
                Store.open(path, read_only=read_only)
    finally:
        writer.kill()
        writer.communicate()


@pytest.fixture()
def colour_server(tmp_path, tiny_embedder):  # type: ignore[no-untyped-def]
    path = tmp_path / "store"
    with ConceptClassifier(_make_store(path, tiny_embedder), tiny_embedder) as clf:
        for name, rgb in {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}.items():
            clf.add([solid_image(rgb, seed=s) for s in range(4)], [name])
    with serving(path, tmp_path / "server.log") as url:
        yield url


def test_http_readers_and_a_writer(colour_server) -> None:
    url = colour_server
    problems: list[str] = []
    stop = threading.Event()
    answered = [0]

    def reader(n: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while not stop.is_set():
                r = http.post("/predict", json={"text": f"query {n}", "method": "knn", "k": 5})
                s = http.post("/search", json={"text": f"query {n}", "k": 5})
                if r.status_code != 200 or s.status_code != 200:
                    problems.append(f"{r.status_code} {s.status_code} {r.text[:200]}")
                    return
                for p in r.json()["predictions"]:
                    nb = p["neighbours"]
                    # one consistent view: neighbours sorted by similarity, concepts from the known set
                    if [x["similarity"] for x in nb] != sorted((x["similarity"] for x in nb), reverse=True):
                        problems.append(f"unsorted neighbours {nb}")
                    if not {c for x in nb for c in x["concepts"]} <= {"red", "green", "blue", "new"}:
                        problems.append(f"unexpected concepts {nb}")
                answered[0] += 1

    def writer() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(12):
                r = http.post("/inputs", json={"texts": [f"new {i}a", f"new {i}b"], "concepts": ["new"]})
                if r.status_code != 201:
                    problems.append(f"add {r.status_code} {r.text[:200]}")
                    return
                d = http.delete(f"/inputs/{r.json()['added'][0]['id']}")
                if d.status_code != 200:
                    problems.append(f"delete {d.status_code} {d.text[:200]}")
        stop.set()

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert problems == [] and answered[0] >= 8
    concepts = httpx.get(f"{url}/concepts").json()["concepts"]
    assert {c["name"]: c["positives"] for c in concepts}["new"] == 12  # every second text survived


def test_slow_clients_do_not_block_others(colour_server) -> None:
    host, port = colour_server.removeprefix("http://").split(":")
    slow = []
    for _ in range(4):  # each sends headers and a fraction of its body, then stalls
        sock = socket.create_connection((host, int(port)))
        sock.sendall(
            b'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"te'
        )
        slow.append(sock)
    try:
        with httpx.Client(base_url=colour_server, timeout=15) as http:
            for i in range(10):
                r = http.post("/predict", json={"text": f"quick {i}"})
                assert r.status_code == 200
    finally:
        for sock in slow:
            sock.close()
