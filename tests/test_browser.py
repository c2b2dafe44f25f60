"""What a reviewer sees, in a real browser: the MLflow UI over a tiny sweep, and the HTML report.

Headless /usr/bin/chromium driven by Playwright for Python (never `playwright install`: no browser
download). `kernelevolve ui` serves the store on 127.0.0.1 at a free port; the run ids come from
MLflow's REST API and the UI's React pages are opened by URL and waited on. Screenshots go to
$KERNELEVOLVE_SCREENSHOTS (or a temporary folder) for a person to look at.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from test_report import run_review_sweep
from kernelevolve.tuner.review import report

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` "
                "(scripts/test.sh does on CI when run as root)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is missing: pip install -e '.[test]'")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory):
    return run_review_sweep(tmp_path_factory)


@pytest.fixture(scope="module")
def ui(sweep_store):
    """`kernelevolve ui` on a free loopback port; stopped (its whole process group) afterwards."""
    port = _free_port()
    log = open(sweep_store.root / "ui.log", "w+")
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    proc = subprocess.Popen([sys.executable, "-m", "kernelevolve.tuner.cli", "ui", "--uri", sweep_store.uri,
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            start_new_session=True)  # its own group: mlflow starts worker processes
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    log.seek(0)
                    pytest.fail(f"`kernelevolve ui` did not come up at {base}:\n{log.read()[-3000:]}")
                time.sleep(0.5)
        log.seek(0)
        assert f"at {base}" in log.read()  # it prints the URL it serves
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = os.environ.get("KERNELEVOLVE_SCREENSHOTS") or str(tmp_path_factory.mktemp("screenshots"))
    os.makedirs(folder, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _ui_page(browser, experiment_id: str, parent_ids: list[str]):
    """A page whose MLflow UI opens in its model-training view, runs table expanded with the
    metrics a reviewer wants as columns, and the assistant side panel closed (it hides half
    the page). These are the UI's own saved preferences, set before the app loads."""
    table = {"orderByKey": "attributes.start_time", "orderByAsc": False, "startTime": "ALL",
             "lifecycleFilter": "Active", "datasetsFilter": [], "modelVersionFilter": "All Runs",
             "searchFilter": "", "runsExpanded": {pid: True for pid in parent_ids},
             "runsHiddenMode": "SHOW_ALL", "columnOrder": ["attributes.`Run Name`"],
             "columnWidths": {"attributes.`Run Name`": 360},  # study keys are long
             "selectedColumns": ["tags.`status`", "metrics.`latency_ms`", "metrics.`best_latency_ms`",
                                 "metrics.`candidates_ok`", "tags.`timing`"]}
    table_key = f'MLflowLocalStorage-1.1-ExperimentPage-["{experiment_id}"]-ReactComponentState'
    prefs = {"mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
             "mlflow.assistant.panelOpen_v1": "false",
             table_key: json.dumps(table)}
    ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
    ctx.add_init_script("".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});"
                                for k, v in prefs.items()))
    return ctx, ctx.new_page()


def _tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def _metrics(run: dict) -> dict:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def test_mlflow_ui_shows_the_studies_and_their_candidates(ui, sweep_store, browser, shots):
    exp = _get(f"{ui}/api/2.0/mlflow/experiments/get-by-name?experiment_name={sweep_store.name}")
    eid = exp["experiment"]["experiment_id"]
    runs = _get(f"{ui}/api/2.0/mlflow/runs/search", {"experiment_ids": [eid], "max_results": 1000})["runs"]
    parents = [r for r in runs if _tags(r).get("kernelevolve.role") == "study"]
    children = [r for r in runs if _tags(r).get("kernelevolve.role") == "candidate"]
    assert len(parents) == 2 and children
    ctx, page = _ui_page(browser, eid, [p["info"]["run_id"] for p in parents])
    try:
        # 1. The runs table: both studies, their candidates nested under them (tall enough to
        # show every row of this sweep in one screenshot: the table scrolls inside the page).
        page.set_viewport_size({"width": 1600, "height": 1900})
        page.goto(f"{ui}/#/experiments/{eid}/runs?workflowType=machine_learning")
        for p in parents:
            page.get_by_text(_tags(p)["kernelevolve.study"], exact=True).first.wait_for(timeout=60_000)
        for c in children:
            page.get_by_text(_tags(c)["mlflow.runName"], exact=True).first.wait_for(timeout=30_000)
        page.get_by_text("latency_ms", exact=True).first.wait_for()
        page.screenshot(path=os.path.join(shots, "01-runs-table.png"))
        page.set_viewport_size({"width": 1600, "height": 1000})

        # 2. A parent run: the study's best latency, counts and best config.
        parent = parents[0]
        pid, pm = parent["info"]["run_id"], _metrics(parent)
        page.goto(f"{ui}/#/experiments/{eid}/runs/{pid}?workflowType=machine_learning")
        page.get_by_text("best_latency_ms", exact=True).first.wait_for(timeout=60_000)
        # the best config's params: the dispatched one (the vendor candidate, torch's GEMM, has
        # only IMPL), and the fastest Triton kernel's beside it where the two differ
        params = {q["key"] for q in parent["data"].get("params", [])}
        config_key = "best.BLOCK_M" if "best.BLOCK_M" in params else "best_triton.BLOCK_M"
        assert config_key in params, sorted(params)
        for key in ("candidates", "candidates_ok", config_key):
            page.get_by_text(key, exact=True).first.wait_for()
        page.get_by_text(str(pm["best_latency_ms"])).first.wait_for()
        kids = [c for c in children if _tags(c)["mlflow.parentRunId"] == pid]
        page.get_by_text(_tags(kids[0])["mlflow.runName"]).first.wait_for(timeout=30_000)  # linked
        page.screenshot(path=os.path.join(shots, "02-parent-run.png"), full_page=True)

        # 3. The parent's plots, previewed by the UI from its artifacts. The first is opened by
        # URL; the others are picked in the file tree (the app does not reload the preview when
        # only the hash's artifact path changes).
        page.goto(f"{ui}/#/experiments/{eid}/runs/{pid}/artifacts/plots/convergence.png"
                  "?workflowType=machine_learning")
        shown = ""
        for name in ("convergence.png", "param_importance.png", "latency_by_status.png"):
            page.get_by_text(name, exact=True).first.click(timeout=60_000)
            page.get_by_text(f"plots/{name}", exact=True).first.wait_for(timeout=30_000)
            shown = page.wait_for_function(
                "prev => { const i = Array.from(document.images).find(i => i.src.startsWith('blob:') "
                "&& i.src !== prev && i.complete && i.naturalWidth > 0); return i ? i.src : null; }",
                arg=shown, timeout=60_000).json_value()
            page.screenshot(path=os.path.join(shots, f"03-parent-plot-{name}"))

        # 4. A child run: one candidate's latency and status.
        child = next(c for c in children if _tags(c)["status"] == "ok"
                     and _tags(c)["mlflow.parentRunId"] == pid)
        page.goto(f"{ui}/#/experiments/{eid}/runs/{child['info']['run_id']}?workflowType=machine_learning")
        page.get_by_text("latency_p80_ms", exact=True).first.wait_for(timeout=60_000)
        page.get_by_text(str(_metrics(child)["latency_ms"])).first.wait_for()
        page.get_by_text(_tags(parent)["kernelevolve.study"]).first.wait_for()  # its parent, linked
        page.screenshot(path=os.path.join(shots, "04-child-run.png"), full_page=True)
    finally:
        ctx.close()


def test_html_report_shows_its_plots_and_best_table(sweep_store, browser, shots, tmp_path):
    path = report.write(sweep_store.uri, sweep_store.name, str(tmp_path / "report.html"))
    ctx = browser.new_context(viewport={"width": 1500, "height": 1000})
    outside = []  # a self-contained file asks nothing of any server
    ctx.route("**/*", lambda route: (route.continue_() if route.request.url.startswith(("file:", "data:"))
                                     else (outside.append(route.request.url), route.abort())))
    page = ctx.new_page()
    try:
        page.goto(f"file://{path}")
        page.wait_for_load_state("load")
        sizes = page.evaluate("Array.from(document.images)"
                              ".map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
        assert len(sizes) == 3 * len(sweep_store.summaries)
        assert all(done and w > 0 and h > 0 for _, done, w, h in sizes), sizes
        rows = page.locator("table.best tbody tr")
        assert rows.count() == len(sweep_store.summaries)
        table = page.locator("table.best").inner_text()
        for s in sweep_store.summaries:
            assert s["study"] in table
            assert page.locator(f'section.study[id="{s["study"]}"] img').count() == 3
        assert "timing=interpreter" in page.inner_text("body") and not outside
        page.screenshot(path=os.path.join(shots, "05-report.png"), full_page=True)
    finally:
        ctx.close()
