//! Key commands: DEL/EXISTS/TYPE, TTLs on every type with lazy and background expiry,
//! RENAME, OBJECT, and the keyspace commands of classic mode.
mod support;

use std::time::Duration;

use redis::Commands;
use support::{q, Node};

fn fill_every_type(c: &mut redis::Connection) {
    let _: () = c.set("s", "v").unwrap();
    let _: () = redis::cmd("HSET").arg("h").arg("f").arg("v").query(c).unwrap();
    let _: () = redis::cmd("RPUSH").arg("l").arg("a").arg("b").query(c).unwrap();
    let _: () = redis::cmd("SADD").arg("st").arg("m").query(c).unwrap();
    let _: () = redis::cmd("ZADD").arg("z").arg(1).arg("m").query(c).unwrap();
}

#[test]
fn del_exists_type() {
    let node = Node::classic();
    let mut c = node.conn();
    fill_every_type(&mut c);
    let types: Vec<String> =
        ["s", "h", "l", "st", "z", "none"].iter().map(|k| redis::cmd("TYPE").arg(k).query(&mut c).unwrap()).collect();
    assert_eq!(types, ["string", "hash", "list", "set", "zset", "none"]);
    assert_eq!(redis::cmd("EXISTS").arg("s").arg("s").arg("h").arg("x").query::<i64>(&mut c).unwrap(), 3);
    assert_eq!(redis::cmd("DEL").arg("s").arg("h").arg("l").arg("x").query::<i64>(&mut c).unwrap(), 3);
    assert_eq!(redis::cmd("UNLINK").arg("st").arg("z").query::<i64>(&mut c).unwrap(), 2);
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 0);
    // A deleted list is really empty when re-created.
    let _: () = redis::cmd("RPUSH").arg("l").arg("new").query(&mut c).unwrap();
    assert_eq!(c.lrange::<_, Vec<String>>("l", 0, -1).unwrap(), vec!["new"]);
}

#[test]
fn ttl_on_every_type_expires_lazily_and_in_background() {
    let node = Node::classic();
    let mut c = node.conn();
    fill_every_type(&mut c);
    for key in ["s", "h", "l", "st", "z"] {
        assert_eq!(redis::cmd("PEXPIRE").arg(key).arg(300).query::<i64>(&mut c).unwrap(), 1, "{key}");
        let pttl: i64 = c.pttl(key).unwrap();
        assert!((0..=300).contains(&pttl), "{key}: {pttl}");
    }
    assert_eq!(c.ttl::<_, i64>("missing").unwrap(), -2);
    std::thread::sleep(Duration::from_millis(400));
    // Lazy: reads see nothing.
    for key in ["s", "h", "l", "st", "z"] {
        assert_eq!(c.exists::<_, i64>(key).unwrap(), 0, "{key}");
        assert_eq!(c.ttl::<_, i64>(key).unwrap(), -2);
    }
    assert_eq!(q(&mut c, &["HGET", "h", "f"]).unwrap(), redis::Value::Nil);
    assert_eq!(c.llen::<_, i64>("l").unwrap(), 0);
    // A new collection under an expired name starts empty.
    let _: () = redis::cmd("RPUSH").arg("l").arg("fresh").query(&mut c).unwrap();
    assert_eq!(c.lrange::<_, Vec<String>>("l", 0, -1).unwrap(), vec!["fresh"]);
    // Background: expired keys are counted as removed without anyone reading them.
    for i in 0..50 {
        let _: () = redis::cmd("SET").arg(format!("bg{i}")).arg("v").arg("PX").arg(100).query(&mut c).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1500));
    let info: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    let expired: u64 =
        info.lines().find_map(|l| l.strip_prefix("expired_keys:")).and_then(|v| v.trim().parse().ok()).unwrap();
    assert!(expired >= 50, "background expiry removed only {expired}");
}

#[test]
fn expire_family_options() {
    let node = Node::classic();
    let mut c = node.conn();
    let _: () = c.set("k", "v").unwrap();
    assert_eq!(redis::cmd("EXPIRE").arg("k").arg(100).arg("XX").query::<i64>(&mut c).unwrap(), 0);
    assert_eq!(redis::cmd("EXPIRE").arg("k").arg(100).arg("NX").query::<i64>(&mut c).unwrap(), 1);
    assert_eq!(redis::cmd("EXPIRE").arg("k").arg(50).arg("GT").query::<i64>(&mut c).unwrap(), 0);
    assert_eq!(redis::cmd("EXPIRE").arg("k").arg(200).arg("GT").query::<i64>(&mut c).unwrap(), 1);
    assert_eq!(redis::cmd("EXPIRE").arg("k").arg(10).arg("LT").query::<i64>(&mut c).unwrap(), 1);
    assert!(c.ttl::<_, i64>("k").unwrap() <= 10);
    assert!(q(&mut c, &["EXPIRE", "k", "10", "NX", "XX"]).unwrap_err().contains("not compatible"));
    assert!(q(&mut c, &["EXPIRE", "k", "ten"]).unwrap_err().contains("not an integer"));
    assert_eq!(redis::cmd("PERSIST").arg("k").query::<i64>(&mut c).unwrap(), 1);
    assert_eq!(redis::cmd("PERSIST").arg("k").query::<i64>(&mut c).unwrap(), 0);
    assert_eq!(c.ttl::<_, i64>("k").unwrap(), -1);
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 500;
    assert_eq!(redis::cmd("EXPIREAT").arg("k").arg(at).query::<i64>(&mut c).unwrap(), 1);
    assert_eq!(redis::cmd("EXPIRETIME").arg("k").query::<u64>(&mut c).unwrap(), at);
    assert_eq!(redis::cmd("PEXPIRETIME").arg("k").query::<u64>(&mut c).unwrap(), at * 1000);
    // A time in the past deletes the key.
    assert_eq!(redis::cmd("PEXPIREAT").arg("k").arg(1).query::<i64>(&mut c).unwrap(), 1);
    assert_eq!(c.exists::<_, i64>("k").unwrap(), 0);
    assert_eq!(redis::cmd("EXPIRE").arg("k").arg(10).query::<i64>(&mut c).unwrap(), 0, "missing key");
}

#[test]
fn rename_moves_collections_with_ttl() {
    let node = Node::classic();
    let mut c = node.conn();
    let _: () = redis::cmd("RPUSH").arg("src").arg("a").arg("b").arg("c").query(&mut c).unwrap();
    let _: () = redis::cmd("EXPIRE").arg("src").arg(100).query(&mut c).unwrap();
    let _: () = c.set("dst", "old").unwrap();
    let _: () = redis::cmd("RENAME").arg("src").arg("dst").query(&mut c).unwrap();
    assert_eq!(c.lrange::<_, Vec<String>>("dst", 0, -1).unwrap(), vec!["a", "b", "c"]);
    assert!(c.ttl::<_, i64>("dst").unwrap() > 90);
    assert_eq!(c.exists::<_, i64>("src").unwrap(), 0);
    assert!(q(&mut c, &["RENAME", "nothing", "x"]).unwrap_err().contains("no such key"));
    let _: () = c.set("a", "1").unwrap();
    assert_eq!(redis::cmd("RENAMENX").arg("a").arg("dst").query::<i64>(&mut c).unwrap(), 0);
    assert_eq!(redis::cmd("RENAMENX").arg("a").arg("b").query::<i64>(&mut c).unwrap(), 1);
    assert_eq!(c.get::<_, String>("b").unwrap(), "1");
}

#[test]
fn object_and_keyspace_commands_in_classic_mode() {
    let node = Node::classic();
    let mut c = node.conn();
    let _: () = c.set("num", "12345").unwrap();
    let _: () = c.set("str", "hello").unwrap();
    let _: () = redis::cmd("RPUSH").arg("lst").arg("x").query(&mut c).unwrap();
    assert_eq!(redis::cmd("OBJECT").arg("ENCODING").arg("num").query::<String>(&mut c).unwrap(), "int");
    assert_eq!(redis::cmd("OBJECT").arg("ENCODING").arg("str").query::<String>(&mut c).unwrap(), "embstr");
    assert_eq!(redis::cmd("OBJECT").arg("ENCODING").arg("lst").query::<String>(&mut c).unwrap(), "quicklist");
    assert_eq!(q(&mut c, &["OBJECT", "ENCODING", "missing"]).unwrap(), redis::Value::Nil);
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    keys.sort();
    assert_eq!(keys, vec!["lst", "num", "str"]);
    let keys: Vec<String> = redis::cmd("KEYS").arg("n?m").query(&mut c).unwrap();
    assert_eq!(keys, vec!["num"]);
    for i in 0..95 {
        let _: () = c.set(format!("scan:{i}"), i).unwrap();
    }
    // SCAN visits every key exactly once over its cursor chain.
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = "0".to_string();
    loop {
        let (next, batch): (String, Vec<String>) =
            redis::cmd("SCAN").arg(&cursor).arg("MATCH").arg("scan:*").arg("COUNT").arg(7).query(&mut c).unwrap();
        for k in batch {
            assert!(seen.insert(k), "SCAN returned a key twice");
        }
        if next == "0" {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen.len(), 95);
    let (_, only_lists): (String, Vec<String>) =
        redis::cmd("SCAN").arg(0).arg("COUNT").arg(1000).arg("TYPE").arg("list").query(&mut c).unwrap();
    assert_eq!(only_lists, vec!["lst"]);
    assert!(redis::cmd("RANDOMKEY").query::<Option<String>>(&mut c).unwrap().is_some());
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 98);
}
