"""The app served on 127.0.0.1: called through gradio_client, and driven in headless Chromium."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from ..helpers import ROOT

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def served(model_dir, monkeypatch):
    monkeypatch.setenv("FVQ_MODEL", model_dir)
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    import app

    demo = app.build_demo()
    demo.queue().launch(server_name="127.0.0.1", prevent_thread_lock=True, share=False, ssr_mode=False, quiet=True)
    try:
        yield demo.local_url, model_dir
    finally:
        demo.close()


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 60, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.slow
def test_reconstruct_works_through_the_gradio_client(served, photo):
    from gradio_client import Client, handle_file

    url, model_dir = served
    client = Client(url, verbose=False)
    sheet, original, reconstruction, table, tokens, rarity, summary = client.predict(
        [handle_file(str(photo))], model_dir, 0, api_name="/reconstruct")
    assert len(tokens) == len(rarity) == 1
    # the 60 x 48 photo at its short side, 48 px; enlarged 5x (nearest) side by side in the sheet
    assert Image.open(original).size == Image.open(reconstruction).size == (48, 48)
    assert Image.open(sheet).size == (48 * 5 * 2 + 8, 48 * 5)
    assert table["data"][0][0] == "photo.png" and "distinct codes of 256" in summary
    heatmap, histogram, usage_summary = client.predict("examples", [], None, model_dir, api_name="/usage")
    assert Image.open(heatmap).size == (512, 512) and "codes used" in usage_summary


# Where an image of a panel is drawn: its natural size, its drawn size, and whether it lies wholly inside the panel
# and the page (so nothing of it is cut off).
VISIBLE_IMAGE = """(selector) => {
    const panel = document.querySelector(selector), img = panel.querySelector("img");
    const box = img.getBoundingClientRect(), outer = panel.getBoundingClientRect();
    return {natural: [img.naturalWidth, img.naturalHeight], width: box.width, height: box.height,
            inside: box.width > 0 && box.top >= outer.top - 1 && box.bottom <= outer.bottom + 1
                    && box.left >= outer.left - 1 && box.right <= outer.right + 1};
}"""


def _browser():
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: a missing browser must not pass silently there
        pytest.skip(message)
    return playwright, chromium


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_works_in_headless_chromium(served, photo):
    playwright, chromium = _browser()
    url, _ = served
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(url)
        page.locator("#inp input[type=file]").set_input_files(str(photo))
        page.click("#go")
        page.wait_for_selector("#out img", timeout=60_000)
        page.wait_for_selector("#original img", timeout=60_000)
        page.wait_for_selector("#reconstruction img", timeout=60_000)
        page.wait_for_selector("#tokens img", timeout=60_000)
        page.wait_for_selector("#rarity img", timeout=60_000)
        assert "distinct codes of 256" in page.inner_text("#summary")
        for panel in ("#original", "#reconstruction"):  # both shown whole, at the reconstruction size (48 px)
            shown = page.evaluate(VISIBLE_IMAGE, panel)
            assert shown["natural"] == [48, 48], shown
            assert abs(shown["width"] - 48) <= 1 and abs(shown["height"] - 48) <= 1, shown  # drawn at its own size
            assert shown["inside"], shown
        for panel in ("#tokens", "#rarity"):
            assert page.evaluate(VISIBLE_IMAGE, panel)["inside"], panel
        side = page.evaluate(VISIBLE_IMAGE, "#out")
        assert side["natural"] == [48 * 5 * 2 + 8, 48 * 5] and side["inside"], side
        assert abs(side["width"] - side["natural"][0]) <= 1 and abs(side["height"] - side["natural"][1]) <= 1, side
        page.screenshot(path=str(ARTIFACTS / "space-reconstruct.png"), full_page=True)
        page.get_by_role("tab", name="Codebook usage").click()
        page.click("#count")
        page.wait_for_selector("#heatmap img", timeout=60_000)
        page.wait_for_selector("#histogram img", timeout=60_000)
        assert "codes used" in page.inner_text("#usage-summary")
        page.screenshot(path=str(ARTIFACTS / "space-usage.png"), full_page=True)
        browser.close()
