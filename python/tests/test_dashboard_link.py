"""`client.dashboard_link` and `performance_report`'s dashboard sections, against a real
`shoal local` (shoal only: distributed's dashboard is Bokeh's)."""

import time
import urllib.error
import urllib.parse
import urllib.request

import shoal
from conftest import local_cluster


def inc(x):
    return x + 1


def test_dashboard_link_opens_the_dashboard_and_the_report_uses_it(tmp_path):
    with local_cluster(tmp_path, "--workers", "2", "--nthreads", "1", "--memory-limit", "0",
                       "--host", "127.0.0.1") as sf:
        with shoal.Client(scheduler_file=sf) as c:
            c.wait_for_workers(2, timeout=30)
            link = c.dashboard_link
            assert link.startswith("http://127.0.0.1:") and "/status?token=" in link, link
            base = link.split("/status?")[0]
            try:
                urllib.request.urlopen(base + "/status", timeout=10)
                raise AssertionError("the dashboard opened without its token")
            except urllib.error.HTTPError as e:
                assert e.code == 401
            token = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0]
            assert c.submit(inc, 1).result(timeout=30) == 2
            req = urllib.request.Request(base + "/metrics", headers={"Authorization": f"Bearer {token}"})
            # The metrics come from the scheduler's snapshot (twice a second): the task shows
            # up within a few of them.
            deadline = time.monotonic() + 10
            while True:
                with urllib.request.urlopen(req, timeout=10) as r:
                    text = r.read()
                if b'shoal_tasks_finished_total{prefix="inc"} 1' in text or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert b'shoal_tasks_finished_total{prefix="inc"} 1' in text, text

            report = tmp_path / "report.html"
            with shoal.performance_report(filename=str(report)):
                assert sum(c.gather(c.map(inc, range(20), pure=False))) == sum(range(1, 21))
            text = report.read_text()
            assert "Progress by task prefix (during the block)" in text
            assert "<td>inc</td><td>20</td><td>0</td><td>0</td>" in text, text
            assert text.count('<tr><td>local-') >= 2 and "target / spill / pause / terminate" in text
