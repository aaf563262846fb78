//! Per-slot replication between real pika-node processes on loopback: full sync, incremental
//! stream, lag, chaining, promotion, restarts and kill -9 on either side, purged logs.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use support::*;

const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

fn sharding(slots: u32, extra: &[(&str, &str)]) -> Node {
    Node::sharding_all_with(slots, extra)
}

/// Loads `strings` string keys and `collections` keys of each collection type (a few elements
/// each), pipelined.
fn load(node: &Node, strings: usize, collections: usize) {
    let mut c = node.conn();
    let mut pipe = redis::pipe();
    let mut queued = 0;
    let mut flush = |pipe: &mut redis::Pipeline, queued: &mut usize, force: bool| {
        if *queued >= 200 || (force && *queued > 0) {
            let _: () = pipe.query(&mut c).unwrap();
            pipe.clear();
            *queued = 0;
        }
    };
    for batch in (0..strings).step_by(100) {
        let mut mset = redis::cmd("MSET");
        for i in batch..(batch + 100).min(strings) {
            mset.arg(format!("s:{i}")).arg(format!("value-{i}"));
        }
        pipe.add_command(mset).ignore();
        queued += 1;
        flush(&mut pipe, &mut queued, false);
    }
    for i in 0..collections {
        pipe.cmd("HSET").arg(format!("h:{i}")).arg("a").arg(i).arg("b").arg("x").ignore();
        pipe.cmd("RPUSH").arg(format!("l:{i}")).arg("x").arg("y").arg(i).ignore();
        pipe.cmd("SADD").arg(format!("t:{i}")).arg("m1").arg("m2").arg(i).ignore();
        pipe.cmd("ZADD").arg(format!("z:{i}")).arg(1.5).arg("a").arg(i).arg("b").ignore();
        if i % 10 == 0 {
            pipe.cmd("EXPIRE").arg(format!("h:{i}")).arg(100_000).ignore();
        }
        queued += 5;
        flush(&mut pipe, &mut queued, false);
    }
    flush(&mut pipe, &mut queued, true);
}

/// Writes to `node` until `stop` is set: counters, overwrites, deletes, collection edits, TTLs.
/// Returns the number of acknowledged writes; every reply must be a success.
fn spawn_writer(node: &Node, stop: Arc<AtomicBool>, seed: u64) -> thread::JoinHandle<u64> {
    let url = node.url();
    thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let mut acked = 0u64;
        let mut i = seed;
        while !stop.load(Ordering::Relaxed) {
            let mut pipe = redis::pipe();
            for _ in 0..20 {
                i += 1;
                let k = i % 5000;
                pipe.cmd("INCR").arg(format!("counter:{}", i % 50)).ignore();
                pipe.cmd("SET").arg(format!("s:{k}")).arg(format!("new-{i}")).ignore();
                pipe.cmd("HSET").arg(format!("h:{k}")).arg("w").arg(i).ignore();
                pipe.cmd("LPUSH").arg(format!("l:{k}")).arg(i).ignore();
                pipe.cmd("ZINCRBY").arg(format!("z:{k}")).arg(1).arg("a").ignore();
                pipe.cmd("DEL").arg(format!("t:{}", (k + 7) % 5000)).ignore();
                pipe.cmd("PEXPIRE").arg(format!("s:{}", (k + 3) % 5000)).arg(50).ignore();
            }
            let _: () = pipe.query(&mut c).expect("writes to the master succeed");
            acked += 140;
        }
        acked
    })
}

/// Compares a sample of keys of every type on both nodes, through the client protocol.
fn compare_sample(a: &Node, b: &Node, keys: usize) {
    let (mut ca, mut cb) = (a.conn(), b.conn());
    for i in (0..keys).step_by((keys / 500).max(1)) {
        for (kind, cmd) in [
            ("s", vec!["GET"]),
            ("h", vec!["HGETALL"]),
            ("l", vec!["LRANGE", "0", "-1"]),
            ("t", vec!["SMEMBERS"]),
            ("z", vec!["ZRANGE", "0", "-1", "WITHSCORES"]),
        ] {
            let key = format!("{kind}:{i}");
            let mut args = vec![cmd[0], key.as_str()];
            args.extend_from_slice(&cmd[1..]);
            assert_eq!(q(&mut ca, &args), q(&mut cb, &args), "{args:?}");
            let ttl_a = int(&mut ca, &["TTL", &key]);
            let ttl_b = int(&mut cb, &["TTL", &key]);
            assert!((ttl_a - ttl_b).abs() <= 2, "TTL of {key}: {ttl_a} vs {ttl_b}");
        }
    }
}

#[test]
fn full_sync_of_a_million_keys_then_incremental_under_writes() {
    let keys: usize = std::env::var("REPL_TEST_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    // One slot: every key of every type lands in the slot being synced.
    let master = sharding(1, &[]);
    let replica = sharding(1, &[]);
    let collections = keys / 20;
    let started = std::time::Instant::now();
    load(&master, keys - 4 * collections, collections);
    let dbsize = master.digest("0")[0].2;
    eprintln!("loaded {keys} keys ({dbsize} records) in {:?}", started.elapsed());

    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(&master, stop.clone(), 0);
    let started = std::time::Instant::now();
    replica.follow(&master, "0", false);
    // The full sync is reported while it runs, then the replica follows the log.
    let mut saw_lag = false;
    wait_until(SYNC_TIMEOUT, "the replica to reach BinlogSync", || {
        let info = master.slot_info(Some("0"));
        let replicas = &info[0].master.as_ref().unwrap().replicas;
        if let Some(r) = replicas.iter().find(|r| r.addr == replica.addr()) {
            assert!(r.lag.is_some(), "lag is always printed");
            saw_lag |= r.lag.unwrap() > 0;
            r.status == common::protocol::SyncStatus::BinlogSync
        } else {
            false
        }
    });
    eprintln!("full sync reached BinlogSync after {:?}", started.elapsed());
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let acked = writer.join().unwrap();
    assert!(acked > 0);
    wait_in_sync(&master, &replica, "0", SYNC_TIMEOUT);
    eprintln!("in sync after {:?}; {acked} writes during the sync; lag seen > 0: {saw_lag}", started.elapsed());
    assert_eq!(master.info_field("sync_full"), "1");
    let digest = replica.digest("0");
    assert!(digest[0].2 as usize >= keys, "records on the replica: {}", digest[0].2);
    compare_sample(&master, &replica, keys / 20);
    let mut r = replica.conn();
    assert_eq!(err(&mut r, &["SET", "s:1", "x"]), "ERR Server in read-only");
    let counters: i64 = (0..50).map(|i| int(&mut r, &["GET", &format!("counter:{i}")])).sum();
    assert_eq!(counters as u64, acked / 140 * 20, "every acknowledged INCR reached the replica");
}

#[test]
fn chained_replication_promotion_and_failover_resume() {
    let a = sharding(8, &[]);
    let b = sharding(8, &[]);
    let c = sharding(8, &[]);
    let d = sharding(8, &[]);
    load(&a, 2000, 200);
    b.follow(&a, "0-7", false);
    c.follow(&b, "0-7", false); // chained: C follows B, which follows A
    d.follow(&a, "0-7", false);
    wait_in_sync(&a, &b, "0-7", SYNC_TIMEOUT);
    wait_in_sync(&b, &c, "0-7", SYNC_TIMEOUT);
    wait_in_sync(&a, &d, "0-7", SYNC_TIMEOUT);
    // A write on A travels A -> B -> C.
    let _: () = query(&mut a.conn(), &["SET", "chain", "1"]);
    wait_in_sync(&b, &c, "0-7", SYNC_TIMEOUT);
    assert_eq!(query::<String>(&mut c.conn(), &["GET", "chain"]), "1");
    // B is both a replica (of A) and a master (of C): one block with both halves.
    let info = b.slot_info(Some("3"));
    assert_eq!(info[0].slave.as_ref().unwrap().master, a.addr());
    assert_eq!(info[0].master.as_ref().unwrap().replicas[0].addr, c.addr());
    let text: String = query(&mut b.conn(), &["pkcluster", "info", "slot", "3"]);
    assert!(text.contains("  -----------\r\n  Role: Slave\r\n"), "{text}");

    // Failover: B is promoted. A forgets it; C keeps following B without a new full sync.
    let full_before = b.info_field("sync_full");
    let _: () = query(&mut b.conn(), &["pkcluster", "slotsslaveof", "no", "one", "all"]);
    wait_until(Duration::from_secs(10), "A to forget B", || {
        a.slot_info(Some("0-7")).iter().all(|s| s.master.as_ref().unwrap().replicas.iter().all(|r| r.addr != b.addr()))
    });
    let _: () = query(&mut b.conn(), &["SET", "after-promotion", "yes"]);
    wait_in_sync(&b, &c, "0-7", SYNC_TIMEOUT);
    assert_eq!(query::<String>(&mut c.conn(), &["GET", "after-promotion"]), "yes");
    assert_eq!(b.info_field("sync_full"), full_before, "C continued incrementally");

    // D, a sibling replica of A at the promotion point, re-points to B and continues
    // incrementally: B keeps A's history up to the promotion.
    let partial_before: u64 = b.info_field("sync_partial_ok").parse().unwrap();
    d.follow(&b, "0-7", false);
    wait_in_sync(&b, &d, "0-7", SYNC_TIMEOUT);
    assert_eq!(b.info_field("sync_full"), full_before, "D needed no full sync");
    let partial_after: u64 = b.info_field("sync_partial_ok").parse().unwrap();
    assert!(partial_after >= partial_before + 8, "{partial_before} -> {partial_after}");

    // A, the old master, took a write B never saw (split brain). Demoted under B, it must not
    // keep that write: its position is past the promotion point, so it re-syncs in full.
    let _: () = query(&mut a.conn(), &["SET", "lost-on-old-master", "1"]);
    a.follow(&b, "0-7", false);
    wait_in_sync(&b, &a, "0-7", SYNC_TIMEOUT);
    assert_eq!(q(&mut a.conn(), &["GET", "lost-on-old-master"]), Ok(redis::Value::Nil));
    assert_eq!(query::<String>(&mut a.conn(), &["GET", "after-promotion"]), "yes");
}

#[test]
fn replica_killed_mid_sync_and_mid_stream_converges() {
    let master = sharding(4, &[]);
    let mut replica = sharding(4, &[]);
    load(&master, 100_000, 5000);
    replica.follow(&master, "0-3", false);
    // Mid full sync: kill -9 as soon as the sync is under way.
    wait_until(Duration::from_secs(30), "a full sync to start", || master.info_field("sync_full") != "0");
    replica.kill9();
    replica.spawn();
    // The role survived: read-only at once, and the sync starts over by itself.
    assert_eq!(err(&mut replica.conn(), &["SET", "x", "1"]), "ERR Server in read-only");
    wait_in_sync(&master, &replica, "0-3", SYNC_TIMEOUT);

    // Mid stream, under writes: kill -9, restart, resume from its own position.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(&master, stop.clone(), 1);
    thread::sleep(Duration::from_millis(500));
    let full_before = master.info_field("sync_full");
    replica.kill9();
    thread::sleep(Duration::from_millis(500));
    replica.spawn();
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    wait_in_sync(&master, &replica, "0-3", SYNC_TIMEOUT);
    assert_eq!(master.info_field("sync_full"), full_before, "the restarted replica resumed incrementally");
    compare_sample(&master, &replica, 5000);
}

#[test]
fn master_killed_mid_stream_and_mid_sync_loses_nothing_acknowledged() {
    let mut master = sharding(4, &[]);
    let replica = sharding(4, &[]);
    replica.follow(&master, "0-3", false);
    wait_in_sync(&master, &replica, "0-3", SYNC_TIMEOUT);

    // A writer records every acknowledged SET until the master dies under it.
    let url = master.url();
    let writer = thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let mut acked = Vec::new();
        for i in 0.. {
            match redis::cmd("SET").arg(format!("ack:{i}")).arg(i).query::<()>(&mut c) {
                Ok(()) => acked.push(i),
                Err(_) => break,
            }
        }
        acked
    });
    thread::sleep(Duration::from_millis(1500));
    master.kill9();
    let acked = writer.join().unwrap();
    assert!(acked.len() > 100, "only {} writes before the kill", acked.len());
    master.spawn();
    // The replica reconnects by itself (back-off) and resumes.
    wait_in_sync(&master, &replica, "0-3", SYNC_TIMEOUT);
    let (mut m, mut r) = (master.conn(), replica.conn());
    for i in &acked {
        let key = format!("ack:{i}");
        assert_eq!(int(&mut m, &["GET", &key]), *i as i64, "{key} on the master");
        assert_eq!(int(&mut r, &["GET", &key]), *i as i64, "{key} on the replica");
    }

    // Mid full sync: a second replica starts syncing a bigger slot set; the master dies and
    // comes back; the sync starts over and converges.
    load(&master, 100_000, 2000);
    let second = sharding(4, &[]);
    second.follow(&master, "0-3", true);
    wait_until(Duration::from_secs(30), "the full sync to start", || {
        master.slot_info(Some("0-3")).iter().any(|s| {
            s.master
                .as_ref()
                .unwrap()
                .replicas
                .iter()
                .any(|r| r.addr == second.addr() && r.status == common::protocol::SyncStatus::DbSync)
        })
    });
    master.kill9();
    // A slot whose full sync did not finish says so (kTryDBSync) and cannot be promoted: its
    // data is partial.
    thread::sleep(Duration::from_millis(300));
    for info in second.slot_info(Some("0-3")) {
        if info.slave.as_ref().is_some_and(|s| s.state == common::protocol::LinkState::TryDbSync) {
            let text = err(&mut second.conn(), &["pkcluster", "slotsslaveof", "no", "one", &info.slot.to_string()]);
            assert!(text.contains("in a full sync"), "{text}");
        }
    }
    master.spawn();
    wait_in_sync(&master, &second, "0-3", SYNC_TIMEOUT);
    wait_in_sync(&master, &replica, "0-3", SYNC_TIMEOUT);
}

/// A master stopped cleanly (SIGTERM, as a rolling update or a node drain stops it) saves its
/// slots' positions, histories and recent entries: after its restart its replicas continue
/// incrementally, also one that was behind when it stopped. (After kill -9 they re-sync in
/// full: `master_killed_mid_stream_and_mid_sync_loses_nothing_acknowledged`.)
#[test]
fn replicas_of_a_master_stopped_cleanly_continue_after_its_restart() {
    let mut master = sharding(4, &[]);
    let replica = sharding(4, &[]);
    let mut behind = sharding(4, &[]);
    replica.follow(&master, "0-3", false);
    behind.follow(&master, "0-3", false);
    load(&master, 2_000, 50);
    wait_in_sync(&master, &replica, "0-3", SYNC_TIMEOUT);
    wait_in_sync(&master, &behind, "0-3", SYNC_TIMEOUT);
    // One replica stops; the master takes writes it does not have, then stops cleanly.
    behind.stop();
    let mut c = master.conn();
    for i in 0..500 {
        let _: () = query(&mut c, &["SET", &format!("while-down:{i}"), &i.to_string()]);
    }
    drop(c);
    let synced = master.info_field("sync_full");
    assert_eq!(synced, "8", "two replicas of four slots, each synced once in full");
    assert_eq!(master.stop().code(), Some(0));
    master.spawn();
    behind.spawn();
    let mut c = master.conn();
    for i in 0..500 {
        let _: () = query(&mut c, &["SET", &format!("after:{i}"), &i.to_string()]);
    }
    wait_in_sync(&master, &replica, "0-3", SYNC_TIMEOUT);
    wait_in_sync(&master, &behind, "0-3", SYNC_TIMEOUT);
    assert_eq!(master.info_field("sync_full"), "0", "no full sync after the clean restart");
    for node in [&replica, &behind] {
        let mut r = node.conn();
        for i in (0..500).step_by(7) {
            assert_eq!(int(&mut r, &["GET", &format!("while-down:{i}")]), i as i64);
            assert_eq!(int(&mut r, &["GET", &format!("after:{i}")]), i as i64);
        }
    }
    compare_sample(&master, &replica, 500);
    // The saved log is used once: a crash after it brings back nothing stale (a fresh history,
    // full syncs, the data still the same).
    master.kill9();
    master.spawn();
    wait_in_sync(&master, &replica, "0-3", SYNC_TIMEOUT);
    wait_in_sync(&master, &behind, "0-3", SYNC_TIMEOUT);
    assert_eq!(master.info_field("sync_full"), "8", "after kill -9 both replicas re-sync in full");
    compare_sample(&master, &replica, 500);
}

#[test]
fn a_replica_behind_a_purged_log_resyncs_in_full() {
    let master = sharding(2, &[("slot-log-size", "64kb")]);
    let mut replica = sharding(2, &[]);
    load(&master, 1000, 10);
    replica.follow(&master, "0-1", false);
    wait_in_sync(&master, &replica, "0-1", SYNC_TIMEOUT);
    assert_eq!(master.info_field("sync_full"), "2", "one full sync per slot");
    replica.stop();
    // ~1 MB of writes while the replica is away: far more than the 64 KiB kept per slot.
    let mut c = master.conn();
    let value = "v".repeat(1000);
    for i in 0..1000 {
        let _: () = query(&mut c, &["SET", &format!("away:{i}"), &value]);
    }
    thread::sleep(Duration::from_millis(1500)); // the purge runs once a second
    replica.spawn();
    wait_in_sync(&master, &replica, "0-1", SYNC_TIMEOUT);
    assert_eq!(master.info_field("sync_full"), "4", "both slots re-synced in full");
    assert_eq!(query::<String>(&mut replica.conn(), &["GET", "away:999"]), value);
}

#[test]
fn cutover_fence_drain_promote_keeps_every_write() {
    // The operator's cutover, by hand: fence the old owner, wait for lag 0, promote the
    // replica; every write acknowledged by the old owner is on the new one.
    let old = sharding(4, &[]);
    let new = sharding(4, &[]);
    load(&old, 5000, 100);
    new.follow(&old, "0-3", false);
    wait_in_sync(&old, &new, "0-3", SYNC_TIMEOUT);
    let stop = Arc::new(AtomicBool::new(false));
    let url = old.url();
    let stop2 = stop.clone();
    let writer = thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let (mut acked, mut refused) = (Vec::new(), 0);
        let mut i = 0;
        while !stop2.load(Ordering::Relaxed) {
            i += 1;
            match redis::cmd("SET").arg(format!("cut:{i}")).arg(i).query::<()>(&mut c) {
                Ok(()) => acked.push(i),
                Err(e) => {
                    assert!(error_text(&e).starts_with("TRYAGAIN"), "{e}");
                    refused += 1;
                }
            }
        }
        (acked, refused)
    });
    thread::sleep(Duration::from_millis(500));
    let _: () = query(&mut old.conn(), &["pkcluster", "fence", "0-3"]);
    wait_in_sync(&old, &new, "0-3", SYNC_TIMEOUT);
    let _: () = query(&mut new.conn(), &["pkcluster", "slotsslaveof", "no", "one", "0-3"]);
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (acked, refused) = writer.join().unwrap();
    assert!(refused > 0, "writes were refused while fenced");
    let mut c = new.conn();
    for i in acked {
        assert_eq!(int(&mut c, &["GET", &format!("cut:{i}")]), i as i64);
    }
    let _: () = query(&mut c, &["SET", "new-owner", "writable"]);
}

#[test]
fn a_cross_slot_mset_reaches_each_replica_slot_with_its_own_keys_only() {
    // Pika appends the whole MSET to every slot's binlog, so a replica writes other slots' keys
    // into the wrong slot (docs/compatibility.md, "Change-log entries per slot"). Here each slot's
    // entry holds that slot's keys.
    let master = sharding(8, &[]);
    let replica = sharding(8, &[]);
    replica.follow(&master, "0-3", false); // slots 4-7 stay the replica's own (empty) masters
    wait_in_sync(&master, &replica, "0-3", SYNC_TIMEOUT);
    let keys: Vec<String> = (0..64).map(|i| format!("k{i}")).collect();
    let mut mset = vec!["MSET".to_string()];
    for k in &keys {
        mset.push(k.clone());
        mset.push(format!("v-{k}"));
    }
    let mut m = master.conn();
    let _: () = query(&mut m, &mset.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(int(&mut m, &["DEL", "k1", "k2", "k3", "k4"]), 4);
    wait_in_sync(&master, &replica, "0-3", SYNC_TIMEOUT);
    let slots: Vec<i64> =
        query(&mut m, &[&["SLOTSHASHKEY"][..], &keys.iter().map(String::as_str).collect::<Vec<_>>()].concat());
    assert!(slots.iter().any(|&s| s < 4) && slots.iter().any(|&s| s >= 4), "keys span both halves: {slots:?}");
    let mut r = replica.conn();
    for (key, slot) in keys.iter().zip(&slots) {
        let deleted = ["k1", "k2", "k3", "k4"].contains(&key.as_str());
        let expected = if *slot < 4 && !deleted {
            redis::Value::BulkString(format!("v-{key}").into_bytes())
        } else {
            redis::Value::Nil
        };
        assert_eq!(q(&mut r, &["GET", key]), Ok(expected), "{key} (slot {slot})");
    }
    assert!(replica.digest("4-7").iter().all(|d| d.2 == 0), "nothing leaked into the replica's own slots");
}
