//! List commands against a real node: pushes and pops, indexes and ranges, middle edits on long
//! lists, LPOS options, moves and rotation, blocking pops woken by other clients, and sharding.
mod support;

use std::thread;
use std::time::{Duration, Instant};

use redis::{Commands, Value};
use support::{q, query, Node};

fn range(c: &mut redis::Connection, key: &str) -> Vec<String> {
    c.lrange(key, 0, -1).unwrap()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn push_pop_and_counts() {
    let node = Node::classic();
    let mut c = node.conn();
    assert_eq!(q(&mut c, &["RPUSH", "l", "a", "b", "c"]).unwrap(), Value::Int(3));
    assert_eq!(q(&mut c, &["LPUSH", "l", "x", "y"]).unwrap(), Value::Int(5));
    assert_eq!(range(&mut c, "l"), strings(&["y", "x", "a", "b", "c"]));
    assert_eq!(c.llen::<_, i64>("l").unwrap(), 5);
    // The X forms only push onto an existing list.
    assert_eq!(q(&mut c, &["LPUSHX", "nolist", "a"]).unwrap(), Value::Int(0));
    assert_eq!(q(&mut c, &["RPUSHX", "nolist", "a", "b"]).unwrap(), Value::Int(0));
    assert!(!c.exists::<_, bool>("nolist").unwrap());
    assert_eq!(q(&mut c, &["RPUSHX", "l", "z"]).unwrap(), Value::Int(6));
    assert_eq!(q(&mut c, &["LPUSHX", "l", "w"]).unwrap(), Value::Int(7));
    // Single pops answer an item; counted pops an array.
    assert_eq!(q(&mut c, &["LPOP", "l"]).unwrap(), Value::BulkString(b"w".to_vec()));
    assert_eq!(q(&mut c, &["RPOP", "l"]).unwrap(), Value::BulkString(b"z".to_vec()));
    let two: Vec<String> = redis::cmd("LPOP").arg("l").arg(2).query(&mut c).unwrap();
    assert_eq!(two, strings(&["y", "x"]));
    let back: Vec<String> = redis::cmd("RPOP").arg("l").arg(2).query(&mut c).unwrap();
    assert_eq!(back, strings(&["c", "b"]));
    // Count 0 on a list: an empty array; any pop on a missing key: nil (a nil array with count).
    assert_eq!(q(&mut c, &["LPOP", "l", "0"]).unwrap(), Value::Array(vec![]));
    assert_eq!(q(&mut c, &["LPOP", "missing"]).unwrap(), Value::Nil);
    assert_eq!(q(&mut c, &["LPOP", "missing", "3"]).unwrap(), Value::Nil);
    assert!(q(&mut c, &["LPOP", "l", "-1"]).unwrap_err().contains("value is out of range, must be positive"));
    assert!(q(&mut c, &["RPOP", "l", "x"]).unwrap_err().contains("value is out of range, must be positive"));
    // A count larger than the list pops everything and deletes the key.
    let rest: Vec<String> = redis::cmd("RPOP").arg("l").arg(10).query(&mut c).unwrap();
    assert_eq!(rest, strings(&["a"]));
    assert!(!c.exists::<_, bool>("l").unwrap(), "an emptied list is deleted");
    assert_eq!(c.llen::<_, i64>("l").unwrap(), 0);
    // A new list after the old one was emptied starts clean.
    assert_eq!(q(&mut c, &["RPUSH", "l", "again"]).unwrap(), Value::Int(1));
    assert_eq!(range(&mut c, "l"), strings(&["again"]));
}

#[test]
fn wrong_type_and_arity() {
    let node = Node::classic();
    let mut c = node.conn();
    let _: () = c.set("s", "v").unwrap();
    for args in [
        &["LPUSH", "s", "a"][..],
        &["RPUSHX", "s", "a"],
        &["LPOP", "s"],
        &["LLEN", "s"],
        &["LRANGE", "s", "0", "-1"],
        &["LINDEX", "s", "0"],
        &["LSET", "s", "0", "x"],
        &["LINSERT", "s", "BEFORE", "a", "b"],
        &["LREM", "s", "0", "a"],
        &["LTRIM", "s", "0", "1"],
        &["LPOS", "s", "a"],
        &["RPOPLPUSH", "s", "d"],
        &["BLPOP", "s", "0.1"],
    ] {
        let err = q(&mut c, args).unwrap_err();
        assert!(err.contains("WRONGTYPE"), "{args:?}: {err}");
    }
    assert_eq!(c.get::<_, String>("s").unwrap(), "v");
    let _: () = c.rpush("l", "a").unwrap();
    assert!(q(&mut c, &["RPOPLPUSH", "l", "s"]).unwrap_err().contains("WRONGTYPE"));
    assert_eq!(range(&mut c, "l"), strings(&["a"]), "a refused move pops nothing");
    // A missing source answers nil before the destination's type matters.
    assert_eq!(q(&mut c, &["RPOPLPUSH", "missing", "s"]).unwrap(), Value::Nil);
    for args in
        [&["LPUSH", "l"][..], &["LLEN"], &["LRANGE", "l", "0"], &["LINSERT", "l", "BEFORE", "a"], &["BLPOP", "l"]]
    {
        let err = q(&mut c, args).unwrap_err();
        assert!(err.contains("wrong number of arguments"), "{args:?}: {err}");
    }
    assert!(q(&mut c, &["LPOP", "l", "1", "2"]).unwrap_err().contains("wrong number of arguments for 'lpop' command"));
}

#[test]
fn index_range_set_and_trim() {
    let node = Node::classic();
    let mut c = node.conn();
    let _: () = redis::cmd("RPUSH").arg("l").arg(&["a", "b", "c", "d", "e"]).query(&mut c).unwrap();
    assert_eq!(c.lindex::<_, String>("l", 0).unwrap(), "a");
    assert_eq!(c.lindex::<_, String>("l", -1).unwrap(), "e");
    assert_eq!(c.lindex::<_, String>("l", -5).unwrap(), "a");
    assert_eq!(c.lindex::<_, Option<String>>("l", 5).unwrap(), None);
    assert_eq!(c.lindex::<_, Option<String>>("l", -6).unwrap(), None);
    assert_eq!(c.lindex::<_, Option<String>>("missing", 0).unwrap(), None);
    assert!(q(&mut c, &["LINDEX", "l", "x"]).unwrap_err().contains("not an integer"));
    assert_eq!(c.lrange::<_, Vec<String>>("l", 1, 2).unwrap(), strings(&["b", "c"]));
    assert_eq!(c.lrange::<_, Vec<String>>("l", -2, 100).unwrap(), strings(&["d", "e"]));
    assert_eq!(c.lrange::<_, Vec<String>>("l", -100, 0).unwrap(), strings(&["a"]));
    assert_eq!(c.lrange::<_, Vec<String>>("l", 3, 1).unwrap(), Vec::<String>::new());
    assert_eq!(c.lrange::<_, Vec<String>>("missing", 0, -1).unwrap(), Vec::<String>::new());
    assert!(q(&mut c, &["LRANGE", "l", "0", "x"]).unwrap_err().contains("not an integer"));
    // LSET
    let _: () = c.lset("l", -1, "E").unwrap();
    let _: () = c.lset("l", 0, "A").unwrap();
    assert_eq!(range(&mut c, "l"), strings(&["A", "b", "c", "d", "E"]));
    assert!(q(&mut c, &["LSET", "l", "5", "x"]).unwrap_err().contains("index out of range"));
    assert!(q(&mut c, &["LSET", "l", "-6", "x"]).unwrap_err().contains("index out of range"));
    assert!(q(&mut c, &["LSET", "missing", "0", "x"]).unwrap_err().contains("no such key"));
    assert!(q(&mut c, &["LSET", "l", "x", "x"]).unwrap_err().contains("not an integer"));
    // LTRIM keeps the TTL; an empty range deletes the key.
    let _: () = c.expire("l", 100).unwrap();
    let _: () = c.ltrim("l", 1, -2).unwrap();
    assert_eq!(range(&mut c, "l"), strings(&["b", "c", "d"]));
    assert!(c.ttl::<_, i64>("l").unwrap() > 90, "TTL kept");
    let _: () = c.ltrim("l", -2, 10).unwrap();
    assert_eq!(range(&mut c, "l"), strings(&["c", "d"]));
    // Pushes after trims keep indexes contiguous at both ends.
    let _: () = c.lpush("l", "b").unwrap();
    let _: () = c.rpush("l", "e").unwrap();
    assert_eq!(range(&mut c, "l"), strings(&["b", "c", "d", "e"]));
    assert_eq!(c.lindex::<_, String>("l", 2).unwrap(), "d");
    assert!(c.ttl::<_, i64>("l").unwrap() > 90, "pushes keep the TTL");
    let _: () = c.ltrim("l", 5, 10).unwrap();
    assert!(!c.exists::<_, bool>("l").unwrap());
    assert_eq!(q(&mut c, &["LTRIM", "missing", "0", "1"]).unwrap(), Value::Okay);
    assert!(q(&mut c, &["LTRIM", "l", "a", "1"]).unwrap_err().contains("not an integer"));
}

#[test]
fn expired_list_is_replaced_not_extended() {
    let node = Node::classic();
    let mut c = node.conn();
    for (key, n) in [("small", 3), ("large", 300)] {
        let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        let _: () = redis::cmd("RPUSH").arg(key).arg(&items).query(&mut c).unwrap();
        let _: () = redis::cmd("PEXPIRE").arg(key).arg(50).query(&mut c).unwrap();
    }
    std::thread::sleep(Duration::from_millis(120));
    for key in ["small", "large"] {
        assert_eq!(q(&mut c, &["LPUSH", key, "new"]).unwrap(), Value::Int(1), "{key}");
        assert_eq!(range(&mut c, key), strings(&["new"]), "{key}");
        assert_eq!(c.ttl::<_, i64>(key).unwrap(), -1);
    }
}

/// A list of `n` items "0".."n-1", built with pushes on both sides.
fn numbered(c: &mut redis::Connection, key: &str, n: usize) -> Vec<String> {
    let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let half = n / 2;
    let left: Vec<&String> = items[..half].iter().rev().collect();
    let _: () = redis::cmd("LPUSH").arg(key).arg(left).query(c).unwrap();
    let _: () = redis::cmd("RPUSH").arg(key).arg(&items[half..]).query(c).unwrap();
    assert_eq!(range(c, key), items);
    items
}

#[test]
fn linsert_in_long_lists() {
    let node = Node::classic();
    let mut c = node.conn();
    let mut model = numbered(&mut c, "l", 300);
    let _: () = c.expire("l", 100).unwrap();
    // Near the head (shifts the left side), near the tail (shifts the right side), the middle,
    // and both ends.
    for (pivot, after, value) in [
        ("10", false, "before-10"),
        ("280", true, "after-280"),
        ("150", false, "before-150"),
        ("151", true, "after-151"),
        ("0", false, "new-head"),
        ("299", true, "new-tail"),
    ] {
        let pos = model.iter().position(|v| v == pivot).unwrap() + after as usize;
        model.insert(pos, value.to_string());
        let where_ = if after { "AFTER" } else { "BEFORE" };
        let len: i64 = redis::cmd("LINSERT").arg("l").arg(where_).arg(pivot).arg(value).query(&mut c).unwrap();
        assert_eq!(len as usize, model.len());
        assert_eq!(range(&mut c, "l"), model, "after inserting {value}");
    }
    // Positional reads agree with the range after the shifts.
    for i in [0usize, 11, 152, model.len() - 1] {
        assert_eq!(c.lindex::<_, String>("l", i as isize).unwrap(), model[i]);
    }
    assert!(c.ttl::<_, i64>("l").unwrap() > 90, "TTL kept");
    assert_eq!(q(&mut c, &["LINSERT", "l", "BEFORE", "nope", "x"]).unwrap(), Value::Int(-1));
    assert_eq!(q(&mut c, &["LINSERT", "missing", "BEFORE", "a", "x"]).unwrap(), Value::Int(0));
    assert!(!c.exists::<_, bool>("missing").unwrap());
    assert!(q(&mut c, &["LINSERT", "l", "MIDDLE", "1", "x"]).unwrap_err().contains("syntax error"));
    // Only the first occurrence of the pivot counts.
    let _: () = redis::cmd("RPUSH").arg("d").arg(&["a", "p", "b", "p"]).query(&mut c).unwrap();
    let _: () = redis::cmd("LINSERT").arg("d").arg("AFTER").arg("p").arg("X").query(&mut c).unwrap();
    assert_eq!(range(&mut c, "d"), strings(&["a", "p", "X", "b", "p"]));
}

#[test]
fn lrem_in_long_lists() {
    let node = Node::classic();
    let mut c = node.conn();
    // 400 items, every tenth one is "x".
    let mut model: Vec<String> = (0..400).map(|i| if i % 10 == 3 { "x".to_string() } else { i.to_string() }).collect();
    let _: () = redis::cmd("RPUSH").arg("l").arg(&model).query(&mut c).unwrap();
    let _: () = c.expire("l", 100).unwrap();
    let remove = |model: &mut Vec<String>, count: i64| {
        let positions: Vec<usize> = model.iter().enumerate().filter(|(_, v)| *v == "x").map(|(i, _)| i).collect();
        let chosen: Vec<usize> = match count {
            0 => positions,
            n if n > 0 => positions.into_iter().take(n as usize).collect(),
            n => positions.into_iter().rev().take(n.unsigned_abs() as usize).collect(),
        };
        let mut sorted = chosen.clone();
        sorted.sort_unstable();
        for i in sorted.into_iter().rev() {
            model.remove(i);
        }
        chosen.len() as i64
    };
    // From the head, from the tail, a single item in the middle, then all.
    for count in [3i64, -4, 0] {
        let expected = remove(&mut model, count);
        assert_eq!(c.lrem::<_, _, i64>("l", count as isize, "x").unwrap(), expected, "LREM {count}");
        assert_eq!(range(&mut c, "l"), model, "after LREM {count}");
    }
    let pos = model.iter().position(|v| v == "200").unwrap();
    model.remove(pos);
    assert_eq!(c.lrem::<_, _, i64>("l", 1, "200").unwrap(), 1);
    assert_eq!(range(&mut c, "l"), model);
    assert_eq!(c.lindex::<_, String>("l", pos as isize).unwrap(), model[pos]);
    assert_eq!(c.llen::<_, i64>("l").unwrap(), model.len() as i64);
    assert!(c.ttl::<_, i64>("l").unwrap() > 90, "TTL kept");
    // Pushes on both ends still work after the packing.
    let _: () = c.lpush("l", "h").unwrap();
    let _: () = c.rpush("l", "t").unwrap();
    model.insert(0, "h".into());
    model.push("t".into());
    assert_eq!(range(&mut c, "l"), model);
    assert_eq!(c.lrem::<_, _, i64>("l", 0, "absent").unwrap(), 0);
    assert_eq!(c.lrem::<_, _, i64>("missing", 0, "x").unwrap(), 0);
    assert!(q(&mut c, &["LREM", "l", "x", "a"]).unwrap_err().contains("not an integer"));
    // Removing every item deletes the key.
    let _: () = redis::cmd("RPUSH").arg("same").arg(&["v", "v", "v"]).query(&mut c).unwrap();
    assert_eq!(c.lrem::<_, _, i64>("same", -10, "v").unwrap(), 3);
    assert!(!c.exists::<_, bool>("same").unwrap());
}

#[test]
fn lpos_options() {
    let node = Node::classic();
    let mut c = node.conn();
    // positions:                   0    1    2    3    4    5    6    7
    let _: () = redis::cmd("RPUSH").arg("l").arg(&["a", "b", "c", "1", "2", "3", "c", "c"]).query(&mut c).unwrap();
    let lpos = |c: &mut redis::Connection, args: &[&str]| {
        let mut full = vec!["LPOS", "l"];
        full.extend_from_slice(args);
        q(c, &full)
    };
    assert_eq!(lpos(&mut c, &["c"]).unwrap(), Value::Int(2));
    assert_eq!(lpos(&mut c, &["c", "RANK", "2"]).unwrap(), Value::Int(6));
    assert_eq!(lpos(&mut c, &["c", "RANK", "-1"]).unwrap(), Value::Int(7));
    assert_eq!(lpos(&mut c, &["c", "RANK", "-3"]).unwrap(), Value::Int(2));
    assert_eq!(lpos(&mut c, &["c", "RANK", "4"]).unwrap(), Value::Nil);
    assert_eq!(lpos(&mut c, &["zz"]).unwrap(), Value::Nil);
    let ints = |v: &[i64]| Value::Array(v.iter().map(|&i| Value::Int(i)).collect());
    assert_eq!(lpos(&mut c, &["c", "COUNT", "2"]).unwrap(), ints(&[2, 6]));
    assert_eq!(lpos(&mut c, &["c", "COUNT", "0"]).unwrap(), ints(&[2, 6, 7]));
    assert_eq!(lpos(&mut c, &["c", "COUNT", "0", "RANK", "-1"]).unwrap(), ints(&[7, 6, 2]));
    assert_eq!(lpos(&mut c, &["c", "COUNT", "0", "RANK", "2"]).unwrap(), ints(&[6, 7]));
    assert_eq!(lpos(&mut c, &["c", "COUNT", "0", "MAXLEN", "7"]).unwrap(), ints(&[2, 6]));
    assert_eq!(lpos(&mut c, &["c", "COUNT", "0", "RANK", "-1", "MAXLEN", "2"]).unwrap(), ints(&[7, 6]));
    assert_eq!(lpos(&mut c, &["c", "MAXLEN", "2"]).unwrap(), Value::Nil);
    assert_eq!(lpos(&mut c, &["zz", "COUNT", "5"]).unwrap(), ints(&[]));
    assert_eq!(q(&mut c, &["LPOS", "missing", "a"]).unwrap(), Value::Nil);
    assert_eq!(q(&mut c, &["LPOS", "missing", "a", "COUNT", "1"]).unwrap(), ints(&[]));
    for (args, expected) in [
        (&["c", "RANK", "0"][..], "RANK can't be zero: use 1 to start from the first match"),
        (&["c", "COUNT", "-1"], "COUNT can't be negative"),
        (&["c", "MAXLEN", "-1"], "MAXLEN can't be negative"),
        (&["c", "RANK", "x"], "not an integer"),
        (&["c", "RANK"], "syntax error"),
        (&["c", "BOGUS", "1"], "syntax error"),
    ] {
        let err = lpos(&mut c, args).unwrap_err();
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
fn rpoplpush_and_lmove() {
    let node = Node::classic();
    let mut c = node.conn();
    let _: () = redis::cmd("RPUSH").arg("src").arg(&["a", "b", "c"]).query(&mut c).unwrap();
    let _: () = c.expire("src", 100).unwrap();
    let moved: String = redis::cmd("RPOPLPUSH").arg("src").arg("dst").query(&mut c).unwrap();
    assert_eq!(moved, "c");
    let moved: String = redis::cmd("LMOVE").arg("src").arg("dst").arg("LEFT").arg("RIGHT").query(&mut c).unwrap();
    assert_eq!(moved, "a");
    assert_eq!(range(&mut c, "src"), strings(&["b"]));
    assert_eq!(range(&mut c, "dst"), strings(&["c", "a"]));
    assert!(c.ttl::<_, i64>("src").unwrap() > 90, "source keeps its TTL");
    assert_eq!(c.ttl::<_, i64>("dst").unwrap(), -1);
    // Moving the last item deletes the source.
    let moved: String = redis::cmd("LMOVE").arg("src").arg("dst").arg("right").arg("left").query(&mut c).unwrap();
    assert_eq!(moved, "b");
    assert!(!c.exists::<_, bool>("src").unwrap());
    assert_eq!(range(&mut c, "dst"), strings(&["b", "c", "a"]));
    assert_eq!(q(&mut c, &["LMOVE", "src", "dst", "LEFT", "LEFT"]).unwrap(), Value::Nil);
    assert!(q(&mut c, &["LMOVE", "dst", "x", "UP", "LEFT"]).unwrap_err().contains("syntax error"));
    assert!(q(&mut c, &["LMOVE", "dst", "x", "LEFT", "DOWN"]).unwrap_err().contains("syntax error"));
    // Same key: rotation.
    let _: () = redis::cmd("RPUSH").arg("r").arg(&["1", "2", "3", "4"]).query(&mut c).unwrap();
    let _: () = c.expire("r", 100).unwrap();
    let _: String = redis::cmd("RPOPLPUSH").arg("r").arg("r").query(&mut c).unwrap();
    assert_eq!(range(&mut c, "r"), strings(&["4", "1", "2", "3"]));
    let _: String = redis::cmd("LMOVE").arg("r").arg("r").arg("LEFT").arg("RIGHT").query(&mut c).unwrap();
    assert_eq!(range(&mut c, "r"), strings(&["1", "2", "3", "4"]));
    let _: String = redis::cmd("LMOVE").arg("r").arg("r").arg("LEFT").arg("LEFT").query(&mut c).unwrap();
    assert_eq!(range(&mut c, "r"), strings(&["1", "2", "3", "4"]));
    for _ in 0..10 {
        let _: String = redis::cmd("LMOVE").arg("r").arg("r").arg("RIGHT").arg("LEFT").query(&mut c).unwrap();
    }
    assert_eq!(range(&mut c, "r"), strings(&["3", "4", "1", "2"]));
    assert!(c.ttl::<_, i64>("r").unwrap() > 90, "rotation keeps the TTL");
    // A one-item list rotates onto itself without disappearing.
    let _: () = c.rpush("one", "only").unwrap();
    let _: () = c.expire("one", 100).unwrap();
    let _: String = redis::cmd("LMOVE").arg("one").arg("one").arg("LEFT").arg("RIGHT").query(&mut c).unwrap();
    assert_eq!(range(&mut c, "one"), strings(&["only"]));
    assert!(c.ttl::<_, i64>("one").unwrap() > 90);
}

/// Runs `cmd` on a second connection in a thread after `delay`.
fn later(node: &Node, delay: Duration, args: &'static [&'static str]) -> thread::JoinHandle<()> {
    let url = node.url();
    thread::spawn(move || {
        thread::sleep(delay);
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        q(&mut c, args).unwrap();
    })
}

#[test]
fn blocking_pops_wake_on_push() {
    let node = Node::classic();
    let mut c = node.conn();
    // An item already there: no waiting; the first non-empty key wins.
    let _: () = c.rpush("b", "1").unwrap();
    let _: () = c.rpush("c", "2").unwrap();
    let got: (String, String) = redis::cmd("BLPOP").arg("a").arg("b").arg("c").arg(1).query(&mut c).unwrap();
    assert_eq!(got, ("b".to_string(), "1".to_string()));
    // BLPOP woken by a push from another client.
    let started = Instant::now();
    let pusher = later(&node, Duration::from_millis(300), &["RPUSH", "q2", "hello", "world"]);
    let got: (String, String) = redis::cmd("BLPOP").arg("q1").arg("q2").arg(5).query(&mut c).unwrap();
    pusher.join().unwrap();
    assert_eq!(got, ("q2".to_string(), "hello".to_string()));
    assert!(started.elapsed() >= Duration::from_millis(250), "it waited for the push");
    assert!(started.elapsed() < Duration::from_secs(4), "it woke on the push, not the timeout");
    assert_eq!(range(&mut c, "q2"), strings(&["world"]));
    // BRPOP with timeout 0 (forever) woken by LPUSH.
    let pusher = later(&node, Duration::from_millis(200), &["LPUSH", "q3", "x", "y"]);
    let got: (String, String) = redis::cmd("BRPOP").arg("q3").arg(0).query(&mut c).unwrap();
    pusher.join().unwrap();
    assert_eq!(got, ("q3".to_string(), "x".to_string()));
    // Timeouts answer nil.
    let started = Instant::now();
    let got: Option<(String, String)> = redis::cmd("BLPOP").arg("nothing").arg("0.3").query(&mut c).unwrap();
    assert_eq!(got, None);
    assert!(started.elapsed() >= Duration::from_millis(250));
    let got: Option<String> = redis::cmd("BRPOPLPUSH").arg("nothing").arg("dst").arg("0.2").query(&mut c).unwrap();
    assert_eq!(got, None);
    assert!(!c.exists::<_, bool>("dst").unwrap());
    assert!(q(&mut c, &["BLPOP", "q", "abc"]).unwrap_err().contains("timeout is not a float or out of range"));
    assert!(q(&mut c, &["BLPOP", "q", "-1"]).unwrap_err().contains("timeout is negative"));
    // Past what a clock holds (this panicked the connection's task): Redis's error, and the
    // connection goes on.
    for huge in ["1e19", "1e20", "1e300"] {
        assert!(q(&mut c, &["BLPOP", "q", huge]).unwrap_err().contains("timeout is out of range"), "{huge}");
    }
    assert_eq!(query::<String>(&mut c, &["PING"]), "PONG");
}

#[test]
fn blocking_moves_wake_on_push() {
    let node = Node::classic();
    let mut c = node.conn();
    let pusher = later(&node, Duration::from_millis(300), &["RPUSH", "src", "a", "b"]);
    let started = Instant::now();
    let got: String = redis::cmd("BRPOPLPUSH").arg("src").arg("dst").arg(5).query(&mut c).unwrap();
    pusher.join().unwrap();
    assert_eq!(got, "b");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(range(&mut c, "src"), strings(&["a"]));
    assert_eq!(range(&mut c, "dst"), strings(&["b"]));
    // BLMOVE woken by a push that itself came from an LMOVE into the watched key.
    let _: () = c.rpush("stage", "z").unwrap();
    let pusher = later(&node, Duration::from_millis(300), &["LMOVE", "stage", "empty", "LEFT", "LEFT"]);
    let got: String =
        redis::cmd("BLMOVE").arg("empty").arg("out").arg("LEFT").arg("RIGHT").arg(5).query(&mut c).unwrap();
    pusher.join().unwrap();
    assert_eq!(got, "z");
    assert!(!c.exists::<_, bool>("empty").unwrap());
    assert_eq!(range(&mut c, "out"), strings(&["z"]));
    // A blocked client downstream of a blocking move is woken by the move's push.
    let url = node.url();
    let waiter = thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        redis::cmd("BLPOP").arg("final").arg(5).query::<(String, String)>(&mut c).unwrap()
    });
    thread::sleep(Duration::from_millis(200));
    let pusher = later(&node, Duration::from_millis(200), &["RPUSH", "first", "chain"]);
    let got: String =
        redis::cmd("BLMOVE").arg("first").arg("final").arg("RIGHT").arg("LEFT").arg(5).query(&mut c).unwrap();
    assert_eq!(got, "chain");
    pusher.join().unwrap();
    assert_eq!(waiter.join().unwrap(), ("final".to_string(), "chain".to_string()));
    let got: Option<String> =
        redis::cmd("BLMOVE").arg("none").arg("out").arg("LEFT").arg("LEFT").arg("0.2").query(&mut c).unwrap();
    assert_eq!(got, None);
    assert!(q(&mut c, &["BLMOVE", "a", "b", "UP", "LEFT", "1"]).unwrap_err().contains("syntax error"));
}

#[test]
fn redis_cli_session() {
    if !support::have_redis_cli() {
        println!("skipped: redis-cli is not installed");
        return;
    }
    let node = Node::classic();
    assert_eq!(node.cli(&["RPUSH", "cli", "a", "b", "c"]).unwrap().trim(), "3");
    assert_eq!(node.cli(&["LRANGE", "cli", "0", "-1"]).unwrap(), "a\nb\nc\n");
    assert_eq!(node.cli(&["LPOS", "cli", "c"]).unwrap().trim(), "2");
    assert_eq!(node.cli(&["LINDEX", "cli", "9"]).unwrap().trim(), "");
    let out = node.cli(&["--no-raw", "LPOP", "cli", "0"]).unwrap();
    assert_eq!(out.trim(), "(empty array)");
    let out = node.cli(&["--no-raw", "LSET", "cli", "7", "x"]).unwrap();
    assert_eq!(out.trim(), "(error) ERR index out of range");
}

#[test]
fn sharding_keeps_two_key_commands_in_one_slot() {
    let node = Node::sharding_all(1024);
    let mut c = node.conn();
    let slot = |k: &str| common::slot::key_slot(k.as_bytes(), 1024);
    let (a, b) = ("list:a", "list:b");
    assert_ne!(slot(a), slot(b), "test keys must be in different slots");
    let _: () = c.rpush(a, "x").unwrap();
    let err = q(&mut c, &["RPOPLPUSH", a, b]).unwrap_err();
    assert!(err.contains("parameters hashtag is inconsistent"), "{err}");
    let err = q(&mut c, &["BLPOP", a, b, "0.1"]).unwrap_err();
    assert!(err.contains("This command is not supported in current configuration"), "{err}");
    assert_eq!(range(&mut c, a), strings(&["x"]), "nothing moved");
    // With a shared hashtag they run.
    let (ta, tb) = ("{t}a", "{t}b");
    let _: () = c.rpush(ta, "y").unwrap();
    let moved: String = redis::cmd("LMOVE").arg(ta).arg(tb).arg("LEFT").arg("LEFT").query(&mut c).unwrap();
    assert_eq!(moved, "y");
    let got: (String, String) = redis::cmd("BLPOP").arg(ta).arg(tb).arg(1).query(&mut c).unwrap();
    assert_eq!(got, (tb.to_string(), "y".to_string()));
}
