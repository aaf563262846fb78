//! Sharding mode: slot ownership and its errors, pkcluster replies (byte-exact layouts), the
//! codis slots* commands, multi-key commands across slots, the blacklist, tables, fencing.
mod support;

use redis::Commands;
use support::{q, Node};

fn sharding(slots: u32) -> Node {
    Node::start(&[("instance-mode", "sharding"), ("default-slot-num", &slots.to_string())])
}

/// A key that hashes to `slot` in a table of `count` slots.
fn key_in_slot(slot: u32, count: u32) -> String {
    (0..).map(|i| format!("key:{i}")).find(|k| common::slot::key_slot(k.as_bytes(), count) == slot).unwrap()
}

#[test]
fn unowned_slots_answer_partition_not_found() {
    let node = sharding(1024);
    let mut c = node.conn();
    // A new node owns nothing.
    let err = q(&mut c, &["SET", "foo", "v"]).unwrap_err();
    assert!(err.contains("Partition not found"), "{err}");
    let _: () = redis::cmd("pkcluster").arg("addslots").arg("0-511").query(&mut c).unwrap();
    let owned = key_in_slot(100, 1024);
    let unowned = key_in_slot(700, 1024);
    let _: () = c.set(&owned, "v").unwrap();
    assert!(q(&mut c, &["GET", &unowned]).unwrap_err().contains("Partition not found"));
    assert!(q(&mut c, &["HSET", &unowned, "f", "v"]).unwrap_err().contains("Partition not found"));
    // Multi-key: one unowned key fails the whole command and writes nothing.
    let err = q(&mut c, &["MSET", &owned, "changed", &unowned, "x"]).unwrap_err();
    assert!(err.contains("Partition not found"), "{err}");
    assert_eq!(c.get::<_, String>(&owned).unwrap(), "v");
}

#[test]
fn multi_key_commands_split_by_slot() {
    let node = Node::sharding_all(1024);
    let mut c = node.conn();
    let keys: Vec<String> = (0..20).map(|i| format!("user:{i}")).collect();
    let slots: std::collections::BTreeSet<u32> =
        keys.iter().map(|k| common::slot::key_slot(k.as_bytes(), 1024)).collect();
    assert!(slots.len() > 10, "keys spread over slots");
    let mut mset = redis::cmd("MSET");
    for k in &keys {
        mset.arg(k).arg(format!("v-{k}"));
    }
    let _: () = mset.query(&mut c).unwrap();
    let mut mget = redis::cmd("MGET");
    mget.arg("missing");
    for k in &keys {
        mget.arg(k);
    }
    let got: Vec<Option<String>> = mget.query(&mut c).unwrap();
    assert_eq!(got[0], None);
    for (k, v) in keys.iter().zip(&got[1..]) {
        assert_eq!(v.as_deref(), Some(format!("v-{k}").as_str()), "MGET keeps key order");
    }
    let mut exists = redis::cmd("EXISTS");
    exists.arg(&keys[0]).arg(&keys[0]).arg(&keys[5]).arg("nope");
    assert_eq!(exists.query::<i64>(&mut c).unwrap(), 3);
    let mut del = redis::cmd("DEL");
    for k in &keys[..10] {
        del.arg(k);
    }
    assert_eq!(del.query::<i64>(&mut c).unwrap(), 10);
    assert_eq!(c.get::<_, Option<String>>(&keys[3]).unwrap(), None);
    assert_eq!(c.get::<_, Option<String>>(&keys[15]).unwrap().as_deref(), Some("v-user:15"));
}

#[test]
fn cross_slot_writes_lock_their_slots_without_deadlock_or_lost_updates() {
    // MSET and DEL across slots hold every slot's write lock until their one batch is written.
    // In each round, writers listing the same slots in opposite orders and single-slot INCRs
    // contending for those slots' locks run at once; between rounds the keys must agree (they are
    // only ever written together), and at the end no increment may be lost.
    const ROUNDS: usize = 300;
    let node = Node::sharding_all(1024);
    let keys: Vec<String> = (0..40).map(|s| key_in_slot(s * 25, 1024)).collect();
    let counters: Vec<String> = (0..10).map(|s| format!("{{{}}}:n", keys[s * 4])).collect();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(7));
    // A deadlock (or a writer that failed, leaving the others at the barrier) would hang CI:
    // after 120 s (the test takes under a second) kill the node and end the test binary.
    let finished = Finished::default();
    let (watchdog, pid) = (finished.0.clone(), node.pid());
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(120));
        if !watchdog.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("cross-slot writers stuck for 120 s: a deadlock or a failed writer");
            let _ = std::process::Command::new("kill").arg("-9").arg(pid.to_string()).status();
            std::process::exit(101);
        }
    });
    let handles: Vec<_> = (0..6)
        .map(|t| {
            let (url, keys, counters, barrier) = (node.url(), keys.clone(), counters.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                for i in 0..ROUNDS {
                    let mut order: Vec<&String> = keys.iter().collect();
                    if t % 2 == 1 {
                        order.reverse();
                    }
                    // Writers 2 and 5 increment; 1 and 4 delete every third round; all else MSET.
                    match (t % 3, i % 3) {
                        (2, _) => {
                            let _: i64 = c.incr(&counters[i % 10], 1).unwrap();
                        }
                        (1, 2) => {
                            let mut del = redis::cmd("DEL");
                            for k in &order {
                                del.arg(*k);
                            }
                            let _: i64 = del.query(&mut c).unwrap();
                        }
                        _ => {
                            let mut mset = redis::cmd("MSET");
                            for k in &order {
                                mset.arg(*k).arg(format!("{t}:{i}"));
                            }
                            let _: () = mset.query(&mut c).unwrap();
                        }
                    }
                    barrier.wait(); // the round's writes are done
                    barrier.wait(); // the check is done
                }
            })
        })
        .collect();
    let mut c = node.conn();
    let mut mget = redis::cmd("MGET");
    for k in &keys {
        mget.arg(k);
    }
    for round in 0..ROUNDS {
        barrier.wait();
        let values: Vec<Option<String>> = mget.query(&mut c).unwrap();
        barrier.wait();
        assert!(values.windows(2).all(|w| w[0] == w[1]), "round {round}: keys written apart: {values:?}");
    }
    for h in handles {
        h.join().expect("writer finished");
    }
    let total: i64 = counters.iter().map(|k| c.get::<_, i64>(k).unwrap()).sum();
    drop(finished);
    assert_eq!(total, (2 * ROUNDS) as i64, "every INCR counted");
}

/// Set when dropped, also when the test panics: the watchdog then stands down.
#[derive(Default)]
struct Finished(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_cross_slot_del_of_big_collections_leaves_no_elements_behind() {
    let node = Node::sharding_all(1024);
    let mut c = node.conn();
    let big = key_in_slot(3, 1024);
    let small = key_in_slot(900, 1024);
    // More fields than are deleted one by one: the collection goes with a range delete.
    for chunk in (0..600).collect::<Vec<u32>>().chunks(100) {
        let mut hset = redis::cmd("HSET");
        hset.arg(&big);
        for f in chunk {
            hset.arg(format!("f{f}")).arg(f);
        }
        let _: i64 = hset.query(&mut c).unwrap();
    }
    let _: () = c.set(&small, "v").unwrap();
    let deleted: i64 = redis::cmd("DEL").arg(&big).arg(&small).arg("never-set").query(&mut c).unwrap();
    assert_eq!(deleted, 2);
    let _: i64 = c.hset(&big, "new", "1").unwrap();
    assert_eq!(c.hlen::<_, i64>(&big).unwrap(), 1, "old fields gone");
    assert_eq!(c.hget::<_, _, Option<String>>(&big, "f7").unwrap(), None);
    assert_eq!(c.get::<_, Option<String>>(&small).unwrap(), None);
}

#[test]
fn blacklist_and_hashtags() {
    let node = Node::sharding_all(1024);
    let mut c = node.conn();
    const REFUSED: &str = "This command is not supported in current configuration";
    let _: () = redis::cmd("SADD").arg("a").arg("1").query(&mut c).unwrap();
    let _: () = redis::cmd("SADD").arg("b").arg("2").query(&mut c).unwrap();
    assert!(q(&mut c, &["SUNION", "a", "b"]).unwrap_err().contains(REFUSED));
    assert!(q(&mut c, &["KEYS", "*"]).unwrap_err().contains(REFUSED));
    assert!(q(&mut c, &["SCAN", "0"]).unwrap_err().contains(REFUSED));
    assert!(q(&mut c, &["PFADD", "hll", "a"]).unwrap_err().contains(REFUSED));
    assert!(q(&mut c, &["MSETNX", "a1", "1", "b1", "2"]).unwrap_err().contains(REFUSED));
    // Keys that share a hashtag share a slot: accepted, as Redis Cluster does.
    let _: () = redis::cmd("SADD").arg("{u}.a").arg("1").arg("2").query(&mut c).unwrap();
    let _: () = redis::cmd("SADD").arg("{u}.b").arg("2").arg("3").query(&mut c).unwrap();
    let mut inter: Vec<String> = redis::cmd("SINTER").arg("{u}.a").arg("{u}.b").query(&mut c).unwrap();
    inter.sort();
    assert_eq!(inter, vec!["2"]);
    assert_eq!(redis::cmd("MSETNX").arg("{t}1").arg("1").arg("{t}2").arg("2").query::<i64>(&mut c).unwrap(), 1);
    let _: () = redis::cmd("RPUSH").arg("src").arg("x").query(&mut c).unwrap();
    let err = q(&mut c, &["RPOPLPUSH", "src", "dst"]).unwrap_err();
    assert!(err.contains("parameters hashtag is inconsistent"), "{err}");
}

#[test]
fn pkcluster_info_slot_layout_is_byte_exact() {
    let node = sharding(16);
    let mut c = node.conn();
    let _: () = redis::cmd("pkcluster").arg("addslots").arg("0-1,5").query(&mut c).unwrap();
    let info: String = redis::cmd("pkcluster").arg("info").arg("slot").query(&mut c).unwrap();
    let block = |s: u32| {
        format!("(db0:{s}) binlog_offset=0 0,safety_purge=none\r\n  Role: Master\r\n  connected_slaves: 0\r\n\r\n")
    };
    assert_eq!(info, format!("{}{}{}", block(0), block(1), block(5)));
    let one: String = redis::cmd("pkcluster").arg("info").arg("slot").arg("db0:5-9").query(&mut c).unwrap();
    assert_eq!(one, block(5));
    let none: String = redis::cmd("pkcluster").arg("info").arg("slot").arg("9").query(&mut c).unwrap();
    assert_eq!(none, "", "unowned slots are omitted");
    assert!(q(&mut c, &["pkcluster", "info", "slot", "all"]).unwrap_err().contains("Invalid Argument"));
    assert!(q(&mut c, &["pkcluster", "info", "slot", "1", "2"])
        .unwrap_err()
        .contains("wrong number of arguments for 'pkclusterinfo'"));
    // The operator's parser reads it back.
    let parsed = common::pkinfo::parse_slot_info(&info).unwrap();
    assert_eq!(parsed.iter().map(|s| s.slot).collect::<Vec<_>>(), vec![0, 1, 5]);
}

#[test]
fn pkcluster_info_table_layout() {
    let node = sharding(1024);
    let mut c = node.conn();
    let _: () = redis::cmd("pkcluster").arg("addslots").arg("0-1023").query(&mut c).unwrap();
    let _: () = c.set("x", "1").unwrap();
    let _: String = c.get("x").unwrap();
    let info: String = redis::cmd("pkcluster").arg("info").arg("table").query(&mut c).unwrap();
    let lines: Vec<&str> = info.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 7, "{info:?}");
    assert_eq!(lines[0], "table_id: 0");
    assert_eq!(lines[1], "  partition_num: 1024");
    assert!(lines[2].starts_with("  total_commands_processed:") && !lines[2].contains(": "));
    assert!(lines[3].starts_with("  total_write_commands_processed:"));
    assert!(
        lines[4].starts_with("  qps: ")
            && lines[5].starts_with("  write_qps: ")
            && lines[6].starts_with("  read_qps: ")
    );
    let parsed = common::pkinfo::parse_table_info(&info).unwrap();
    assert!(parsed[0].total_commands.unwrap() >= 2);
    assert!(parsed[0].total_write_commands.unwrap() >= 1);
    let single: String = redis::cmd("pkcluster").arg("info").arg("table").arg("0").query(&mut c).unwrap();
    assert_eq!(single.split("\r\n").filter(|l| !l.is_empty()).count(), 5);
    assert!(q(&mut c, &["pkcluster", "info", "table", "x"]).unwrap_err().contains("Invalid Argument"));
}

#[test]
fn addslots_delslots_errors_and_data() {
    let node = sharding(8);
    let mut c = node.conn();
    let pk = |c: &mut redis::Connection, args: &[&str]| {
        let mut full = vec!["pkcluster"];
        full.extend_from_slice(args);
        q(c, &full)
    };
    assert!(pk(&mut c, &["addslots", "8"]).unwrap_err().contains("Corruption: partition index out of range"));
    assert!(pk(&mut c, &["addslots", "1-0"]).unwrap_err().contains("Corruption: syntax error"));
    assert!(pk(&mut c, &["addslots", "-1"]).unwrap_err().contains("Corruption: syntax error"));
    assert!(pk(&mut c, &["addslots", "x"]).unwrap_err().contains("Corruption: syntax error"));
    assert!(pk(&mut c, &["addslots", "1", "0", "extra"]).unwrap_err().contains("syntax error"));
    assert!(pk(&mut c, &["addslots", "1", "9"]).unwrap_err().contains("table not found"));
    pk(&mut c, &["addslots", "0-3,"]).unwrap();
    assert!(pk(&mut c, &["addslots", "3"]).unwrap_err().contains("Corruption: partition : 3 exist"));
    let key = key_in_slot(2, 8);
    let _: () = c.set(&key, "v").unwrap();
    assert!(pk(&mut c, &["delslots", "6"]).unwrap_err().contains("Corruption: partition : 6 not exist"));
    pk(&mut c, &["delslots", "2"]).unwrap();
    assert!(q(&mut c, &["GET", &key]).unwrap_err().contains("Partition not found"));
    // Re-adding the slot gives an empty slot: delslots dropped the data.
    pk(&mut c, &["addslots", "2"]).unwrap();
    assert_eq!(c.get::<_, Option<String>>(&key).unwrap(), None);
    // Classic-mode errors.
    let classic = Node::classic();
    let mut cc = classic.conn();
    assert!(q(&mut cc, &["pkcluster", "info", "slot"])
        .unwrap_err()
        .contains("PkClusterInfo only support on sharding mode"));
    assert!(q(&mut cc, &["pkcluster", "addslots", "1"]).unwrap_err().contains("only support on sharding mode"));
    assert!(q(&mut cc, &["SLOTSINFO"]).unwrap_err().contains("SLOTSINFO only support on sharding mode"));
    let err = q(&mut cc, &["pkcluster", "bogus"]).unwrap_err();
    assert!(err.contains("unknown or unsupported command 'pkclusterbogus\""), "{err}");
}

#[test]
fn tables_and_select() {
    let node = sharding(4);
    let mut c = node.conn();
    let _: () = redis::cmd("pkcluster").arg("addtable").arg(1).arg(16).query(&mut c).unwrap();
    assert!(q(&mut c, &["pkcluster", "addtable", "1", "16"]).unwrap_err().contains("table already exist"));
    assert!(q(&mut c, &["pkcluster", "addtable", "2", "0"]).unwrap_err().contains("syntax error"));
    let _: () = redis::cmd("pkcluster").arg("addslots").arg("0-15").arg(1).query(&mut c).unwrap();
    assert!(q(&mut c, &["SELECT", "7"]).unwrap_err().contains("invalid Table for 'select'"));
    assert!(q(&mut c, &["SELECT", "x"]).unwrap_err().contains("invalid DB index for 'select'"));
    let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
    let _: () = c.set("in-db1", "v").unwrap();
    let info: String = redis::cmd("pkcluster").arg("info").arg("slot").arg("db1:0-15").query(&mut c).unwrap();
    assert_eq!(info.matches("(db1:").count(), 16);
    // Table 0 owns nothing: the same key is not found there.
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
    assert!(q(&mut c, &["GET", "in-db1"]).unwrap_err().contains("Partition not found"));
    let _: () = redis::cmd("pkcluster").arg("deltable").arg(1).query(&mut c).unwrap();
    assert!(q(&mut c, &["SELECT", "1"]).unwrap_err().contains("invalid Table"));
}

#[test]
fn codis_slots_commands() {
    let node = Node::sharding_all(1024);
    let mut c = node.conn();
    let slots: Vec<i64> =
        redis::cmd("SLOTSHASHKEY").arg("foo").arg("bar").arg("{user1000}.following").query(&mut c).unwrap();
    assert_eq!(slots, vec![289, 170, 870]);
    let tagged: Vec<String> = (0..30).map(|i| format!("{{tag}}:{i}")).collect();
    for k in &tagged {
        let _: () = c.set(k, "v").unwrap();
    }
    let slot = common::slot::key_slot(b"tag", 1024) as i64;
    let info: Vec<(i64, i64)> = redis::cmd("SLOTSINFO").query(&mut c).unwrap();
    assert_eq!(info.len(), 1024);
    assert_eq!(info.iter().find(|(s, _)| *s == slot).unwrap().1, 30);
    // SLOTSSCAN walks the slot with a cursor.
    let mut seen = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (String, Vec<String>) =
            redis::cmd("SLOTSSCAN").arg(slot).arg(cursor).arg("COUNT").arg(7).query(&mut c).unwrap();
        seen.extend(keys);
        cursor = next.parse().unwrap();
        if cursor == 0 {
            break;
        }
    }
    seen.sort();
    let mut expected = tagged.clone();
    expected.sort();
    assert_eq!(seen, expected);
    let (_, matched): (String, Vec<String>) = redis::cmd("SLOTSSCAN")
        .arg(slot)
        .arg(0)
        .arg("MATCH")
        .arg("{tag}:1*")
        .arg("COUNT")
        .arg(100)
        .query(&mut c)
        .unwrap();
    assert_eq!(matched.len(), 11);
    assert!(q(&mut c, &["SLOTSSCAN", "99999", "0"]).unwrap_err().contains("no such key"));
    assert!(q(&mut c, &["SLOTSSCAN", "1", "x"]).unwrap_err().contains("not an integer"));
    let deleted: Vec<(i64, i64)> = redis::cmd("SLOTSDEL").arg(slot).query(&mut c).unwrap();
    assert_eq!(deleted, vec![(slot, 0)]);
    assert_eq!(c.exists::<_, i64>(&tagged[0]).unwrap(), 0);
}

#[test]
fn fenced_slots_refuse_writes_until_unfenced() {
    let node = Node::sharding_all(16);
    let mut c = node.conn();
    let key = key_in_slot(3, 16);
    let _: () = c.set(&key, "before").unwrap();
    let _: () = redis::cmd("pkcluster").arg("fence").arg("3").query(&mut c).unwrap();
    let err = q(&mut c, &["SET", &key, "during"]).unwrap_err();
    assert!(err.contains("fenced for a cutover"), "{err}");
    assert_eq!(c.get::<_, String>(&key).unwrap(), "before", "reads still served");
    let other = key_in_slot(4, 16);
    let _: () = c.set(&other, "fine").unwrap();
    let _: () = redis::cmd("pkcluster").arg("unfence").arg("all").query(&mut c).unwrap();
    let _: () = c.set(&key, "after").unwrap();
    assert_eq!(c.get::<_, String>(&key).unwrap(), "after");
    assert!(q(&mut c, &["pkcluster", "fence", "99"]).unwrap_err().contains("Slot 99 not found!"));
}

#[test]
fn slot_count_that_is_not_a_power_of_two_uses_modulo() {
    let node = Node::sharding_all(1000);
    let mut c = node.conn();
    let slots: Vec<i64> = redis::cmd("SLOTSHASHKEY").arg("foo").query(&mut c).unwrap();
    assert_eq!(slots, vec![769]);
}

/// The master lease: without one a node takes writes as Pika does; once granted, master slots
/// refuse writes with a retryable error when it runs out (and `writable` leaves them out), and
/// take them again when it is renewed. A node stopped past its lease (SIGSTOP) refuses the
/// requests queued meanwhile: the check uses the monotonic clock at each write.
#[test]
fn an_expired_master_lease_stops_writes_until_renewed() {
    let node = Node::sharding_all(16);
    let mut c = node.conn();
    let key = key_in_slot(3, 16);
    let _: () = c.set(&key, "no lease yet").unwrap();
    let _: () = redis::cmd("pkcluster").arg("lease").arg("400").query(&mut c).unwrap();
    let _: () = c.set(&key, "leased").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    let err = q(&mut c, &["SET", &key, "expired"]).unwrap_err();
    assert!(err.starts_with("TRYAGAIN") && err.contains("lease expired"), "{err}");
    assert_eq!(c.get::<_, String>(&key).unwrap(), "leased", "reads still served");
    let writable: Vec<(i64, i64, String)> = support::query(&mut c, &["pkcluster", "writable"]);
    assert_eq!(writable, vec![(0, 16, String::new())], "an expired master lists no writable slot");
    let _: () = redis::cmd("pkcluster").arg("lease").arg("10000").query(&mut c).unwrap();
    let _: () = c.set(&key, "renewed").unwrap();
    assert_eq!(c.get::<_, String>(&key).unwrap(), "renewed");
    assert!(q(&mut c, &["pkcluster", "lease", "-1"]).is_err());
    assert!(q(&mut c, &["pkcluster", "lease"]).is_err());
}

/// A lease renewal that reached a stopped node (it waited in the socket buffer) counts from
/// when it arrived, not from when the node, resumed, read it: otherwise a master the operator
/// gave up on, and replaced, would take writes again for a whole lease.
#[test]
fn a_lease_renewal_read_late_counts_from_its_arrival() {
    let node = Node::sharding_all(16);
    let mut c = node.conn();
    let key = key_in_slot(3, 16);
    let _: () = redis::cmd("pkcluster").arg("lease").arg("10000").query(&mut c).unwrap();
    let _: () = c.set(&key, "leased").unwrap();
    let mut late = std::net::TcpStream::connect(("127.0.0.1", node.port)).unwrap();
    let _: () = redis::cmd("pkcluster").arg("lease").arg("0").query(&mut c).unwrap();
    node.pause();
    use std::io::{Read, Write};
    late.write_all(b"*3\r\n$9\r\npkcluster\r\n$5\r\nlease\r\n$4\r\n1500\r\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2000));
    node.resume();
    let mut reply = [0u8; 5];
    late.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+OK\r\n");
    let err = q(&mut c, &["SET", &key, "late"]).unwrap_err();
    assert!(err.starts_with("TRYAGAIN") && err.contains("lease expired"), "{err}");
    // A renewal read at once still counts in full.
    let _: () = redis::cmd("pkcluster").arg("lease").arg("1500").query(&mut c).unwrap();
    let _: () = c.set(&key, "renewed").unwrap();
}
