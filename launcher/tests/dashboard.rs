//! The scheduler's dashboard and `/metrics` over real HTTP, against real scheduler and
//! worker processes: the token is required (401 without), `?token=` sets an HTTP-only
//! cookie that opens the pages, `/metrics` takes the token or `--metrics-token` as a bearer
//! token and counts a graph's tasks exactly, and `--no-dashboard` runs none.

// Tests may unwrap: a failed unwrap is a failed test (see the workspace's lints).
#![allow(clippy::unwrap_used)]

mod common;

use common::Cluster;
use reqwest::blocking::{Client, Response};
use reqwest::header;
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

fn http() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The dashboard link `shoal status` reports, split into base URL and token.
fn link(cluster: &Cluster) -> (String, String) {
    let status = cluster.status();
    let link = status["dashboard"]
        .as_str()
        .unwrap_or_else(|| panic!("no dashboard link in {status}"))
        .to_string();
    let (base, token) = link
        .split_once("/status?token=")
        .expect("a link with a token");
    (base.to_string(), token.to_string())
}

fn get(client: &Client, url: &str, bearer: Option<&str>) -> Response {
    let mut request = client.get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request.send().unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Samples of a scrape, checked strictly against the OpenMetrics text rules this
/// endpoint uses: every sample belongs to a family declared by `# TYPE` before it, names
/// and labels are well formed, values are numbers, the text ends with `# EOF`.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "the scrape ends with # EOF");
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE NAME KIND");
            assert!(name_ok(name), "family name {name:?}");
            assert!(
                ["counter", "gauge", "info", "histogram", "unknown"].contains(&kind),
                "{line}"
            );
            assert!(
                families.insert(name.into(), kind.into()).is_none(),
                "family {name} declared twice"
            );
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("SERIES VALUE");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(name_ok(name), "sample name {name:?}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                    assert!(name_ok(k), "label {k:?} in {line}");
                    assert!(!v.trim_end_matches('"').contains('"'), "{line}");
                }
            }
        }
        let family = families
            .keys()
            .filter(|f| name == f.as_str() || name.strip_prefix(f.as_str()) == Some("_total"))
            .max_by_key(|f| f.len())
            .unwrap_or_else(|| panic!("sample {name} of no declared family"));
        if families[family] == "counter" {
            assert!(name.ends_with("_total"), "counter sample {name}");
        }
        samples.insert(series.to_string(), value);
    }
    samples
}

fn sum_of(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    samples
        .iter()
        .filter(|(s, _)| s.split('{').next() == Some(name))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn pages_need_the_token_which_sets_an_http_only_cookie() {
    let cluster = Cluster::start(2, 1, &[], &[]);
    let (base, token) = link(&cluster);
    let file: Value = serde_json::from_slice(&std::fs::read(&cluster.file).unwrap()).unwrap();
    let port = file["services"]["dashboard"]
        .as_u64()
        .expect("services.dashboard");
    assert!(base.ends_with(&format!(":{port}")), "{base} vs port {port}");
    assert!(
        base.starts_with("http://127.0.0.1:"),
        "bound to the scheduler's host: {base}"
    );
    let client = http();

    for path in [
        "/status",
        "/workers",
        "/metrics",
        "/api/snapshot",
        "/events",
        "/static/app.js",
    ] {
        let r = get(&client, &format!("{base}{path}"), None);
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{path} without a token"
        );
        assert!(
            r.text().unwrap().contains("token"),
            "the 401 says what is missing"
        );
    }
    // One character changed; the token is hex, so '0' or '1' is always a change.
    let changed = if token.starts_with('0') { '1' } else { '0' };
    let wrong = get(
        &client,
        &format!("{base}/status?token={changed}{}", &token[1..]),
        None,
    );
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    assert_eq!(
        get(&client, &format!("{base}/status"), Some("not-the-token")).status(),
        StatusCode::UNAUTHORIZED
    );

    // The link: a redirect without the token, and the cookie.
    let r = get(&client, &format!("{base}/workers?token={token}"), None);
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/workers");
    let set_cookie = r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    assert_eq!(cookie, format!("shoal_dashboard_token={token}"));

    let with_cookie = |path: &str| {
        client
            .get(format!("{base}{path}"))
            .header(header::COOKIE, &cookie)
            .send()
            .unwrap()
    };
    for (path, needle) in [
        ("/status", "Progress by task prefix"),
        ("/workers", "<table id=\"workers\""),
        ("/static/app.js", "EventSource"),
        ("/static/style.css", ".membar"),
    ] {
        let r = with_cookie(path);
        assert_eq!(r.status(), StatusCode::OK, "{path} with the cookie");
        assert!(
            r.text().unwrap().contains(needle),
            "{path} holds {needle:?}"
        );
    }
    assert_eq!(
        with_cookie("/static/nothing.js").status(),
        StatusCode::NOT_FOUND
    );
    let root = with_cookie("/");
    assert!(root.status().is_redirection());
    assert_eq!(root.headers()[header::LOCATION], "/status");

    // The snapshot names both workers (published every half second).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let snapshot: Value = get(&client, &format!("{base}/api/snapshot"), Some(&token))
            .json()
            .unwrap();
        let names: BTreeSet<&str> = snapshot["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|w| w["name"].as_str())
            .collect();
        if names == BTreeSet::from(["w0", "w1"]) {
            assert_eq!(
                snapshot["scheduler"]["address"],
                cluster.status()["address"]
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "workers never in the snapshot: {snapshot}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Server-sent events: the first is `init`, with the history.
    let mut events = client
        .get(format!("{base}/events"))
        .header(header::COOKIE, &cookie)
        .send()
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    assert!(events.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    while !first.windows(2).any(|w| w == b"\n\n") {
        let n = std::io::Read::read(&mut events, &mut buf).unwrap();
        assert!(n > 0, "the event stream ended");
        first.extend_from_slice(&buf[..n]);
    }
    let first = String::from_utf8_lossy(&first);
    assert!(first.starts_with("event: init\n"), "{first}");
    assert!(first.contains("\"history\""), "{first}");
}

#[test]
fn metrics_count_a_graph_exactly_and_take_a_metrics_token() {
    let cluster = Cluster::start(2, 2, &[], &["--metrics-token", "scrape-me"]);
    let (base, token) = link(&cluster);
    let client = http();
    // The metrics token opens /metrics only.
    assert_eq!(
        get(&client, &format!("{base}/status"), Some("scrape-me")).status(),
        StatusCode::UNAUTHORIZED
    );
    let (ok, out) = cluster.run_args(&["--generate", "merge:300"]);
    assert!(ok, "{out}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let samples = loop {
        let r = get(&client, &format!("{base}/metrics"), Some("scrape-me"));
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"));
        let samples = parse_metrics(&r.text().unwrap());
        if sum_of(&samples, "shoal_tasks_finished_total") >= 300.0 {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "the graph's tasks never all counted: {samples:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // `merge:300` is 300 leaves and the task merging them; each ran exactly once.
    assert_eq!(
        sum_of(&samples, "shoal_tasks_finished_total"),
        301.0,
        "{samples:?}"
    );
    assert_eq!(
        samples["shoal_tasks_finished_total{prefix=\"leaf\"}"],
        300.0
    );
    assert_eq!(samples["shoal_tasks_finished_total{prefix=\"merge\"}"], 1.0);
    assert_eq!(sum_of(&samples, "shoal_tasks_failed_total"), 0.0);
    assert_eq!(samples["shoal_workers"], 2.0);
    assert_eq!(samples["shoal_workers_joined_total"], 2.0);
    assert_eq!(samples["shoal_workers_lost_total"], 0.0);
    assert!(samples["shoal_scheduler_cpu_seconds_total"] > 0.0);
    assert!(samples["shoal_scheduler_memory_rss_bytes"] > 1e6);
    for worker in ["w0", "w1"] {
        assert_eq!(
            samples[&format!("shoal_worker_threads{{worker=\"{worker}\"}}")],
            2.0
        );
        let rss = format!("shoal_worker_memory_bytes{{worker=\"{worker}\",type=\"unmanaged\"}}");
        assert!(samples.contains_key(&rss), "{rss}");
    }
    // The dashboard's own token works too.
    assert_eq!(
        get(&client, &format!("{base}/metrics"), Some(&token)).status(),
        StatusCode::OK
    );
}

#[test]
fn no_dashboard_runs_none() {
    let cluster = Cluster::start(1, 1, &[], &["--no-dashboard"]);
    let status = cluster.status();
    assert_eq!(status["dashboard"], Value::Null, "{status}");
    let file: Value = serde_json::from_slice(&std::fs::read(&cluster.file).unwrap()).unwrap();
    assert_eq!(file["services"], serde_json::json!({}));
}
