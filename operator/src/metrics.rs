//! Prometheus metrics of the operator, served at `/metrics` of `--http-listen`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    /// By controller (`cluster`, `migration`).
    pub reconciles: Family<Labels, Counter>,
    /// By controller and kind of error (`kube`, `node`, `cutover`, `invalid`).
    pub errors: Family<Labels, Counter>,
    /// Finished migrations by namespace, cluster and result (`succeeded`, `failed`).
    pub migrations: Family<Labels, Counter>,
    /// Masters replaced by a replica, by namespace and cluster.
    pub failovers: Family<Labels, Counter>,
    /// How long writes were held per cutover batch, by namespace and cluster.
    pub cutover_pause: Family<Labels, Histogram, fn() -> Histogram>,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pika_operator");
        let m = Metrics {
            reconciles: Family::default(),
            errors: Family::default(),
            migrations: Family::default(),
            failovers: Family::default(),
            // 1 ms .. ~8 s.
            cutover_pause: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 14))),
            leader: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("reconciles", "Reconcile passes", m.reconciles.clone());
        registry.register("reconcile_errors", "Failed reconcile passes, by kind of error", m.errors.clone());
        registry.register("migrations", "Finished SlotMigrations, by result", m.migrations.clone());
        registry.register("failovers", "Masters replaced by a replica", m.failovers.clone());
        registry.register("cutover_pause_seconds", "Time writes were held per cutover batch", m.cutover_pause.clone());
        registry.register("leader", "1 while this instance holds the leader Lease", m.leader.clone());
        Metrics { registry, ..m }
    }
}

/// The labels that tie a metric to one cluster (what the dashboard filters on). Not `namespace`
/// and `cluster`: Prometheus sets those on every scraped series itself (the operator's own
/// namespace; the Kubernetes cluster in multi-cluster setups), and a clash renames ours.
pub fn cluster_labels(namespace: &str, cluster: &str, more: &[(&str, &str)]) -> Labels {
    let mut l = labels(&[("cluster_namespace", namespace), ("pika_cluster", cluster)]);
    l.extend(labels(more));
    l
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

impl Metrics {
    pub fn render(&self) -> String {
        common::http::encode_metrics(&self.registry)
    }
}
