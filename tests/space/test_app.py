"""The app served on 127.0.0.1: called through gradio_client, and driven in headless Chromium."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"


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
def test_reconstruct_through_gradio_client(served, photo):
    from gradio_client import Client, handle_file

    url, model_dir = served
    client = Client(url, verbose=False)
    gallery, table, tokens, rarity, summary = client.predict([handle_file(str(photo))], model_dir,
                                                             api_name="/reconstruct")
    assert len(gallery) == len(tokens) == len(rarity) == 1
    assert Image.open(gallery[0]["image"]).size == (520, 256)
    assert table["data"][0][0] == "photo.png" and "distinct codes of 256" in summary
    heatmap, histogram, usage_summary = client.predict("examples", [], None, model_dir, api_name="/usage")
    assert Image.open(heatmap).size == (512, 512) and "codes used" in usage_summary


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
def test_page_in_headless_chromium(served, photo):
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
        page.wait_for_selector("#tokens img", timeout=60_000)
        page.wait_for_selector("#rarity img", timeout=60_000)
        assert "distinct codes of 256" in page.inner_text("#summary")
        page.screenshot(path=str(ARTIFACTS / "space-reconstruct.png"), full_page=True)
        page.get_by_role("tab", name="Codebook usage").click()
        page.click("#count")
        page.wait_for_selector("#heatmap img", timeout=60_000)
        page.wait_for_selector("#histogram img", timeout=60_000)
        assert "codes used" in page.inner_text("#usage-summary")
        page.screenshot(path=str(ARTIFACTS / "space-usage.png"), full_page=True)
        browser.close()
