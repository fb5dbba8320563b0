"""The demo page in a real headless Chromium (Debian's), against the local server on 127.0.0.1."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from handler import page as demo_page
from handler.local.server import LocalApiServer
from tests.conftest import PHOTOS, REPO

OUTPUT = REPO / "test-output"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def site(app) -> Iterator[str]:
    server = LocalApiServer(app.api_handler, port=0, quiet=True, stage="prod")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is needed: `make setup` installs it (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def visit(browser: Browser, site: str) -> Iterator:
    """Open the page in a fresh context; collect console errors and every URL it requests."""
    contexts = []

    def open_page(**context_options) -> tuple[Page, list[str], list[str]]:
        context = browser.new_context(locale="en-US", **context_options)
        contexts.append(context)
        page = context.new_page()
        problems: list[str] = []
        requested: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("request", lambda request: requested.append(request.url))
        page.goto(site)
        expect(page.locator("#limit")).to_contain_text("6 MB")  # read from /health
        return page, problems, requested

    yield open_page
    for context in contexts:
        context.close()


def analyze(page: Page, file) -> None:
    page.set_input_files("#file", file)
    page.click("#analyze")


def test_grace_hopper_is_a_military_uniform(visit, site: str) -> None:
    page, problems, requested = visit()
    analyze(page, PHOTOS / "grace_hopper.jpg")
    first = page.locator("#predictions li").first
    expect(first.locator(".label")).to_have_text("military uniform", timeout=30_000)
    expect(page.locator("#predictions li")).to_have_count(5)
    expect(first.locator(".pct")).to_have_text("93%")  # Intl percent, at most one decimal
    expect(page.locator("#timing")).to_contain_text("ms by mobilenet_v2")
    expect(page.locator("#preview-img")).to_be_visible()
    bar = first.locator(".bar").bounding_box()
    fill = first.locator(".fill").bounding_box()
    assert 0.88 < fill["width"] / bar["width"] < 0.98, "the bar is drawn at the probability (93%)"
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "demo-page-result.png"), full_page=True)
    assert not problems, problems  # no CSP violation, no script error
    assert all(url.startswith((site, "blob:", "data:")) for url in requested), requested


def test_a_text_file_shows_the_apis_error(visit, tmp_path: Path) -> None:
    page, _, _ = visit()
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a photo")
    analyze(page, notes)
    error = page.locator("#error")
    expect(error).to_be_visible(timeout=30_000)
    expect(error).to_contain_text("Not a supported image type")
    expect(error.locator("code")).to_have_text("unsupported_image_type")
    expect(page.locator("#predictions li")).to_have_count(0)


def test_a_too_large_photo_shows_the_apis_error(visit, tmp_path: Path) -> None:
    page, _, _ = visit()
    big = tmp_path / "huge.jpg"
    big.write_bytes(b"\xff\xd8" + b"\0" * (7 * 1024 * 1024))
    analyze(page, big)
    expect(page.locator("#error code")).to_have_text("image_too_large", timeout=30_000)


def test_french(visit) -> None:
    page, _, _ = visit()
    page.click("button[data-lang=fr]")
    expect(page.locator("h1")).to_have_text("Qu\u2019y a-t-il sur cette photo ?")
    expect(page.locator("#analyze")).to_have_text("Analyser")
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    analyze(page, PHOTOS / "grace_hopper.jpg")
    expect(page.locator("#predictions li .pct").first).to_have_text("93 %", timeout=30_000)
    expect(page.locator("#timing")).to_contain_text("Réponse en")


def test_keyboard_reaches_the_file_chooser_and_analyze(visit) -> None:
    page, _, _ = visit()
    page.focus("button[data-lang=fr]")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "file"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(PHOTOS / "grace_hopper.jpg")
    assert page.evaluate("document.activeElement.id") == "analyze"
    page.keyboard.press("Enter")
    expect(page.locator("#predictions li .label").first).to_have_text("military uniform", timeout=30_000)


def test_phone_viewport_fits_and_offers_the_camera(visit) -> None:
    page, _, _ = visit(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    camera = page.locator("#camera")
    expect(camera).to_have_attribute("capture", "environment")
    expect(camera).to_have_attribute("accept", "image/*")
    analyze(page, PHOTOS / "cat.bmp")
    expect(page.locator("#predictions li .label").first).to_have_text(
        re.compile("Egyptian cat|tabby|tiger cat"), timeout=30_000
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "demo-page-phone.png"), full_page=True)


def test_page_is_self_contained_under_a_strict_csp() -> None:
    html = demo_page.HTML
    assert "http://" not in html and "https://" not in html, "no CDN or external resource"
    policy = demo_page.CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
