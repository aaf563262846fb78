//! A write stall (RocksDB holding every write back until its flushes catch up, as on a slow or
//! saturated disk) does not make the node look dead: a new connection's PING and reads are
//! answered while the writes wait, and the stalled writes complete afterwards.
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::Node;

/// Bytes no compression shrinks, so a flush writes every one of them through the rate limiter.
fn incompressible(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

fn info_field(c: &mut redis::Connection, name: &str) -> Option<String> {
    let info: String = redis::cmd("INFO").arg("data").query(c).ok()?;
    let prefix = format!("{name}:");
    info.lines().find_map(|l| l.strip_prefix(&prefix)).map(str::to_string)
}

/// A new connection's PING, with how long it took; any failure (timeout included) as an error.
fn ping_fresh(node: &Node, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let client = redis::Client::open(node.url()).map_err(|e| e.to_string())?;
    let mut c = client.get_connection_with_timeout(limit).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
    let pong: String = redis::cmd("PING").query(&mut c).map_err(|e| format!("PING: {e}"))?;
    assert_eq!(pong, "PONG");
    Ok(started.elapsed())
}

#[test]
fn ping_and_reads_are_answered_during_a_write_stall() {
    // Memtables of 64 KiB, at most two, flushed at 32 KiB/s: a few hundred KiB of writes stop
    // every write for seconds. A real RocksDB write stall, as a slow disk makes one.
    let node = Node::start(&[
        ("instance-mode", "classic"),
        ("write-buffer-size", "65536"),
        ("max-write-buffer-num", "2"),
        ("rate-limiter-bandwidth", "32768"),
    ]);
    let mut c = node.conn();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _: () = redis::cmd("SET").arg("before").arg("the stall").query(&mut c).unwrap();

    // More writers than the node has worker threads (one per core): if a stalled write kept its
    // worker, every worker would be caught and nothing else answered. One slot (classic mode),
    // so most of them wait for the slot's write lock, held by the write RocksDB holds back.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let writers = 2 * cores + 4;
    let value_len = 48 << 10;
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let url = node.url();
            let acknowledged = acknowledged.clone();
            std::thread::spawn(move || -> Option<Vec<u8>> {
                let mut c = redis::Client::open(url).ok()?.get_connection().ok()?;
                let value = incompressible(value_len, 0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1));
                redis::cmd("SET").arg(format!("w{w}")).arg(&value).query::<()>(&mut c).ok()?;
                acknowledged.fetch_add(1, Ordering::SeqCst);
                Some(value)
            })
        })
        .collect();

    // INFO itself must be answered for this wait to end.
    support::wait_until(Duration::from_secs(30), "RocksDB to stop writes", || {
        info_field(&mut c, "db_write_stopped").expect("INFO answered during the stall") == "1"
    });
    let mut slowest = Duration::ZERO;
    for round in 0..5 {
        let took = ping_fresh(&node, Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("round {round}: a new connection's PING during a write stall: {e}"));
        slowest = slowest.max(took);
        let before: String = redis::cmd("GET").arg("before").query(&mut c).expect("a read during the stall");
        assert_eq!(before, "the stall");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The stall was still holding writes back: the PINGs above were answered inside it.
    let done = acknowledged.load(Ordering::SeqCst);
    assert!(done < writers, "all {writers} writes finished: the stall ended before the checks ran");
    let stalled: u64 = info_field(&mut c, "db_stalled_writes").unwrap().parse().unwrap();
    assert!(stalled > 0, "INFO counts writes that met the stall");
    eprintln!("slowest PING {slowest:?} while {} of {writers} writes waited", writers - done);

    // The stalled writes complete once the flushes catch up, each with what it wrote.
    let values: Vec<Option<Vec<u8>>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (w, value) in values.iter().enumerate() {
        let value = value.as_ref().unwrap_or_else(|| panic!("writer {w} failed"));
        let stored: Vec<u8> = redis::cmd("GET").arg(format!("w{w}")).query(&mut c).unwrap();
        assert!(stored == *value, "w{w} reads back what was written");
    }
}
