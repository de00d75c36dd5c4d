"""The app served for real: a gradio_client session and a headless Chromium (Playwright).

The browser test needs Debian's ``chromium`` (``.ci/run`` installs it with apt).  Without it
the test is skipped, unless ``EXPLORER_REQUIRE_BROWSER=1`` (set by CI), which makes a missing
browser a failure.  Screenshots go to ``test-output/`` at the repository root.
"""
import time
from pathlib import Path

import pytest
from app_server import app_page, served_app

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"


@pytest.fixture(scope="module")
def app_url():
    with served_app() as url:
        yield url


def test_client_streams_every_update_and_the_final_metrics(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    job = client.submit("street-fpn-mobilenet", "street-002", None, "alma_prox", "untargeted", None, 40, 0,
                        0.99, api_name="/run")
    statuses = [update[0] for update in job]
    outputs = job.outputs()
    assert len(outputs) >= 3  # streamed, not just one answer
    iterations = [int(s.split("iteration **")[1].split("/")[0]) for s in statuses if "iteration **" in s]
    assert iterations == sorted(iterations) and iterations[0] < 40
    final = outputs[-1]
    assert "finished after 40 iterations" in final[0]
    table = dict(final[8]["data"])
    assert table["iterations"] == "40" and float(table["APSR"]) >= 0.9
    assert sorted(Path(f).suffix for f in final[9]) == [".csv", ".json", ".npy", ".png"]


def test_client_stop_keeps_the_partial_result(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    job = client.submit("objects-fpn-mobilenet", "objects-004", None, "alma_prox", "untargeted", None, 2000,
                        0, 0.99, api_name="/run")
    deadline = time.time() + 60
    while len(job.outputs()) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert "stopping" in client.predict(api_name="/stop")
    final = job.result()
    assert "stopped after" in final[0]
    iterations = int(dict(final[8]["data"])["iterations"])
    assert 1 <= iterations < 2000


def _image_src(page, elem_id):
    if page.query_selector(f"#{elem_id} img") is None:
        return None
    return page.eval_on_selector(f"#{elem_id} img", "img => img.src")


def test_browser_run_watch_and_stop(app_url):
    OUTPUT.mkdir(exist_ok=True)
    with app_page(app_url, height=1300) as page:
        # pick another sample from the gallery drop-down
        page.click("#sample input")
        page.click("ul[role=listbox] li:has-text('street-003')")
        page.wait_for_function("document.querySelector('#status').innerText.includes('street-003')",
                               timeout=30000)
        page.fill("#steps input[type=number]", "20")
        page.press("#steps input[type=number]", "Enter")
        page.click("#run-button")
        page.wait_for_function("document.querySelector('#status').innerText.includes('finished after 20')",
                               timeout=120000)
        # the curves were drawn (plotly traces) and the adversarial prediction is shown
        assert page.locator("#apsr-plot .scatterlayer .trace").count() >= 2
        assert page.locator("#linf-plot .scatterlayer .trace").count() >= 2
        first_prediction = _image_src(page, "adv-prediction")
        assert first_prediction
        assert "iterations" in page.inner_text("#metrics-table")
        page.screenshot(path=str(OUTPUT / "browser_run.png"), full_page=True)

        # a longer run, stopped while it runs: the prediction changes and the run says it stopped
        page.fill("#steps input[type=number]", "2000")
        page.press("#steps input[type=number]", "Enter")
        page.click("#run-button")
        page.wait_for_function("document.querySelector('#status').innerText.includes('running')",
                               timeout=60000)
        page.wait_for_function(
            f"(document.querySelector('#adv-prediction img')||{{}}).src !== {first_prediction!r}",
            timeout=60000)
        page.click("#stop-button")
        page.wait_for_function("document.querySelector('#status').innerText.includes('stopped after')",
                               timeout=60000)
        status = page.inner_text("#status")
        assert "2000 iterations" not in status
        page.screenshot(path=str(OUTPUT / "browser_stopped.png"), full_page=True)

