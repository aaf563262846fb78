//! Restart persistence and `kill -9` durability: acknowledged writes and owned slots survive.
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::Commands;
use support::Node;

#[test]
fn clean_restart_keeps_data_slots_and_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = [("instance-mode", "sharding"), ("default-slot-num", "64")];
    let mut node = Node::new_in(tmp.path(), &conf);
    node.spawn();
    let mut c = node.conn();
    let _: () = redis::cmd("pkcluster").arg("addslots").arg("0-40").query(&mut c).unwrap();
    let _: () = redis::cmd("pkcluster").arg("addtable").arg(3).arg(8).query(&mut c).unwrap();
    let keys: Vec<String> =
        (0..2000).map(|i| format!("k{i}")).filter(|k| common::slot::key_slot(k.as_bytes(), 64) <= 40).collect();
    for k in &keys {
        let _: () = c.set(k, k).unwrap();
    }
    let _: () = redis::cmd("HSET").arg(&keys[0]).arg("f").arg("v").query(&mut c).unwrap_or(());
    let _: () = redis::cmd("SETEX").arg(&keys[1]).arg(1000).arg("ttl").query(&mut c).unwrap();
    let info_before: String = redis::cmd("pkcluster").arg("info").arg("slot").query(&mut c).unwrap();
    drop(c);
    assert!(node.stop().success(), "clean exit on SIGTERM");
    node.spawn();
    let mut c = node.conn();
    let info_after: String = redis::cmd("pkcluster").arg("info").arg("slot").query(&mut c).unwrap();
    // Slots and roles survive; the log positions restart (a master's backlog is in memory).
    let owned = |text: &str| -> Vec<(String, u32, bool)> {
        let slots = common::pkinfo::parse_slot_info(text).unwrap();
        slots.into_iter().map(|s| (s.table, s.slot, s.master.is_some())).collect()
    };
    assert_eq!(owned(&info_before), owned(&info_after), "owned slots survive a restart");
    assert_eq!(owned(&info_after).len(), 41);
    let table: String = redis::cmd("pkcluster").arg("info").arg("table").arg(3).query(&mut c).unwrap();
    assert!(table.contains("partition_num: 8"), "{table}");
    for k in &keys[2..] {
        assert_eq!(c.get::<_, String>(k).unwrap(), *k);
    }
    assert!(c.ttl::<_, i64>(&keys[1]).unwrap() > 900, "TTL survives");
}

/// Starts a node owning all 1024 slots, runs `writers` threads that each call `op(connection,
/// writer, i)` for i = 1, 2, ... until it fails, kills the node with SIGKILL after `run_for`,
/// restarts it, and returns it with the last i each writer saw acknowledged.
fn kill_9_under_writes(
    dir: &std::path::Path,
    writers: usize,
    run_for: Duration,
    op: fn(&mut redis::Connection, usize, u64) -> redis::RedisResult<()>,
) -> (Node, Vec<u64>) {
    let conf = [("instance-mode", "sharding"), ("default-slot-num", "1024")];
    let mut node = Node::new_in(dir, &conf);
    node.spawn();
    let mut c = node.conn();
    let _: () = redis::cmd("pkcluster").arg("addslots").arg("0-1023").query(&mut c).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Vec<Arc<AtomicU64>> = (0..writers).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let threads: Vec<_> = acked
        .iter()
        .enumerate()
        .map(|(w, acked)| {
            let (stop, acked, url) = (stop.clone(), acked.clone(), node.url());
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    if op(&mut c, w, i).is_err() {
                        break;
                    }
                    acked.store(i, Ordering::SeqCst);
                }
            })
        })
        .collect();
    std::thread::sleep(run_for);
    node.kill9();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    node.spawn();
    (node, acked.iter().map(|a| a.load(Ordering::SeqCst)).collect())
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    // Each writer records the highest index the server acknowledged.
    let (node, acked) = kill_9_under_writes(tmp.path(), 4, Duration::from_millis(1500), |c, w, i| {
        redis::pipe()
            .cmd("SET")
            .arg(format!("w{w}:{i}"))
            .arg(i)
            .cmd("RPUSH")
            .arg(format!("list{w}"))
            .arg(i)
            .cmd("HINCRBY")
            .arg(format!("h{w}"))
            .arg("n")
            .arg(1)
            .query(c)
    });
    let mut c = node.conn();
    for (w, &n) in acked.iter().enumerate() {
        assert!(n > 50, "writer {w} made progress ({n})");
        // Every acknowledged SET is there; the list and the counter hold at least the acked count.
        for i in (1..=n).step_by(1 + n as usize / 500) {
            assert_eq!(c.get::<_, Option<u64>>(format!("w{w}:{i}")).unwrap(), Some(i), "writer {w} key {i}");
        }
        assert_eq!(c.get::<_, Option<u64>>(format!("w{w}:{n}")).unwrap(), Some(n));
        let len: u64 = c.llen(format!("list{w}")).unwrap();
        assert!(len >= n, "list{w}: {len} < {n}");
        let items: Vec<u64> = c.lrange(format!("list{w}"), 0, n as isize - 1).unwrap();
        assert_eq!(items, (1..=n).collect::<Vec<_>>(), "list{w} in order, nothing missing");
        let count: u64 = redis::cmd("HGET").arg(format!("h{w}")).arg("n").query(&mut c).unwrap();
        assert!(count >= n);
    }
    let slots: String = redis::cmd("pkcluster").arg("info").arg("slot").query(&mut c).unwrap();
    assert_eq!(slots.matches("(db0:").count(), 1024, "every slot still owned");
}

/// Keys of one MSET in the test below: 40 of them, spread over the slots.
const MSET_KEYS: usize = 40;

fn mset_key(w: usize, k: usize) -> String {
    format!("m{w}:{k}")
}

#[test]
fn a_cross_slot_mset_is_all_or_nothing_across_kill_9() {
    // Each MSET gives 40 keys in 40 slots the same value, 1.3 MB in all: more than RocksDB's WAL
    // buffer, so written per slot an MSET would reach the log in pieces. After a kill -9 in the
    // middle of a stream of them, the keys of each writer must still agree (one batch per MSET).
    let slots: std::collections::BTreeSet<u32> =
        (0..MSET_KEYS).map(|k| common::slot::key_slot(mset_key(0, k).as_bytes(), 1024)).collect();
    assert!(slots.len() >= MSET_KEYS - 4, "the keys spread over slots: {slots:?}");
    let tmp = tempfile::tempdir().unwrap();
    let (node, acked) = kill_9_under_writes(tmp.path(), 3, Duration::from_millis(1500), |c, w, i| {
        let value = format!("{i:>32768}");
        let mut mset = redis::cmd("MSET");
        for k in 0..MSET_KEYS {
            mset.arg(mset_key(w, k)).arg(&value);
        }
        mset.query(c)
    });
    let mut c = node.conn();
    for (w, &n) in acked.iter().enumerate() {
        assert!(n > 5, "writer {w} made progress ({n})");
        let values: Vec<u64> = (0..MSET_KEYS)
            .map(|k| c.get::<_, Option<String>>(mset_key(w, k)).unwrap().map_or(0, |v| v.trim().parse().unwrap()))
            .collect();
        assert!(values.iter().all(|v| *v == values[0]), "writer {w}: keys disagree after kill -9: {values:?}");
        assert!(values[0] >= n, "writer {w}: acknowledged MSET {n} kept ({values:?})");
    }
}
