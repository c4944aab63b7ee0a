"""The dashboard seen by real clients: headless Chromium (driven through chromedriver by
Selenium) opens /status and /workers of a running `shoal local` while a graph runs and
sees the live numbers move; a real Prometheus scrapes /metrics with the token from a
generated configuration, and its query API returns the graph's finished-task count.

Run by `scripts/test` (stage `dashboard`). Every process started here has a timeout and
is stopped by its pid. Screenshots go to $SHOAL_TEST_ARTIFACTS (default: the test's
temporary directory).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def shoal_binary():
    explicit = os.environ.get("SHOAL_BIN")
    if explicit:
        return explicit
    binary = ROOT / "target" / "debug" / "shoal"
    if not binary.exists():
        subprocess.run(["cargo", "build", "-p", "shoal-launcher"], cwd=ROOT, check=True, timeout=1800)
    return str(binary)


def stop(proc, grace=5.0):
    """Stop a process we started, by its pid: TERM, then KILL."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, predicate, timeout=30.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def cluster(tmp_path):
    """`shoal local` with 3 workers of 1 thread on 127.0.0.1; yields (binary, file, link)."""
    shoal = shoal_binary()
    sched_file = tmp_path / "scheduler.json"
    log = open(tmp_path / "local.log", "w")
    proc = subprocess.Popen(
        [shoal, "local", "--workers", "3", "--nthreads", "1", "--memory-limit", "0",
         "--host", "127.0.0.1", "--scheduler-file", str(sched_file),
         "--dashboard-address", f"127.0.0.1:{free_port()}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    try:
        def ready():
            if proc.poll() is not None:
                raise AssertionError("shoal local exited: " + (tmp_path / "local.log").read_text())
            if not sched_file.exists():
                return None
            out = subprocess.run([shoal, "status", "--json", "--scheduler-file", str(sched_file)],
                                 capture_output=True, text=True, timeout=20)
            if out.returncode != 0:
                return None
            status = json.loads(out.stdout[out.stdout.index("{"):])
            return status if len(status["workers"]) == 3 else None

        status = wait_until("3 workers", ready, timeout=60)
        assert status["dashboard"], status
        yield shoal, sched_file, status["dashboard"]
    finally:
        stop(proc, grace=10)
        log.close()


def graph(n_tasks, sleep_ms):
    """Independent sleeping `sum` tasks (kind, args as the graph file takes them)."""
    tasks = [{"key": f"slow-{i}", "kind": "sum", "args": {"add": i, "sleep_ms": sleep_ms}}
             for i in range(n_tasks)]
    return {"tasks": tasks, "outputs": [t["key"] for t in tasks]}


def start_run(shoal, sched_file, tmp_path, n_tasks, sleep_ms):
    path = tmp_path / f"graph-{n_tasks}.json"
    path.write_text(json.dumps(graph(n_tasks, sleep_ms)))
    return subprocess.Popen([shoal, "run", "--json", "--scheduler-file", str(sched_file), str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_run(run, timeout=120):
    try:
        out, err = run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(run)
        raise
    assert run.returncode == 0, err
    return json.loads(out[out.index("{"):])


def http_status(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver, service


def artifacts(tmp_path):
    target = Path(os.environ.get("SHOAL_TEST_ARTIFACTS", tmp_path))
    target.mkdir(parents=True, exist_ok=True)
    return target


def text_of(driver, element_id):
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent")


def number(text):
    return int(re.sub(r"[^0-9]", "", text) or -1)


def test_browser_sees_the_cluster_work(cluster, tmp_path):
    shoal, sched_file, link = cluster
    base = link.split("/status?")[0]
    # Without the token: 401, as for a browser that has no cookie.
    assert http_status(base + "/status") == 401
    driver, service = browser(tmp_path)
    try:
        driver.get(link)
        assert driver.current_url == base + "/status", "the token leaves the address bar"
        wait_until("the page to connect", lambda: text_of(driver, "conn").startswith("live"))
        before = number(text_of(driver, "finished-total"))
        run = start_run(shoal, sched_file, tmp_path, n_tasks=150, sleep_ms=40)
        seen = set()
        try:
            def moving():
                seen.add(number(text_of(driver, "finished-total")))
                return len([n for n in seen if 0 < n - before < 150]) >= 2
            wait_until("the finished count to move while the graph runs", moving, timeout=60, interval=0.1)
            # The progress bar of the graph's prefix counts too.
            bar = wait_until("the `slow` progress bar", lambda: driver.execute_script(
                "const r = document.querySelector('[data-prefix=\"slow\"] .count');"
                "return r && r.textContent"))
            assert bar.endswith("/ 150"), bar
            driver.save_screenshot(str(artifacts(tmp_path) / "dashboard-status.png"))
        finally:
            result = finish_run(run)
        assert result["ok"] and result["tasks"] == 150
        wait_until("all 150 counted", lambda: number(text_of(driver, "finished-total")) - before == 150, timeout=20)
        states = driver.execute_script(
            "return [...document.querySelectorAll('#states th')].map(e => e.textContent)")
        assert states == ["waiting", "ready", "queued", "running", "memory", "erred", "released"]

        # The workers page: a row per worker, each with its finished count; sortable.
        driver.get(base + "/workers")
        rows = wait_until("3 worker rows", lambda: (lambda r: r if len(r) == 3 else None)(driver.execute_script(
            "return [...document.querySelectorAll('#workers tbody tr')].map(r => r.dataset.worker)")))
        assert sorted(rows) == ["local-0", "local-1", "local-2"], rows
        finished = driver.execute_script(
            "return [...document.querySelectorAll('#workers tbody td.finished')].map(e => e.textContent)")
        assert sum(number(f) for f in finished) >= 150, finished
        driver.execute_script("document.querySelector('#workers th[data-key=name]').click()")
        first_desc = wait_until("sorted descending", lambda: (lambda r: r if r == "local-2" else None)(
            driver.execute_script("return document.querySelector('#workers tbody tr').dataset.worker")))
        assert first_desc == "local-2"
        # While a second graph runs, the running column shows work.
        run = start_run(shoal, sched_file, tmp_path, n_tasks=60, sleep_ms=100)
        try:
            wait_until("running tasks on the workers page", lambda: sum(number(e) for e in driver.execute_script(
                "return [...document.querySelectorAll('#workers tbody td.executing')].map(e => e.textContent)")) > 0,
                timeout=30, interval=0.1)
            driver.save_screenshot(str(artifacts(tmp_path) / "dashboard-workers.png"))
        finally:
            finish_run(run)
    finally:
        driver.quit()
        if service.process is not None and service.process.poll() is None:
            stop(service.process)


def test_prometheus_scrapes_the_finished_count(cluster, tmp_path):
    shoal, sched_file, link = cluster
    parsed = urllib.parse.urlsplit(link)
    token = urllib.parse.parse_qs(parsed.query)["token"][0]
    target = parsed.netloc
    assert http_status(f"http://{target}/metrics") == 401
    assert http_status(f"http://{target}/metrics", {"Authorization": f"Bearer {token}"}) == 200
    # promtool, Prometheus's own checker, accepts the exposition.
    promtool = shutil.which("promtool")
    if promtool:
        req = urllib.request.Request(f"http://{target}/metrics", headers={"Authorization": f"Bearer {token}"})
        text = urllib.request.urlopen(req, timeout=10).read()
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)
        # 0: clean, 1: it could not parse, 3: lint remarks. promtool reads the classic text
        # format, where HELP names the sample; OpenMetrics names the counter's family
        # (`# HELP x`, sample `x_total`), so unlabelled counters draw "no help text". Any
        # other remark fails.
        assert check.returncode in (0, 3), check.stdout + check.stderr
        helped = set(re.findall(rb"^# HELP (\S+) ", text, re.M))
        for remark in (check.stdout + check.stderr).decode().splitlines():
            name, _, problem = remark.partition(" ")
            assert problem == "no help text" and name.endswith("_total"), remark
            assert name[: -len("_total")].encode() in helped, remark

    result = finish_run(start_run(shoal, sched_file, tmp_path, n_tasks=400, sleep_ms=0))
    assert result["ok"] and result["tasks"] == 400

    (tmp_path / "token").write_text(token)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: shoal
    authorization:
      type: Bearer
      credentials_file: {tmp_path / 'token'}
    static_configs:
      - targets: ["{target}"]
""")
    log = open(tmp_path / "prometheus.log", "w")
    prom = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        def query():
            if prom.poll() is not None:
                raise AssertionError("prometheus exited: " + (tmp_path / "prometheus.log").read_text())
            q = urllib.parse.quote('sum(shoal_tasks_finished_total{job="shoal"})')
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?query={q}", timeout=5) as r:
                    body = json.load(r)
            except (urllib.error.URLError, ConnectionError):
                return None
            results = body["data"]["result"]
            return results and float(results[0]["value"][1]) >= 400 and results

        results = wait_until("Prometheus to scrape the finished count", query, timeout=60, interval=0.5)
        assert float(results[0]["value"][1]) == 400, results
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5) as r:
            targets = json.load(r)["data"]["activeTargets"]
        assert [t["health"] for t in targets] == ["up"], targets
    finally:
        stop(prom, grace=10)
        log.close()


def test_performance_report_sections_from_real_snapshots(cluster, tmp_path):
    """python/shoal/diagnostics.py's dashboard sections from the snapshots of a real
    scheduler (the module loads without the native extension)."""
    import importlib.util

    shoal, sched_file, link = cluster
    spec = importlib.util.spec_from_file_location("diagnostics", ROOT / "python" / "shoal" / "diagnostics.py")
    diagnostics = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diagnostics)

    class LinkOnly:
        dashboard_link = link

    # Snapshots are up to half a second old: wait for one with the workers.
    begin = wait_until("a snapshot with the 3 workers", lambda: (lambda s: s if s and len(s["workers"]) == 3 else None)(
        diagnostics.dashboard_snapshot(LinkOnly())), timeout=10)
    finish_run(start_run(shoal, sched_file, tmp_path, n_tasks=40, sleep_ms=0))
    time.sleep(diagnostics.SNAPSHOT_INTERVAL + 0.2)
    end = diagnostics.dashboard_snapshot(LinkOnly())
    assert end["sequence"] > begin["sequence"]
    sections = diagnostics.render_dashboard_sections(begin, end)
    assert "<td>slow</td><td>40</td><td>0</td><td>0</td>" in sections, sections
    assert sections.count("<tr><td>local-") == 3, sections
    # --memory-limit 0: the thresholds apply to nothing.
    assert sections.count("<td>no limit</td>") == 3, sections
    assert "CPU " in sections and "event-loop lag" in sections

    class NoDashboard:
        dashboard_link = None

    assert diagnostics.dashboard_snapshot(NoDashboard()) is None


def many_workers_binary(shoal):
    """examples/many_workers.rs of the same build as `shoal` (built if missing)."""
    binary = Path(shoal).parent / "examples" / "many_workers"
    if not binary.exists():
        release = ["--release"] if Path(shoal).parent.name == "release" else []
        subprocess.run(["cargo", "build", *release, "-p", "shoal-runtime", "--example", "many_workers"],
                       cwd=ROOT, check=True, timeout=1800)
    return str(binary)


N_MANY = 1000


@pytest.fixture
def thousand_workers(tmp_path):
    """A scheduler with 1,000 real zero-mode worker connections (one process of 1,000
    worker sessions, as `scripts/bench`'s many-connection run); yields (shoal, file, link)."""
    shoal = shoal_binary()
    sched_file = tmp_path / "scheduler.json"
    log = open(tmp_path / "many.log", "w")
    procs = [subprocess.Popen(
        [shoal, "scheduler", "--host", "127.0.0.1", "--scheduler-file", str(sched_file),
         "--dashboard-address", f"127.0.0.1:{free_port()}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)]
    try:
        wait_until("the scheduler file", sched_file.exists, timeout=30)
        procs.append(subprocess.Popen([many_workers_binary(shoal), str(sched_file), str(N_MANY)],
                                      stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path))

        def joined():
            for p in procs:
                if p.poll() is not None:
                    raise AssertionError("exited early: " + (tmp_path / "many.log").read_text()[-3000:])
            out = subprocess.run([shoal, "status", "--json", "--scheduler-file", str(sched_file)],
                                 capture_output=True, text=True, timeout=60)
            if out.returncode != 0:
                return None
            status = json.loads(out.stdout[out.stdout.index("{"):])
            return status if len(status["workers"]) == N_MANY else None

        status = wait_until(f"{N_MANY} workers", joined, timeout=120, interval=1.0)
        yield shoal, sched_file, status["dashboard"]
    finally:
        for p in reversed(procs):
            stop(p, grace=10)
        log.close()


def test_workers_page_with_a_thousand_workers(thousand_workers, tmp_path):
    shoal, sched_file, link = thousand_workers
    # Zero-mode workers finish at once: the tasks spread unevenly, so the finished column
    # has different numbers to sort by.
    n_tasks = 20_000
    run = subprocess.run([shoal, "run", "--json", "--scheduler-file", str(sched_file), "--generate",
                          f"independent:{n_tasks}"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    base = link.split("/status?")[0]
    driver, service = browser(tmp_path)
    try:
        driver.get(link)
        started = time.monotonic()
        driver.get(base + "/workers")
        rows_js = "return [...document.querySelectorAll('#workers tbody tr')].map(r => r.dataset.worker)"
        names = wait_until(f"{N_MANY} worker rows", lambda: (lambda r: r if len(r) == N_MANY else None)(
            driver.execute_script(rows_js)), timeout=30, interval=0.05)
        first_rows_s = time.monotonic() - started
        expected = sorted(f"many-{i}" for i in range(N_MANY))
        # By name, ascending, as the page opens (names compare as text).
        assert names == expected, names[:5]

        def finished_column():
            return [number(t) for t in driver.execute_script(
                "return [...document.querySelectorAll('#workers tbody td.finished')].map(e => e.textContent)")]

        # Every task counted once, on the page (the snapshot may trail the run by one tick).
        wait_until("every finished task on the page", lambda: sum(finished_column()) == n_tasks, timeout=10)

        # One click: sort and redraw 1,000 rows, timed in the page up to the layout.
        click_js = ("const t0 = performance.now();"
                    "document.querySelector(`#workers th[data-key=${arguments[0]}]`).click();"
                    "document.body.offsetHeight;"
                    "return performance.now() - t0")
        sort_ms = [driver.execute_script(click_js, "name")]
        assert driver.execute_script(rows_js) == expected[::-1], "name, descending"
        sort_ms.append(driver.execute_script(click_js, "finished"))
        up = finished_column()
        assert len(up) == N_MANY and up == sorted(up) and up[0] < up[-1], up[:5] + up[-5:]
        sort_ms.append(driver.execute_script(click_js, "finished"))
        down = finished_column()
        assert down == sorted(up, reverse=True), down[:5]
        # Filtering narrows the 1,000 rows; the heading keeps counting all workers.
        driver.execute_script("const f = document.getElementById('filter'); f.value = 'many-99';"
                              "f.dispatchEvent(new Event('input'))")
        filtered = driver.execute_script(rows_js)
        assert sorted(filtered) == sorted(["many-99"] + [f"many-99{i}" for i in range(10)]), filtered
        assert number(text_of(driver, "workers-count")) == N_MANY
        driver.execute_script("const f = document.getElementById('filter'); f.value = '';"
                              "f.dispatchEvent(new Event('input'))")
        # A live update re-renders the whole table: how long that takes in the page.
        update_ms = driver.execute_script(
            "const t0 = performance.now(); renderWorkers(state.snapshot); document.body.offsetHeight;"
            "return performance.now() - t0")
        driver.save_screenshot(str(artifacts(tmp_path) / "dashboard-workers-1000.png"))
        timings = {"workers": N_MANY, "rows_after_open_s": round(first_rows_s, 3),
                   "sort_click_ms": [round(t, 1) for t in sort_ms], "update_render_ms": round(update_ms, 1)}
        (artifacts(tmp_path) / "workers-1000.json").write_text(json.dumps(timings) + "\n")
        print("workers page with 1,000 workers:", json.dumps(timings))
    finally:
        driver.quit()
        if service.process is not None and service.process.poll() is None:
            stop(service.process)
