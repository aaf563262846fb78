//! Hash commands against a real node: field writes and reads, counts, HDEL emptying the key,
//! counters and their errors, HRANDFIELD's count rules, HSCAN cursors, and sharding.
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use redis::{Commands, Value};
use support::{q, Node};

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

#[test]
fn set_get_and_counts() {
    let node = Node::classic();
    let mut c = node.conn();
    assert_eq!(q(&mut c, &["HSET", "h", "a", "1", "b", "2"]).unwrap(), Value::Int(2));
    // Existing fields are updated but not counted; a repeated field counts once.
    assert_eq!(q(&mut c, &["HSET", "h", "a", "10", "c", "3", "c", "30"]).unwrap(), Value::Int(1));
    assert_eq!(q(&mut c, &["HSET", "new", "f", "1", "f", "2"]).unwrap(), Value::Int(1));
    assert_eq!(c.hget::<_, _, String>("new", "f").unwrap(), "2");
    assert_eq!(c.hlen::<_, i64>("h").unwrap(), 3);
    assert_eq!(c.hget::<_, _, String>("h", "a").unwrap(), "10");
    assert_eq!(c.hget::<_, _, String>("h", "c").unwrap(), "30");
    assert_eq!(c.hget::<_, _, Option<String>>("h", "zz").unwrap(), None);
    assert_eq!(c.hget::<_, _, Option<String>>("missing", "a").unwrap(), None);
    assert_eq!(q(&mut c, &["HMSET", "h", "d", "4", "a", "1"]).unwrap(), Value::Okay);
    assert_eq!(c.hlen::<_, i64>("h").unwrap(), 4);
    let got: Vec<Option<String>> = redis::cmd("HMGET").arg("h").arg("a").arg("nope").arg("d").query(&mut c).unwrap();
    assert_eq!(got, vec![Some("1".into()), None, Some("4".into())]);
    let got: Vec<Option<String>> = redis::cmd("HMGET").arg("missing").arg("a").arg("b").query(&mut c).unwrap();
    assert_eq!(got, vec![None, None]);
    // HSETNX
    assert_eq!(q(&mut c, &["HSETNX", "h", "a", "x"]).unwrap(), Value::Int(0));
    assert_eq!(q(&mut c, &["HSETNX", "h", "e", "5"]).unwrap(), Value::Int(1));
    assert_eq!(q(&mut c, &["HSETNX", "fresh", "f", "v"]).unwrap(), Value::Int(1));
    assert_eq!(c.hget::<_, _, String>("h", "a").unwrap(), "1");
    assert_eq!(c.hlen::<_, i64>("h").unwrap(), 5);
    assert_eq!(c.hlen::<_, i64>("missing").unwrap(), 0);
    // HEXISTS, HSTRLEN
    assert_eq!(q(&mut c, &["HEXISTS", "h", "e"]).unwrap(), Value::Int(1));
    assert_eq!(q(&mut c, &["HEXISTS", "h", "zz"]).unwrap(), Value::Int(0));
    assert_eq!(q(&mut c, &["HEXISTS", "missing", "e"]).unwrap(), Value::Int(0));
    let _: () = c.hset("h", "long", "hello world").unwrap();
    assert_eq!(q(&mut c, &["HSTRLEN", "h", "long"]).unwrap(), Value::Int(11));
    assert_eq!(q(&mut c, &["HSTRLEN", "h", "zz"]).unwrap(), Value::Int(0));
    assert_eq!(q(&mut c, &["HSTRLEN", "missing", "zz"]).unwrap(), Value::Int(0));
    // Whole-hash reads agree with each other.
    let all: HashMap<String, String> = c.hgetall("h").unwrap();
    let keys: BTreeSet<String> = c.hkeys::<_, Vec<String>>("h").unwrap().into_iter().collect();
    let vals: Vec<String> = c.hvals("h").unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(keys, all.keys().cloned().collect());
    assert_eq!(vals.len(), 6);
    assert_eq!(all["long"], "hello world");
    assert_eq!(q(&mut c, &["HGETALL", "missing"]).unwrap(), Value::Array(vec![]));
    assert_eq!(q(&mut c, &["HKEYS", "missing"]).unwrap(), Value::Array(vec![]));
    // Errors
    support::expect_errors(
        &mut c,
        &[
            (&["HSET", "h", "a"][..], "wrong number of arguments for 'hset' command"),
            (&["HSET", "h", "a", "1", "b"], "wrong number of arguments for 'hset' command"),
            (&["HMSET", "h", "a", "1", "b"], "wrong number of arguments for 'hmset' command"),
            (&["HGET", "h"], "wrong number of arguments for 'hget' command"),
            (&["HDEL", "h"], "wrong number of arguments for 'hdel' command"),
        ],
    );
    assert_eq!(c.hlen::<_, i64>("h").unwrap(), 6, "failed commands wrote nothing");
}

#[test]
fn hdel_and_wrong_type() {
    let node = Node::classic();
    let mut c = node.conn();
    let _: () = redis::cmd("HSET").arg("h").arg(&["a", "1", "b", "2", "c", "3"]).query(&mut c).unwrap();
    let _: () = c.expire("h", 100).unwrap();
    assert_eq!(q(&mut c, &["HDEL", "h", "a", "a", "zz"]).unwrap(), Value::Int(1));
    assert_eq!(c.hlen::<_, i64>("h").unwrap(), 2);
    assert!(c.ttl::<_, i64>("h").unwrap() > 90, "TTL kept");
    let _: () = c.hset("h", "d", "4").unwrap();
    assert!(c.ttl::<_, i64>("h").unwrap() > 90, "HSET keeps the TTL");
    assert_eq!(q(&mut c, &["HDEL", "missing", "a"]).unwrap(), Value::Int(0));
    assert_eq!(q(&mut c, &["HDEL", "h", "b", "c", "d"]).unwrap(), Value::Int(3));
    assert!(!c.exists::<_, bool>("h").unwrap(), "an emptied hash is deleted");
    // A new hash in its place has no old fields and no TTL.
    let _: () = c.hset("h", "x", "1").unwrap();
    assert_eq!(c.hlen::<_, i64>("h").unwrap(), 1);
    assert_eq!(c.ttl::<_, i64>("h").unwrap(), -1);
    let _: () = c.set("s", "v").unwrap();
    for args in [
        &["HSET", "s", "f", "v"][..],
        &["HMSET", "s", "f", "v"],
        &["HSETNX", "s", "f", "v"],
        &["HGET", "s", "f"],
        &["HMGET", "s", "f"],
        &["HDEL", "s", "f"],
        &["HLEN", "s"],
        &["HEXISTS", "s", "f"],
        &["HGETALL", "s"],
        &["HKEYS", "s"],
        &["HVALS", "s"],
        &["HSTRLEN", "s", "f"],
        &["HINCRBY", "s", "f", "1"],
        &["HINCRBYFLOAT", "s", "f", "1"],
        &["HRANDFIELD", "s"],
        &["HSCAN", "s", "0"],
    ] {
        let err = q(&mut c, args).unwrap_err();
        assert!(err.contains("WRONGTYPE"), "{args:?}: {err}");
    }
    assert_eq!(c.get::<_, String>("s").unwrap(), "v");
}

#[test]
fn expired_hash_is_replaced_not_merged() {
    let node = Node::classic();
    let mut c = node.conn();
    // Small and large hashes (a large one's leftovers are removed with a range tombstone).
    for (key, n) in [("small", 2), ("large", 300)] {
        let mut hset = redis::cmd("HSET");
        hset.arg(key);
        for i in 0..n {
            hset.arg(format!("f{i}")).arg(i);
        }
        let _: () = hset.query(&mut c).unwrap();
        let _: () = redis::cmd("PEXPIRE").arg(key).arg(50).query(&mut c).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(120));
    for key in ["small", "large"] {
        assert_eq!(
            q(&mut c, &["HSET", key, "f0", "x", "f0", "y"]).unwrap(),
            Value::Int(1),
            "{key}: old fields are gone"
        );
        assert_eq!(c.hlen::<_, i64>(key).unwrap(), 1, "{key}");
        assert_eq!(c.hget::<_, _, Option<String>>(key, "f1").unwrap(), None);
        assert_eq!(c.hget::<_, _, String>(key, "f0").unwrap(), "y");
        assert_eq!(c.ttl::<_, i64>(key).unwrap(), -1);
    }
    let _: () = redis::cmd("HSET").arg("big2").arg(&["f1", "5"]).query(&mut c).unwrap();
    for i in 2..300 {
        let _: () = c.hset("big2", format!("f{i}"), i).unwrap();
    }
    let _: () = redis::cmd("PEXPIRE").arg("big2").arg(50).query(&mut c).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(120));
    assert_eq!(q(&mut c, &["HINCRBY", "big2", "f1", "1"]).unwrap(), Value::Int(1), "counts restart from 0");
    assert_eq!(q(&mut c, &["HSETNX", "big2", "f2", "new"]).unwrap(), Value::Int(1));
    assert_eq!(c.hlen::<_, i64>("big2").unwrap(), 2);
}

#[test]
fn counters() {
    let node = Node::classic();
    let mut c = node.conn();
    assert_eq!(q(&mut c, &["HINCRBY", "h", "n", "5"]).unwrap(), Value::Int(5));
    assert_eq!(q(&mut c, &["HINCRBY", "h", "n", "-8"]).unwrap(), Value::Int(-3));
    assert_eq!(c.hget::<_, _, String>("h", "n").unwrap(), "-3");
    assert_eq!(c.hlen::<_, i64>("h").unwrap(), 1);
    let _: () = c.hset("h", "max", i64::MAX).unwrap();
    assert!(q(&mut c, &["HINCRBY", "h", "max", "1"]).unwrap_err().contains("increment or decrement would overflow"));
    let _: () = c.hset("h", "word", "abc").unwrap();
    assert!(q(&mut c, &["HINCRBY", "h", "word", "1"]).unwrap_err().contains("hash value is not an integer"));
    assert!(q(&mut c, &["HINCRBY", "h", "n", "1.5"]).unwrap_err().contains("value is not an integer or out of range"));
    assert_eq!(c.hget::<_, _, String>("h", "n").unwrap(), "-3", "failed increments change nothing");
    // Floats
    assert_eq!(q(&mut c, &["HINCRBYFLOAT", "h", "f", "10.5"]).unwrap(), bulk("10.5"));
    assert_eq!(q(&mut c, &["HINCRBYFLOAT", "h", "f", "0.1"]).unwrap(), bulk("10.6"));
    assert_eq!(q(&mut c, &["HINCRBYFLOAT", "h", "f", "-5e0"]).unwrap(), bulk("5.6"));
    assert_eq!(q(&mut c, &["HINCRBYFLOAT", "h", "n", "3"]).unwrap(), bulk("0"));
    assert!(q(&mut c, &["HINCRBYFLOAT", "h", "word", "1"]).unwrap_err().contains("hash value is not a float"));
    assert!(q(&mut c, &["HINCRBYFLOAT", "h", "f", "x"]).unwrap_err().contains("value is not a valid float"));
    assert!(q(&mut c, &["HINCRBYFLOAT", "h", "f", "nan"]).unwrap_err().contains("value is not a valid float"));
    assert!(q(&mut c, &["HINCRBYFLOAT", "h", "f", "inf"]).unwrap_err().contains("value is NaN or Infinity"));
    let _: () = c.hset("h", "big", "1.7976931348623157e308").unwrap();
    assert!(q(&mut c, &["HINCRBYFLOAT", "h", "big", "1.7976931348623157e308"])
        .unwrap_err()
        .contains("NaN or Infinity"));
    assert_eq!(c.hget::<_, _, String>("h", "f").unwrap(), "5.6");
    // Results are written without exponents, as Redis does.
    assert_eq!(q(&mut c, &["HINCRBYFLOAT", "h", "e", "1e20"]).unwrap(), bulk("100000000000000000000"));
    assert_eq!(q(&mut c, &["HINCRBYFLOAT", "h", "tiny", "1.5e-7"]).unwrap(), bulk("0.00000015"));
    // A float result is no longer an integer.
    assert!(q(&mut c, &["HINCRBY", "h", "f", "1"]).unwrap_err().contains("hash value is not an integer"));
}

#[test]
fn hrandfield_count_rules() {
    let node = Node::classic();
    let mut c = node.conn();
    let fields: BTreeMap<String, String> = (0..20).map(|i| (format!("f{i}"), format!("v{i}"))).collect();
    let mut hset = redis::cmd("HSET");
    hset.arg("h");
    for (f, v) in &fields {
        hset.arg(f).arg(v);
    }
    let _: () = hset.query(&mut c).unwrap();
    let one: String = redis::cmd("HRANDFIELD").arg("h").query(&mut c).unwrap();
    assert!(fields.contains_key(&one));
    assert_eq!(q(&mut c, &["HRANDFIELD", "missing"]).unwrap(), Value::Nil);
    assert_eq!(q(&mut c, &["HRANDFIELD", "missing", "3"]).unwrap(), Value::Array(vec![]));
    assert_eq!(q(&mut c, &["HRANDFIELD", "h", "0"]).unwrap(), Value::Array(vec![]));
    // Positive: distinct fields, at most the hash's size.
    let some: Vec<String> = redis::cmd("HRANDFIELD").arg("h").arg(5).query(&mut c).unwrap();
    assert_eq!(some.len(), 5);
    assert_eq!(some.iter().collect::<BTreeSet<_>>().len(), 5, "no repeats: {some:?}");
    assert!(some.iter().all(|f| fields.contains_key(f)));
    let all: Vec<String> = redis::cmd("HRANDFIELD").arg("h").arg(100).query(&mut c).unwrap();
    assert_eq!(all.iter().cloned().collect::<BTreeSet<_>>(), fields.keys().cloned().collect());
    assert_eq!(all.len(), 20);
    // Negative: exactly |count| picks, repeats allowed (50 picks of 20 fields must repeat).
    let many: Vec<String> = redis::cmd("HRANDFIELD").arg("h").arg(-50).query(&mut c).unwrap();
    assert_eq!(many.len(), 50);
    assert!(many.iter().collect::<BTreeSet<_>>().len() <= 20);
    assert!(many.iter().all(|f| fields.contains_key(f)));
    // WITHVALUES: field/value pairs that belong together.
    let pairs: Vec<String> = redis::cmd("HRANDFIELD").arg("h").arg(-7).arg("WITHVALUES").query(&mut c).unwrap();
    assert_eq!(pairs.len(), 14);
    for pair in pairs.chunks(2) {
        assert_eq!(fields[&pair[0]], pair[1]);
    }
    let pairs: Vec<String> = redis::cmd("HRANDFIELD").arg("h").arg(3).arg("withvalues").query(&mut c).unwrap();
    assert_eq!(pairs.len(), 6);
    support::expect_errors(
        &mut c,
        &[
            (&["HRANDFIELD", "h", "x"][..], "value is not an integer or out of range"),
            (&["HRANDFIELD", "h", "1", "BOGUS"], "syntax error"),
            (&["HRANDFIELD", "h", "1", "WITHVALUES", "x"], "syntax error"),
            (&["HRANDFIELD", "h", "-9223372036854775807", "WITHVALUES"], "value is out of range"),
        ],
    );
}

#[test]
fn hscan_walks_every_field_once() {
    let node = Node::classic();
    let mut c = node.conn();
    let mut hset = redis::cmd("HSET");
    hset.arg("h");
    for i in 0..250 {
        hset.arg(format!("field:{i}")).arg(i);
    }
    let _: () = hset.query(&mut c).unwrap();
    let scan = |c: &mut redis::Connection, cursor: &str, extra: &[&str]| -> (String, Vec<String>) {
        let mut cmd = redis::cmd("HSCAN");
        cmd.arg("h").arg(cursor);
        for e in extra {
            cmd.arg(*e);
        }
        cmd.query(c).unwrap()
    };
    let mut cursor = "0".to_string();
    let mut seen = BTreeMap::new();
    let mut calls = 0;
    loop {
        let (next, items) = scan(&mut c, &cursor, &["COUNT", "20"]);
        calls += 1;
        assert!(items.len() <= 40);
        for pair in items.chunks(2) {
            assert!(seen.insert(pair[0].clone(), pair[1].clone()).is_none(), "{} returned twice", pair[0]);
        }
        if next == "0" {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen.len(), 250);
    assert!(calls >= 12, "COUNT bounds each call ({calls} calls)");
    assert_eq!(seen["field:42"], "42");
    // MATCH filters; the walk still ends.
    let mut cursor = "0".to_string();
    let mut matched = Vec::new();
    loop {
        let (next, items) = scan(&mut c, &cursor, &["MATCH", "field:1?", "COUNT", "100"]);
        matched.extend(items.chunks(2).map(|p| p[0].clone()));
        if next == "0" {
            break;
        }
        cursor = next;
    }
    matched.sort();
    assert_eq!(matched, (10..20).map(|i| format!("field:{i}")).collect::<Vec<_>>());
    // A missing key is an empty, finished scan.
    assert_eq!(q(&mut c, &["HSCAN", "missing", "0"]).unwrap(), Value::Array(vec![bulk("0"), Value::Array(vec![])]));
    support::expect_errors(
        &mut c,
        &[
            (&["HSCAN", "h", "abc"][..], "invalid cursor"),
            (&["HSCAN", "h", "-1"], "invalid cursor"),
            (&["HSCAN", "h", "0", "COUNT", "0"], "syntax error"),
            (&["HSCAN", "h", "0", "COUNT", "x"], "not an integer"),
            (&["HSCAN", "h", "0", "MATCH"], "syntax error"),
            (&["HSCAN", "h", "0", "TYPE", "string"], "syntax error"),
        ],
    );
}

#[test]
fn redis_cli_session() {
    if !support::have_redis_cli() {
        println!("skipped: redis-cli is not installed");
        return;
    }
    let node = Node::classic();
    assert_eq!(node.cli(&["HSET", "user", "name", "ann", "age", "41"]).unwrap().trim(), "2");
    assert_eq!(node.cli(&["HGETALL", "user"]).unwrap(), "age\n41\nname\nann\n");
    assert_eq!(node.cli(&["HINCRBY", "user", "age", "1"]).unwrap().trim(), "42");
    let out = node.cli(&["--no-raw", "HINCRBY", "user", "name", "1"]).unwrap();
    assert_eq!(out.trim(), "(error) ERR hash value is not an integer");
    let out = node.cli(&["--no-raw", "HRANDFIELD", "user", "0"]).unwrap();
    assert_eq!(out.trim(), "(empty array)");
    assert_eq!(node.cli(&["HSCAN", "user", "0"]).unwrap(), "0\nage\n42\nname\nann\n");
}

#[test]
fn sharding_mode_hashes_and_cross_slot_refusal() {
    let node = Node::sharding_all(1024);
    let mut c = node.conn();
    let slot = |k: &str| common::slot::key_slot(k.as_bytes(), 1024);
    let (a, b) = ("hash:a", "hash:b");
    assert_ne!(slot(a), slot(b), "test keys must be in different slots");
    assert_eq!(q(&mut c, &["HSET", a, "f", "1"]).unwrap(), Value::Int(1));
    assert_eq!(q(&mut c, &["HSET", b, "f", "2"]).unwrap(), Value::Int(1));
    assert_eq!(c.hget::<_, _, String>(a, "f").unwrap(), "1");
    assert_eq!(c.hget::<_, _, String>(b, "f").unwrap(), "2");
    let (next, items): (String, Vec<String>) = redis::cmd("HSCAN").arg(b).arg(0).query(&mut c).unwrap();
    assert_eq!((next.as_str(), items), ("0", vec!["f".to_string(), "2".to_string()]));
    // A multi-key command over two slots is refused unless the keys share a hashtag.
    let err = q(&mut c, &["RPOPLPUSH", a, b]).unwrap_err();
    assert!(err.contains("parameters hashtag is inconsistent"), "{err}");
    let err = q(&mut c, &["BRPOP", a, b, "0.1"]).unwrap_err();
    assert!(err.contains("This command is not supported in current configuration"), "{err}");
    let err = q(&mut c, &["BRPOP", "{x}1", "{x}2", "0.1"]).unwrap();
    assert_eq!(err, Value::Nil, "same hashtag: runs (and times out)");
}
