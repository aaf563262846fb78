//! String commands against a real node, through the `redis` crate and redis-cli.
mod support;

use redis::Commands;
use support::{q, Node};

#[test]
fn set_options_of_redis_6_2() {
    let node = Node::classic();
    let mut c = node.conn();
    let _: () = c.set("k", "v1").unwrap();
    // NX on an existing key does nothing; XX on a missing one neither.
    assert_eq!(q(&mut c, &["SET", "k", "v2", "NX"]).unwrap(), redis::Value::Nil);
    assert_eq!(q(&mut c, &["SET", "missing", "v", "XX"]).unwrap(), redis::Value::Nil);
    // GET returns the old value.
    let old: Option<String> = redis::cmd("SET").arg("k").arg("v3").arg("GET").query(&mut c).unwrap();
    assert_eq!(old.as_deref(), Some("v1"));
    // EX / PX / EXAT / PXAT set a TTL; KEEPTTL keeps it.
    let _: () = redis::cmd("SET").arg("t").arg("x").arg("EX").arg(100).query(&mut c).unwrap();
    let ttl: i64 = c.ttl("t").unwrap();
    assert!((99..=100).contains(&ttl), "{ttl}");
    let _: () = redis::cmd("SET").arg("t").arg("y").arg("KEEPTTL").query(&mut c).unwrap();
    assert!(c.ttl::<_, i64>("t").unwrap() > 0);
    let _: () = c.set("t", "z").unwrap();
    assert_eq!(c.ttl::<_, i64>("t").unwrap(), -1, "plain SET clears the TTL");
    let far = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1000;
    let _: () = redis::cmd("SET").arg("at").arg("x").arg("EXAT").arg(far).query(&mut c).unwrap();
    assert!((998..=1000).contains(&c.ttl::<_, i64>("at").unwrap()));
    let _: () = redis::cmd("SET").arg("pat").arg("x").arg("PXAT").arg(far * 1000).query(&mut c).unwrap();
    assert!(c.pttl::<_, i64>("pat").unwrap() > 990_000);
    // Errors.
    for bad in [&["SET", "k", "v", "EX", "0"][..], &["SET", "k", "v", "EX", "-5"], &["SET", "k", "v", "PX", "0"]] {
        let err = q(&mut c, bad).unwrap_err();
        assert!(err.contains("invalid expire time in 'set' command"), "{err}");
    }
    assert!(q(&mut c, &["SET", "k", "v", "NX", "XX"]).unwrap_err().contains("syntax error"));
    assert!(q(&mut c, &["SET", "k", "v", "EX", "1", "PX", "1"]).unwrap_err().contains("syntax error"));
    assert!(q(&mut c, &["SET", "k", "v", "EX", "abc"]).unwrap_err().contains("not an integer"));
    assert!(q(&mut c, &["SET", "k", "v", "EX", "1", "KEEPTTL"]).unwrap_err().contains("syntax error"));
    // GET on a non-string.
    let _: () = redis::cmd("HSET").arg("h").arg("f").arg("v").query(&mut c).unwrap();
    assert!(q(&mut c, &["SET", "h", "v", "GET"]).unwrap_err().contains("WRONGTYPE"));
    assert!(q(&mut c, &["GET", "h"]).unwrap_err().contains("WRONGTYPE"));
    // SET (without GET) overwrites any type.
    let _: () = c.set("h", "now a string").unwrap();
    assert_eq!(c.get::<_, String>("h").unwrap(), "now a string");
    assert!(q(&mut c, &["HGET", "h", "f"]).unwrap_err().contains("WRONGTYPE"));
}

#[test]
fn getex_getdel_getset_setnx_setex() {
    let node = Node::classic();
    let mut c = node.conn();
    let _: () = c.set("k", "v").unwrap();
    let v: String = redis::cmd("GETEX").arg("k").arg("EX").arg(50).query(&mut c).unwrap();
    assert_eq!(v, "v");
    assert!(c.ttl::<_, i64>("k").unwrap() > 40);
    let _: String = redis::cmd("GETEX").arg("k").arg("PERSIST").query(&mut c).unwrap();
    assert_eq!(c.ttl::<_, i64>("k").unwrap(), -1);
    assert!(q(&mut c, &["GETEX", "k", "EX", "0"]).unwrap_err().contains("invalid expire time in 'getex'"));
    assert!(q(&mut c, &["GETEX", "k", "BOGUS"]).unwrap_err().contains("syntax error"));
    assert_eq!(redis::cmd("GETDEL").arg("k").query::<Option<String>>(&mut c).unwrap().as_deref(), Some("v"));
    assert_eq!(redis::cmd("GETDEL").arg("k").query::<Option<String>>(&mut c).unwrap(), None);
    assert_eq!(c.getset::<_, _, Option<String>>("g", "1").unwrap(), None);
    assert_eq!(c.getset::<_, _, Option<String>>("g", "2").unwrap().as_deref(), Some("1"));
    assert!(c.set_nx::<_, _, bool>("n", "a").unwrap());
    assert!(!c.set_nx::<_, _, bool>("n", "b").unwrap());
    let _: () = redis::cmd("SETEX").arg("e").arg(10).arg("v").query(&mut c).unwrap();
    assert!((9..=10).contains(&c.ttl::<_, i64>("e").unwrap()));
    let _: () = redis::cmd("PSETEX").arg("p").arg(10_000).arg("v").query(&mut c).unwrap();
    assert!(c.pttl::<_, i64>("p").unwrap() > 9000);
    assert!(q(&mut c, &["SETEX", "e", "0", "v"]).unwrap_err().contains("invalid expire time in 'setex'"));
}

#[test]
fn counters_and_overflow() {
    let node = Node::classic();
    let mut c = node.conn();
    assert_eq!(c.incr::<_, _, i64>("n", 1).unwrap(), 1);
    assert_eq!(redis::cmd("INCRBY").arg("n").arg(41).query::<i64>(&mut c).unwrap(), 42);
    assert_eq!(redis::cmd("DECR").arg("n").query::<i64>(&mut c).unwrap(), 41);
    assert_eq!(redis::cmd("DECRBY").arg("n").arg(50).query::<i64>(&mut c).unwrap(), -9);
    let _: () = c.set("max", i64::MAX).unwrap();
    assert!(q(&mut c, &["INCR", "max"]).unwrap_err().contains("increment or decrement would overflow"));
    let _: () = c.set("min", i64::MIN).unwrap();
    assert!(q(&mut c, &["DECR", "min"]).unwrap_err().contains("overflow"));
    assert!(q(&mut c, &["DECRBY", "n", "-9223372036854775808"]).unwrap_err().contains("overflow"));
    let _: () = c.set("s", "abc").unwrap();
    assert!(q(&mut c, &["INCR", "s"]).unwrap_err().contains("value is not an integer or out of range"));
    let _: () = c.set("sp", " 1").unwrap();
    assert!(q(&mut c, &["INCR", "sp"]).unwrap_err().contains("not an integer"));
    assert!(q(&mut c, &["INCRBY", "n", "1.5"]).unwrap_err().contains("not an integer"));
    // Floats.
    let v: String = redis::cmd("INCRBYFLOAT").arg("f").arg("10.5").query(&mut c).unwrap();
    assert_eq!(v, "10.5");
    let v: String = redis::cmd("INCRBYFLOAT").arg("f").arg("0.1").query(&mut c).unwrap();
    assert_eq!(v, "10.6");
    let v: String = redis::cmd("INCRBYFLOAT").arg("f").arg("-5e0").query(&mut c).unwrap();
    assert_eq!(v, "5.6");
    assert!(q(&mut c, &["INCRBYFLOAT", "f", "inf"]).unwrap_err().contains("NaN or Infinity"));
    assert!(q(&mut c, &["INCRBYFLOAT", "f", "x"]).unwrap_err().contains("not a valid float"));
    assert!(q(&mut c, &["INCRBYFLOAT", "s", "1"]).unwrap_err().contains("not a valid float"));
    // The failed commands changed nothing.
    assert_eq!(c.get::<_, String>("f").unwrap(), "5.6");
    assert_eq!(c.get::<_, i64>("n").unwrap(), -9);
}

#[test]
fn append_ranges_and_bits() {
    let node = Node::classic();
    let mut c = node.conn();
    assert_eq!(c.append::<_, _, i64>("a", "Hello").unwrap(), 5);
    assert_eq!(c.append::<_, _, i64>("a", " World").unwrap(), 11);
    assert_eq!(redis::cmd("STRLEN").arg("a").query::<i64>(&mut c).unwrap(), 11);
    assert_eq!(c.getrange::<_, String>("a", 0, 4).unwrap(), "Hello");
    assert_eq!(c.getrange::<_, String>("a", -5, -1).unwrap(), "World");
    assert_eq!(c.getrange::<_, String>("a", 20, 30).unwrap(), "");
    assert_eq!(c.setrange::<_, _, i64>("a", 6, "Redis").unwrap(), 11);
    assert_eq!(c.get::<_, String>("a").unwrap(), "Hello Redis");
    assert_eq!(c.setrange::<_, _, i64>("pad", 3, "x").unwrap(), 4);
    assert_eq!(c.get::<_, Vec<u8>>("pad").unwrap(), b"\0\0\0x");
    assert!(q(&mut c, &["SETRANGE", "a", "-1", "x"]).unwrap_err().contains("offset is out of range"));
    assert!(q(&mut c, &["SETRANGE", "a", "536870912", "x"]).unwrap_err().contains("maximum allowed size"));
    // Bits.
    assert_eq!(redis::cmd("SETBIT").arg("b").arg(7).arg(1).query::<i64>(&mut c).unwrap(), 0);
    assert_eq!(redis::cmd("SETBIT").arg("b").arg(7).arg(0).query::<i64>(&mut c).unwrap(), 1);
    assert_eq!(redis::cmd("GETBIT").arg("b").arg(100).query::<i64>(&mut c).unwrap(), 0);
    assert!(q(&mut c, &["SETBIT", "b", "1", "2"]).unwrap_err().contains("bit is not an integer"));
    assert!(q(&mut c, &["SETBIT", "b", "-1", "1"]).unwrap_err().contains("bit offset is not an integer"));
    let _: () = c.set("bc", "foobar").unwrap();
    assert_eq!(redis::cmd("BITCOUNT").arg("bc").query::<i64>(&mut c).unwrap(), 26);
    assert_eq!(redis::cmd("BITCOUNT").arg("bc").arg(0).arg(0).query::<i64>(&mut c).unwrap(), 4);
    assert_eq!(redis::cmd("BITCOUNT").arg("bc").arg(1).arg(1).query::<i64>(&mut c).unwrap(), 6);
    assert_eq!(redis::cmd("BITCOUNT").arg("bc").arg(5).arg(30).arg("BIT").query::<i64>(&mut c).unwrap(), 17);
    let _: () = c.set("bp", b"\xff\xf0\x00".to_vec()).unwrap();
    assert_eq!(redis::cmd("BITPOS").arg("bp").arg(0).query::<i64>(&mut c).unwrap(), 12);
    let _: () = c.set("bp1", b"\x00\xff\xf0".to_vec()).unwrap();
    assert_eq!(redis::cmd("BITPOS").arg("bp1").arg(1).arg(0).query::<i64>(&mut c).unwrap(), 8);
    assert_eq!(redis::cmd("BITPOS").arg("bp1").arg(1).arg(2).query::<i64>(&mut c).unwrap(), 16);
    let _: () = c.set("ones", b"\xff\xff".to_vec()).unwrap();
    assert_eq!(redis::cmd("BITPOS").arg("ones").arg(0).query::<i64>(&mut c).unwrap(), 16);
    assert_eq!(redis::cmd("BITPOS").arg("ones").arg(0).arg(0).arg(-1).query::<i64>(&mut c).unwrap(), -1);
    assert_eq!(redis::cmd("BITPOS").arg("nokey").arg(1).query::<i64>(&mut c).unwrap(), -1);
}

#[test]
fn mget_mset_msetnx() {
    let node = Node::classic();
    let mut c = node.conn();
    let _: () = redis::cmd("MSET").arg("a").arg("1").arg("b").arg("2").query(&mut c).unwrap();
    let _: () = redis::cmd("LPUSH").arg("l").arg("x").query(&mut c).unwrap();
    let got: Vec<Option<String>> = redis::cmd("MGET").arg("a").arg("nope").arg("b").arg("l").query(&mut c).unwrap();
    assert_eq!(got, vec![Some("1".into()), None, Some("2".into()), None], "MGET gives nil for other types");
    assert!(q(&mut c, &["MSET", "a", "1", "b"]).unwrap_err().contains("wrong number of arguments for 'mset'"));
    assert_eq!(redis::cmd("MSETNX").arg("a").arg("9").arg("c").arg("3").query::<i64>(&mut c).unwrap(), 0);
    assert_eq!(c.get::<_, Option<String>>("c").unwrap(), None, "MSETNX is all or nothing");
    assert_eq!(redis::cmd("MSETNX").arg("c").arg("3").arg("d").arg("4").query::<i64>(&mut c).unwrap(), 1);
}

#[test]
fn large_values_round_trip() {
    let node = Node::classic();
    let mut c = node.conn();
    // 64 MiB: big enough to cross every buffer boundary, small enough for CI.
    let big: Vec<u8> = (0..64 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let _: () = c.set("big", &big).unwrap();
    let back: Vec<u8> = c.get("big").unwrap();
    assert_eq!(back.len(), big.len());
    assert!(back == big);
    assert_eq!(redis::cmd("STRLEN").arg("big").query::<i64>(&mut c).unwrap(), big.len() as i64);
}

#[test]
fn largest_bulk_is_accepted_and_one_byte_more_is_refused() {
    let node = Node::classic();
    let mut c = node.conn();
    // 512 MiB, Redis's proto-max-bulk-len, in one SET.
    let max = vec![b'x'; 512 * 1024 * 1024];
    let _: () = c.set("max", &max).unwrap();
    drop(max);
    assert_eq!(redis::cmd("STRLEN").arg("max").query::<i64>(&mut c).unwrap(), 512 * 1024 * 1024);
    assert_eq!(c.getrange::<_, String>("max", -3, -1).unwrap(), "xxx");
    let reply = support::raw_exchange(
        node.port,
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870913\r\n",
        std::time::Duration::from_millis(500),
    );
    assert_eq!(String::from_utf8_lossy(&reply), "-ERR Protocol error: invalid bulk length\r\n");
    // Appending past the limit is refused and changes nothing.
    assert!(q(&mut c, &["APPEND", "max", "y"]).unwrap_err().contains("string exceeds maximum allowed size"));
    assert_eq!(redis::cmd("STRLEN").arg("max").query::<i64>(&mut c).unwrap(), 512 * 1024 * 1024);
}

#[test]
fn redis_cli_sees_the_same_data() {
    if !support::have_redis_cli() {
        eprintln!("skipped: redis-cli is not installed");
        return;
    }
    let node = Node::classic();
    assert_eq!(node.cli(&["SET", "greeting", "hello world"]).unwrap().trim(), "OK");
    assert_eq!(node.cli(&["GET", "greeting"]).unwrap().trim(), "hello world");
    assert_eq!(node.cli(&["INCR", "hits"]).unwrap().trim(), "1");
    assert_eq!(node.cli(&["GET", "missing"]).unwrap().trim(), "");
    let mut c = node.conn();
    assert_eq!(c.get::<_, String>("greeting").unwrap(), "hello world");
    // redis-cli's pipe of inline commands (it sends them as RESP; ours parses both).
    let out = node.cli_stdin(&[], "SET piped 1\nINCRBY piped 41\nGET piped\n").unwrap();
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), vec!["OK", "42", "42"]);
}
