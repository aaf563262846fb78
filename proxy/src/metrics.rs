//! Prometheus metrics of the proxy, served on `http-listen` at `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub requests: Counter,
    pub latency: Histogram,
    pub connections: Gauge,
    pub held_slots: Gauge,
    pub held_requests: Gauge,
    pub backend_errors: Counter,
    pub retries: Counter,
    pub refreshes: Counter,
    pub route_epoch: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pika_proxy");
        let m = Metrics {
            requests: Counter::default(),
            latency: Histogram::new(exponential_buckets(0.000_02, 2.0, 20)),
            connections: Gauge::default(),
            held_slots: Gauge::default(),
            held_requests: Gauge::default(),
            backend_errors: Counter::default(),
            retries: Counter::default(),
            refreshes: Counter::default(),
            route_epoch: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "Client requests answered", m.requests.clone());
        registry.register("request_duration_seconds", "Time from a request's arrival to its answer", m.latency.clone());
        registry.register("connected_clients", "Open client connections", m.connections.clone());
        registry.register("held_slots", "Slots held for a cutover", m.held_slots.clone());
        registry.register("held_requests", "Requests waiting on held slots", m.held_requests.clone());
        registry.register("backend_errors", "Requests failed because a node was unreachable", m.backend_errors.clone());
        registry.register("retries", "Requests sent again after a node refused them", m.retries.clone());
        registry.register("route_refreshes", "Routing tables rebuilt from the nodes", m.refreshes.clone());
        registry.register("route_epoch", "Epoch of the routing table", m.route_epoch.clone());
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        common::http::encode_metrics(&self.registry)
    }
}
