//! The shipped Grafana dashboard plots series that exist: every metric its queries name is
//! exported by a real pika-node, a real pika-proxy (their `/metrics` over HTTP after some
//! traffic) or the operator, and every label it groups or filters by is one the components or
//! the PodMonitor's relabelling put on the series.

mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::kube::{free_port, http_get, repo, wait_for};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(port: u16) {
    wait_for(Duration::from_secs(20), &format!("a listener on {port}"), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

/// Metric names of an exposition: each sample's name, and each `# TYPE` base name (a family
/// without series yet still declares itself).
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            names.insert(rest.split(' ').next().unwrap().to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            names.insert(line.split(['{', ' ']).next().unwrap().to_string());
        }
    }
    names
}

/// `pika_*` metric names in a PromQL expression.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("pika_") {
        let name: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[i + name.len()..];
        // `pika_cluster` is a label, not a metric.
        if name != "pika_cluster" {
            out.push(name);
        }
    }
    out
}

/// Label names in a PromQL expression: `by (...)` lists and `{label="..."}` matchers.
fn labels_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in expr.match_indices("by (") {
        let list = &expr[i + 4..];
        out.extend(list[..list.find(')').unwrap()].split(',').map(|l| l.trim().to_string()));
    }
    for (i, _) in expr.match_indices('{') {
        let body = &expr[i + 1..];
        for matcher in body[..body.find('}').unwrap()].split(',') {
            if let Some((label, _)) = matcher.split_once('=') {
                out.push(label.trim().trim_end_matches('!').to_string());
            }
        }
    }
    out
}

#[test]
fn every_dashboard_series_exists() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("charts/pika-operator/dashboards/pika-clusters.json")).unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() >= 20, "the dashboard has its queries: {}", exprs.len());

    // A node owning every slot, a proxy in front of it, some traffic through the proxy.
    let dir = tempfile::tempdir().unwrap();
    let (node_port, node_http, proxy_port, proxy_http) = (free_port(), free_port(), free_port(), free_port());
    let _node = Killed(
        Command::new(pika_e2e::workspace_bin("pika-node"))
            .args(["--port", &node_port.to_string(), "--bind", "127.0.0.1", "--http-port", &node_http.to_string()])
            .args(["--instance-mode", "sharding", "--db-path"])
            .arg(dir.path().join("db"))
            .arg("--set")
            .arg(format!("log-path={}", dir.path().join("log").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(node_port);
    let mut node = redis::Client::open(format!("redis://127.0.0.1:{node_port}/")).unwrap().get_connection().unwrap();
    let _: () = redis::cmd("pkcluster").arg("addslots").arg("0-1023").query(&mut node).unwrap();
    let _proxy = Killed(
        Command::new(pika_e2e::workspace_bin("pika-proxy"))
            .args(["--listen", &format!("127.0.0.1:{proxy_port}"), "--http-listen", &format!("127.0.0.1:{proxy_http}")])
            .args(["--seed-nodes", &format!("127.0.0.1:{node_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(proxy_port);
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{proxy_port}/")).unwrap().get_connection().unwrap();
    wait_for(Duration::from_secs(20), "the proxy to route", || {
        redis::cmd("SET").arg("k").arg("v").query::<()>(&mut c).ok()
    });
    let _: Option<String> = redis::cmd("GET").arg("k").query(&mut c).unwrap();

    let node_metrics = http_get(node_http, "/metrics");
    let proxy_metrics = http_get(proxy_http, "/metrics");
    // The operator's families render only once they have a series: record one of each, with the
    // labels the controllers use.
    let operator = pika_operator::metrics::Metrics::default();
    let labels = pika_operator::metrics::cluster_labels("apps", "demo", &[]);
    operator.failovers.get_or_create(&labels).inc();
    operator.cutover_pause.get_or_create(&labels).observe(0.05);
    operator
        .migrations
        .get_or_create(&pika_operator::metrics::cluster_labels("apps", "demo", &[("result", "succeeded")]))
        .inc();
    let operator_metrics = operator.render();
    let mut names = exported(&node_metrics);
    names.extend(exported(&proxy_metrics));
    names.extend(exported(&operator_metrics));
    for expr in &exprs {
        for metric in metrics_in(expr) {
            let base = ["_total", "_bucket"].iter().find_map(|s| metric.strip_suffix(s)).unwrap_or(&metric);
            assert!(
                names.contains(&metric) || names.contains(base),
                "the dashboard queries {metric}, which nothing exports ({expr})"
            );
        }
    }
    // Per-command series carry the command; memory and disk gauges are filled on scrape.
    assert!(node_metrics.contains("pika_node_command_duration_seconds_count{command=\"set\"} 1"), "{node_metrics}");
    assert!(node_metrics.lines().any(|l| l.starts_with("pika_node_resident_memory_bytes ") && !l.ends_with(" 0")));

    // Labels: Prometheus's own, the PodMonitor's relabelling, or the components'.
    let relabelled: Vec<&str> = pika_operator::resources::SCRAPE_LABELS.iter().map(|(_, to)| *to).collect();
    let components = ["command", "role", "state", "result", "cluster_namespace", "le"];
    for expr in &exprs {
        for label in labels_in(expr) {
            assert!(
                ["namespace", "pod"].contains(&label.as_str())
                    || relabelled.contains(&label.as_str())
                    || components.contains(&label.as_str()),
                "the dashboard uses label {label:?} that no series has ({expr})"
            );
        }
    }
    for label in ["pika_cluster", "group", "component"] {
        assert!(relabelled.contains(&label), "the PodMonitor sets {label}");
    }
    assert!(
        operator_metrics.contains("pika_operator_failovers_total{cluster_namespace=\"apps\",pika_cluster=\"demo\"} 1"),
        "{operator_metrics}"
    );
}
