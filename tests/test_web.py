"""The web page in headless Chromium against a real `vecclf serve`: upload, prediction, thumbnails, teaching a
new concept, retraining, evaluation, a concept from several files, files dropped on a concept, the threshold
slider, deleting an input, the webcam (Chromium's fake camera)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import serving, solid_image
from PIL import Image

from vecclf.classifier import ConceptClassifier
from vecclf.store import Store

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def _chromium() -> str:
    found = os.environ.get("VECCLF_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI (scripts/setup.sh installs Debian's chromium)")
        pytest.skip("no Chromium found: apt-get install chromium, or set VECCLF_CHROMIUM")
    return found


def test_page_uploads_an_image_and_shows_prediction(tmp_path, tiny_embedder) -> None:
    chromium = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (in the dev extra)")
    store = tmp_path / "store"
    clf = ConceptClassifier(
        Store.create(store, spec=tiny_embedder.spec, identity=tiny_embedder.identity, spaces=tiny_embedder.spaces()),
        tiny_embedder,
    )
    with clf:
        for name, rgb in COLOURS.items():
            clf.add([solid_image(rgb, size=96, seed=s) for s in range(5)], [name])
    query = tmp_path / "query.png"
    solid_image(COLOURS["red"], size=96, seed=77).save(query)
    shots = Path(os.environ.get("VECCLF_ARTIFACTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)

    with serving(store, tmp_path / "server.log") as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            # a fake camera (a generated test pattern) that needs no permission prompt
            args=["--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            page.wait_for_selector("#concepts table")
            assert "red" in page.inner_text("#concepts") and "5" in page.inner_text("#concepts")
            page.select_option("#method", "knn")
            page.set_input_files("#file", str(query))
            page.click("#go")
            page.wait_for_selector("#top-concept")
            top = page.inner_text("#top-concept")
            assert top in ("red", "unknown"), top
            first_score = page.inner_text(".pred > div:nth-of-type(3)")
            assert first_score.startswith("red"), first_score  # the best-scoring concept is listed first
            page.wait_for_selector("figure.neighbour img[src^='blob:']")  # neighbour thumbnails loaded
            assert page.locator("figure.neighbour").count() >= 5
            page.fill("#teach-concept", "purple")  # teach: the query becomes an example of a new concept
            page.click("#teach-add")
            page.wait_for_function("document.querySelector('#teach-status').innerText.length > 0")
            assert "added" in page.inner_text("#teach-status"), page.inner_text("#teach-status")
            # the answer is asked again: the query itself is now its nearest stored example, labelled purple
            page.wait_for_function(
                "document.querySelector('figure.neighbour figcaption')?.innerText.startsWith('purple')"
            )
            page.wait_for_function("document.querySelector('#concepts').innerText.includes('purple')")
            page.select_option("#method", "head")
            page.click("#retrain")
            page.wait_for_function(
                "document.querySelector('#teach-status').innerText.includes('trained exclusive head')"
            )
            assert "on 16 examples of 4 concepts" in page.inner_text("#teach-status")
            page.wait_for_function("document.querySelector('.pred')?.innerText.includes('via head')")
            assert page.locator("#stale-warning").count() == 0
            page.click("#run-eval")
            page.wait_for_selector("#confusion")
            assert "accuracy" in page.inner_text("#evaluation")
            # a new concept from several files at once
            greens = []
            for s in (1, 2, 3):
                greens.append(tmp_path / f"yellow{s}.png")
                solid_image((230, 220, 30), size=96, seed=s).save(greens[-1])
            page.fill("#new-concept-name", "yellow")
            page.set_input_files("#new-concept-files", [str(g) for g in greens])
            page.wait_for_function(
                "document.querySelector('#concepts-status').innerText.startsWith('added 3 to yellow')"
            )
            assert page.inner_text("tr[data-concept=yellow] td:nth-child(2)") == "3"
            # files dropped on a concept's row become its examples
            page.evaluate(
                """async () => {
                  const canvas = Object.assign(document.createElement("canvas"), { width: 64, height: 64 });
                  const ctx = canvas.getContext("2d");
                  ctx.fillStyle = "rgb(235, 215, 40)"; ctx.fillRect(0, 0, 64, 64);
                  ctx.fillStyle = "rgb(20, 20, 20)"; ctx.fillRect(5, 5, 9, 9);
                  const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
                  const files = new DataTransfer();
                  files.items.add(new File([blob], "dropped.png", { type: "image/png" }));
                  const row = document.querySelector("tr[data-concept=yellow]");
                  row.dispatchEvent(new DragEvent("drop", { dataTransfer: files, bubbles: true, cancelable: true }));
                }"""
            )
            page.wait_for_function(
                "document.querySelector('tr[data-concept=yellow] td:nth-child(2)')?.innerText === '4'"
            )
            # the threshold slider previews what it would reject, then sets the threshold
            page.select_option("#method", "knn")
            fresh = tmp_path / "query2.png"  # not stored: its similarity to the nearest example is below 1
            solid_image(COLOURS["blue"], size=96, seed=78).save(fresh)
            page.set_input_files("#file", str(fresh))
            page.click("#go")
            page.wait_for_function("document.querySelector('.pred .muted')?.innerText.endsWith('query2.png')")
            nearest = page.evaluate("shown[0].nearest")
            page.evaluate(
                f"""() => {{
                  const s = document.querySelector("tr[data-concept='{nearest}'] input.threshold");
                  s.value = "1"; s.dispatchEvent(new Event("input")); s.dispatchEvent(new Event("change"));
                }}"""
            )
            assert "would reject 1 of 1" in page.inner_text("#threshold-note"), page.inner_text("#threshold-note")
            page.wait_for_function("document.querySelector('#concepts-status').innerText.includes('set to 1.000')")
            page.wait_for_function("document.querySelector('#top-concept')?.innerText === 'unknown'")
            page.click(f"tr[data-concept='{nearest}'] button:text('auto')")
            page.wait_for_function("document.querySelector('#concepts-status').innerText.includes('learned from its')")
            # delete a stored input from the page (two clicks), and the answer is asked again
            victim = page.evaluate("shown[0].neighbours[0].concepts[0]")  # the first thumbnail's concept
            before = int(page.inner_text(f"tr[data-concept='{victim}'] td:nth-child(2)"))
            page.wait_for_selector("figure.neighbour button.del")
            first = page.locator("figure.neighbour button.del").first
            first.click()
            assert first.inner_text() == "sure?"
            first.click()
            page.wait_for_function("document.querySelector('#concepts-status').innerText.startsWith('deleted input')")
            after = int(page.inner_text(f"tr[data-concept='{victim}'] td:nth-child(2)"))
            assert after == before - 1
            # the webcam: a captured frame is the query
            page.click("#camera")
            page.wait_for_function("document.querySelector('#cam').videoWidth > 0")
            page.click("#capture")
            page.wait_for_function("document.querySelector('.pred .muted')?.innerText.startsWith('webcam-')")
            page.wait_for_selector("#top-concept")
            shot = shots / "web_page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert errors == []
        finally:
            browser.close()
    with Image.open(shot) as img:
        assert img.size[0] == 1200 and img.size[1] >= 900
