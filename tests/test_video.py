"""Video: sampled frames are stored, linked to their video, and vote as one example."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from conftest import solid_image

from vecclf.config import Limits
from vecclf.inputs import decode_video


def make_video(path: Path, colours: list[tuple[int, int, int]], fps: int = 10, seconds_each: float = 1.0) -> Path:
    """Encode a small MPEG-4 clip showing each colour in turn."""
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = 64, 48
        stream.pix_fmt = "yuv420p"
        for c in colours:
            for _ in range(int(fps * seconds_each)):
                frame = av.VideoFrame.from_image(solid_image(c, size=64).resize((64, 48)))
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_decode_samples_at_rate_and_limits(tmp_path) -> None:
    video = make_video(tmp_path / "v.mp4", [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    item = decode_video(video, limits=Limits(), fps=2.0)
    assert len(item.frames) == 6
    assert item.timestamps == sorted(item.timestamps)
    assert np.allclose(np.diff(item.timestamps), 0.5, atol=0.11)
    capped = decode_video(video, limits=Limits(max_video_frames=2), fps=10.0)
    assert len(capped.frames) == 2


def test_video_frames_stored_and_linked(clf, tmp_path, image_files) -> None:
    video = make_video(tmp_path / "rgb.mp4", [(220, 30, 30), (30, 200, 40)])
    report = clf.add([video], ["clip"])
    (vid,) = report.ids
    rows = [(r.kind, r.parent_id, r.frame_index, r.timestamp_s) for r in clf.store.get([vid, vid + 1, vid + 2])]
    assert rows[0][:2] == ("video", None)
    frames = rows[1:]
    assert len(frames) == 2 and all(k == "frame" and p == vid for k, p, _, _ in frames)
    assert [f[2] for f in frames] == [0, 1]
    # frames inherit the video's concept, and a frame found by search points back at its video
    hit = clf.search([image_files["green"][0]], k=3, collapse=False)[0]
    assert {h.parent_id for h in hit if h.kind == "frame"} == {vid}
    assert all(h.concepts == ["clip"] for h in hit)
    collapsed = clf.search([image_files["green"][0]], k=3)[0]  # the video and its frames: one hit
    assert [(h.id, h.kind) for h in collapsed] == [(vid, "video")] and collapsed[0].timestamp_s is not None
    # the video counts as one example in the vote, however many frames match
    clf.add(image_files["red"][:1], ["red"])
    pred = clf.predict([image_files["red"][1]], k=3)[0]
    roots = [n["id"] for n in pred.neighbours]
    assert len(roots) == 2  # one example of each concept
    # deleting the video removes its frames too
    assert sorted(clf.delete([vid])) == [vid, vid + 1, vid + 2]
    assert clf.store.count() == 1


def test_shared_clip_if_present(clf) -> None:
    from conftest import shared_path

    clip = shared_path("video", "carphone_pristine.mp4")
    report = clf.add([clip], ["phone"])
    assert report.failures == [] and len(report.ids) == 1
    assert clf.store.count() > 1
