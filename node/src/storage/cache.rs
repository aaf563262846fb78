//! A write-through cache of meta records, one per slot, under one node-wide memory budget.
//!
//! Why: every command starts by reading its key's meta record (type, expiry, a string's value,
//! a collection's header). In RocksDB that point read searches every memtable and the level-0
//! files: it was half the CPU of a pipelined GET and a third of a SET (bench/RESULTS.md). With
//! the record in memory, GET is served outright and a write skips its read.
//!
//! Coherence. RocksDB stays the truth; the cache only ever holds what RocksDB holds:
//! - writers update the cache after their RocksDB write, still under the slot's write lock, so
//!   per key the cache sees writes in commit order;
//! - readers take no slot lock. A miss is filled with what RocksDB returned only if no write
//!   touched the slot's cache in between and none is under way: every update bumps `gen`, a
//!   fill carries the `gen` it saw before its RocksDB read, and a writer holds
//!   [`SlotCache::writing`] from before its RocksDB write until its cache update. A fill that
//!   lost the race is dropped (the next read misses again), so a value read before a write can
//!   never land in the cache after it, nor replace a newer value another reader filled;
//! - anything that rewrites the slot wholesale (FLUSHDB, delslots, a full sync) clears it.
//!
//! Absence is cached too (`None`): the read before a write to a new key, EXISTS on a missing key.
//! Memory: entries are charged `key + value + ENTRY_OVERHEAD` against the budget; an insert over
//! budget evicts the slot's entries not used lately (CLOCK), and [`CacheBudget`]'s owner calls
//! [`SlotCache::trim`] on every slot when the node as a whole is over (so a slot that went cold
//! gives its memory back to the hot ones).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use hashbrown::HashTable;
use parking_lot::Mutex;

/// Bytes charged per entry beyond its key and value: the table slot and the allocation's header.
const ENTRY_OVERHEAD: usize = 80;
/// Records bigger than this are never cached: one would displace thousands of small ones, and
/// copying it out costs more than RocksDB's read.
const MAX_ENTRY: usize = 64 * 1024;
/// An insert over budget evicts at most this many of the slot's entries; when that is not
/// enough the new entry is not kept (the periodic trim makes room across slots).
const EVICT_PER_INSERT: usize = 4;

/// The node-wide limit and what all slot caches hold together.
#[derive(Debug, Default)]
pub struct CacheBudget {
    limit: AtomicUsize,
    used: AtomicUsize,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl CacheBudget {
    pub fn new(limit: usize) -> Arc<CacheBudget> {
        Arc::new(CacheBudget { limit: AtomicUsize::new(limit), ..Default::default() })
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Changes the limit (CONFIG SET); 0 turns caching off. Shrinking takes effect through
    /// evictions and the next trim.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The share of its entries each slot should keep so the node gets back under budget with
    /// some room (None: not over budget).
    pub fn trim_ratio(&self) -> Option<f64> {
        let (used, limit) = (self.used(), self.limit());
        (used > limit).then(|| limit as f64 * 0.9 / used as f64)
    }
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The cached record (`None`: the key is known to be absent).
    Hit(Option<Vec<u8>>),
    /// Not cached; fill with this ticket after reading RocksDB.
    Miss(Ticket),
}

/// Proof of the slot cache's state before a RocksDB read (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

pub struct SlotCache {
    budget: Arc<CacheBudget>,
    hasher: foldhash::fast::RandomState,
    /// Independent parts by key hash, each with its own lock and generation: one for a slot of a
    /// sharded table (its 1024 siblings spread the load), several for a classic-mode table,
    /// whose single slot every client's reads would otherwise queue on.
    shards: Box<[Mutex<Inner>]>,
    /// Writes between their RocksDB write and their cache update ([`SlotCache::writing`]).
    writes_in_flight: AtomicUsize,
}

/// A write of the slot in progress (see [`SlotCache::writing`]).
pub struct Writing<'c>(&'c SlotCache);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.writes_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One cached record. The key and the record share one allocation, so a hit touches the
/// table and one block.
struct Entry {
    hash: u64,
    data: Box<[u8]>,
    key_len: u32,
    /// False: the key is known to be absent.
    present: bool,
    /// CLOCK's second chance: set by every hit, cleared by the passing hand.
    referenced: bool,
}

impl Entry {
    fn new(hash: u64, key: &[u8], value: Option<&[u8]>) -> Entry {
        let data = [key, value.unwrap_or_default()].concat().into_boxed_slice();
        Entry { hash, data, key_len: key.len() as u32, present: value.is_some(), referenced: false }
    }

    fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    fn value(&self) -> Option<&[u8]> {
        self.present.then(|| &self.data[self.key_len as usize..])
    }

    fn charge(&self) -> usize {
        self.data.len() + ENTRY_OVERHEAD
    }
}

/// A hash table evicted by CLOCK (an approximation of LRU whose hits only set a bit: an LRU
/// list's relinking cost a third of a cached SET).
struct Inner {
    table: HashTable<Entry>,
    /// CLOCK's hand: the next bucket to look at.
    hand: usize,
    bytes: usize,
    gen: u64,
}

fn charge(key: &[u8], value: Option<&[u8]>) -> usize {
    key.len() + value.map_or(0, <[u8]>::len) + ENTRY_OVERHEAD
}

impl Inner {
    fn remove(&mut self, hash: u64, key: &[u8]) -> usize {
        match self.table.find_entry(hash, |e| e.key() == key) {
            Ok(found) => {
                let freed = found.remove().0.charge();
                self.bytes -= freed;
                freed
            }
            Err(_) => 0,
        }
    }

    /// Evicts one entry not hit since the hand last passed it; the bytes freed (0: empty).
    fn evict_one(&mut self) -> usize {
        let buckets = self.table.num_buckets();
        // Two sweeps at most: the first clears every reference bit it passes.
        for _ in 0..=2 * buckets {
            if self.table.is_empty() {
                break;
            }
            if self.hand >= buckets {
                self.hand = 0;
            }
            let at = self.hand;
            self.hand += 1;
            if let Ok(mut found) = self.table.get_bucket_entry(at) {
                if std::mem::take(&mut found.get_mut().referenced) {
                    continue;
                }
                let freed = found.remove().0.charge();
                self.bytes -= freed;
                return freed;
            }
        }
        0
    }
}

impl std::fmt::Debug for SlotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (entries, bytes) = self.usage();
        f.debug_struct("SlotCache").field("entries", &entries).field("bytes", &bytes).finish()
    }
}

impl SlotCache {
    /// A cache in `shards` parts (at least one).
    pub fn new(budget: Arc<CacheBudget>, shards: usize) -> SlotCache {
        let shards = (0..shards.max(1))
            .map(|_| Mutex::new(Inner { table: HashTable::new(), hand: 0, bytes: 0, gen: 0 }))
            .collect();
        SlotCache { budget, hasher: Default::default(), shards, writes_in_flight: AtomicUsize::new(0) }
    }

    /// The key's hash and the locked shard that holds it.
    fn shard(&self, key: &[u8]) -> (u64, parking_lot::MutexGuard<'_, Inner>) {
        let hash = self.hasher.hash_one(key);
        (hash, self.shards[(hash >> 32) as usize % self.shards.len()].lock())
    }

    pub fn lookup(&self, key: &[u8]) -> Lookup {
        let (hash, mut inner) = self.shard(key);
        match inner.table.find_mut(hash, |e| e.key() == key) {
            Some(entry) => {
                entry.referenced = true;
                self.budget.hits.fetch_add(1, Ordering::Relaxed);
                Lookup::Hit(entry.value().map(<[u8]>::to_vec))
            }
            None => {
                self.budget.misses.fetch_add(1, Ordering::Relaxed);
                Lookup::Miss(Ticket(inner.gen))
            }
        }
    }

    /// Announces a write about to reach RocksDB; hold the guard until the cache has been
    /// updated. Meanwhile no reader fills: what it read may predate the write, and a fill that
    /// landed after a newer reader's would bring the older value back.
    pub fn writing(&self) -> Writing<'_> {
        self.writes_in_flight.fetch_add(1, Ordering::SeqCst);
        Writing(self)
    }

    /// Keeps what a reader found in RocksDB, unless a write reached the cache since its lookup
    /// or is on its way.
    pub fn fill(&self, key: &[u8], value: Option<&[u8]>, ticket: Ticket) {
        let (hash, mut inner) = self.shard(key);
        if inner.gen == ticket.0 && self.writes_in_flight.load(Ordering::SeqCst) == 0 {
            self.insert(&mut inner, hash, key, value);
        }
    }

    /// A committed write of `key` (`None`: deleted). Call after the RocksDB write, under the
    /// slot's write lock.
    pub fn update(&self, key: &[u8], value: Option<&[u8]>) {
        let (hash, mut inner) = self.shard(key);
        inner.gen += 1;
        self.insert(&mut inner, hash, key, value);
    }

    /// Forgets `keys` (written behind the cache's back, e.g. by a full sync).
    pub fn invalidate<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        for key in keys {
            let (hash, mut inner) = self.shard(key);
            inner.gen += 1;
            let freed = inner.remove(hash, key);
            self.release(freed);
        }
    }

    /// Forgets everything (the slot was rewritten as a whole).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut inner = shard.lock();
            inner.gen += 1;
            inner.table = HashTable::new();
            inner.hand = 0;
            let freed = std::mem::take(&mut inner.bytes);
            self.release(freed);
        }
    }

    /// Evicts entries until this slot holds at most `keep` of its bytes.
    pub fn trim(&self, keep: f64) {
        for shard in self.shards.iter() {
            let mut inner = shard.lock();
            let target = (inner.bytes as f64 * keep.clamp(0.0, 1.0)) as usize;
            let mut freed = 0;
            while inner.bytes > target {
                freed += inner.evict_one();
            }
            inner.table.shrink_to_fit(|e| e.hash);
            self.release(freed);
        }
    }

    /// Entries and bytes held.
    pub fn usage(&self) -> (usize, usize) {
        self.shards.iter().map(|s| s.lock()).fold((0, 0), |(n, b), s| (n + s.table.len(), b + s.bytes))
    }

    fn insert(&self, inner: &mut Inner, hash: u64, key: &[u8], value: Option<&[u8]>) {
        self.release(inner.remove(hash, key));
        let cost = charge(key, value);
        if cost > MAX_ENTRY {
            return;
        }
        let limit = self.budget.limit();
        let fits = || self.budget.used() + cost <= limit;
        for _ in 0..EVICT_PER_INSERT {
            if fits() || inner.table.is_empty() {
                break;
            }
            let freed = inner.evict_one();
            self.release(freed);
        }
        if fits() {
            inner.table.insert_unique(hash, Entry::new(hash, key, value), |e| e.hash);
            inner.bytes += cost;
            self.budget.used.fetch_add(cost, Ordering::Relaxed);
        }
    }

    fn release(&self, bytes: usize) {
        self.budget.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Drop for SlotCache {
    fn drop(&mut self) {
        let held: usize = self.shards.iter_mut().map(|s| s.get_mut().bytes).sum();
        self.release(held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(cache: &SlotCache, key: &[u8]) -> Option<Option<Vec<u8>>> {
        match cache.lookup(key) {
            Lookup::Hit(v) => Some(v),
            Lookup::Miss(_) => None,
        }
    }

    /// Whether `key` is cached, without counting as a hit (no second chance given).
    fn held(cache: &SlotCache, key: &[u8]) -> bool {
        let (hash, inner) = cache.shard(key);
        inner.table.find(hash, |e| e.key() == key).is_some()
    }

    fn ticket(cache: &SlotCache, key: &[u8]) -> Ticket {
        match cache.lookup(key) {
            Lookup::Miss(t) => t,
            Lookup::Hit(_) => panic!("expected a miss"),
        }
    }

    #[test]
    fn fills_and_updates() {
        let cache = SlotCache::new(CacheBudget::new(1 << 20), 1);
        let t = ticket(&cache, b"k");
        cache.fill(b"k", Some(b"v1"), t);
        assert_eq!(hit(&cache, b"k"), Some(Some(b"v1".to_vec())));
        cache.update(b"k", None);
        assert_eq!(hit(&cache, b"k"), Some(None));
        cache.update(b"k", Some(b"v2"));
        assert_eq!(hit(&cache, b"k"), Some(Some(b"v2".to_vec())));
    }

    #[test]
    fn a_fill_that_raced_with_a_write_is_dropped() {
        let cache = SlotCache::new(CacheBudget::new(1 << 20), 1);
        // A reader misses, then reads the old value from RocksDB ...
        let t = ticket(&cache, b"k");
        // ... a writer commits v2 and updates another key of the slot meanwhile ...
        cache.update(b"other", Some(b"x"));
        // ... and the reader's stale fill must not land.
        cache.fill(b"k", Some(b"old"), t);
        assert_eq!(hit(&cache, b"k"), None);
        // The same holds after invalidations and clears.
        let t = ticket(&cache, b"k");
        cache.invalidate([&b"zzz"[..]]);
        cache.fill(b"k", Some(b"old"), t);
        assert_eq!(hit(&cache, b"k"), None);
        let t = ticket(&cache, b"k");
        cache.clear();
        cache.fill(b"k", Some(b"old"), t);
        assert_eq!(hit(&cache, b"k"), None);
    }

    #[test]
    fn no_fill_while_a_write_is_between_rocksdb_and_the_cache() {
        let cache = SlotCache::new(CacheBudget::new(1 << 20), 1);
        // R1 misses and reads v0; the writer has written v1 to RocksDB, not yet to the cache;
        // R2 misses and reads v1. Neither may fill: R1's would replace R2's newer value.
        let t1 = ticket(&cache, b"k");
        let writing = cache.writing();
        let t2 = ticket(&cache, b"k");
        cache.fill(b"k", Some(b"v1"), t2);
        cache.fill(b"k", Some(b"v0"), t1);
        assert_eq!(hit(&cache, b"k"), None);
        cache.update(b"k", Some(b"v1"));
        drop(writing);
        cache.fill(b"k", Some(b"v0"), t1);
        assert_eq!(hit(&cache, b"k"), Some(Some(b"v1".to_vec())));
    }

    #[test]
    fn a_sharded_cache_keeps_the_same_promises() {
        let budget = CacheBudget::new(1 << 20);
        let cache = SlotCache::new(budget.clone(), 8);
        let keys: Vec<Vec<u8>> = (0..64u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let tickets: Vec<Ticket> = keys.iter().map(|k| ticket(&cache, k)).collect();
        cache.clear(); // every shard's generation moves on
        for (k, t) in keys.iter().zip(&tickets) {
            cache.fill(k, Some(b"stale"), *t);
            assert_eq!(hit(&cache, k), None);
        }
        for k in &keys {
            cache.update(k, Some(b"v"));
        }
        assert!(keys.iter().all(|k| hit(&cache, k) == Some(Some(b"v".to_vec()))));
        assert_eq!(cache.usage(), (64, budget.used()));
        drop(cache);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn accounting_follows_every_change_and_drop() {
        let budget = CacheBudget::new(1 << 20);
        let cache = SlotCache::new(budget.clone(), 1);
        cache.update(b"a", Some(b"1234"));
        cache.update(b"b", None);
        assert_eq!(budget.used(), charge(b"a", Some(b"1234")) + charge(b"b", None));
        cache.update(b"a", Some(b"12"));
        assert_eq!(budget.used(), charge(b"a", Some(b"12")) + charge(b"b", None));
        cache.invalidate([&b"a"[..]]);
        assert_eq!(budget.used(), charge(b"b", None));
        let other = SlotCache::new(budget.clone(), 1);
        other.update(b"c", Some(b"x"));
        drop(other);
        assert_eq!(budget.used(), charge(b"b", None));
        cache.clear();
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn stays_within_budget_keeping_what_is_used() {
        let per = charge(b"k00", Some(b"v"));
        let budget = CacheBudget::new(per * 10);
        let cache = SlotCache::new(budget.clone(), 1);
        for i in 0..10u8 {
            cache.update(format!("k{i:02}").as_bytes(), Some(b"v"));
        }
        for i in 10..40u8 {
            // k00 is read between every insert: it always has its second chance.
            assert!(hit(&cache, b"k00").is_some(), "k00 evicted before k{i}");
            cache.update(format!("k{i:02}").as_bytes(), Some(b"v"));
            assert!(budget.used() <= budget.limit());
            // Looked at without a hit: had the new entries been hit too, every entry could hold
            // a reference bit when the hand sweeps, and CLOCK then evicts the first it meets
            // twice, k00 included (1 run in many, by the random hasher's bucket order).
            assert!(held(&cache, format!("k{i:02}").as_bytes()), "a new entry is kept");
        }
        assert_eq!(cache.usage().0, 10);
        assert_eq!(cache.usage().1, budget.used());
    }

    #[test]
    fn big_records_and_a_zero_budget_bypass_the_cache() {
        let budget = CacheBudget::new(1 << 30);
        let cache = SlotCache::new(budget.clone(), 1);
        cache.update(b"small", Some(b"v"));
        cache.update(b"small", Some(&vec![0u8; MAX_ENTRY]));
        assert_eq!(hit(&cache, b"small"), None, "a big record replaces nothing stale");
        budget.set_limit(0);
        cache.update(b"k", Some(b"v"));
        assert_eq!(hit(&cache, b"k"), None);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn trim_gives_memory_back() {
        let budget = CacheBudget::new(1 << 20);
        let cache = SlotCache::new(budget.clone(), 1);
        for i in 0..100u32 {
            cache.update(&i.to_be_bytes(), Some(b"value"));
        }
        budget.set_limit(budget.used() / 2);
        let keep = budget.trim_ratio().expect("over budget");
        cache.trim(keep);
        assert!(budget.used() <= budget.limit());
        assert!(budget.trim_ratio().is_none());
    }
}
