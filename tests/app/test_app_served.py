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
    assert sorted(Path(f).suffix for f in final[9]) == [".csv", ".gif", ".json", ".npy", ".png"]
    # the run as a movie: one animation frame per recorded frame (all 40 are kept)
    from PIL import Image

    with Image.open([f for f in final[9] if f.endswith(".gif")][0]) as movie:
        assert movie.n_frames == 40 and movie.info.get("loop") == 0


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
        # the run as a movie, downloaded as a visitor would: one frame per recorded iteration
        from PIL import Image

        href = page.eval_on_selector("#downloads a[href*='.gif']", "a => a.href")
        movie = OUTPUT / "browser_run.gif"
        movie.write_bytes(page.request.get(href).body())
        with Image.open(movie) as gif:
            assert gif.n_frames == 20

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



def _metrics(page) -> dict:
    """The metrics table as shown on the page: {metric: value} (its text is the header, then
    each row's cells, one per line)."""
    lines = [line.strip() for line in page.inner_text("#metrics-table").splitlines() if line.strip()]
    cells = lines[lines.index("value") + 1:]
    table = dict(zip(cells[0::2], cells[1::2]))
    assert "iterations" in table, f"no metric rows in {lines[:20]!r}"
    return table


def test_browser_a_new_user_s_path(app_url, tmp_path):
    """What a new user hit (issue 16): a run file of another model on a fresh page repeats its
    run to identical metrics; a 1-iteration run finishes; the scene waits while a run streams;
    every label map has its class legend.  Also times the first visit and the first curve."""
    import json

    from gradio_client import Client

    OUTPUT.mkdir(exist_ok=True)
    client = Client(app_url, verbose=False)
    original = client.predict("objects-fpn-mobilenet", "objects-003", None, "dag", "background", None, 6, 0, 0.99,
                              api_name="/run")
    assert "finished after 6" in original[0]
    expected = dict(original[8]["data"])
    run_file = [f for f in original[9] if f.endswith(".json")][0]
    assert json.loads(Path(run_file).read_text())["model"] == "objects-fpn-mobilenet"

    timings = {}
    started = time.perf_counter()
    with app_page(app_url, height=1400) as page:  # a fresh page: the street model
        timings["first visit -> preview ready (s)"] = round(time.perf_counter() - started, 2)
        assert "street" in page.input_value("#model input")
        assert page.locator("#clean-legend .class-legend span").count() >= 3, "every colour is named"

        page.set_input_files("#run-file input[type=file]", run_file)
        page.wait_for_function("document.querySelector('#status').innerText.includes('Run file loaded')",
                               timeout=30000)
        page.wait_for_function("document.querySelector('#status').innerText.includes('objects-003')",
                               timeout=30000)
        assert page.locator(".error").count() == 0, "no Error badges"
        page.click("#run-button")
        page.wait_for_function("document.querySelector('#status').innerText.includes('finished after 6')",
                               timeout=120000)
        shown = _metrics(page)
        for key in ("APSR", "ℓ∞ × 255", "iterations"):
            assert shown.get(key) == expected[key], (key, shown, expected)

        # one iteration
        page.fill("#steps input[type=number]", "1")
        page.press("#steps input[type=number]", "Enter")
        page.click("#run-button")
        page.wait_for_function("document.querySelector('#status').innerText.includes('finished after 1 iter')",
                               timeout=120000)
        assert _metrics(page)["iterations"] == "1"

        # a long run (ALMA prox: DAG ends at its first success): the scene waits (disabled) until it
        # stops; time to first curve and image
        page.click("#attack input")
        page.click("ul[role=listbox] li:has-text('ALMA prox')")
        page.fill("#steps input[type=number]", "2000")
        page.press("#steps input[type=number]", "Enter")
        before = _image_src(page, "adv-prediction")
        clicked = time.perf_counter()
        page.click("#run-button")
        # the first streamed update carries the status line and the curves together
        page.wait_for_function("document.querySelector('#status').innerText.includes('running')", timeout=60000)
        timings["Run -> first curve (s)"] = round(time.perf_counter() - clicked, 2)
        page.wait_for_function(f"(document.querySelector('#adv-prediction img')||{{}}).src !== {before!r}",
                               timeout=60000)
        timings["Run -> first image (s)"] = round(time.perf_counter() - clicked, 2)
        assert page.is_disabled("#model input"), "the model cannot change under a running attack"
        page.click("#stop-button")
        page.wait_for_function("document.querySelector('#status').innerText.includes('stopped after')",
                               timeout=60000)
        page.wait_for_function("!document.querySelector('#model input').disabled", timeout=30000)
        assert page.locator("#adv-legend .class-legend span").count() >= 1
        page.screenshot(path=str(OUTPUT / "browser_new_user.png"), full_page=True)
    (OUTPUT / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print(timings)
