"""HTTP API: every route in-process, auth and limits, a real uvicorn server, and schemathesis."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from conftest import png_bytes, serving, solid_image
from PIL import Image
from starlette.testclient import TestClient
from test_video import make_video

from vecclf.server import ServerLimits, create_app

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 40), (30, 40, 220)


def b64(img) -> str:  # type: ignore[no-untyped-def]
    return base64.b64encode(png_bytes(img)).decode()


@pytest.fixture()
def client(clf) -> Iterator[TestClient]:
    """An app over a tiny-CLIP store with three colour concepts."""
    for name, rgb in (("red", RED), ("green", GREEN), ("blue", BLUE)):
        clf.add([solid_image(rgb, seed=s) for s in range(6)], [name])
    app = create_app(clf.store.path, classifier=clf, limits=ServerLimits(max_body_bytes=2_000_000))
    with TestClient(app, raise_server_exceptions=False, base_url="http://localhost") as c:
        yield c


def test_health_concepts_openapi(client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["vectors"] == 18
    assert {c["name"]: c["positives"] for c in client.get("/concepts").json()["concepts"]} == {
        "blue": 6,
        "green": 6,
        "red": 6,
    }
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.") and set(spec["paths"]) == {
        "/healthz",
        "/concepts",
        "/inputs",
        "/inputs/{input_id}",
        "/predict",
        "/search",
        "/train",
        "/verify",
        "/inputs/{input_id}/thumbnail",
        "/evaluation",
        "/evaluate",
        "/concepts/{name}",
        "/concepts/{name}/threshold",
    }


def test_add_inputs_json_base64_multipart_and_video(client, tmp_path) -> None:
    r = client.post("/inputs", json={"texts": ["a red thing", "another"], "concepts": ["red"]})
    assert r.status_code == 201 and [a["kind"] for a in r.json()["added"]] == ["text", "text"]
    r = client.post(
        "/inputs", json={"image_base64": b64(solid_image(RED, seed=40)), "concepts": ["red"], "negatives": ["blue"]}
    )
    assert r.status_code == 201 and r.json()["added"][0]["kind"] == "image"
    files = [
        ("file", ("g1.png", png_bytes(solid_image(GREEN, seed=41)), "image/png")),
        ("file", ("g2.jpg", png_bytes(solid_image(GREEN, seed=42), "JPEG"), "image/jpeg")),
    ]
    r = client.post("/inputs", files=files, data={"concept": "green"})
    assert r.status_code == 201 and [a["source"] for a in r.json()["added"]] == ["g1.png", "g2.jpg"]
    video = make_video(tmp_path / "clip.mp4", [RED, BLUE])
    r = client.post("/inputs", files={"file": ("clip.mp4", video.read_bytes(), "video/mp4")}, data={"concept": "clip"})
    assert r.status_code == 201 and r.json()["added"] == [
        {"id": r.json()["added"][0]["id"], "kind": "video", "source": "clip.mp4"}
    ]
    vid = r.json()["added"][0]["id"]
    assert client.delete(f"/inputs/{vid}").json()["deleted"] == [vid, vid + 1, vid + 2]
    assert client.delete(f"/inputs/{vid}").status_code == 404


def test_predict_by_text_image_id_and_upload(client) -> None:
    r = client.post("/predict", json={"image_base64": b64(solid_image(BLUE, seed=77)), "k": 5})
    pred = r.json()["predictions"][0]
    assert (
        r.status_code == 200 and pred["concept"] == "blue" and pred["method"] == "knn" and len(pred["neighbours"]) == 5
    )
    r = client.post("/predict", json={"id": 1})
    assert r.status_code == 200 and r.json()["predictions"][0]["nearest"] == "red"
    up = client.post("/predict", files={"file": ("q.png", png_bytes(solid_image(GREEN, seed=78)), "image/png")})
    assert up.status_code == 200 and up.json()["predictions"][0]["concept"] == "green"
    texts = client.post("/predict", json={"texts": ["x", "y"]})
    assert texts.status_code == 200 and len(texts.json()["predictions"]) == 2


def test_thresholds_duplicates_and_open_set_options(client) -> None:
    listed = {c["name"]: c for c in client.get("/concepts").json()["concepts"]}
    assert set(listed["red"]["thresholds"]) == {"joint"} and listed["red"]["threshold_set"] is None
    r = client.put("/concepts/red/threshold", json={"threshold": 0.999999})
    assert r.status_code == 200 and r.json() == {"concept": "red", "threshold_set": 0.999999}
    assert client.get("/concepts").json()["concepts"][2]["threshold_set"] == 0.999999
    near_red = {"image_base64": b64(solid_image(RED, seed=70)), "method": "knn"}
    pred = client.post("/predict", json=near_red).json()["predictions"][0]
    assert pred["concept"] == "unknown" and pred["rejected_by"] == "nearest-example" and pred["nearest"] == "red"
    assert pred["threshold"] == 0.999999 and pred["similarity"] < 0.999999
    verdict = client.post("/verify", json={**near_red, "concept": "red"}).json()["verifications"][0]
    assert not verdict["verified"] and verdict["calibration"]["method"] == "set"
    assert client.delete("/concepts/red/threshold").json()["threshold_set"] is None
    off = client.post("/predict", json={**near_red, "unknown_quantile": 0}).json()["predictions"][0]
    assert off["concept"] == "red" and off["threshold"] is None  # quantile 0: never unknown
    for bad in ({"threshold": 2}, {"threshold": "high"}, {}):
        assert client.put("/concepts/red/threshold", json=bad).status_code == 400
    assert client.put("/concepts/nope/threshold", json={"threshold": 0.5}).status_code == 404
    assert client.post("/predict", json={**near_red, "unknown_quantile": 0.7}).status_code == 400
    # the same image again: a duplicate, its label merged; kept only when asked
    image = b64(solid_image(RED, seed=0))
    dup = client.post("/inputs", json={"image_base64": image, "concepts": ["crimson"]}).json()
    assert dup["added"] == [] and dup["duplicates"][0]["id"] == 1
    assert client.post("/search", json={"id": 1, "k": 1}).json()["results"][0][0]["concepts"] == ["crimson", "red"]
    kept = client.post("/inputs", json={"image_base64": image, "concepts": ["red"], "keep_duplicates": True}).json()
    assert len(kept["added"]) == 1 and kept["duplicates"] == []


def test_stale_head_answers_say_so(client) -> None:
    assert client.post("/train").status_code == 200
    fresh = client.post("/predict", json={"image_base64": b64(solid_image(BLUE, seed=80))}).json()["predictions"][0]
    assert fresh["method"] == "head" and fresh["stale"] is False
    client.post("/inputs", json={"image_base64": b64(solid_image((240, 240, 20))), "concepts": ["yellow"]})
    body = {"image_base64": b64(solid_image(BLUE, seed=80)), "method": "head"}
    stale = client.post("/predict", json=body).json()["predictions"][0]
    assert stale["method"] == "head" and stale["stale"] is True
    assert (
        client.post("/predict", json={"image_base64": body["image_base64"]}).json()["predictions"][0]["method"] == "knn"
    )


def test_search_filters_by_concept_before_ranking(client) -> None:
    r = client.post("/search", json={"image_base64": b64(solid_image(RED, seed=5)), "k": 3, "concept": "blue"})
    hits = r.json()["results"][0]
    assert r.status_code == 200 and len(hits) == 3 and all(h["concepts"] == ["blue"] for h in hits)
    assert client.post("/search", json={"id": 1, "k": 1}).json()["results"][0][0]["id"] == 1
    assert client.post("/search", json={"text": "x", "concept": "nope"}).status_code == 404


def test_train_then_head_predictions_and_verify(client) -> None:
    r = client.post("/train", json={"mode": "exclusive"})
    assert r.status_code == 200 and r.json()["trained"]["joint"]["classes"] == ["blue", "green", "red"]
    pred = client.post("/predict", json={"image_base64": b64(solid_image(RED, seed=90))}).json()["predictions"][0]
    assert pred["method"] == "head" and pred["concept"] == "red"
    # (tiny random CLIP: scores are all close to 1, so this checks the contract, not accuracy;
    # tests/test_head.py::test_verify_with_real_text_embeddings checks the semantics)
    same = client.post("/verify", json={"image_base64": b64(solid_image(RED, seed=91)), "concept": "red"}).json()
    other = client.post(
        "/verify", json={"image_base64": b64(solid_image((250, 250, 250), seed=92)), "concept": "red"}
    ).json()
    for v in (same["verifications"][0], other["verifications"][0]):
        assert v["concept"] == "red" and v["threshold"] is not None and v["verified"] == (v["score"] >= v["threshold"])
    assert same["verifications"][0]["score"] > other["verifications"][0]["score"]
    assert client.post("/verify", json={"text": "x"}).status_code == 400


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("post", "/predict", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
        (
            "post",
            "/predict",
            {"content": b"[" * 5000 + b"]" * 5000, "headers": {"content-type": "application/json"}},
            400,
        ),
        (
            "post",
            "/predict",
            {
                "json": {
                    "a": {
                        "b": {
                            "c": {
                                "d": {
                                    "e": {
                                        "f": {
                                            "g": {"h": {"i": {"j": {"k": {"l": {"m": {"n": {"o": {"p": {"q": 1}}}}}}}}}}
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            },
            400,
        ),
        ("post", "/predict", {"json": {}}, 400),
        ("post", "/predict", {"json": {"text": "x", "k": 0}}, 400),
        ("post", "/predict", {"json": {"text": "x", "k": "5"}}, 400),
        ("post", "/predict", {"json": {"text": "x", "method": "magic"}}, 400),
        ("post", "/predict", {"json": {"text": ""}}, 400),
        ("post", "/predict", {"json": {"image_base64": "not base64!"}}, 400),
        ("post", "/predict", {"json": {"image_base64": base64.b64encode(b"GIF89a garbage").decode()}}, 400),
        ("post", "/predict", {"json": {"id": 999999}}, 404),
        ("post", "/predict", {"json": {"id": 1, "text": "x"}}, 400),
        ("post", "/predict", {"content": b"x=1", "headers": {"content-type": "text/plain"}}, 400),
        ("post", "/inputs", {"json": {"text": "x", "concepts": ["unknown"]}}, 400),
        ("post", "/inputs", {"json": {"text": "x", "concepts": "red"}}, 400),
        ("post", "/inputs", {"files": {"other": ("a.png", b"123", "image/png")}}, 400),
        ("post", "/inputs", {"content": b"x" * 2_100_000, "headers": {"content-type": "application/json"}}, 413),
        ("post", "/train", {"json": {"C": -1}}, 400),
        ("delete", "/inputs/abc", {}, 400),
        ("get", "/nope", {}, 404),
        ("get", "/predict", {}, 405),
    ],
)
def test_bad_requests_get_json_4xx(client, method, path, kwargs, status) -> None:
    r = getattr(client, method)(path, **kwargs) if method != "post" else client.post(path, **kwargs)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] and err["message"] and "Traceback" not in r.text


def test_decompression_bomb_and_streamed_oversize_body(client) -> None:
    from PIL import Image

    bomb = png_bytes(Image.new("1", (20_000, 20_000)))
    r = client.post("/predict", files={"file": ("bomb.png", bomb, "image/png")})
    assert r.status_code == 413 and "pixels" in r.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:
        for _ in range(30):
            yield b"x" * 100_000  # no Content-Length: counted as it streams

    r = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_thumbnails_evaluation_and_page(client) -> None:
    added = client.post("/inputs", json={"image_base64": b64(solid_image(RED, size=300)), "concepts": ["red"]}).json()
    r = client.get(f"/inputs/{added['added'][0]['id']}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(r.content)).size) == 128
    text_id = client.post("/inputs", json={"text": "a red thing"}).json()["added"][0]["id"]
    assert client.get(f"/inputs/{text_id}/thumbnail").status_code == 404
    assert client.get("/inputs/999999/thumbnail").status_code == 404
    assert client.get("/evaluation").status_code == 404
    r = client.post("/evaluate", json={"folds": 1})
    assert r.status_code == 400
    report = client.post("/evaluate").json()
    assert report["examples"] == 19 and report["confusion"]["labels"][:3] == ["blue", "green", "red"]
    assert client.get("/evaluation").json()["accuracy"] == report["accuracy"]
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="query"' in page.text


def test_bearer_token_required_except_healthz(clf) -> None:
    clf.add([solid_image(RED)], ["red"])
    app = create_app(clf.store.path, classifier=clf, token="s3cret")
    with TestClient(app, base_url="http://localhost") as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/concepts")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert c.get("/concepts", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/concepts", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/").status_code == 200  # the page holds no data; it asks for the token
        assert c.get("/evaluation").status_code == 401 and c.get("/inputs/1/thumbnail").status_code == 401


@pytest.fixture()
def live_server(tmp_path) -> Iterator[str]:
    """`vecclf serve` in its own process on a free loopback port, over a tiny-CLIP store."""
    store = tmp_path / "live"
    init = [sys.executable, "-m", "vecclf.cli", "init", "--model", "tiny-clip", "--store", str(store)]
    assert subprocess.run(init, capture_output=True, timeout=300).returncode == 0
    with serving(store, tmp_path / "server.log") as url:
        yield url


def test_real_uvicorn_server(live_server) -> None:
    with httpx.Client(base_url=live_server, timeout=60) as http:
        for name, rgb in (("red", RED), ("blue", BLUE)):
            r = http.post("/inputs", json={"image_base64": b64(solid_image(rgb)), "concepts": [name]})
            assert r.status_code == 201
        r = http.post("/predict", json={"image_base64": b64(solid_image(BLUE, seed=3))})
        assert r.status_code == 200 and r.json()["predictions"][0]["nearest"] == "blue"
        assert http.post("/predict", content=b"{", headers={"content-type": "application/json"}).status_code == 400


def test_schemathesis_finds_no_server_error(live_server) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_url(f"{live_server}/openapi.json")
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) == 17
    examples = int(os.environ.get("VECCLF_SCHEMATHESIS_EXAMPLES", "15"))  # the README's longer run sets more
    for operation in operations:

        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(base_url=live_server, timeout=60)
            case.validate_response(response, checks=[not_a_server_error])

        check()
