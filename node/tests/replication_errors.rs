//! Per-slot replication: error paths and bad input. slotsslaveof argument errors, read-only
//! replica slots (every key checked), FLUSHDB/FLUSHALL sparing replica slots, delslots refused
//! while either end replicates, the codis SLOTSMGRT* probes, authentication of the replication
//! connection, and hostile peers on the replication stream (bad handshakes, garbage frames, a
//! peer that never reads): each gets an error or is dropped, the node keeps serving, and no data
//! changes.
mod support;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::pkinfo::SlotInfo;
use redis::Value;
use support::{err, q, query, raw_exchange, wait_in_sync, wait_until, Digest, Node};

const SLOTS: u32 = 16;
/// The longest any test waits for replication to settle.
const SYNC: Duration = Duration::from_secs(20);

fn sharding() -> Node {
    Node::start(&[("instance-mode", "sharding"), ("default-slot-num", "16")])
}

fn slot_of(key: &str) -> u32 {
    common::slot::key_slot(key.as_bytes(), SLOTS)
}

/// A key named `<prefix>:<n>` that hashes to `slot`.
fn key_in_slot(prefix: &str, slot: u32) -> String {
    (0..).map(|i| format!("{prefix}:{i}")).find(|k| slot_of(k) == slot).unwrap()
}

/// A hashtag whose keys (`{tag}...`) all hash to `slot`.
fn tag_in_slot(slot: u32) -> String {
    (0..).map(|i| format!("t{i}")).find(|t| slot_of(t) == slot).unwrap()
}

/// Asserts the exact error text of a command that must fail.
fn assert_err(c: &mut redis::Connection, args: &[&str], expected: &str) {
    assert_eq!(err(c, args), expected, "{args:?}");
}

fn ok(c: &mut redis::Connection, args: &[&str]) {
    assert_eq!(q(c, args), Ok(Value::Okay), "{args:?}");
}

fn get(c: &mut redis::Connection, key: &str) -> Option<String> {
    query(c, &["GET", key])
}

fn ints(values: &[i64]) -> Value {
    Value::Array(values.iter().map(|&v| Value::Int(v)).collect())
}

/// A connection that authenticates with `password`.
fn conn_with(node: &Node, password: &str) -> redis::Connection {
    let url = format!("redis://:{password}@127.0.0.1:{}/", node.port);
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

fn slot_info_on(c: &mut redis::Connection, group: &str) -> Vec<SlotInfo> {
    let text: String = query(c, &["pkcluster", "info", "slot", group]);
    common::pkinfo::parse_slot_info(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"))
}

/// The addresses of the replicas `node` lists as attached to `slot`.
fn replicas_of(node: &Node, slot: u32) -> Vec<String> {
    node.slot_info(Some(&slot.to_string()))
        .iter()
        .flat_map(|s| s.master.iter().flat_map(|m| m.replicas.iter().map(|r| r.addr.clone())))
        .collect()
}

/// A request in RESP.
fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `PKREPL <args...>` in RESP.
fn pkrepl(args: &[&str]) -> Vec<u8> {
    let mut all: Vec<&[u8]> = vec![b"PKREPL"];
    all.extend(args.iter().map(|a| a.as_bytes()));
    resp(&all)
}

/// Reads from `s` until the peer closes the connection (true) or `wait` passes (false).
fn read_until_closed(s: &mut TcpStream, out: &mut Vec<u8>, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return false,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Sends `input` on a new connection; the reply text and whether the node closed the connection
/// within `wait`.
fn exchange_until_closed(port: u16, input: &[u8], wait: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(input).unwrap();
    let mut out = Vec::new();
    let closed = read_until_closed(&mut s, &mut out, wait);
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Reads one CRLF-terminated line, byte by byte (nothing after it is consumed).
fn read_line(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match s.read(&mut byte) {
            Ok(0) => panic!("closed after {:?}", String::from_utf8_lossy(&line)),
            Ok(_) => line.push(byte[0]),
            Err(e) => panic!("reading a line after {:?}: {e}", String::from_utf8_lossy(&line)),
        }
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).unwrap()
}

/// A raw peer that handshakes as a replica of `slot` of db0 claiming client port `port`
/// (force: a full sync), and the master's first reply line.
fn raw_replica(master: &Node, slot: u32, port: u16) -> (TcpStream, String) {
    let mut s = TcpStream::connect(("127.0.0.1", master.port)).unwrap();
    s.write_all(&pkrepl(&["0", &slot.to_string(), &port.to_string(), "0", "0", "0", "1"])).unwrap();
    let line = read_line(&mut s);
    (s, line)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = f();
    (value, started.elapsed())
}

// ---- 1. slotsslaveof argument errors (docs/compatibility.md, "pkcluster commands and
// replies") ----

#[test]
fn slotsslaveof_argument_errors_are_pikas_and_change_nothing() {
    let master = Node::sharding_all(SLOTS);
    let node = sharding();
    let mut c = node.conn();
    ok(&mut c, &["pkcluster", "addslots", "0-7"]);
    let key = key_in_slot("k", 2);
    ok(&mut c, &["SET", &key, "mine"]);
    let (mp, own, dead) = (master.port.to_string(), node.port.to_string(), support::free_port().to_string());
    let (mp, own, dead) = (mp.as_str(), own.as_str(), dead.as_str());
    const ARITY: &str = "ERR wrong number of arguments for 'pkclusterslotsslaveof' command";
    const NOT_INT: &str = "ERR value is not an integer or out of range";
    const BAD_GROUP: &str = "ERR Corruption: syntax error";
    let cases: &[(&[&str], &str)] = &[
        (&["pkcluster", "slotsslaveof"], ARITY),
        (&["pkcluster", "slotsslaveof", "no", "one"], ARITY),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", mp], ARITY),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", "abc", "0-3"], NOT_INT),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", "0", "0-3"], NOT_INT),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", "-1", "0-3"], NOT_INT),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", "1.5", "0-3"], NOT_INT),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", "65536", "0-3"], NOT_INT),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", own, "0-3"], "ERR You fucked up"),
        (&["pkcluster", "slotsslaveof", "localhost", own, "0-3", "force"], "ERR You fucked up"),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", mp, "3-1"], BAD_GROUP),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", mp, "-1"], BAD_GROUP),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", mp, "0-"], BAD_GROUP),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", mp, "one"], BAD_GROUP),
        (&["pkcluster", "slotsslaveof", "no", "one", "x"], BAD_GROUP),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", mp, "0-3", "7"], "ERR invalid Table for ''"),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", mp, "0-3", "force", "7"], "ERR invalid Table for ''"),
        (&["pkcluster", "slotsslaveof", "no", "one", "0-3", "7"], "ERR invalid Table for ''"),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", mp, "0-3", "db0"], "ERR syntax error"),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", mp, "0-3", "0", "0"], "ERR syntax error"),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", mp, "0-3", "forced", "0"], "ERR syntax error"),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", mp, "0-3", "force", "0", "x"], "ERR syntax error"),
        (&["pkcluster", "slotsslaveof", "no", "one", "0-3", "force"], "ERR syntax error"),
        (&["pkcluster", "slotsslaveof", "no", "one", ","], "ERR Slots set empty"),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", mp, "0-9"], "ERR Slot 8 not found!"),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", mp, "12", "force"], "ERR Slot 12 not found!"),
        (&["pkcluster", "slotsslaveof", "no", "one", "3,15"], "ERR Slot 15 not found!"),
        (&["pkcluster", "slotsslaveof", "127.0.0.1", dead, "0-3"], "ERR Corruption: connect remote node error"),
        (
            &["pkcluster", "slotsslaveof", "127.0.0.1", dead, "all", "force"],
            "ERR Corruption: connect remote node error",
        ),
    ];
    for (args, expected) in cases {
        assert_err(&mut c, args, expected);
    }
    // Nothing changed: every slot is still a writable master with no upstream, data intact.
    for s in node.slot_info(None) {
        assert!(s.slave.is_none(), "slot {} became a replica: {s:?}", s.slot);
    }
    assert_eq!(node.slot_info(None).len(), 8);
    assert_eq!(get(&mut c, &key).as_deref(), Some("mine"));
    ok(&mut c, &["SET", &key, "still mine"]);
    assert!(replicas_of(&master, 2).is_empty());
}

#[test]
fn slotsslaveof_in_classic_mode_is_refused() {
    let master = Node::sharding_all(SLOTS);
    let node = Node::classic();
    let mut c = node.conn();
    let mp = master.port.to_string();
    const REFUSED: &str = "ERR PkClusterSlotSync only support on sharding mode";
    assert_err(&mut c, &["pkcluster", "slotsslaveof", "127.0.0.1", &mp, "0"], REFUSED);
    assert_err(&mut c, &["pkcluster", "slotsslaveof", "127.0.0.1", &mp, "all", "force"], REFUSED);
    assert_err(&mut c, &["pkcluster", "slotsslaveof", "no", "one", "all"], REFUSED);
    assert_err(&mut c, &["pkcluster", "digest", "all"], "ERR PkClusterDigest only support on sharding mode");
    ok(&mut c, &["SET", "k", "v"]);
}

// ---- 2. replica slots are read-only on every key ----

#[test]
fn replica_slots_refuse_every_write_and_serve_the_masters_data() {
    let master = Node::sharding_all(SLOTS);
    let replica = Node::sharding_all(SLOTS);
    let mut m = master.conn();
    let mut r = replica.conn();
    // Data in the replicated slots 0-7, written on the master.
    let (s, h, l, n, e, set, z) = (
        key_in_slot("s", 1),
        key_in_slot("h", 2),
        key_in_slot("l", 3),
        key_in_slot("n", 4),
        key_in_slot("e", 5),
        key_in_slot("set", 6),
        key_in_slot("z", 7),
    );
    ok(&mut m, &["SET", &s, "from-master"]);
    let _: i64 = query(&mut m, &["HSET", &h, "f1", "v1", "f2", "v2"]);
    let _: i64 = query(&mut m, &["RPUSH", &l, "a", "b", "c"]);
    ok(&mut m, &["SET", &n, "5"]);
    ok(&mut m, &["SET", &e, "expiring", "EX", "1000"]);
    let _: i64 = query(&mut m, &["SADD", &set, "x", "y"]);
    let _: i64 = query(&mut m, &["ZADD", &z, "1", "a", "2", "b"]);
    // The replica node's own master slots 8-15 hold its own data.
    let own = key_in_slot("own", 9);
    let own2 = key_in_slot("own", 12);
    ok(&mut r, &["SET", &own, "mine"]);
    ok(&mut r, &["SET", &own2, "mine too"]);
    replica.follow(&master, "0-7", false);
    wait_in_sync(&master, &replica, "0-7", SYNC);

    const RO: &str = "ERR Server in read-only";
    let fresh = key_in_slot("fresh", 0);
    let (k0, k3, k6) = (key_in_slot("m", 0), key_in_slot("m", 3), key_in_slot("m", 6));
    let refused: &[&[&str]] = &[
        &["SET", &s, "x"],
        &["SET", &fresh, "x"],
        &["SETEX", &fresh, "100", "x"],
        &["GETSET", &s, "x"],
        &["APPEND", &s, "x"],
        &["DEL", &s],
        &["DEL", &s, &h, &l],
        &["UNLINK", &s],
        &["MSET", &k0, "1", &k3, "2", &k6, "3"],
        &["HSET", &h, "f3", "v3"],
        &["HDEL", &h, "f1"],
        &["LPUSH", &l, "x"],
        &["LPOP", &l],
        &["RPOPLPUSH", &l, &l],
        &["BLPOP", &l, "0.1"],
        &["INCR", &n],
        &["INCRBY", &n, "10"],
        &["EXPIRE", &s, "100"],
        &["PEXPIRE", &e, "100"],
        &["PERSIST", &e],
        &["SADD", &set, "z"],
        &["SREM", &set, "x"],
        &["ZADD", &z, "3", "c"],
        &["ZREM", &z, "a"],
        // A later key in a replica slot: the whole command is refused (docs/compatibility.md,
        // "Command checks in sharding mode").
        &["MSET", &own, "changed", &s, "x"],
        &["MSET", &own, "changed", &own2, "changed", &k6, "x"],
        &["DEL", &own, &s],
        &["DEL", &own2, &own, &h],
    ];
    for args in refused {
        assert_err(&mut r, args, RO);
    }
    assert_err(&mut r, &["SLOTSDEL", "1"], RO);
    // Nothing was written or deleted by the refused commands, on either kind of slot.
    assert_eq!(get(&mut r, &own).as_deref(), Some("mine"));
    assert_eq!(get(&mut r, &own2).as_deref(), Some("mine too"));
    assert_eq!(get(&mut r, &fresh), None);
    assert_eq!(get(&mut r, &k0), None);
    // Reads of replica slots are served with the master's data.
    assert_eq!(get(&mut r, &s).as_deref(), Some("from-master"));
    let mut hash: Vec<String> = query(&mut r, &["HGETALL", &h]);
    hash.sort();
    assert_eq!(hash, vec!["f1", "f2", "v1", "v2"]);
    let list: Vec<String> = query(&mut r, &["LRANGE", &l, "0", "-1"]);
    assert_eq!(list, vec!["a", "b", "c"]);
    assert_eq!(query::<i64>(&mut r, &["EXISTS", &s, &h, &l, &own, "nope"]), 4);
    let ttl: i64 = query(&mut r, &["TTL", &e]);
    assert!((1..=1000).contains(&ttl), "TTL {ttl}");
    assert_eq!(query::<i64>(&mut r, &["TTL", &s]), -1);
    assert_eq!(get(&mut r, &n).as_deref(), Some("5"));
    let mut members: Vec<String> = query(&mut r, &["SMEMBERS", &set]);
    members.sort();
    assert_eq!(members, vec!["x", "y"]);
    assert_eq!(query::<Vec<String>>(&mut r, &["ZRANGE", &z, "0", "-1"]), vec!["a", "b"]);
    let both: Vec<Option<String>> = query(&mut r, &["MGET", &s, &own, &fresh]);
    assert_eq!(both, vec![Some("from-master".into()), Some("mine".into()), None]);
    // The node's own master slots stay writable, also in a multi-key write among themselves.
    ok(&mut r, &["MSET", &own, "changed", &own2, "changed too"]);
    assert_eq!(get(&mut r, &own).as_deref(), Some("changed"));
    // The replica still mirrors the master exactly.
    ok(&mut m, &["SET", &s, "updated"]);
    wait_in_sync(&master, &replica, "0-7", SYNC);
    assert_eq!(get(&mut r, &s).as_deref(), Some("updated"));
}

#[test]
fn flushdb_and_flushall_skip_replica_slots() {
    let master = Node::sharding_all(SLOTS);
    let replica = Node::sharding_all(SLOTS);
    let mut m = master.conn();
    let mut r = replica.conn();
    let replicated: Vec<String> = (0..8).map(|s| key_in_slot("rep", s)).collect();
    for k in &replicated {
        ok(&mut m, &["SET", k, "from-master"]);
    }
    let hash = key_in_slot("hash", 3);
    let _: i64 = query(&mut m, &["HSET", &hash, "f", "v"]);
    let own: Vec<String> = (8..16).map(|s| key_in_slot("own", s)).collect();
    replica.follow(&master, "0-7", false);
    wait_in_sync(&master, &replica, "0-7", SYNC);
    let before = replica.digest("0-7");
    for (flush, args) in
        [("FLUSHDB", &["FLUSHDB"][..]), ("FLUSHDB string", &["FLUSHDB", "string"][..]), ("FLUSHALL", &["FLUSHALL"][..])]
    {
        for k in &own {
            ok(&mut r, &["SET", k, "mine"]);
        }
        ok(&mut r, args);
        for k in &own {
            assert_eq!(get(&mut r, k), None, "{flush} empties the node's own master slots");
        }
        for k in &replicated {
            assert_eq!(get(&mut r, k).as_deref(), Some("from-master"), "{flush} deleted replica-slot data");
        }
        assert_eq!(query::<i64>(&mut r, &["HLEN", &hash]), 1, "{flush}");
        assert_eq!(replica.digest("0-7"), before, "{flush} changed a replica slot");
    }
    // The replica still follows; a FLUSHDB on the master empties the replica slots through the
    // stream.
    ok(&mut m, &["FLUSHDB"]);
    wait_in_sync(&master, &replica, "0-7", SYNC);
    for k in &replicated {
        assert_eq!(get(&mut r, k), None);
    }
}

// ---- 3. delslots refused while either end replicates (docs/compatibility.md, "pkcluster commands
// and replies") ----

#[test]
fn delslots_is_refused_on_both_ends_until_replication_stops() {
    let master = Node::sharding_all(SLOTS);
    let replica = Node::sharding_all(SLOTS);
    let mut m = master.conn();
    let mut r = replica.conn();
    let key = key_in_slot("k", 2);
    ok(&mut m, &["SET", &key, "v"]);
    replica.follow(&master, "0-3", false);
    wait_in_sync(&master, &replica, "0-3", SYNC);

    assert_err(&mut m, &["pkcluster", "delslots", "2"], "ERR Corruption: sync master partition (db0:2) in syncing");
    assert_err(&mut m, &["pkcluster", "delslots", "0-3"], "ERR Corruption: sync master partition (db0:0) in syncing");
    assert_err(
        &mut m,
        &["pkcluster", "delslots", "2", "0"],
        "ERR Corruption: sync master partition (db0:2) in syncing",
    );
    // All or nothing: slot 4 (not replicated) is not deleted when slot 2 is refused.
    assert_err(&mut m, &["pkcluster", "delslots", "4,2"], "ERR Corruption: sync master partition (db0:2) in syncing");
    assert_eq!(master.slot_info(Some("4")).len(), 1);
    assert_err(
        &mut r,
        &["pkcluster", "delslots", "2"],
        "ERR Corruption: sync slave partition (db0:2) in kConnected state",
    );
    assert_err(
        &mut r,
        &["pkcluster", "delslots", "1-3"],
        "ERR Corruption: sync slave partition (db0:1) in kConnected state",
    );
    assert_err(
        &mut r,
        &["pkcluster", "delslots", "5,3"],
        "ERR Corruption: sync slave partition (db0:3) in kConnected state",
    );
    assert_eq!(replica.slot_info(Some("5")).len(), 1);
    // Nothing was deleted.
    assert_eq!(get(&mut m, &key).as_deref(), Some("v"));
    assert_eq!(get(&mut r, &key).as_deref(), Some("v"));
    // Slots nobody replicates can go.
    ok(&mut m, &["pkcluster", "delslots", "5"]);

    ok(&mut r, &["pkcluster", "slotsslaveof", "no", "one", "0-3"]);
    ok(&mut r, &["pkcluster", "delslots", "0-3"]);
    assert_err(&mut r, &["GET", &key], "ERR Partition not found");
    // The master notices the replica left (its connection closed) and then lets the slots go.
    wait_until(SYNC, "the master to allow delslots 0-3", || q(&mut m, &["pkcluster", "delslots", "0-3"]).is_ok());
    assert_err(&mut m, &["GET", &key], "ERR Partition not found");
    assert_eq!(
        master.slot_info(None).iter().map(|s| s.slot).collect::<Vec<_>>(),
        (4..16).filter(|&s| s != 5).collect::<Vec<_>>()
    );
}

// ---- 4. codis probes (docs/compatibility.md, "Codis slots* commands") ----

#[test]
fn codis_migration_probes_follow_the_replica_link() {
    let master = sharding();
    let mut m = master.conn();
    ok(&mut m, &["pkcluster", "addslots", "0-7"]);
    let replica = Node::sharding_all(SLOTS);
    replica.follow(&master, "0-3", false);
    wait_in_sync(&master, &replica, "0-3", SYNC);
    let (rp, mp) = (replica.port.to_string(), master.port.to_string());
    let probe = |c: &mut redis::Connection, cmd: &str, host: &str, port: &str, slot: &str| {
        q(c, &[cmd, host, port, "3000", "200", "33554432", slot, "1"])
    };
    const TAG: &str = "SLOTSMGRTTAGSLOT-ASYNC";
    for slot in ["0", "2", "3"] {
        assert_eq!(probe(&mut m, TAG, "127.0.0.1", &rp, slot), Ok(ints(&[0, 1])), "slot {slot}");
    }
    assert_eq!(probe(&mut m, "slotsmgrttagslot-async", "127.0.0.1", &rp, "1"), Ok(ints(&[0, 1])));
    // Owned but not replicated, or another address: done.
    assert_eq!(probe(&mut m, TAG, "127.0.0.1", &rp, "5"), Ok(ints(&[0, 0])));
    assert_eq!(probe(&mut m, TAG, "127.0.0.2", &rp, "2"), Ok(ints(&[0, 0])));
    let other = support::free_port().to_string();
    assert_eq!(probe(&mut m, TAG, "127.0.0.1", &other, "2"), Ok(ints(&[0, 0])));
    const NOT_INT: &str = "ERR value is not an integer or out of range";
    for (host, port, slot, expected) in [
        ("127.0.0.1", rp.as_str(), "12", "ERR no such key"),
        ("127.0.0.1", rp.as_str(), "16", NOT_INT),
        ("127.0.0.1", rp.as_str(), "-1", NOT_INT),
        ("127.0.0.1", rp.as_str(), "x", NOT_INT),
        ("127.0.0.1", mp.as_str(), "2", "ERR destination address error"),
        ("localhost", mp.as_str(), "2", "ERR destination address error"),
        ("127.0.0.1", "abc", "2", NOT_INT),
        ("127.0.0.1", "0", "2", NOT_INT),
        ("127.0.0.1", "65536", "2", NOT_INT),
    ] {
        assert_eq!(probe(&mut m, TAG, host, port, slot), Err(expected.to_string()), "{host} {port} {slot}");
    }
    assert_err(
        &mut m,
        &[TAG, "127.0.0.1", &rp, "3000", "200", "33554432", "2"],
        "ERR wrong number of arguments for 'slotsmgrttagslot-async' command",
    );
    assert_eq!(probe(&mut m, "SLOTSMGRTSLOT-ASYNC", "127.0.0.1", &rp, "2"), Ok(ints(&[0, 0])));
    let key = key_in_slot("k", 2);
    assert_eq!(q(&mut m, &["SLOTSMGRT-EXEC-WRAPPER", &key, "set", &key, "v"]), Ok(ints(&[1, 1])));
    assert_eq!(get(&mut m, &key), None, "the wrapper executes nothing");
    let status: Vec<String> = query(&mut m, &["SLOTSMGRT-ASYNC-STATUS"]);
    assert_eq!(
        status,
        vec!["dest server: none:-1", "slot number: -1", "migrating  : no", "moved keys : -1", "remain keys: -1"]
    );
    ok(&mut m, &["SLOTSMGRT-ASYNC-CANCEL"]);
    for (sent, name) in [
        ("SLOTSMGRTSLOT", "slotsmgrtslot"),
        ("slotsmgrttagslot", "slotsmgrttagslot"),
        ("SlotsMgrtOne", "slotsmgrtone"),
        ("SLOTSMGRTTAGONE", "slotsmgrttagone"),
    ] {
        assert_err(&mut m, &[sent, "127.0.0.1", &rp, "3000", "2"], &format!("ERR {name} NOT supported"));
        assert_err(&mut m, &[sent], &format!("ERR {name} NOT supported"));
    }
    // The replica leaves: the probe reports the migration done once the master notices.
    ok(&mut replica.conn(), &["pkcluster", "slotsslaveof", "no", "one", "0-3"]);
    wait_until(SYNC, "the probe to report slots 0-3 done", || {
        ["0", "1", "2", "3"].iter().all(|slot| probe(&mut m, TAG, "127.0.0.1", &rp, slot) == Ok(ints(&[0, 0])))
    });
}

#[test]
fn codis_probes_in_classic_mode() {
    let node = Node::classic();
    let args = "127.0.0.1 9999 3000 200 33554432 2 1";
    // Byte-exact: the TAG variant's message has two spaces (docs/compatibility.md, "Codis slots*
    // commands").
    let cases = [
        (
            format!("SLOTSMGRTTAGSLOT-ASYNC {args}\r\n"),
            "-ERR SLOTSMGRTTAGSLOT-ASYNC  only support on sharding mode\r\n",
        ),
        (format!("SLOTSMGRTSLOT-ASYNC {args}\r\n"), "-ERR SLOTSMGRTTAGSLOT-ASYNC only support on sharding mode\r\n"),
        (
            "SLOTSMGRT-EXEC-WRAPPER k set k v\r\n".into(),
            "-ERR SLOTSMGRT-EXEC-WRAPPER only support on sharding mode\r\n",
        ),
        ("SLOTSMGRT-ASYNC-STATUS\r\n".into(), "-ERR SLOTSMGRT-ASYNC-STATUS only support on sharding mode\r\n"),
        ("SLOTSMGRT-ASYNC-CANCEL\r\n".into(), "-ERR SLOTSMGRT-ASYNC-CANCEL only support on sharding mode\r\n"),
    ];
    for (input, expected) in cases {
        let reply = raw_exchange(node.port, input.as_bytes(), Duration::from_millis(300));
        assert_eq!(String::from_utf8_lossy(&reply), expected, "{input:?}");
    }
    let mut c = node.conn();
    assert_eq!(get(&mut c, "k"), None, "the wrapper executes nothing in classic mode either");
    // The synchronous migration commands are refused whatever the mode.
    assert_err(&mut c, &["SLOTSMGRTSLOT", "127.0.0.1", "9999", "3000", "2"], "ERR slotsmgrtslot NOT supported");
    assert_err(&mut c, &["SLOTSMGRTTAGONE", "127.0.0.1", "9999", "3000", "k"], "ERR slotsmgrttagone NOT supported");
}

// ---- 5. authentication of the replication connection ----

#[test]
fn pkrepl_before_auth_gets_noauth_and_nothing_is_streamed() {
    let master = Node::start(&[
        ("instance-mode", "sharding"),
        ("default-slot-num", "16"),
        ("requirepass", "pw"),
        ("userpass", "data"),
    ]);
    let mut m = conn_with(&master, "pw");
    ok(&mut m, &["pkcluster", "addslots", "0-15"]);
    let key = key_in_slot("k", 0);
    ok(&mut m, &["SET", &key, "secret"]);
    let wait = Duration::from_millis(500);
    let handshake = pkrepl(&["0", "0", "7777", "0", "0", "0", "1"]);
    // What any other command gets before AUTH.
    let noauth = String::from_utf8(raw_exchange(master.port, &resp(&[b"GET", key.as_bytes()]), wait)).unwrap();
    assert_eq!(noauth, "-ERR NOAUTH Authentication required.\r\n");
    // PKREPL gets the same, and no frame follows (raw_exchange reads all that arrives in `wait`).
    let reply = raw_exchange(master.port, &handshake, wait);
    assert_eq!(String::from_utf8_lossy(&reply), noauth, "PKREPL before AUTH");
    // After a wrong password, still refused.
    let mut input = resp(&[b"AUTH", b"wrong"]);
    input.extend_from_slice(&handshake);
    let reply = raw_exchange(master.port, &input, wait);
    assert_eq!(String::from_utf8_lossy(&reply), format!("-ERR invalid password\r\n{noauth}"));
    // The user password is not enough: replication is admin's.
    let mut input = resp(&[b"AUTH", b"data"]);
    input.extend_from_slice(&handshake);
    let reply = String::from_utf8(raw_exchange(master.port, &input, wait)).unwrap();
    assert!(reply.starts_with("+OK\r\n-NOPERM ") && reply.matches("\r\n").count() == 2, "{reply}");
    assert!(replicas_of_on(&mut m, 0).is_empty(), "nobody attached");
    // With the password, the same handshake starts a full sync.
    let mut s = TcpStream::connect(("127.0.0.1", master.port)).unwrap();
    let mut input = resp(&[b"AUTH", b"pw"]);
    input.extend_from_slice(&handshake);
    s.write_all(&input).unwrap();
    assert_eq!(read_line(&mut s), "+OK");
    let line = read_line(&mut s);
    assert!(line.starts_with("+FULLSYNC "), "{line:?}");
    drop(s);
    assert_eq!(get(&mut m, &key).as_deref(), Some("secret"));
}

fn replicas_of_on(c: &mut redis::Connection, slot: u32) -> Vec<String> {
    slot_info_on(c, &slot.to_string())
        .iter()
        .flat_map(|s| s.master.iter().flat_map(|m| m.replicas.iter().map(|r| r.addr.clone())))
        .collect()
}

#[test]
fn replica_without_masterauth_errors_until_config_set_then_catches_up() {
    let master = Node::start(&[("instance-mode", "sharding"), ("default-slot-num", "16"), ("requirepass", "pw")]);
    let mut m = conn_with(&master, "pw");
    ok(&mut m, &["pkcluster", "addslots", "0-15"]);
    let keys: Vec<String> = (0..4).map(|s| key_in_slot("k", s)).collect();
    for k in &keys {
        ok(&mut m, &["SET", k, "v1"]);
    }
    let replica = Node::sharding_all(SLOTS);
    let mut r = replica.conn();
    replica.follow(&master, "0-3", false);
    // Every slot's link ends in kError (it retries with back-off, so states alternate).
    let mut seen = BTreeSet::new();
    wait_until(SYNC, "kError on slots 0-3", || {
        for s in replica.slot_info(Some("0-3")) {
            let slave = s.slave.as_ref().expect("a replica slot");
            assert_eq!(slave.master, master.addr());
            if slave.state == common::protocol::LinkState::Error {
                seen.insert(s.slot);
            }
        }
        seen.len() == 4
    });
    let nothing = |r: &mut redis::Connection, m: &mut redis::Connection| {
        for k in &keys {
            assert_eq!(get(r, k), None, "data reached a replica that did not authenticate");
        }
        for s in 0..4 {
            assert!(replicas_of_on(m, s).is_empty(), "slot {s}: a replica attached without auth");
        }
        assert!(replica.digest("0-3").iter().all(|d| d.2 == 0), "{:?}", replica.digest("0-3"));
    };
    nothing(&mut r, &mut m);
    // A wrong password changes nothing.
    ok(&mut r, &["CONFIG", "SET", "masterauth", "wrong"]);
    std::thread::sleep(Duration::from_millis(500));
    nothing(&mut r, &mut m);
    ok(&mut r, &["CONFIG", "SET", "masterauth", "pw"]);
    // The link retries by itself and catches up.
    let in_sync = |m: &mut redis::Connection| {
        let lags_zero = slot_info_on(m, "0-3").iter().all(|s| {
            s.master.as_ref().is_some_and(|mr| {
                mr.replicas.iter().any(|x| {
                    x.addr == replica.addr() && x.status == common::protocol::SyncStatus::BinlogSync && x.lag == Some(0)
                })
            })
        });
        lags_zero && query::<Vec<Digest>>(m, &["pkcluster", "digest", "0-3"]) == replica.digest("0-3")
    };
    wait_until(SYNC, "the replica to authenticate and catch up", || in_sync(&mut m));
    for k in &keys {
        assert_eq!(get(&mut r, k).as_deref(), Some("v1"));
    }
    for s in replica.slot_info(Some("0-3")) {
        assert_eq!(s.slave.unwrap().state, common::protocol::LinkState::Connected);
    }
    ok(&mut m, &["SET", &keys[2], "v2"]);
    wait_until(SYNC, "the update to arrive", || in_sync(&mut m));
    assert_eq!(get(&mut r, &keys[2]).as_deref(), Some("v2"));
}

// ---- 6. bad input on the replication stream ----

/// A master owning 0-11 with data in every slot and a real replica of 0-3 in sync.
fn master_with_replica() -> (Node, Node) {
    let master = sharding();
    let mut m = master.conn();
    ok(&mut m, &["pkcluster", "addslots", "0-11"]);
    for slot in 0..12 {
        let tag = tag_in_slot(slot);
        for i in 0..20 {
            ok(&mut m, &["SET", &format!("{{{tag}}}:s{i}"), &format!("value-{slot}-{i}")]);
        }
        let _: i64 = query(&mut m, &["HSET", &format!("{{{tag}}}:h"), "a", "1", "b", "2"]);
        let _: i64 = query(&mut m, &["RPUSH", &format!("{{{tag}}}:l"), "x", "y"]);
    }
    let replica = Node::sharding_all(SLOTS);
    replica.follow(&master, "0-3", false);
    wait_in_sync(&master, &replica, "0-3", SYNC);
    (master, replica)
}

#[test]
fn bad_pkrepl_handshakes_get_an_error_and_the_connection_is_closed() {
    let (master, replica) = master_with_replica();
    let before = master.digest("0-11");
    let wait = Duration::from_secs(5);
    const ARITY: &str = "-ERR wrong number of arguments for 'pkrepl' command\r\n";
    const NOT_INT: &str = "-ERR value is not an integer or out of range\r\n";
    const NOT_FOUND: &str = "-ERR Partition not found\r\n";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (pkrepl(&[]), ARITY),
        (pkrepl(&["0"]), ARITY),
        (pkrepl(&["0", "1", "7000", "0", "0", "0"]), ARITY),
        (pkrepl(&["0", "1", "7000", "0", "0", "0", "1", "extra"]), ARITY),
        (b"PKREPL\r\n".to_vec(), ARITY),
        (b"pkrepl 0 1\r\n".to_vec(), ARITY),
        (pkrepl(&["db0", "1", "7000", "0", "0", "0", "1"]), NOT_INT),
        (pkrepl(&["0", "x", "7000", "0", "0", "0", "1"]), NOT_INT),
        (pkrepl(&["0", "-1", "7000", "0", "0", "0", "1"]), NOT_INT),
        (pkrepl(&["0", "4294967296", "7000", "0", "0", "0", "1"]), NOT_INT),
        (pkrepl(&["0", "1", "70000", "0", "0", "0", "1"]), NOT_INT),
        (pkrepl(&["0", "1", "-7", "0", "0", "0", "1"]), NOT_INT),
        (pkrepl(&["0", "1", "7000", "-5", "0", "0", "1"]), NOT_INT),
        (pkrepl(&["0", "1", "7000", "0", "1e3", "0", "1"]), NOT_INT),
        (pkrepl(&["0", "1", "7000", "0", "0", "18446744073709551616", "1"]), NOT_INT),
        (pkrepl(&["0", "1", "7000", "0", "0", "0", "yes"]), NOT_INT),
        (pkrepl(&["0", "1", "7000", "0", "0", "0", ""]), NOT_INT),
        (b"pkrepl 0 1 7000 0 0 0 \xff\r\n".to_vec(), NOT_INT),
        (pkrepl(&["0", "12", "7000", "0", "0", "0", "1"]), NOT_FOUND),
        (pkrepl(&["0", "16", "7000", "0", "0", "0", "0"]), NOT_FOUND),
        (pkrepl(&["0", "4294967295", "7000", "0", "0", "0", "1"]), NOT_FOUND),
        (pkrepl(&["3", "1", "7000", "0", "0", "0", "1"]), NOT_FOUND),
    ];
    let mut c = master.conn();
    for (input, expected) in &cases {
        let (reply, closed) = exchange_until_closed(master.port, input, wait);
        let shown = String::from_utf8_lossy(input);
        assert_eq!(reply, *expected, "{shown:?}");
        assert!(closed, "{shown:?}: the connection stays open");
        assert_eq!(q(&mut c, &["PING"]), Ok(Value::SimpleString("PONG".into())), "after {shown:?}");
    }
    // A bad PKREPL after a good command in the same packet: the first is answered normally.
    let mut input = resp(&[b"PING"]);
    input.extend_from_slice(&pkrepl(&["0"]));
    let (reply, closed) = exchange_until_closed(master.port, &input, wait);
    assert_eq!(reply, format!("+PONG\r\n{ARITY}"));
    assert!(closed);
    // Nobody got attached, nothing changed, the real replica is still in sync.
    for slot in 0..12 {
        let attached = replicas_of(&master, slot);
        let expected = if slot < 4 { vec![replica.addr()] } else { vec![] };
        assert_eq!(attached, expected, "slot {slot}");
    }
    assert_eq!(master.digest("0-11"), before);
    wait_in_sync(&master, &replica, "0-3", SYNC);
}

#[test]
fn garbage_on_a_replication_stream_drops_only_that_peer() {
    let (master, replica) = master_with_replica();
    let mut m = master.conn();
    let before = master.digest("0-11");
    let mut ack_beyond = b"A\0\0\0\x10".to_vec();
    ack_beyond.extend_from_slice(&u64::MAX.to_be_bytes());
    ack_beyond.extend_from_slice(&0u64.to_be_bytes());
    let mut keepalive = b"K\0\0\0\x10".to_vec();
    keepalive.extend_from_slice(&[0u8; 16]);
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("0xff bytes", vec![0xff; 64]),
        ("unknown tag", b"Z\0\0\0\0".to_vec()),
        ("RESP instead of frames", resp(&[b"SET", b"{x}k", b"v"])),
        ("oversized frame", b"S\xff\xff\xff\xff".to_vec()),
        ("short ack", b"A\0\0\0\x03abc".to_vec()),
        ("ack beyond what was sent", ack_beyond),
        ("frame of the wrong direction", keepalive),
    ];
    for (i, (what, bytes)) in garbage.iter().enumerate() {
        let fake = 40000 + i as u16;
        let (mut s, line) = raw_replica(&master, 2, fake);
        assert!(line.starts_with("+FULLSYNC "), "{what}: {line:?}");
        assert!(replicas_of(&master, 2).contains(&format!("127.0.0.1:{fake}")), "{what}: attached");
        s.write_all(bytes).unwrap();
        let mut rest = Vec::new();
        assert!(
            read_until_closed(&mut s, &mut rest, Duration::from_secs(10)),
            "{what}: the master kept the connection"
        );
        wait_until(SYNC, &format!("{what}: the master to forget the peer"), || {
            replicas_of(&master, 2) == vec![replica.addr()]
        });
        assert_eq!(q(&mut m, &["PING"]), Ok(Value::SimpleString("PONG".into())), "{what}");
    }
    // A truncated ack, then the peer goes away.
    let (mut s, line) = raw_replica(&master, 2, 40100);
    assert!(line.starts_with("+FULLSYNC "), "{line:?}");
    s.write_all(b"A\0\0\0\x10\0\0\0").unwrap();
    drop(s);
    wait_until(SYNC, "the master to forget the truncated peer", || replicas_of(&master, 2) == vec![replica.addr()]);
    // Many at once on several slots, each closing at a different point.
    let peers: Vec<TcpStream> = (0..8)
        .map(|i| {
            let (mut s, _) = raw_replica(&master, i % 4, 40200 + i as u16);
            if i % 2 == 0 {
                s.write_all(b"\0\0\0\0\0\0").unwrap();
            }
            s
        })
        .collect();
    drop(peers);
    wait_until(SYNC, "the master to forget every peer", || {
        (0..4).all(|slot| replicas_of(&master, slot) == vec![replica.addr()])
    });
    // Nothing was written by the peers; the real replica is still attached and in sync.
    assert_eq!(master.digest("0-11"), before);
    wait_in_sync(&master, &replica, "0-3", SYNC);
    assert_eq!(replica.digest("0-3"), before[..4].to_vec());
    // And it still follows new writes.
    let key = format!("{{{}}}:after", tag_in_slot(2));
    ok(&mut m, &["SET", &key, "later"]);
    wait_in_sync(&master, &replica, "0-3", SYNC);
    assert_eq!(get(&mut replica.conn(), &key).as_deref(), Some("later"));
}

#[test]
fn a_peer_that_never_reads_does_not_stall_the_master() {
    const SLOT: u32 = 2;
    let master = Node::sharding_all(SLOTS);
    let mut m = master.conn();
    // About 8 MB in one slot: more than the socket buffers and the master's send queue hold.
    let tag = tag_in_slot(SLOT);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for batch in 0..40 {
        let mut mset = redis::cmd("MSET");
        for i in 0..100 {
            let value: String = (0..2048)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (b'a' + (seed % 26) as u8) as char
                })
                .collect();
            mset.arg(format!("{{{tag}}}:{batch}:{i}")).arg(value);
        }
        let _: () = mset.query(&mut m).unwrap();
    }
    let replica = Node::sharding_all(SLOTS);
    replica.follow(&master, "0-3", false);
    wait_in_sync(&master, &replica, "0-3", SYNC);
    let before = master.digest("0-15");

    // The peer handshakes and never reads a byte.
    let mut peer = TcpStream::connect(("127.0.0.1", master.port)).unwrap();
    peer.write_all(&pkrepl(&["0", &SLOT.to_string(), "40300", "0", "0", "0", "1"])).unwrap();
    wait_until(SYNC, "the peer to be attached", || replicas_of(&master, SLOT).contains(&"127.0.0.1:40300".to_string()));
    std::thread::sleep(Duration::from_millis(500)); // let the master fill the buffers
                                                    // Other clients get fast replies, on the same slot too; the real replica keeps following.
    let same_slot = format!("{{{tag}}}:while-stalled");
    let other_slot = key_in_slot("other", 9);
    let mut c = master.conn();
    let (pong, t) = timed(|| q(&mut c, &["PING"]));
    assert_eq!(pong, Ok(Value::SimpleString("PONG".into())));
    assert!(t < Duration::from_secs(1), "PING took {t:?}");
    let (got, t) = timed(|| get(&mut c, &format!("{{{tag}}}:0:0")));
    assert_eq!(got.map(|v| v.len()), Some(2048));
    assert!(t < Duration::from_secs(1), "GET took {t:?}");
    for key in [&same_slot, &other_slot] {
        let (set, t) = timed(|| q(&mut c, &["SET", key, "fast"]));
        assert_eq!(set, Ok(Value::Okay));
        assert!(t < Duration::from_secs(1), "SET {key} took {t:?}");
    }
    let (digest, t) = timed(|| master.digest("2"));
    assert_eq!(digest.len(), 1);
    assert!(t < Duration::from_secs(2), "pkcluster digest took {t:?}");
    let mut r = replica.conn();
    wait_until(Duration::from_secs(5), "the real replica to get the write", || {
        get(&mut r, &same_slot).as_deref() == Some("fast")
    });
    // The stalled peer is still attached (in its full sync) until it goes away.
    assert!(replicas_of(&master, SLOT).contains(&"127.0.0.1:40300".to_string()));
    drop(peer);
    wait_until(SYNC, "the master to drop the peer", || replicas_of(&master, SLOT) == vec![replica.addr()]);
    // Nothing else changed: only the two keys written above.
    wait_in_sync(&master, &replica, "0-3", SYNC);
    let after = master.digest("0-15");
    for (b, a) in before.iter().zip(&after) {
        if a.0 == SLOT as i64 || a.0 == slot_of(&other_slot) as i64 {
            assert!(a.2 > b.2, "slot {}: {b:?} -> {a:?}", a.0);
        } else {
            assert_eq!(a, b, "slot {}", a.0);
        }
    }
    assert_eq!(q(&mut c, &["PING"]), Ok(Value::SimpleString("PONG".into())));
}

#[test]
fn a_peer_claiming_the_replicas_address_only_forces_a_reconnect() {
    let (master, replica) = master_with_replica();
    let mut m = master.conn();
    let before = master.digest("0-11");
    // Same ip:port as the real replica: it replaces the real replica's entry on the master.
    let (impostor, line) = raw_replica(&master, 2, replica.port);
    assert!(line.starts_with("+FULLSYNC "), "{line:?}");
    // The real replica notices (its acks are refused), reconnects and takes its place back.
    wait_in_sync(&master, &replica, "0-3", SYNC);
    assert_eq!(master.digest("0-11"), before, "the impostor wrote nothing");
    let key = format!("{{{}}}:after", tag_in_slot(2));
    ok(&mut m, &["SET", &key, "later"]);
    wait_in_sync(&master, &replica, "0-3", SYNC);
    assert_eq!(get(&mut replica.conn(), &key).as_deref(), Some("later"));
    drop(impostor);
    ok(&mut m, &["SET", &key, "even later"]);
    wait_in_sync(&master, &replica, "0-3", SYNC);
    assert_eq!(get(&mut replica.conn(), &key).as_deref(), Some("even later"));
}

// ---- the replica side: a master that does not own the slot, a fake master sending garbage ----

#[test]
fn replica_of_a_slot_the_master_does_not_own_errors_then_recovers() {
    let master = sharding();
    let mut m = master.conn();
    ok(&mut m, &["pkcluster", "addslots", "0-3"]);
    let replica = Node::sharding_all(SLOTS);
    let mut r = replica.conn();
    replica.follow(&master, "4-5", false);
    let mut seen = BTreeSet::new();
    wait_until(SYNC, "kError on slots 4-5", || {
        for s in replica.slot_info(Some("4-5")) {
            if s.slave.as_ref().is_some_and(|sl| sl.state == common::protocol::LinkState::Error) {
                seen.insert(s.slot);
            }
        }
        seen.len() == 2
    });
    // Still a replica meanwhile: read-only, and the node serves everything else.
    let key = key_in_slot("k", 4);
    assert_err(&mut r, &["SET", &key, "x"], "ERR Server in read-only");
    ok(&mut r, &["SET", &key_in_slot("k", 9), "x"]);
    // Once the master owns the slots, the link retries by itself and syncs.
    ok(&mut m, &["pkcluster", "addslots", "4-5"]);
    ok(&mut m, &["SET", &key, "from-master"]);
    wait_in_sync(&master, &replica, "4-5", SYNC);
    assert_eq!(get(&mut r, &key).as_deref(), Some("from-master"));
}

/// A RESP request parsed off the front of `buf` (None until complete).
fn parse_request(buf: &[u8]) -> Option<Vec<String>> {
    let text = String::from_utf8_lossy(buf);
    let mut lines = text.split("\r\n");
    let n: usize = lines.next()?.strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::new();
    for _ in 0..n {
        lines.next()?.strip_prefix('$')?;
        args.push(lines.next()?.to_string());
    }
    lines.next()?; // the CRLF after the last argument has arrived
    Some(args)
}

/// A replication frame: tag, u32 BE length, payload.
fn frame(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A log-entry frame at `seq`/`offset` carrying `entry`.
fn entry_frame(seq: u64, offset: u64, entry: &[u8]) -> Vec<u8> {
    let mut payload = seq.to_be_bytes().to_vec();
    payload.extend_from_slice(&offset.to_be_bytes());
    payload.extend_from_slice(entry);
    frame(b'L', &payload)
}

type Script = Vec<Box<dyn Fn(u64, u64) -> Vec<u8> + Send>>;

/// A fake master on a free port: the n-th replica handshake gets `script[n]` (built from the
/// handshake's seq and offset), later ones `-ERR Partition not found`. Returns the port and the
/// count of handshakes answered.
fn fake_master(script: Script) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let args = loop {
                if let Some(args) = parse_request(&buf) {
                    break Some(args);
                }
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break None, // slotsslaveof's reachability probe
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let Some(args) = args else { continue };
            assert_eq!(args[0], "PKREPL", "{args:?}");
            let (seq, offset) = (args[5].parse().unwrap(), args[6].parse().unwrap());
            let n = count.load(Ordering::SeqCst);
            let reply = match script.get(n) {
                Some(step) => step(seq, offset),
                None => b"-ERR Partition not found\r\n".to_vec(),
            };
            let _ = s.write_all(&reply);
            // Wait for the replica to give up on this connection.
            let mut sink = Vec::new();
            let _ = read_until_closed(&mut s, &mut sink, Duration::from_secs(5));
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, served)
}

#[test]
fn a_fake_master_sending_garbage_never_crashes_or_corrupts_the_replica() {
    const CONTINUE: &[u8] = b"+CONTINUE 7 0 0\r\n";
    let with = |head: &[u8], tail: Vec<u8>| [head.to_vec(), tail].concat();
    let script: Script = vec![
        Box::new(|_, _| b"hello\r\n".to_vec()),
        Box::new(|_, _| b"+CONTINUE 7\r\n".to_vec()),
        Box::new(|_, _| vec![b'x'; 5000]),
        Box::new(move |seq, off| with(CONTINUE, entry_frame(seq + 1, off + 10, b"\x09not an operation"))),
        Box::new(move |seq, off| with(CONTINUE, entry_frame(seq + 1, off + 10, b"\x01\0\0\xff\xff"))),
        Box::new(move |seq, off| with(CONTINUE, entry_frame(seq + 5, off + 10, b""))),
        Box::new(move |_, _| with(CONTINUE, frame(b'S', b"\0\0\0\x01k\0\0\0\x01v"))),
        Box::new(move |_, _| with(CONTINUE, b"Zgarbage".to_vec())),
        Box::new(move |_, _| with(CONTINUE, b"L\xff\xff\xff\xff".to_vec())),
        Box::new(move |_, _| with(CONTINUE, frame(b'A', &[0u8; 16]))),
    ];
    let steps = script.len();
    let (port, served) = fake_master(script);
    let replica = Node::sharding_all(SLOTS);
    let mut r = replica.conn();
    // The slot holds data of its own before it starts following.
    let keys: Vec<String> = (0..10).map(|i| format!("{{{}}}:{i}", tag_in_slot(2))).collect();
    for k in &keys {
        ok(&mut r, &["SET", k, "kept"]);
    }
    let before = replica.digest("2");
    ok(&mut r, &["pkcluster", "slotsslaveof", "127.0.0.1", &port.to_string(), "2"]);
    wait_until(SYNC, "the fake master's script to run out", || {
        served.load(std::sync::atomic::Ordering::SeqCst) > steps
    });
    wait_until(SYNC, "kError", || {
        replica.slot_info(Some("2"))[0].slave.as_ref().is_some_and(|s| s.state == common::protocol::LinkState::Error)
    });
    // Nothing was applied: the slot is as it was, read-only, and the node serves.
    assert_eq!(replica.digest("2"), before);
    for k in &keys {
        assert_eq!(get(&mut r, k).as_deref(), Some("kept"));
    }
    assert_err(&mut r, &["SET", &keys[0], "x"], "ERR Server in read-only");
    ok(&mut r, &["SET", &key_in_slot("k", 9), "x"]);
    // Back to a master: writable, data intact.
    ok(&mut r, &["pkcluster", "slotsslaveof", "no", "one", "2"]);
    assert_eq!(replica.digest("2"), before);
    ok(&mut r, &["SET", &keys[0], "changed"]);
    assert_eq!(get(&mut r, &keys[1]).as_deref(), Some("kept"));
}

// ---- another table: the table argument, and refusals naming that table ----

#[test]
fn replication_of_another_table_and_its_refusals() {
    let key = (0..).map(|i| format!("k:{i}")).find(|k| common::slot::key_slot(k.as_bytes(), 8) == 2).unwrap();
    let master = sharding();
    let mut m = master.conn();
    ok(&mut m, &["pkcluster", "addtable", "1", "8"]);
    ok(&mut m, &["pkcluster", "addslots", "0-3", "1"]);
    ok(&mut m, &["SELECT", "1"]);
    ok(&mut m, &["SET", &key, "table one"]);
    let replica = sharding();
    let mut r = replica.conn();
    ok(&mut r, &["pkcluster", "addtable", "1", "8"]);
    ok(&mut r, &["pkcluster", "addslots", "0-7", "1"]);
    let mp = master.port.to_string();
    assert_err(&mut r, &["pkcluster", "slotsslaveof", "127.0.0.1", &mp, "0-3", "2"], "ERR invalid Table for ''");
    assert_err(&mut r, &["pkcluster", "slotsslaveof", "127.0.0.1", &mp, "0-3"], "ERR Slot 0 not found!");
    ok(&mut r, &["pkcluster", "slotsslaveof", "127.0.0.1", &mp, "0-3", "1"]);
    let in_sync = |m: &mut redis::Connection, r: &mut redis::Connection| {
        let attached = slot_info_on(m, "db1:0-3").iter().all(|s| {
            s.master.as_ref().is_some_and(|mr| {
                mr.replicas.iter().any(|x| {
                    x.addr == replica.addr() && x.status == common::protocol::SyncStatus::BinlogSync && x.lag == Some(0)
                })
            })
        });
        attached
            && query::<Vec<Digest>>(m, &["pkcluster", "digest", "0-3", "1"])
                == query::<Vec<Digest>>(r, &["pkcluster", "digest", "0-3", "1"])
    };
    wait_until(SYNC, "table 1 in sync", || in_sync(&mut m, &mut r));
    for s in slot_info_on(&mut r, "db1:0-7") {
        let expected = (s.slot < 4).then(|| master.addr());
        assert_eq!(s.slave.map(|sl| sl.master), expected, "db1:{}", s.slot);
    }
    ok(&mut r, &["SELECT", "1"]);
    assert_eq!(get(&mut r, &key).as_deref(), Some("table one"));
    assert_err(&mut r, &["SET", &key, "x"], "ERR Server in read-only");
    // Refusals name the table.
    assert_err(
        &mut m,
        &["pkcluster", "delslots", "2", "1"],
        "ERR Corruption: sync master partition (db1:2) in syncing",
    );
    assert_err(
        &mut r,
        &["pkcluster", "delslots", "2", "1"],
        "ERR Corruption: sync slave partition (db1:2) in kConnected state",
    );
    assert_err(&mut m, &["pkcluster", "deltable", "1"], "ERR Corruption: table have slots!");
    assert_err(&mut r, &["pkcluster", "deltable", "1"], "ERR Corruption: table have slots!");
    // Following the same master again, even with force, skips connected slots: no new full sync.
    let full_syncs = master.info_field("sync_full");
    ok(&mut r, &["pkcluster", "slotsslaveof", "127.0.0.1", &mp, "0-3", "force", "1"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(master.info_field("sync_full"), full_syncs);
    assert!(in_sync(&mut m, &mut r));
    // Stop replicating: both tables can go.
    ok(&mut r, &["pkcluster", "slotsslaveof", "no", "one", "all", "1"]);
    ok(&mut r, &["pkcluster", "deltable", "1"]);
    wait_until(SYNC, "the master to allow deltable 1", || q(&mut m, &["pkcluster", "deltable", "1"]).is_ok());
    assert_err(&mut m, &["GET", &key], "ERR Table not found");
}

// ---- deleting a replica slot whose link failed; following oneself under another name ----

#[test]
fn a_replica_slot_in_kerror_can_be_deleted_and_does_not_come_back() {
    // As Pika (docs/compatibility.md, "pkcluster commands and replies"): a replica slot that is
    // neither connected nor syncing may be deleted. Its replication stops and, after a restart, it
    // is gone, not a replica again.
    let master = Node::start(&[("instance-mode", "sharding"), ("default-slot-num", "16")]);
    let _: () = query(&mut master.conn(), &["pkcluster", "addslots", "0-3"]);
    let mut replica = Node::sharding_all(SLOTS);
    let mut r = replica.conn();
    ok(&mut r, &["pkcluster", "slotsslaveof", "127.0.0.1", &master.port.to_string(), "5"]);
    wait_until(SYNC, "kError: the master does not own slot 5", || {
        replica.slot_info(Some("5"))[0].slave.as_ref().is_some_and(|s| s.state == common::protocol::LinkState::Error)
    });
    ok(&mut r, &["pkcluster", "delslots", "5"]);
    assert!(replica.slot_info(Some("5")).is_empty());
    replica.stop();
    replica.spawn();
    assert!(replica.slot_info(Some("5")).is_empty(), "the deleted slot stays deleted");
    let mut r = replica.conn();
    ok(&mut r, &["pkcluster", "addslots", "5"]);
    let info = replica.slot_info(Some("5"));
    assert!(info[0].slave.is_none(), "a re-added slot is a master: {info:?}");
    ok(&mut r, &["SET", &key_in_slot("k", 5), "writable"]);
    replica.stop();
    replica.spawn();
    assert!(replica.slot_info(Some("5"))[0].slave.is_none(), "and stays one after a restart");
}

#[test]
fn following_itself_under_another_name_is_refused() {
    let node = Node::sharding_all(SLOTS);
    let mut c = node.conn();
    let port = node.port.to_string();
    for host in ["127.0.0.1", "127.1", "localhost", "0.0.0.0"] {
        assert_err(&mut c, &["pkcluster", "slotsslaveof", host, &port, "2"], "ERR You fucked up");
    }
    assert!(node.slot_info(Some("2"))[0].slave.is_none());
    // Another loopback address with the same port is another node (several nodes of one host
    // may each listen on their own 127.x address).
    let other: redis::RedisResult<String> =
        redis::cmd("pkcluster").arg("slotsslaveof").arg("127.0.0.2").arg(&port).arg("2").query(&mut c);
    assert!(!format!("{other:?}").contains("fucked"), "{other:?}");
}
