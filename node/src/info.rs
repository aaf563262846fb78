//! INFO, with the sections of docs/compatibility.md ("INFO sections and roles"): server, clients,
//! stats, keyspace, replication, data (plus cpu and memory, which tools expect).

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::server::Server;
use crate::storage::Kind;

/// Per-table key counts from the last keyspace scan (Pika: `INFO keyspace 1` starts one).
#[derive(Default, Clone)]
pub struct KeyspaceCounts {
    /// table -> [strings, hashes, lists, zsets, sets] as (keys, expires)
    pub tables: Vec<(u32, [(u64, u64); 5])>,
}

static LAST_SCAN: Mutex<Option<KeyspaceCounts>> = Mutex::new(None);

const KIND_ORDER: [(Kind, &str); 5] = [
    (Kind::String, "Strings"),
    (Kind::Hash, "Hashes"),
    (Kind::List, "Lists"),
    (Kind::ZSet, "Zsets"),
    (Kind::Set, "Sets"),
];

fn scan_keyspace(server: &Server) -> KeyspaceCounts {
    let topology = server.slots.snapshot();
    let mut out = KeyspaceCounts::default();
    for id in topology.tables.keys() {
        let mut counts = [(0u64, 0u64); 5];
        let _ = server.scan_table(*id, &[], usize::MAX, |_, _, meta| {
            let i = KIND_ORDER.iter().position(|(k, _)| *k == meta.kind).unwrap_or(0);
            counts[i].0 += 1;
            counts[i].1 += (meta.expire_at != 0) as u64;
        });
        out.tables.push((*id, counts));
    }
    out
}

pub fn render(server: &Arc<Server>, _current_table: u32, section: Option<&str>, rescan: bool) -> String {
    let all = matches!(section, None | Some("all") | Some("default") | Some("everything"));
    let want = |name: &str| all || section == Some(name);
    let mut out = String::new();
    if want("server") {
        server_section(server, &mut out);
    }
    if want("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nblocked_clients:{}\r\nmaxclients:{}\r\n\r\n",
            server.clients.count(),
            server.blocking.blocked_keys(),
            server.config.read().maxclients
        );
    }
    if want("stats") {
        let s = &server.stats;
        let _ = write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ninstantaneous_ops_per_sec:{}\r\ntotal_commands_processed:{}\r\n\
             total_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nrejected_connections:{}\r\nexpired_keys:{}\r\n\
             keyspace_hits:{}\r\nkeyspace_misses:{}\r\nsync_full:{}\r\nsync_partial_ok:{}\r\nis_scaning_keyspace:No\r\n\r\n",
            s.connections_received.load(Relaxed),
            s.ops_per_sec.load(Relaxed),
            s.commands_processed.load(Relaxed),
            s.net_input_bytes.load(Relaxed),
            s.net_output_bytes.load(Relaxed),
            s.rejected_connections.load(Relaxed),
            s.expired_keys.load(Relaxed),
            s.keyspace_hits.load(Relaxed),
            s.keyspace_misses.load(Relaxed),
            s.sync_full.load(Relaxed),
            s.sync_partial_ok.load(Relaxed),
        );
    }
    if want("cpu") {
        let (user, sys) = cpu_times();
        let _ = write!(out, "# CPU\r\nused_cpu_sys:{sys:.2}\r\nused_cpu_user:{user:.2}\r\n\r\n");
    }
    if want("memory") || want("data") {
        let (memtables, readers, cache) = server.store.memory_usage();
        let db_size = dir_size(&server.config.read().db_path);
        if want("data") {
            let (stalled, stopped) = server.store.stalls();
            let _ = write!(
                out,
                "# Data\r\ndb_size:{db_size}\r\ndb_size_human:{}M\r\nused_memory:{}\r\nused_memory_human:{}M\r\n\
                 db_memtable_usage:{memtables}\r\ndb_tablereader_usage:{readers}\r\ndb_block_cache_usage:{cache}\r\n\
                 db_write_stopped:{}\r\ndb_stalled_writes:{stalled}\r\n\r\n",
                db_size >> 20,
                memtables + readers,
                (memtables + readers) >> 20,
                u8::from(stopped),
            );
        }
        if want("memory") {
            let _ = write!(
                out,
                "# Memory\r\nused_memory:{}\r\nused_memory_rss:{}\r\n\r\n",
                memtables + readers + cache,
                rss_bytes()
            );
        }
    }
    if want("cache") {
        let cache = server.store.cache();
        let (hits, misses) = (cache.hits.load(Relaxed), cache.misses.load(Relaxed));
        let ratio = if hits + misses == 0 { 0.0 } else { hits as f64 * 100.0 / (hits + misses) as f64 };
        let _ = write!(
            out,
            "# Cache\r\ncache_maxmemory:{}\r\ncache_memory:{}\r\ncache_hits:{hits}\r\ncache_misses:{misses}\r\n\
             cache_hit_ratio:{ratio:.2}%\r\n\r\n",
            cache.limit(),
            cache.used(),
        );
    }
    if want("replication") {
        replication_section(server, &mut out);
    }
    if want("keyspace") {
        keyspace_section(server, rescan, &mut out);
    }
    out
}

fn server_section(server: &Server, out: &mut String) {
    let config = server.config.read();
    let uptime = server.started.elapsed().as_secs();
    let _ = write!(
        out,
        "# Server\r\npika_version:{}\r\nredis_version:6.2.0\r\nos:{} {}\r\narch_bits:64\r\nprocess_id:{}\r\n\
         tcp_port:{}\r\nthread_num:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nconfig_file:{}\r\n\
         server_id:1\r\ninstance_mode:{}\r\n\r\n",
        crate::VERSION,
        std::env::consts::OS,
        std::env::consts::ARCH,
        std::process::id(),
        config.port,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        uptime / 86400,
        config.source.as_ref().map_or(String::new(), |p| p.display().to_string()),
        config.instance_mode.name(),
    );
}

/// Sharding mode derives the node's role from its slots (docs/compatibility.md, "INFO sections and
/// roles"): "slave" when every owned slot follows one common master and is connected; "master"
/// when some replica is attached in BinlogSync to every owned slot (a "complete replica"); both at
/// once is `master&&slave`.
fn replication_section(server: &Server, out: &mut String) {
    let topology = server.slots.snapshot();
    let slots: Vec<_> = topology.tables.values().flat_map(|t| t.owned()).collect();
    let masters: std::collections::BTreeSet<Option<String>> = slots.iter().map(|s| s.master_addr()).collect();
    let connected = slots.iter().all(|s| s.link_state() == crate::replication::LinkState::Connected);
    let upstream = match masters.into_iter().collect::<Vec<_>>().as_slice() {
        [Some(master)] if connected && !slots.is_empty() => Some(master.clone()),
        _ => None,
    };
    let mut complete: Option<std::collections::BTreeSet<String>> = None;
    for slot in &slots {
        let synced: std::collections::BTreeSet<String> = slot
            .downstream
            .lock()
            .iter()
            .filter(|d| d.status == crate::replication::SyncStatus::BinlogSync)
            .map(|d| d.addr.clone())
            .collect();
        complete = Some(match complete {
            None => synced,
            Some(so_far) => so_far.intersection(&synced).cloned().collect(),
        });
    }
    let complete = complete.unwrap_or_default();
    let (header, role) = match (upstream.is_some(), !complete.is_empty()) {
        (true, true) => ("Master && SLAVE", "master&&slave"),
        (true, false) => ("SLAVE", "slave"),
        _ => ("MASTER", "master"),
    };
    let _ = write!(out, "# Replication({header})\r\nrole:{role}\r\n");
    if let Some(master) = upstream {
        let (host, port) = master.rsplit_once(':').unwrap_or((&master, "0"));
        let _ =
            write!(out, "master_host:{host}\r\nmaster_port:{port}\r\nmaster_link_status:up\r\nslave_priority:100\r\n");
    }
    let replica_slots = slots.iter().filter(|s| s.is_replica()).count();
    let _ = write!(out, "replica_slots:{replica_slots}\r\nconnected_slaves:{}\r\n", complete.len());
    for (i, addr) in complete.iter().enumerate() {
        let (ip, port) = addr.rsplit_once(':').unwrap_or((addr, "0"));
        let _ = write!(out, "slave{i}:ip={ip},port={port}\r\n");
    }
    out.push_str("\r\n");
}

fn keyspace_section(server: &Server, rescan: bool, out: &mut String) {
    if rescan {
        let counts = scan_keyspace(server);
        *LAST_SCAN.lock() = Some(counts);
    }
    let counts = LAST_SCAN.lock().clone().unwrap_or_default();
    out.push_str("# Keyspace\r\n");
    for (table, kinds) in &counts.tables {
        for ((_, name), (keys, expires)) in KIND_ORDER.iter().zip(kinds) {
            let _ = write!(out, "db{table} {name}_keys={keys}, expires={expires}, invalid_keys=0\r\n");
        }
    }
    out.push_str("\r\n");
}

/// Updates the gauges that are read on demand (scrapes) rather than on every command.
pub fn refresh_gauges(server: &Server) {
    let (memtables, _, cache) = server.store.memory_usage();
    server.metrics.memtable_bytes.set(memtables as i64);
    server.metrics.block_cache_bytes.set(cache as i64);
    server.metrics.resident_memory_bytes.set(rss_bytes() as i64);
    let meta_cache = server.store.cache();
    server.metrics.meta_cache_bytes.set(meta_cache.used() as i64);
    for (counter, total) in
        [(&server.metrics.meta_cache_hits, &meta_cache.hits), (&server.metrics.meta_cache_misses, &meta_cache.misses)]
    {
        counter.inc_by(total.load(Relaxed).saturating_sub(counter.get()));
    }
    server.metrics.live_sst_bytes.set(server.store.property("rocksdb.live-sst-files-size").unwrap_or(0) as i64);
    let topology = server.slots.snapshot();
    let (mut masters, mut replicas) = (0i64, 0i64);
    let mut links: std::collections::BTreeMap<&'static str, i64> = Default::default();
    let mut attached: std::collections::BTreeMap<&'static str, i64> = Default::default();
    let mut lag_max = 0u64;
    for slot in topology.tables.values().flat_map(|t| t.owned()) {
        if slot.is_replica() {
            replicas += 1;
            *links.entry(slot.link_state().name()).or_default() += 1;
        } else {
            masters += 1;
        }
        let head = slot.head.pos();
        for d in slot.downstream.lock().iter() {
            *attached.entry(d.status.name()).or_default() += 1;
            lag_max = lag_max.max(head.offset.saturating_sub(d.acked.offset));
        }
    }
    use crate::metrics::{RoleLabels, StateLabels};
    let m = &server.metrics;
    m.slots.get_or_create(&RoleLabels { role: "master".into() }).set(masters);
    m.slots.get_or_create(&RoleLabels { role: "replica".into() }).set(replicas);
    m.replication_lag_max.set(lag_max as i64);
    // Every state gets a value (0 included), so a state that emptied does not keep its old count.
    for state in ["kNoConnect", "kTryConnect", "kTryDBSync", "kWaitDBSync", "kWaitReply", "kConnected", "kError"] {
        m.replica_links.get_or_create(&StateLabels { state: state.into() }).set(links.get(state).copied().unwrap_or(0));
    }
    for status in ["SlaveNotSync", "SlaveDbSync", "SlaveBinlogSync"] {
        m.replicas.get_or_create(&StateLabels { state: status.into() }).set(attached.get(status).copied().unwrap_or(0));
    }
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Resident set size from /proc (0 where unavailable).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = status.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn cpu_times() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    (ticks(11), ticks(12))
}
