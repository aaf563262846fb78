//! What one RocksDB put costs on this machine with pika-node's key layout and options that matter
//! for writes (WAL on, flushed by the writer as the node's group commit does, 8 MiB memtables,
//! LZ4): single puts, batches, and sorted batches. Used by `bench/write-ceiling.sh` to bound what
//! pipelined writes can reach on one core. Not a test.
//!
//!   cargo run --release -p pika-node --example rocksdb_puts -- DIR [PUTS]

use std::time::Instant;

use pika_node::storage::encoding::SlotPrefix;
use rocksdb::{DBCompressionType, Options, WriteBatch, WriteOptions, DB};

/// Keys as `redis-benchmark -r 100000` makes them, spread over 1024 slots.
fn keys(count: usize) -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            // xorshift: cheap, deterministic, no dependency
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = x % 100_000;
            let user_key = format!("key:{n:012}");
            SlotPrefix::new(0, (n % 1024) as u32).meta_key(user_key.as_bytes())
        })
        .collect()
}

fn run(dir: &std::path::Path, keys: &[Vec<u8>], batch_size: usize, sorted: bool) -> f64 {
    let _ = std::fs::remove_dir_all(dir);
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_manual_wal_flush(true);
    opts.set_write_buffer_size(8 << 20);
    opts.set_max_write_buffer_number(4);
    opts.set_compression_type(DBCompressionType::Lz4);
    let db = DB::open(&opts, dir).expect("open");
    let value = [b'x'; 12];
    let started = Instant::now();
    for (n, group) in keys.chunks(batch_size).enumerate() {
        let mut group: Vec<&Vec<u8>> = group.iter().collect();
        if sorted {
            group.sort();
        }
        let mut batch = WriteBatch::default();
        for key in group {
            batch.put(key, value);
        }
        db.write_opt(batch, &WriteOptions::default()).expect("write");
        // The node flushes the WAL buffer once per burst of replies; 16 puts per flush here.
        if (n * batch_size) % 16 + batch_size >= 16 {
            db.flush_wal(false).expect("flush");
        }
    }
    let per_put = started.elapsed().as_secs_f64() / keys.len() as f64;
    drop(db);
    let _ = std::fs::remove_dir_all(dir);
    per_put
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: rocksdb_puts DIR [PUTS]"));
    let count = args.next().map_or(2_000_000, |n| n.parse().expect("PUTS is a number"));
    let keys = keys(count);
    for (batch_size, sorted) in [(1, false), (16, false), (800, false), (800, true)] {
        let per_put = run(&dir, &keys, batch_size, sorted);
        println!(
            "batch {batch_size:>3}{}: {:>9.0} puts/s {:>6.2} us/put",
            if sorted { " sorted" } else { "       " },
            1.0 / per_put,
            per_put * 1e6
        );
    }
}
