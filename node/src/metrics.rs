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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

type HistogramFamily = Family<CommandLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 10 us .. ~5 s.
    Histogram::new(exponential_buckets(0.000_01, 2.0, 20))
}

pub struct Metrics {
    pub registry: Registry,
    pub commands: Family<CommandLabels, Counter>,
    pub command_errors: Family<CommandLabels, Counter>,
    /// Execution time by command (the dashboard's latency by command).
    pub latency: HistogramFamily,
    /// The process's resident memory (what the kernel counts against the pod's limit).
    pub resident_memory_bytes: Gauge,
    pub connections: Gauge,
    pub slots: Family<RoleLabels, Gauge>,
    pub memtable_bytes: Gauge,
    pub block_cache_bytes: Gauge,
    /// The meta-record cache in front of RocksDB (`storage::cache`).
    pub meta_cache_bytes: Gauge,
    pub meta_cache_hits: Counter,
    pub meta_cache_misses: Counter,
    pub live_sst_bytes: Gauge,
    /// Replicas attached to this node's slots, by sync status (one per replica and slot).
    pub replicas: Family<StateLabels, Gauge>,
    /// The largest lag in bytes over every attached replica of every slot.
    pub replication_lag_max: Gauge,
    /// This node's replica slots, by link state (kConnected, kWaitDBSync, kError, ...).
    pub replica_links: Family<StateLabels, Gauge>,
    pub full_syncs: Counter,
    pub partial_syncs: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pika_node");
        let commands = Family::<CommandLabels, Counter>::default();
        let command_errors = Family::<CommandLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let resident_memory_bytes = Gauge::default();
        let connections = Gauge::default();
        let slots = Family::<RoleLabels, Gauge>::default();
        let memtable_bytes = Gauge::default();
        let block_cache_bytes = Gauge::default();
        let meta_cache_bytes = Gauge::default();
        let meta_cache_hits = Counter::default();
        let meta_cache_misses = Counter::default();
        let live_sst_bytes = Gauge::default();
        let replicas = Family::<StateLabels, Gauge>::default();
        let replication_lag_max = Gauge::default();
        let replica_links = Family::<StateLabels, Gauge>::default();
        let full_syncs = Counter::default();
        let partial_syncs = Counter::default();
        registry.register("replicas", "Replicas attached to owned slots, by sync status", replicas.clone());
        registry.register(
            "replication_lag_max_bytes",
            "Largest unacknowledged log bytes of any attached replica",
            replication_lag_max.clone(),
        );
        registry.register("replica_slots", "Replica slots of this node, by link state", replica_links.clone());
        registry.register("full_syncs", "Full syncs served to replica slots", full_syncs.clone());
        registry.register("partial_syncs", "Replica slots that resumed from their position", partial_syncs.clone());
        registry.register("commands", "Commands processed, by name", commands.clone());
        registry.register("command_errors", "Commands answered with an error, by name", command_errors.clone());
        registry.register("command_duration_seconds", "Command execution time, by name", latency.clone());
        registry.register("resident_memory_bytes", "Resident memory of the process", resident_memory_bytes.clone());
        registry.register("connected_clients", "Open client connections", connections.clone());
        registry.register("slots", "Owned slots by role", slots.clone());
        registry.register("rocksdb_memtable_bytes", "Bytes in RocksDB memtables", memtable_bytes.clone());
        registry.register("rocksdb_block_cache_bytes", "Bytes in the RocksDB block cache", block_cache_bytes.clone());
        registry.register("meta_cache_bytes", "Bytes held by the meta-record cache", meta_cache_bytes.clone());
        registry.register("meta_cache_hits", "Meta-record reads served from memory", meta_cache_hits.clone());
        registry.register("meta_cache_misses", "Meta-record reads that went to RocksDB", meta_cache_misses.clone());
        registry.register("rocksdb_live_sst_bytes", "Bytes of live SST files", live_sst_bytes.clone());
        Metrics {
            registry,
            commands,
            command_errors,
            latency,
            resident_memory_bytes,
            connections,
            slots,
            memtable_bytes,
            block_cache_bytes,
            meta_cache_bytes,
            meta_cache_hits,
            meta_cache_misses,
            live_sst_bytes,
            replicas,
            replication_lag_max,
            replica_links,
            full_syncs,
            partial_syncs,
        }
    }
}

/// One command's counters and histogram (cloned handles to the registered ones).
type PerCommand = (Counter, Counter, Histogram);

impl Metrics {
    /// Counts one command. Counters are looked up by the command's static name; the label set
    /// is built only the first time a command is seen.
    pub fn record(&self, command: &'static str, elapsed: std::time::Duration, error: bool) {
        let labels = || CommandLabels { command: command.to_string() };
        thread_local! {
            static CACHE: std::cell::RefCell<std::collections::HashMap<&'static str, PerCommand>> = Default::default();
        }
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            let (ok, err, latency) = cache.entry(command).or_insert_with(|| {
                (
                    self.commands.get_or_create(&labels()).clone(),
                    self.command_errors.get_or_create(&labels()).clone(),
                    self.latency.get_or_create(&labels()).clone(),
                )
            });
            ok.inc();
            if error {
                err.inc();
            }
            latency.observe(elapsed.as_secs_f64());
        });
    }

    pub fn render(&self) -> String {
        common::http::encode_metrics(&self.registry)
    }
}
