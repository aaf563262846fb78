//! The node's one RocksDB and the transaction every command runs in.
//!
//! Writes to a slot are serialised by that slot's write lock ([`WriteState`]), held by a [`Txn`]
//! from its first read to its commit, so a read-modify-write (INCR, HSET, LPOP, ...) is atomic
//! and every slot has one total order of writes (the order its change log will follow).
//! Reads take no lock: RocksDB gives each read a consistent view.

pub mod backlog;
pub mod cache;
pub mod changelog;
pub mod encoding;
pub mod offload;
mod slotlog;
mod txn;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, ErrorKind, Options, ReadOptions, WriteBatch,
    WriteOptions,
};

pub use backlog::Backlog;
pub use cache::SlotCache;
pub use changelog::{ChangeSet, LogMeta, LogPos};
pub use encoding::{Kind, Meta, MetaBody, SlotPrefix};
pub use txn::{commit_group, ElemIter, Entry, Group, Txn};

pub type Db = rocksdb::DBWithThreadMode<rocksdb::MultiThreaded>;

/// Column family for the node's own records (tables, slot ownership, roles).
const CF_NODE: &str = "node";
/// Column family for replica slots' positions: key = slot prefix, value =
/// [`changelog::encode_replica_state`], written in the batch of every applied entry.
const CF_LOG: &str = "log";

/// Storage tuning, from pika.conf.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub block_cache_bytes: usize,
    pub write_buffer_bytes: usize,
    pub max_write_buffers: i32,
    /// fsync the WAL on every write (survives power loss, not only process death).
    pub sync_writes: bool,
    pub background_jobs: i32,
    /// Memory for the meta-record cache (see [`cache`]); 0 = off.
    pub meta_cache_bytes: usize,
    /// Bytes per second flushes and compactions may write; 0 = unlimited.
    pub background_write_rate: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            block_cache_bytes: 128 << 20,
            write_buffer_bytes: 8 << 20,
            max_write_buffers: 4,
            sync_writes: false,
            background_jobs: 2,
            meta_cache_bytes: 128 << 20,
            background_write_rate: 0,
        }
    }
}

/// Per-slot state guarded by the slot's write lock.
#[derive(Debug, Default)]
pub struct WriteState {
    /// Write batches committed to this slot since the node started.
    pub commits: u64,
    /// No key of this slot expires before this time (ms); 0 = unknown, look. Lets the background
    /// expirer skip slots with nothing due without touching RocksDB.
    pub next_expiry: u64,
    /// Bumped whenever a write lowers `next_expiry`, so the expirer knows its view went stale.
    pub expiry_gen: u64,
    /// The slot's history ids.
    pub log: LogMeta,
    /// Recent entries for replicas.
    pub backlog: Backlog,
    /// The slot's log position, readable without the lock.
    pub head: Arc<LogHead>,
}

impl WriteState {
    /// Takes a committed transaction's change set as the slot's next log entry (kept when the
    /// slot keeps a backlog; otherwise only the position advances).
    pub fn log_entry(&mut self, changes: ChangeSet) {
        let head = self.head.pos();
        let next = LogPos { seq: head.seq + 1, offset: head.offset + changes.len() };
        self.backlog.push(next, changes.into_bytes());
        self.head.advance(next);
    }
}

/// A slot's change-log position, published after every commit; written only under the slot's
/// write lock, read by replication senders without it.
#[derive(Debug, Default)]
pub struct LogHead {
    seq: AtomicU64,
    offset: AtomicU64,
    /// Bumped when the log is replaced (a full sync into this slot), so senders streaming from
    /// the old one stop and their replicas start over.
    epoch: AtomicU64,
    /// Woken after every commit: senders waiting for new entries.
    pub notify: tokio::sync::Notify,
}

impl LogHead {
    pub fn pos(&self) -> LogPos {
        LogPos { seq: self.seq.load(Ordering::Acquire), offset: self.offset.load(Ordering::Acquire) }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn advance(&self, pos: LogPos) {
        self.offset.store(pos.offset, Ordering::Release);
        self.seq.store(pos.seq, Ordering::Release);
        self.notify.notify_waiters();
    }

    fn replace(&self, pos: LogPos) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.advance(pos);
    }

    /// Ends every stream from this log: the slot's history changed (promotion, a new history
    /// adopted from upstream), and downstream replicas must learn it in a new handshake.
    pub fn restart_streams(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }
}

/// Why a replicated entry or chunk was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("out-of-order entry {got} (expected {expected})")]
    Gap { expected: u64, got: u64 },
    #[error(transparent)]
    Corrupt(#[from] changelog::Corrupt),
    #[error(transparent)]
    Db(#[from] rocksdb::Error),
}

pub type WriteLock = Arc<Mutex<WriteState>>;

pub struct Store {
    db: Db,
    /// Every command's writes: through the WAL.
    logged: WriteModes,
    /// Full-sync chunks: outside the WAL, durable by a memtable flush.
    unlogged: WriteModes,
    /// Writes that met a write stall and waited for it off the async workers.
    stalled_writes: AtomicU64,
    cache: Cache,
    meta_cache: Arc<cache::CacheBudget>,
    wal: GroupCommit,
}

/// The two ways to make one kind of write: `no_wait` fails at once (`Incomplete`) where RocksDB
/// would stall the writer, `wait` waits (see [`offload`]).
struct WriteModes {
    no_wait: WriteOptions,
    wait: WriteOptions,
}

impl WriteModes {
    fn new(wal: bool) -> WriteModes {
        let mut no_wait = WriteOptions::default();
        no_wait.set_no_slowdown(true);
        no_wait.disable_wal(!wal);
        let mut wait = WriteOptions::default();
        wait.disable_wal(!wal);
        WriteModes { no_wait, wait }
    }
}

/// Batches of this size and more go straight to [`offload::off_worker`]: copying one for a
/// retry would cost about as much as the hand-off, and so big a write is slow anyway.
const COPY_LIMIT: usize = 64 << 10;

/// Group commit of the WAL. RocksDB runs with `manual_wal_flush`: a write lands in the WAL
/// buffer, and a connection calls [`Store::commit_wal`] before it sends replies. One flush (one
/// `write(2)`, or one fsync with `sync-writes`) then covers every write made so far by every
/// connection, as Redis's AOF is written once per event-loop turn. No reply acknowledging a write
/// leaves before that write is in the OS (kill -9 safe) or on disk (power-loss safe).
struct GroupCommit {
    /// Writes applied to the WAL buffer so far.
    written: std::sync::atomic::AtomicU64,
    /// Writes known to be flushed.
    flushed: std::sync::atomic::AtomicU64,
    /// One flusher at a time; the others wait and usually find their writes covered.
    flusher: tokio::sync::Mutex<()>,
    fsync: bool,
}

impl Store {
    pub fn open(path: &Path, opts: &StoreOptions) -> Result<Store, rocksdb::Error> {
        let cache = Cache::new_lru_cache(opts.block_cache_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // Index and filter in 4 KiB partitions behind a small pinned top level. A whole-file
        // filter of a big SST (millions of small list/hash elements) grew past the block cache's
        // per-shard capacity, was never kept, and every point read re-read and re-checksummed
        // it: LPOP fell from 100k to 2.5k/s once the list's elements reached a compacted file.
        table.set_partition_filters(true);
        table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_metadata_block_size(4096);
        table.set_pin_top_level_index_and_filter(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);
        table.set_block_size(16 * 1024);

        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(opts.background_jobs);
        db_opts.set_max_open_files(5000);
        db_opts.set_keep_log_file_num(5);
        db_opts.set_bytes_per_sync(1 << 20);
        db_opts.set_manual_wal_flush(true);
        if opts.background_write_rate > 0 {
            // Refilled every 100 ms; flushes come before compactions (fairness 10, the default).
            db_opts.set_ratelimiter(opts.background_write_rate as i64, 100_000, 10);
        }

        let mut data_opts = Options::default();
        data_opts.set_block_based_table_factory(&table);
        data_opts.set_write_buffer_size(opts.write_buffer_bytes);
        data_opts.set_max_write_buffer_number(opts.max_write_buffers.max(2));
        // LZ4 on every level: zstd on the bottom level cost most of the CPU of sustained loads on
        // 2 cores (bench/RESULTS.md).
        data_opts.set_compression_type(DBCompressionType::Lz4);
        data_opts.set_level_compaction_dynamic_level_bytes(true);
        // Small memtables make many small L0 files; compact several at once, into files of a
        // moderate size, so one flush does not rewrite the whole bottom level.
        data_opts.set_level_zero_file_num_compaction_trigger(8);
        data_opts.set_level_zero_slowdown_writes_trigger(24);
        data_opts.set_level_zero_stop_writes_trigger(40);
        data_opts.set_target_file_size_base(32 << 20);
        data_opts.set_max_bytes_for_level_base(128 << 20);
        data_opts.set_memtable_whole_key_filtering(true);
        data_opts.set_memtable_prefix_bloom_ratio(0.05);

        let node_opts = Options::default();
        // Log entries are written once, read soon after (from the memtable) and purged in
        // order: small blocks are not worth compressing twice.
        let mut log_opts = Options::default();
        log_opts.set_write_buffer_size(opts.write_buffer_bytes);
        log_opts.set_compression_type(DBCompressionType::Lz4);
        let db = Db::open_cf_descriptors(
            &db_opts,
            path,
            vec![
                ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, data_opts),
                ColumnFamilyDescriptor::new(CF_NODE, node_opts),
                ColumnFamilyDescriptor::new(CF_LOG, log_opts),
            ],
        )?;
        let wal = GroupCommit {
            written: Default::default(),
            flushed: Default::default(),
            flusher: Default::default(),
            fsync: opts.sync_writes,
        };
        let meta_cache = cache::CacheBudget::new(opts.meta_cache_bytes);
        Ok(Store {
            db,
            logged: WriteModes::new(true),
            unlogged: WriteModes::new(false),
            stalled_writes: AtomicU64::new(0),
            cache,
            meta_cache,
            wal,
        })
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error> {
        self.db.get(key)
    }

    /// Applies a batch to the memtable and the WAL buffer. Durable once [`Store::commit_wal`]
    /// (or [`Store::flush_wal`]) has run after it.
    pub fn write(&self, batch: WriteBatch) -> Result<(), rocksdb::Error> {
        if cfg!(feature = "bench-skip-storage-writes") {
            drop(batch);
        } else {
            self.write_with(batch, &self.logged)?;
        }
        self.wal.written.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// Applies a batch, waiting out a write stall off the async workers ([`offload`]).
    fn write_with(&self, batch: WriteBatch, modes: &WriteModes) -> Result<(), rocksdb::Error> {
        if batch.size_in_bytes() >= COPY_LIMIT {
            return offload::off_worker(|| self.db.write_opt(batch, &modes.wait));
        }
        // `write_opt` consumes the batch, also when RocksDB turns it away: a copy for the retry.
        let retry = WriteBatch::from_data(batch.data());
        match self.db.write_opt(batch, &modes.no_wait) {
            Err(e) if e.kind() == ErrorKind::Incomplete => {
                self.stalled_writes.fetch_add(1, Ordering::Relaxed);
                offload::off_worker(|| self.db.write_opt(retry, &modes.wait))
            }
            result => result,
        }
    }

    /// Writes that met a write stall since the node started, and whether RocksDB holds every
    /// write back right now (for INFO).
    pub fn stalls(&self) -> (u64, bool) {
        let stopped = self.property("rocksdb.is-write-stopped").unwrap_or(0) != 0;
        (self.stalled_writes.load(Ordering::Relaxed), stopped)
    }

    /// Whether writes were made that no flush has covered yet.
    pub fn wal_pending(&self) -> bool {
        use std::sync::atomic::Ordering::Acquire;
        self.wal.written.load(Acquire) > self.wal.flushed.load(Acquire)
    }

    /// Makes every write applied so far durable (see [`GroupCommit`]). Yields once first, so the
    /// other connections ready to run add their writes to the same flush.
    pub async fn commit_wal(&self) -> Result<(), rocksdb::Error> {
        use std::sync::atomic::Ordering::{AcqRel, Acquire};
        let target = self.wal.written.load(Acquire);
        if self.wal.flushed.load(Acquire) >= target {
            return Ok(());
        }
        tokio::task::yield_now().await;
        let _flusher = self.wal.flusher.lock().await;
        if self.wal.flushed.load(Acquire) >= target {
            return Ok(());
        }
        let covered = self.wal.written.load(Acquire);
        if self.wal.fsync {
            // An fsync may take long (a busy disk): off the worker, so PING and reads are
            // answered meanwhile and the node does not look dead to the operator. A flush
            // without it is one write(2) into the page cache, and one connection at a time
            // makes it (the flusher lock is async): at worst one worker waits.
            offload::off_worker(|| self.db.flush_wal(true))?;
        } else {
            self.db.flush_wal(false)?;
        }
        self.wal.flushed.fetch_max(covered, AcqRel);
        Ok(())
    }

    /// A raw iterator over `[start, end)` (an empty `end` means "to the end").
    pub fn raw_iter(&self, start: &[u8], end: &[u8]) -> rocksdb::DBRawIteratorWithThreadMode<'_, Db> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(start.to_vec());
        if !end.is_empty() {
            ro.set_iterate_upper_bound(end.to_vec());
        }
        self.db.raw_iterator_opt(ro)
    }

    /// Drops everything stored for a slot, its change log included, with range tombstones.
    pub fn drop_slot(&self, prefix: SlotPrefix) -> Result<(), rocksdb::Error> {
        let (start, end) = prefix.range();
        let mut batch = WriteBatch::default();
        batch.delete_range(&start, &end);
        batch.delete_range_cf(&self.log_cf(), &start, &end);
        self.write(batch)
    }

    /// Reads one of the node's own records.
    pub fn node_get(&self, key: &str) -> Result<Option<Vec<u8>>, rocksdb::Error> {
        let cf = self.db.cf_handle(CF_NODE).expect("node column family exists");
        self.db.get_cf(&cf, key.as_bytes())
    }

    /// Writes one of the node's own records, synced: ownership and roles must survive power loss.
    pub fn node_put(&self, key: &str, value: &[u8]) -> Result<(), rocksdb::Error> {
        let cf = self.db.cf_handle(CF_NODE).expect("node column family exists");
        let mut batch = WriteBatch::default();
        batch.put_cf(&cf, key.as_bytes(), value);
        self.write(batch)?;
        self.flush_wal()
    }

    pub fn node_delete(&self, key: &str) -> Result<(), rocksdb::Error> {
        let cf = self.db.cf_handle(CF_NODE).expect("node column family exists");
        let mut batch = WriteBatch::default();
        batch.delete_cf(&cf, key.as_bytes());
        self.write(batch)?;
        self.flush_wal()
    }

    /// Writes the WAL buffer out and fsyncs it: everything applied so far is on disk.
    pub fn flush_wal(&self) -> Result<(), rocksdb::Error> {
        let covered = self.wal.written.load(std::sync::atomic::Ordering::Acquire);
        offload::off_worker(|| self.db.flush_wal(true))?;
        self.wal.flushed.fetch_max(covered, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// Memory held by memtables and table readers, and the block cache usage, in bytes.
    pub fn memory_usage(&self) -> (u64, u64, u64) {
        let prop = |name: &str| self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        (
            prop("rocksdb.cur-size-all-mem-tables"),
            prop("rocksdb.estimate-table-readers-mem"),
            self.cache.get_usage() as u64,
        )
    }

    pub fn property(&self, name: &str) -> Option<u64> {
        self.db.property_int_value(name).ok().flatten()
    }

    /// The budget every slot's meta cache draws on.
    pub fn cache(&self) -> &Arc<cache::CacheBudget> {
        &self.meta_cache
    }

    /// Starts a transaction on one slot. `lock` is the slot's write lock for a writing command,
    /// `None` for a read-only one.
    pub fn txn<'a>(&'a self, prefix: SlotPrefix, cache: &'a SlotCache, lock: Option<&WriteLock>) -> Txn<'a> {
        Txn::new(self, prefix, cache, lock.map(lock_slot))
    }
}

/// How long a writer waits for a slot's lock on its worker before it waits off the worker.
/// Another writer holds it for microseconds, except through a write stall.
const LOCK_SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// Takes a slot's write lock for a transaction. Its holder may be waiting out a write stall
/// ([`offload`]): the writers queued behind it must not each hold a worker meanwhile.
fn lock_slot(lock: &WriteLock) -> parking_lot::ArcMutexGuard<parking_lot::RawMutex, WriteState> {
    lock.try_lock_arc_for(LOCK_SPIN).unwrap_or_else(|| offload::off_worker(|| lock.lock_arc()))
}

/// Takes a slot's write lock outside a transaction (replication, fences), waiting as
/// [`lock_slot`] does. Every wait for a slot's lock goes through one of the two; what only needs
/// the slot's position reads [`LogHead`] without the lock.
pub fn lock_state(lock: &WriteLock) -> parking_lot::MutexGuard<'_, WriteState> {
    lock.try_lock_for(LOCK_SPIN).unwrap_or_else(|| offload::off_worker(|| lock.lock()))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
