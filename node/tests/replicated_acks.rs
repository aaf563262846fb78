//! Replicated acknowledgement (`min-replica-acks`) and WAIT, between real pika-node processes on
//! loopback: a write is answered only once a replica has it durable, so killing the master the
//! moment after loses nothing that was acknowledged, even with its replica far behind.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::*;

const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

fn pair(extra: &[(&str, &str)]) -> (Node, Node) {
    let master = Node::sharding_all_with(4, extra);
    let replica = Node::sharding_all_with(4, &[]);
    replica.follow(&master, "0-3", false);
    wait_in_sync(&master, &replica, "0-3", SYNC_TIMEOUT);
    (master, replica)
}

/// The test the mode exists for: the replica is throttled (stopped and continued several times
/// a second) while writers run, so it is well behind the master; the master is killed while the
/// replica is stopped. Every write a client saw acknowledged is on the replica.
#[test]
fn a_master_killed_with_its_replica_behind_loses_no_acknowledged_write() {
    let (mut master, replica) = pair(&[("min-replica-acks", "1"), ("replica-ack-timeout-ms", "10000")]);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let url = master.url();
            thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                let mut acked = Vec::new();
                for i in 0.. {
                    // Pipelined: one ack round trip covers the batch.
                    let mut pipe = redis::pipe();
                    for j in 0..8 {
                        pipe.cmd("SET").arg(format!("w{w}:{i}:{j}")).arg(i).ignore();
                    }
                    match pipe.query::<()>(&mut c) {
                        Ok(()) => acked.extend((0..8).map(|j| format!("w{w}:{i}:{j}"))),
                        Err(_) => break,
                    }
                }
                acked
            })
        })
        .collect();
    let throttle = {
        let (stop, pid) = (stop.clone(), replica.pid());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                support::pause(pid);
                thread::sleep(Duration::from_millis(150));
                if stop.load(Ordering::Relaxed) {
                    return; // left stopped: the master dies while its replica is behind
                }
                support::signal(pid, "-CONT");
                thread::sleep(Duration::from_millis(60));
            }
        })
    };
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    throttle.join().unwrap();
    master.kill9();
    replica.resume();
    let acked: Vec<String> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert!(acked.len() > 200, "only {} writes acknowledged", acked.len());
    let mut r = replica.conn();
    let missing: Vec<&String> =
        acked.iter().filter(|k| !query::<bool>(&mut r, &["EXISTS", k.as_str()])).take(5).collect();
    assert!(missing.is_empty(), "acknowledged writes missing on the replica: {missing:?} (of {})", acked.len());
}

/// A write the replicas do not confirm in time is an error (never a silent downgrade), a write
/// to a slot without enough streaming replicas is refused before it runs, and CONFIG SET turns
/// the mode on and off at runtime.
#[test]
fn unconfirmed_writes_fail_and_missing_replicas_refuse() {
    let (master, mut replica) = pair(&[]);
    let mut c = master.conn();
    let _: () = query(&mut c, &["CONFIG", "SET", "min-replica-acks", "1"]);
    let _: () = query(&mut c, &["CONFIG", "SET", "replica-ack-timeout-ms", "300"]);
    let _: () = query(&mut c, &["SET", "a", "1"]);
    assert_eq!(int(&mut replica.conn(), &["GET", "a"]), 1, "answered only once the replica has it");

    replica.pause();
    let started = Instant::now();
    let text = err(&mut c, &["SET", "b", "2"]);
    assert!(text.starts_with("UNACKED slot "), "{text}");
    assert!(text.contains("0 of the 1 required replicas"), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(300), "answered before the timeout");
    // The write is on the master: its outcome is what the error says, unknown to the client.
    assert_eq!(int(&mut c, &["GET", "b"]), 2);
    // Reads are not held.
    assert_eq!(int(&mut c, &["GET", "a"]), 1);
    replica.resume();
    let _: () = query(&mut c, &["SET", "c", "3"]);
    assert_eq!(int(&mut replica.conn(), &["GET", "c"]), 3);

    replica.kill9();
    wait_until(Duration::from_secs(10), "the master to see its replica gone", || {
        master.slot_info(Some("0-3")).iter().all(|s| s.master.as_ref().unwrap().replicas.is_empty())
    });
    let text = err(&mut c, &["SET", "d", "4"]);
    assert!(text.starts_with("TRYAGAIN slot ") && text.contains("0 of the 1 replicas"), "{text}");
    assert_eq!(query::<Option<String>>(&mut c, &["GET", "d"]), None, "a refused write did not run");

    // A migration's target follows with `noack`: it streams, and does not count.
    let target = Node::sharding_all_with(4, &[]);
    let port = master.port.to_string();
    let _: () = query(&mut target.conn(), &["pkcluster", "slotsslaveof", "127.0.0.1", &port, "0-3", "noack"]);
    wait_until(SYNC_TIMEOUT, "the target to stream", || master.replica_lags(&target, "0-3").is_some());
    let text = err(&mut c, &["SET", "d", "4"]);
    assert!(text.contains("0 of the 1 replicas"), "a migration's target counted as a replica: {text}");
    // Pika's argument order still holds: force before the table, junk refused.
    let refused = q(&mut target.conn(), &["pkcluster", "slotsslaveof", "127.0.0.1", &port, "0-3", "bogus", "0"]);
    assert!(refused.is_err(), "{refused:?}");

    let _: () = query(&mut c, &["CONFIG", "SET", "min-replica-acks", "0"]);
    let _: () = query(&mut c, &["SET", "d", "4"]);
    let conf: Vec<String> = query(&mut c, &["CONFIG", "GET", "min-replica-acks"]);
    assert_eq!(conf, ["min-replica-acks", "0"]);
}

/// WAIT as in Redis: the number of replicas that acknowledged this connection's writes, waiting
/// up to the timeout for the number asked.
#[test]
fn wait_counts_the_replicas_that_have_this_connections_writes() {
    let (master, replica) = pair(&[]);
    let mut c = master.conn();
    assert_eq!(int(&mut c, &["WAIT", "0", "0"]), 1, "no writes yet: the replicas streaming");
    let _: () = query(&mut c, &["SET", "k", "v"]);
    assert_eq!(int(&mut c, &["WAIT", "1", "5000"]), 1);
    let started = Instant::now();
    assert_eq!(int(&mut c, &["WAIT", "2", "200"]), 1, "only one replica exists");
    assert!(started.elapsed() >= Duration::from_millis(200));

    replica.pause();
    let _: () = query(&mut c, &["SET", "k2", "v"]);
    assert_eq!(int(&mut c, &["WAIT", "1", "300"]), 0, "a stopped replica has not acknowledged it");
    // Timeout 0 waits until the replica has it.
    let waiter = {
        let url = master.url();
        thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let _: () = redis::cmd("SET").arg("k3").arg("v").query(&mut c).unwrap();
            redis::cmd("WAIT").arg(1).arg(0).query::<i64>(&mut c).unwrap()
        })
    };
    thread::sleep(Duration::from_millis(300));
    assert!(!waiter.is_finished(), "WAIT 1 0 returned before the replica acknowledged");
    replica.resume();
    assert_eq!(waiter.join().unwrap(), 1);
    expect_errors(
        &mut c,
        &[
            (&["WAIT", "1"], "ERR wrong number of arguments for 'wait' command"),
            (&["WAIT", "x", "0"], "ERR value is not an integer or out of range"),
            (&["WAIT", "1", "-1"], "ERR timeout is negative"),
        ],
    );
}
