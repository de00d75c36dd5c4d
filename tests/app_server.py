"""Helpers shared by the test files: serving the Gradio app on a free localhost port, and
finding the Chromium the browser tests drive."""
import contextlib
import os
import shutil
import socket
from typing import Iterator, Optional

from explorer import ui


def free_port() -> int:
    """A TCP port nobody listens on right now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served_app(concurrency: Optional[int] = None, queue_size: Optional[int] = None) -> Iterator[str]:
    """The app built, queued as :func:`explorer.ui.launch` queues it (``concurrency`` and
    ``queue_size`` default to the environment's settings) and served in this process;
    yields its URL and closes it afterwards."""
    demo = ui.queued(ui.build_demo(), concurrency, queue_size)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                css=ui.CSS, max_file_size=ui.MAX_UPLOAD_BYTES)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@contextlib.contextmanager
def app_page(url: str, height: int = 1200):
    """A headless Chromium page (Debian's chromium through Playwright) on the app at ``url``,
    once the app says it is ready; the browser is closed afterwards."""
    from playwright.sync_api import sync_playwright

    chromium = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": height})
            page.goto(url)
            page.wait_for_function("document.querySelector('#status')?.innerText.includes('Press')", timeout=60000)
            yield page
        finally:
            browser.close()


def chromium_path() -> str:
    """Debian's ``chromium`` for Playwright.  Missing, the calling test is skipped, unless
    ``EXPLORER_REQUIRE_BROWSER=1`` (set by CI) makes that a failure."""
    import pytest

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("EXPLORER_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required (EXPLORER_REQUIRE_BROWSER=1): apt-get install chromium")
        pytest.skip("no chromium binary; install Debian's chromium package to run the browser test")
    return path
