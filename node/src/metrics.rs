//! Prometheus metrics, served on the HTTP port at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub role: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub commands: Family<CommandLabels, Counter>,
    pub command_errors: Family<CommandLabels, Counter>,
    pub latency: Histogram,
    pub connections: Gauge,
    pub slots: Family<RoleLabels, Gauge>,
    pub memtable_bytes: Gauge,
    pub block_cache_bytes: Gauge,
    pub live_sst_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pika_node");
        let commands = Family::<CommandLabels, Counter>::default();
        let command_errors = Family::<CommandLabels, Counter>::default();
        let latency = Histogram::new(exponential_buckets(0.000_01, 2.0, 20));
        let connections = Gauge::default();
        let slots = Family::<RoleLabels, Gauge>::default();
        let memtable_bytes = Gauge::default();
        let block_cache_bytes = Gauge::default();
        let live_sst_bytes = Gauge::default();
        registry.register("commands", "Commands processed, by name", commands.clone());
        registry.register("command_errors", "Commands answered with an error, by name", command_errors.clone());
        registry.register("command_duration_seconds", "Command execution time", latency.clone());
        registry.register("connected_clients", "Open client connections", connections.clone());
        registry.register("slots", "Owned slots by role", slots.clone());
        registry.register("rocksdb_memtable_bytes", "Bytes in RocksDB memtables", memtable_bytes.clone());
        registry.register("rocksdb_block_cache_bytes", "Bytes in the RocksDB block cache", block_cache_bytes.clone());
        registry.register("rocksdb_live_sst_bytes", "Bytes of live SST files", live_sst_bytes.clone());
        Metrics {
            registry,
            commands,
            command_errors,
            latency,
            connections,
            slots,
            memtable_bytes,
            block_cache_bytes,
            live_sst_bytes,
        }
    }
}

impl Metrics {
    /// Counts one command. Counters are looked up by the command's static name; the label set
    /// is built only the first time a command is seen.
    pub fn record(&self, command: &'static str, elapsed: std::time::Duration, error: bool) {
        let labels = || CommandLabels { command: command.to_string() };
        thread_local! {
            static CACHE: std::cell::RefCell<std::collections::HashMap<&'static str, (Counter, Counter)>> = Default::default();
        }
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            let (ok, err) = cache.entry(command).or_insert_with(|| {
                (self.commands.get_or_create(&labels()).clone(), self.command_errors.get_or_create(&labels()).clone())
            });
            ok.inc();
            if error {
                err.inc();
            }
        });
        self.latency.observe(elapsed.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
