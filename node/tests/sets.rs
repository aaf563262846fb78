//! Set commands against a real node: membership, random picks, SMOVE, the algebra and its
//! STORE forms, SINTERCARD, SSCAN, redis-cli, and multi-key rules in sharding mode.
mod support;

use std::collections::BTreeSet;

use redis::Commands;
use support::{cmd, err, int, q, strs, Node};

/// A reply of members compared as a set (our order is byte order, Redis's is unspecified).
fn members(c: &mut redis::Connection, args: &[&str]) -> BTreeSet<String> {
    strs(c, args).into_iter().collect()
}

fn set_of(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn add_remove_and_membership() {
    let node = Node::classic();
    let mut c = node.conn();
    assert_eq!(int(&mut c, &["SADD", "s", "a", "b", "a", "c"]), 3, "a repeated member counts once");
    assert_eq!(int(&mut c, &["SADD", "s", "c", "d"]), 1);
    assert_eq!(int(&mut c, &["SCARD", "s"]), 4);
    assert_eq!(int(&mut c, &["SCARD", "missing"]), 0);
    assert_eq!(strs(&mut c, &["SMEMBERS", "s"]), ["a", "b", "c", "d"]);
    assert!(strs(&mut c, &["SMEMBERS", "missing"]).is_empty());
    assert_eq!(int(&mut c, &["SISMEMBER", "s", "b"]), 1);
    assert_eq!(int(&mut c, &["SISMEMBER", "s", "z"]), 0);
    assert_eq!(int(&mut c, &["SISMEMBER", "missing", "a"]), 0);
    let flags: Vec<i64> = cmd(&["SMISMEMBER", "s", "a", "z", "d"]).query(&mut c).unwrap();
    assert_eq!(flags, [1, 0, 1]);
    let flags: Vec<i64> = cmd(&["SMISMEMBER", "missing", "a"]).query(&mut c).unwrap();
    assert_eq!(flags, [0]);

    // Binary-safe members, including the empty string.
    let _: i64 = redis::cmd("SADD").arg("bin").arg(&b"\x00\xff"[..]).arg("").query(&mut c).unwrap();
    assert_eq!(int(&mut c, &["SISMEMBER", "bin", ""]), 1);
    let got: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg("bin").query(&mut c).unwrap();
    assert_eq!(got, [b"".to_vec(), b"\x00\xff".to_vec()]);

    // Changes keep the TTL.
    let _: bool = c.expire("s", 100).unwrap();
    assert_eq!(int(&mut c, &["SREM", "s", "a", "a", "zz"]), 1);
    int(&mut c, &["SADD", "s", "e"]);
    assert!(int(&mut c, &["TTL", "s"]) > 90, "SADD/SREM keep the TTL");

    // Removing the last member deletes the key.
    assert_eq!(int(&mut c, &["SREM", "s", "b", "c", "d", "e"]), 4);
    assert_eq!(int(&mut c, &["EXISTS", "s"]), 0);
    assert_eq!(int(&mut c, &["TTL", "s"]), -2);
    assert_eq!(int(&mut c, &["SREM", "s", "a"]), 0);

    // Wrong types and arity.
    let _: () = c.set("str", "v").unwrap();
    for args in [
        &["SADD", "str", "a"][..],
        &["SREM", "str", "a"],
        &["SCARD", "str"],
        &["SISMEMBER", "str", "a"],
        &["SMISMEMBER", "str", "a"],
        &["SMEMBERS", "str"],
        &["SPOP", "str"],
        &["SRANDMEMBER", "str"],
        &["SSCAN", "str", "0"],
    ] {
        assert!(err(&mut c, args).starts_with("WRONGTYPE"), "{args:?}");
    }
    assert!(err(&mut c, &["SADD", "s"]).contains("wrong number of arguments for 'sadd' command"));
    assert!(err(&mut c, &["SISMEMBER", "s", "a", "b"]).contains("wrong number of arguments"));
}

#[test]
fn a_new_set_replaces_an_expired_key() {
    let node = Node::classic();
    let mut c = node.conn();
    int(&mut c, &["SADD", "s", "old1", "old2"]);
    int(&mut c, &["PEXPIRE", "s", "30"]);
    std::thread::sleep(std::time::Duration::from_millis(80));
    assert_eq!(int(&mut c, &["SADD", "s", "new"]), 1);
    assert_eq!(strs(&mut c, &["SMEMBERS", "s"]), ["new"], "expired members must not come back");
    assert_eq!(int(&mut c, &["SCARD", "s"]), 1);
    assert_eq!(int(&mut c, &["TTL", "s"]), -1);
}

#[test]
fn spop_and_srandmember() {
    let node = Node::classic();
    let mut c = node.conn();
    let all = set_of(&["a", "b", "c", "d", "e"]);
    int(&mut c, &["SADD", "s", "a", "b", "c", "d", "e"]);

    // SRANDMEMBER: one member, distinct members for a positive count, repeats for a negative one.
    let one: String = cmd(&["SRANDMEMBER", "s"]).query(&mut c).unwrap();
    assert!(all.contains(&one));
    let three = strs(&mut c, &["SRANDMEMBER", "s", "3"]);
    assert_eq!(three.len(), 3);
    assert_eq!(three.iter().collect::<BTreeSet<_>>().len(), 3, "distinct: {three:?}");
    assert_eq!(members(&mut c, &["SRANDMEMBER", "s", "100"]), all);
    let many = strs(&mut c, &["SRANDMEMBER", "s", "-50"]);
    assert_eq!(many.len(), 50);
    assert!(many.iter().all(|m| all.contains(m)));
    assert!(many.iter().collect::<BTreeSet<_>>().len() < 50, "a negative count repeats");
    assert!(strs(&mut c, &["SRANDMEMBER", "s", "0"]).is_empty());
    assert_eq!(int(&mut c, &["SCARD", "s"]), 5, "SRANDMEMBER removes nothing");
    assert_eq!(q(&mut c, &["SRANDMEMBER", "missing"]).unwrap(), redis::Value::Nil);
    assert!(strs(&mut c, &["SRANDMEMBER", "missing", "3"]).is_empty());
    assert!(err(&mut c, &["SRANDMEMBER", "s", "1", "2"]).contains("syntax error"));
    assert!(err(&mut c, &["SRANDMEMBER", "s", "x"]).contains("not an integer"));
    assert!(err(&mut c, &["SRANDMEMBER", "s", "-9223372036854775808"]).contains("value is out of range"));

    // SPOP removes what it returns.
    let popped: String = cmd(&["SPOP", "s"]).query(&mut c).unwrap();
    assert!(all.contains(&popped));
    assert_eq!(int(&mut c, &["SISMEMBER", "s", &popped]), 0);
    let two = strs(&mut c, &["SPOP", "s", "2"]);
    assert_eq!(two.len(), 2);
    assert_eq!(int(&mut c, &["SCARD", "s"]), 2);
    let mut seen: BTreeSet<String> = two.into_iter().collect();
    seen.insert(popped);
    seen.extend(strs(&mut c, &["SMEMBERS", "s"]));
    assert_eq!(seen, all, "every member is either popped or still there");
    assert!(strs(&mut c, &["SPOP", "s", "0"]).is_empty());
    assert!(err(&mut c, &["SPOP", "s", "-1"]).contains("value is out of range, must be positive"));
    assert!(err(&mut c, &["SPOP", "s", "1", "2"]).contains("syntax error"));
    // Popping everything deletes the key.
    assert_eq!(strs(&mut c, &["SPOP", "s", "10"]).len(), 2);
    assert_eq!(int(&mut c, &["EXISTS", "s"]), 0);
    assert_eq!(q(&mut c, &["SPOP", "s"]).unwrap(), redis::Value::Nil);
    assert!(strs(&mut c, &["SPOP", "s", "2"]).is_empty());

    // A bigger set: picks reach both halves of the set (members are walked from either end).
    let mut sadd = redis::cmd("SADD");
    sadd.arg("big");
    for i in 0..300 {
        sadd.arg(format!("m{i:03}"));
    }
    let _: i64 = sadd.query(&mut c).unwrap();
    let picked = members(&mut c, &["SRANDMEMBER", "big", "-2000"]);
    assert!(picked.len() > 250, "draws spread over the set: {}", picked.len());
    let popped = strs(&mut c, &["SPOP", "big", "299"]);
    assert_eq!(popped.iter().collect::<BTreeSet<_>>().len(), 299);
    assert_eq!(int(&mut c, &["SCARD", "big"]), 1);
    let last = strs(&mut c, &["SMEMBERS", "big"]);
    assert!(!popped.contains(&last[0]));
}

#[test]
fn smove_between_sets() {
    let node = Node::classic();
    let mut c = node.conn();
    int(&mut c, &["SADD", "src", "a", "b"]);
    int(&mut c, &["SADD", "dst", "x"]);
    let _: bool = c.expire("dst", 100).unwrap();
    assert_eq!(int(&mut c, &["SMOVE", "src", "dst", "a"]), 1);
    assert_eq!(strs(&mut c, &["SMEMBERS", "src"]), ["b"]);
    assert_eq!(strs(&mut c, &["SMEMBERS", "dst"]), ["a", "x"]);
    assert!(int(&mut c, &["TTL", "dst"]) > 90, "the destination keeps its TTL");
    assert_eq!(int(&mut c, &["SMOVE", "src", "dst", "nope"]), 0);
    // Moving onto a member the destination already has.
    int(&mut c, &["SADD", "src", "x"]);
    assert_eq!(int(&mut c, &["SMOVE", "src", "dst", "x"]), 1);
    assert_eq!(int(&mut c, &["SCARD", "dst"]), 2);
    // Same key: a no-op answering membership.
    assert_eq!(int(&mut c, &["SMOVE", "src", "src", "b"]), 1);
    assert_eq!(int(&mut c, &["SMOVE", "src", "src", "zz"]), 0);
    assert_eq!(strs(&mut c, &["SMEMBERS", "src"]), ["b"]);
    // Emptying the source deletes it; a missing destination is created.
    assert_eq!(int(&mut c, &["SMOVE", "src", "fresh", "b"]), 1);
    assert_eq!(int(&mut c, &["EXISTS", "src"]), 0);
    assert_eq!(strs(&mut c, &["SMEMBERS", "fresh"]), ["b"]);
    assert_eq!(int(&mut c, &["TTL", "fresh"]), -1);
    // Types: a missing source answers 0 before the destination's type is checked.
    let _: () = c.set("str", "v").unwrap();
    assert_eq!(int(&mut c, &["SMOVE", "missing", "str", "a"]), 0);
    assert!(err(&mut c, &["SMOVE", "fresh", "str", "b"]).starts_with("WRONGTYPE"));
    assert!(err(&mut c, &["SMOVE", "str", "fresh", "b"]).starts_with("WRONGTYPE"));
    assert_eq!(strs(&mut c, &["SMEMBERS", "fresh"]), ["b"], "a failed SMOVE changes nothing");
}

#[test]
fn union_intersection_difference() {
    let node = Node::classic();
    let mut c = node.conn();
    int(&mut c, &["SADD", "s1", "a", "b", "c", "d"]);
    int(&mut c, &["SADD", "s2", "c", "d", "e"]);
    int(&mut c, &["SADD", "s3", "a", "c", "f"]);
    assert_eq!(strs(&mut c, &["SUNION", "s1", "s2", "s3", "missing"]), ["a", "b", "c", "d", "e", "f"]);
    assert_eq!(strs(&mut c, &["SINTER", "s1", "s2", "s3"]), ["c"]);
    assert_eq!(strs(&mut c, &["SINTER", "s1", "s2"]), ["c", "d"]);
    assert!(strs(&mut c, &["SINTER", "s1", "missing"]).is_empty());
    assert_eq!(strs(&mut c, &["SDIFF", "s1", "s2", "s3"]), ["b"]);
    assert_eq!(strs(&mut c, &["SDIFF", "s1", "missing"]), ["a", "b", "c", "d"]);
    assert!(strs(&mut c, &["SDIFF", "missing", "s1"]).is_empty());
    assert!(strs(&mut c, &["SDIFF", "s1", "s1"]).is_empty());
    assert_eq!(strs(&mut c, &["SUNION", "s2"]), ["c", "d", "e"]);

    // A wrong type anywhere fails, even after a missing key.
    let _: () = c.set("str", "v").unwrap();
    for args in [
        &["SUNION", "s1", "str"][..],
        &["SINTER", "missing", "str"],
        &["SDIFF", "missing", "str"],
        &["SINTERSTORE", "d", "s1", "str"],
    ] {
        assert!(err(&mut c, args).starts_with("WRONGTYPE"), "{args:?}");
    }

    // STORE forms replace any type and any TTL.
    let _: () = c.set("dst", "a string").unwrap();
    let _: bool = c.expire("dst", 100).unwrap();
    assert_eq!(int(&mut c, &["SUNIONSTORE", "dst", "s1", "s2"]), 5);
    assert_eq!(strs(&mut c, &["SMEMBERS", "dst"]), ["a", "b", "c", "d", "e"]);
    assert_eq!(int(&mut c, &["TTL", "dst"]), -1);
    assert_eq!(int(&mut c, &["SINTERSTORE", "dst", "s1", "s2"]), 2);
    assert_eq!(strs(&mut c, &["SMEMBERS", "dst"]), ["c", "d"], "old members are gone");
    assert_eq!(int(&mut c, &["SDIFFSTORE", "dst", "s1", "s2"]), 2);
    assert_eq!(strs(&mut c, &["SMEMBERS", "dst"]), ["a", "b"]);
    // The destination may be an input.
    assert_eq!(int(&mut c, &["SUNIONSTORE", "s2", "s2", "s3"]), 5);
    assert_eq!(strs(&mut c, &["SMEMBERS", "s2"]), ["a", "c", "d", "e", "f"]);
    // An empty result deletes the destination.
    assert_eq!(int(&mut c, &["SINTERSTORE", "dst", "s1", "missing"]), 0);
    assert_eq!(int(&mut c, &["EXISTS", "dst"]), 0);

    // A destination bigger than the point-delete threshold is cleared too.
    let mut sadd = redis::cmd("SADD");
    sadd.arg("huge");
    for i in 0..600 {
        sadd.arg(format!("h{i}"));
    }
    let _: i64 = sadd.query(&mut c).unwrap();
    assert_eq!(int(&mut c, &["SDIFFSTORE", "huge", "s1", "s3"]), 2);
    assert_eq!(strs(&mut c, &["SMEMBERS", "huge"]), ["b", "d"]);
}

#[test]
fn sintercard_counts_with_a_limit() {
    let node = Node::classic();
    let mut c = node.conn();
    int(&mut c, &["SADD", "s1", "a", "b", "c", "d"]);
    int(&mut c, &["SADD", "s2", "b", "c", "d", "e"]);
    assert_eq!(int(&mut c, &["SINTERCARD", "2", "s1", "s2"]), 3);
    assert_eq!(int(&mut c, &["SINTERCARD", "2", "s1", "s2", "LIMIT", "2"]), 2);
    assert_eq!(int(&mut c, &["SINTERCARD", "2", "s1", "s2", "LIMIT", "0"]), 3, "0 = no limit");
    assert_eq!(int(&mut c, &["SINTERCARD", "1", "s1"]), 4);
    assert_eq!(int(&mut c, &["SINTERCARD", "2", "s1", "missing"]), 0);
    assert!(err(&mut c, &["SINTERCARD", "0", "s1"]).contains("numkeys should be greater than 0"));
    assert!(err(&mut c, &["SINTERCARD", "x", "s1"]).contains("numkeys should be greater than 0"));
    assert!(
        err(&mut c, &["SINTERCARD", "3", "s1", "s2"]).contains("Number of keys can't be greater than number of args")
    );
    assert!(err(&mut c, &["SINTERCARD", "2", "s1", "s2", "LIMIT", "-1"]).contains("LIMIT can't be negative"));
    assert!(err(&mut c, &["SINTERCARD", "2", "s1", "s2", "LIMIT"]).contains("syntax error"));
    assert!(err(&mut c, &["SINTERCARD", "1", "s1", "s2"]).contains("syntax error"));
    let _: () = c.set("str", "v").unwrap();
    assert!(err(&mut c, &["SINTERCARD", "2", "s1", "str"]).starts_with("WRONGTYPE"));
}

#[test]
fn sscan_visits_every_member_once() {
    let node = Node::classic();
    let mut c = node.conn();
    let mut sadd = redis::cmd("SADD");
    sadd.arg("s");
    let expected: BTreeSet<String> = (0..57).map(|i| format!("member:{i}")).collect();
    for m in &expected {
        sadd.arg(m);
    }
    let _: i64 = sadd.query(&mut c).unwrap();
    let mut cursor = "0".to_string();
    let mut seen = Vec::new();
    let mut rounds = 0;
    loop {
        let (next, page): (String, Vec<String>) = cmd(&["SSCAN", "s", &cursor, "COUNT", "5"]).query(&mut c).unwrap();
        assert!(page.len() <= 5);
        seen.extend(page);
        rounds += 1;
        if next == "0" {
            break;
        }
        cursor = next;
    }
    assert!(rounds >= 12, "COUNT pages the scan: {rounds} rounds");
    assert_eq!(seen.len(), expected.len(), "no member twice");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);

    // MATCH filters (a page may come back empty with a non-zero cursor).
    let mut cursor = "0".to_string();
    let mut matched = Vec::new();
    loop {
        let (next, page): (String, Vec<String>) =
            cmd(&["SSCAN", "s", &cursor, "MATCH", "member:1*"]).query(&mut c).unwrap();
        matched.extend(page);
        if next == "0" {
            break;
        }
        cursor = next;
    }
    matched.sort();
    assert_eq!(
        matched,
        [
            "member:1",
            "member:10",
            "member:11",
            "member:12",
            "member:13",
            "member:14",
            "member:15",
            "member:16",
            "member:17",
            "member:18",
            "member:19"
        ]
    );

    // A cursor of another key starts that key's scan over instead of skipping members.
    let (next, _): (String, Vec<String>) = cmd(&["SSCAN", "s", "0", "COUNT", "50"]).query(&mut c).unwrap();
    int(&mut c, &["SADD", "other", "a", "b"]);
    let (done, page): (String, Vec<String>) = cmd(&["SSCAN", "other", &next]).query(&mut c).unwrap();
    assert_eq!((done.as_str(), page), ("0", vec!["a".to_string(), "b".to_string()]));

    let (next, page): (String, Vec<String>) = cmd(&["SSCAN", "missing", "0", "BOGUS"]).query(&mut c).unwrap();
    assert_eq!((next.as_str(), page.len()), ("0", 0), "a missing key answers before the options are parsed");
    assert!(err(&mut c, &["SSCAN", "s", "x"]).contains("invalid cursor"));
    assert!(err(&mut c, &["SSCAN", "s", "0", "COUNT", "0"]).contains("syntax error"));
    assert!(err(&mut c, &["SSCAN", "s", "0", "COUNT", "x"]).contains("not an integer"));
    assert!(err(&mut c, &["SSCAN", "s", "0", "MATCH"]).contains("syntax error"));
    assert!(err(&mut c, &["SSCAN", "s", "0", "TYPE", "set"]).contains("syntax error"));
}

#[test]
fn through_redis_cli() {
    if !support::have_redis_cli() {
        println!("skipped: redis-cli is not installed");
        return;
    }
    let node = Node::classic();
    assert_eq!(node.cli(&["SADD", "s", "b", "a", "c"]).unwrap().trim(), "3");
    assert_eq!(node.cli(&["SMEMBERS", "s"]).unwrap(), "a\nb\nc\n");
    assert_eq!(node.cli(&["SISMEMBER", "s", "a"]).unwrap().trim(), "1");
    node.cli(&["SADD", "t", "c", "d"]).unwrap();
    assert_eq!(node.cli(&["SINTER", "s", "t"]).unwrap(), "c\n");
    assert_eq!(node.cli(&["SINTERCARD", "2", "s", "t"]).unwrap().trim(), "1");
    assert_eq!(node.cli(&["TYPE", "s"]).unwrap().trim(), "set");
    node.cli(&["SET", "str", "v"]).unwrap();
    assert!(node.cli(&["SADD", "str", "x"]).unwrap().contains("WRONGTYPE"));
}

#[test]
fn multi_key_commands_in_sharding_mode() {
    let node = Node::sharding_all(1024);
    let mut c = node.conn();
    // Keys in different slots are refused; a shared hashtag puts them in one slot.
    let (a, b) = ("alpha", "beta");
    assert_ne!(common::slot::key_slot(a.as_bytes(), 1024), common::slot::key_slot(b.as_bytes(), 1024));
    int(&mut c, &["SADD", a, "x", "y"]);
    int(&mut c, &["SADD", b, "y", "z"]);
    for args in [
        &["SUNION", a, b][..],
        &["SINTER", a, b],
        &["SDIFF", a, b],
        &["SUNIONSTORE", "{alpha}dst", a, b],
        &["SINTERSTORE", a, a, b],
        &["SDIFFSTORE", "dst", a],
        &["SMOVE", a, b, "x"],
        &["SINTERCARD", "2", a, b],
    ] {
        let e = err(&mut c, args);
        assert!(e.contains("This command is not supported in current configuration"), "{args:?}: {e}");
    }
    assert_eq!(strs(&mut c, &["SMEMBERS", a]), ["x", "y"], "a refused command writes nothing");

    let (t1, t2, t3) = ("{user}:s1", "{user}:s2", "{user}:dst");
    int(&mut c, &["SADD", t1, "x", "y"]);
    int(&mut c, &["SADD", t2, "y", "z"]);
    assert_eq!(strs(&mut c, &["SUNION", t1, t2]), ["x", "y", "z"]);
    assert_eq!(strs(&mut c, &["SINTER", t1, t2]), ["y"]);
    assert_eq!(strs(&mut c, &["SDIFF", t1, t2]), ["x"]);
    assert_eq!(int(&mut c, &["SINTERCARD", "2", t1, t2]), 1);
    assert_eq!(int(&mut c, &["SUNIONSTORE", t3, t1, t2]), 3);
    assert_eq!(int(&mut c, &["SMOVE", t1, t2, "x"]), 1);
    assert_eq!(strs(&mut c, &["SMEMBERS", t2]), ["x", "y", "z"]);
    // Single-key commands work on any owned slot.
    assert_eq!(int(&mut c, &["SCARD", b]), 2);
}
