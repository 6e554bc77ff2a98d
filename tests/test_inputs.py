"""Decoding and limits: odd images, corrupt files, tables, and batches that keep going."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import png_bytes, solid_image
from PIL import Image

from vecclf.config import Limits
from vecclf.errors import InvalidInputError, LimitExceededError
from vecclf.inputs import decode_image, make_text, read_text_table

LIMITS = Limits()


def test_odd_image_modes_decode_to_rgb() -> None:
    base = solid_image((200, 100, 50))
    cmyk = io.BytesIO()
    base.convert("CMYK").save(cmyk, format="JPEG")
    sixteen = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    alpha = base.convert("RGBA")
    alpha.putalpha(128)
    gif = io.BytesIO()
    frames = [solid_image((255, 0, 0)).convert("P"), solid_image((0, 0, 255)).convert("P")]
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    cases = {
        "cmyk": cmyk.getvalue(),
        "16bit": png_bytes(sixteen),
        "alpha": png_bytes(alpha),
        "gif": gif.getvalue(),
        "gray": png_bytes(base.convert("L")),
    }
    for name, data in cases.items():
        item = decode_image(data, source=name, limits=LIMITS)
        assert item.image.mode == "RGB", name
        assert item.image.size in {(48, 48), (64, 64)}, name
    first = decode_image(cases["gif"], source="gif", limits=LIMITS).image
    assert np.asarray(first)[..., 0].mean() > np.asarray(first)[..., 2].mean()  # first (red) frame


def test_corrupt_empty_and_bomb_images() -> None:
    good = png_bytes(solid_image((1, 2, 3)), "JPEG")
    with pytest.raises(InvalidInputError, match="empty"):
        decode_image(b"", source="zero.jpg", limits=LIMITS)
    with pytest.raises(InvalidInputError, match=r"truncated\.jpg"):
        decode_image(good[: len(good) // 2], source="truncated.jpg", limits=LIMITS)
    with pytest.raises(InvalidInputError, match="not a recognised image"):
        decode_image(b"hello world, not an image", source="text.png", limits=LIMITS)
    bomb = png_bytes(Image.new("1", (20_000, 20_000)))  # 400 Mpx, a few KB on disk
    with pytest.raises(LimitExceededError, match="pixels"):
        decode_image(bomb, source="bomb.png", limits=LIMITS)
    with pytest.raises(LimitExceededError):
        decode_image(good, source="big.jpg", limits=Limits(max_image_bytes=10))


def test_text_validation() -> None:
    assert make_text("  hi  ").text == "hi"
    for bad in ["", "   ", "a\x00b"]:
        with pytest.raises(InvalidInputError):
            make_text(bad)
    with pytest.raises(LimitExceededError):
        make_text("x" * 11, limits=Limits(max_text_chars=10))


def test_tables(tmp_path) -> None:
    csv_path = tmp_path / "t.csv"
    csv_path.write_text('text,category\nhello there,greet\n"bye, now",leave\n', encoding="utf-8")
    assert read_text_table(csv_path) == [(2, "hello there", "greet"), (3, "bye, now", "leave")]  # (file line, ...)
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbftext,label\nhi,greet\n")  # as spreadsheet programs save UTF-8
    assert read_text_table(bom) == [(2, "hi", "greet")]
    jl = tmp_path / "t.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in [{"q": "a", "y": "A"}, {"q": "b", "y": "B"}]), encoding="utf-8")
    assert read_text_table(jl, text_column="q", label_column="y") == [(1, "a", "A"), (2, "b", "B")]
    with pytest.raises(InvalidInputError, match="not found"):
        read_text_table(jl, text_column="nope")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n\n{not json\n', encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"bad.jsonl:3: not valid JSON"):  # the file's line, not the row's
        read_text_table(tmp_path / "bad.jsonl")
    (tmp_path / "latin1.csv").write_bytes(b"text,label\nok,a\ncaf\xe9,b\n")
    with pytest.raises(InvalidInputError, match=r"latin1.csv:3: not valid UTF-8"):
        read_text_table(tmp_path / "latin1.csv")


def test_bad_files_reported_without_losing_the_batch(clf, tmp_path, image_files) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = []
    for i in range(3):
        p = folder / f"good{i}.png"
        solid_image((200, 20, 20), seed=i).save(p)
        good.append(p)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "broken.png").write_bytes(good[0].read_bytes()[:40])
    (folder / "notes.txt").write_text("a red thing\n\nanother red thing\n", encoding="utf-8")
    report = clf.add([folder, tmp_path / "missing.jpg"], ["red"])
    failed = {f.source.split("/")[-1] for f in report.failures}
    assert failed == {"empty.jpg", "broken.png", "missing.jpg"}
    assert all(f.reason for f in report.failures)
    assert len(report.added) == 5  # 3 images + 2 text lines
    assert clf.store.count() == 5
    assert {c["name"]: c["positives"] for c in clf.concepts()} == {"red": 5}


def test_decode_ahead_keeps_order_errors_and_stops_with_the_consumer() -> None:
    import threading

    from vecclf.inputs import decode_ahead

    assert list(decode_ahead(iter(range(100)), ahead=3)) == list(range(100))

    def failing():  # type: ignore[no-untyped-def]
        yield 1
        yield 2
        raise OSError("disk went away")

    got = []
    with pytest.raises(OSError, match="disk went away"):
        for x in decode_ahead(failing()):
            got.append(x)
    assert got == [1, 2]
    produced = []

    def endless():  # type: ignore[no-untyped-def]
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    before = threading.active_count()
    for x in decode_ahead(endless(), ahead=4):
        if x == 10:
            break  # the consumer leaves early: the worker must not run on forever
    for _ in range(50):
        if threading.active_count() <= before:
            break
        threading.Event().wait(0.05)
    assert threading.active_count() <= before and len(produced) < 30


def test_large_jpegs_decode_at_a_reduced_scale_never_below_the_model_size() -> None:
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (960, 1280, 3), dtype=np.uint8))
    jpeg = png_bytes(big, "JPEG")
    assert decode_image(jpeg, source="j", limits=LIMITS).image.size == (1280, 960)
    small = decode_image(jpeg, source="j", limits=LIMITS, draft=224).image
    assert small.size == (320, 240) and small.mode == "RGB"  # 1/4 scale: the last one that keeps 224
    assert decode_image(png_bytes(big), source="p", limits=LIMITS, draft=224).image.size == (1280, 960)
    assert decode_image(jpeg, source="j", limits=LIMITS, draft=2000).image.size == (1280, 960)
