//! The node's shared state: config, storage, slots, clients, statistics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use crate::blocking::Blocking;
use crate::config::Config;
use crate::error::{CmdError, CmdResult};
use crate::metrics::Metrics;
use crate::slots::Slots;
use crate::storage::encoding::{decode_meta_key, TAG_META};
use crate::storage::{Meta, Store, StoreOptions};

pub struct Server {
    pub config: RwLock<Config>,
    pub store: Arc<Store>,
    pub slots: Slots,
    pub blocking: Blocking,
    pub clients: Clients,
    pub cursors: Cursors,
    pub stats: Stats,
    pub metrics: Metrics,
    pub started: Instant,
    /// Set once shutdown begins; `shutdown_notify` wakes everything that waits on it.
    pub shutting_down: AtomicBool,
    pub shutdown_notify: Notify,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create {path}: {source}")]
    Dir { path: String, source: std::io::Error },
    #[error("cannot open RocksDB at {path}: {source}")]
    Store { path: String, source: rocksdb::Error },
    #[error("cannot load slots: {0}")]
    Slots(CmdError),
}

impl Server {
    pub fn open(config: Config) -> Result<Arc<Server>, StartError> {
        let path = config.db_path.clone();
        std::fs::create_dir_all(&path)
            .map_err(|source| StartError::Dir { path: path.display().to_string(), source })?;
        let opts = StoreOptions {
            block_cache_bytes: config.block_cache,
            write_buffer_bytes: config.write_buffer_size,
            max_write_buffers: config.max_write_buffer_num,
            sync_writes: config.sync_writes,
            background_jobs: config.max_background_jobs,
            meta_cache_bytes: config.cache_maxmemory,
            background_write_rate: config.rate_limiter_bandwidth,
        };
        let store = Arc::new(
            Store::open(&path, &opts)
                .map_err(|source| StartError::Store { path: path.display().to_string(), source })?,
        );
        let slots = Slots::open(
            store.clone(),
            config.instance_mode,
            config.default_slot_num,
            config.databases,
            config.start_fenced,
        )
        .map_err(StartError::Slots)?;
        crate::durability::configure(&config);
        if config.start_fenced {
            // Run by the operator: a restarted node takes no write as a master before the
            // operator grants it a lease again (the lease it had died with the process).
            crate::lease::require();
        }
        Ok(Arc::new(Server {
            config: RwLock::new(config),
            store,
            slots,
            blocking: Blocking::default(),
            clients: Clients::default(),
            cursors: Cursors::default(),
            stats: Stats::default(),
            metrics: Metrics::default(),
            started: Instant::now(),
            shutting_down: AtomicBool::new(false),
            shutdown_notify: Notify::new(),
        }))
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.shutdown_notify.notify_waiters();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Walks the live keys of every owned slot of `table` in storage order, starting at the raw
    /// meta key `from` (empty = the beginning), calling `f(raw_key, user_key, meta)` for at most
    /// `limit` keys. Expired keys are skipped.
    pub fn scan_table(
        &self,
        table: u32,
        from: &[u8],
        limit: usize,
        mut f: impl FnMut(&[u8], &[u8], &Meta),
    ) -> CmdResult<()> {
        let topology = self.slots.snapshot();
        let table = topology.table(table).ok_or_else(|| CmdError::err("Table not found"))?;
        let now = crate::storage::now_ms();
        let mut seen = 0usize;
        for slot in table.owned() {
            let (start, end) = slot.prefix.tag_range(TAG_META);
            if !from.is_empty() && end.as_slice() <= from {
                continue;
            }
            let begin = if from > start.as_slice() { from.to_vec() } else { start };
            let mut iter = self.store.raw_iter(&begin, &end);
            iter.seek_to_first();
            while iter.valid() {
                let (Some(raw), Some(value)) = (iter.key(), iter.value()) else { break };
                if let (Some(user_key), Some(meta)) = (decode_meta_key(raw), Meta::decode(value)) {
                    if !meta.is_expired(now) {
                        f(raw, user_key, &meta);
                        seen += 1;
                        if seen >= limit {
                            return Ok(());
                        }
                    }
                }
                iter.next();
            }
            iter.status()?;
        }
        Ok(())
    }
}

/// What a connection knows about itself.
pub struct Session {
    pub id: u64,
    pub table: u32,
    /// What the connection may run (common/src/auth.rs).
    pub role: common::auth::Role,
    pub info: Arc<ClientInfo>,
    /// Set by QUIT: close after the reply is written.
    pub quit: bool,
    pub resp3: bool,
    /// The connection's socket (the lease asks the kernel when its request arrived).
    pub socket: Option<std::os::fd::RawFd>,
    /// The writes this connection made (WAIT; replicated acknowledgement).
    pub writes: crate::durability::Writes,
}

/// A client as CLIENT LIST shows it; shared with the registry.
pub struct ClientInfo {
    pub id: u64,
    pub addr: SocketAddr,
    pub local: SocketAddr,
    pub created: Instant,
    pub name: Mutex<String>,
    pub table: AtomicU32,
    pub last_cmd: Mutex<&'static str>,
    pub last_active_ms: AtomicU64,
    pub killed: AtomicBool,
    pub kill_notify: Notify,
}

impl ClientInfo {
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill_notify.notify_one();
    }
}

#[derive(Default)]
pub struct Clients {
    next_id: AtomicU64,
    all: Mutex<HashMap<u64, Arc<ClientInfo>>>,
}

impl Clients {
    pub fn register(&self, addr: SocketAddr, local: SocketAddr, table: u32) -> Arc<ClientInfo> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let info = Arc::new(ClientInfo {
            id,
            addr,
            local,
            created: Instant::now(),
            name: Mutex::new(String::new()),
            table: AtomicU32::new(table),
            last_cmd: Mutex::new("NULL"),
            last_active_ms: AtomicU64::new(crate::storage::now_ms()),
            killed: AtomicBool::new(false),
            kill_notify: Notify::new(),
        });
        self.all.lock().insert(id, info.clone());
        info
    }

    pub fn unregister(&self, id: u64) {
        self.all.lock().remove(&id);
    }

    pub fn list(&self) -> Vec<Arc<ClientInfo>> {
        let mut v: Vec<_> = self.all.lock().values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }

    pub fn count(&self) -> usize {
        self.all.lock().len()
    }
}

/// SCAN cursors: the numeric cursor a client holds maps to the raw key to resume from.
/// Bounded: the oldest cursors are forgotten (a forgotten cursor restarts from the beginning,
/// which SCAN's guarantees allow).
#[derive(Default)]
pub struct Cursors {
    inner: Mutex<CursorMap>,
}

#[derive(Default)]
struct CursorMap {
    next: u64,
    map: HashMap<u64, Vec<u8>>,
    order: std::collections::VecDeque<u64>,
}

const MAX_CURSORS: usize = 10_000;

impl Cursors {
    pub fn store(&self, resume_at: Vec<u8>) -> u64 {
        let mut c = self.inner.lock();
        c.next += 1;
        let id = c.next;
        c.map.insert(id, resume_at);
        c.order.push_back(id);
        while c.order.len() > MAX_CURSORS {
            if let Some(old) = c.order.pop_front() {
                c.map.remove(&old);
            }
        }
        id
    }

    pub fn resume(&self, id: u64) -> Option<Vec<u8>> {
        self.inner.lock().map.get(&id).cloned()
    }
}

/// Server-wide counters for INFO.
#[derive(Default)]
pub struct Stats {
    pub connections_received: AtomicU64,
    pub commands_processed: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub keyspace_hits: AtomicU64,
    pub keyspace_misses: AtomicU64,
    pub expired_keys: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    /// Instantaneous ops/sec, sampled by a background task.
    pub ops_per_sec: AtomicU64,
    /// Replica slots served a full sync, and ones that continued from their position (Redis's
    /// names for the same two counters).
    pub sync_full: AtomicU64,
    pub sync_partial_ok: AtomicU64,
}
