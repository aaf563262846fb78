//! Sorted-set commands against a real node: ZADD options, score formatting, the ZRANGE family
//! by rank, score and lex, ZRANGESTORE, ranks, removals and pops, ZRANDMEMBER, ZSCAN, the
//! union/intersection/difference commands, redis-cli, and multi-key rules in sharding mode.
mod support;

use std::collections::BTreeSet;

use redis::Commands;
use support::{cmd, err, int, q, strs, Node};

/// A bulk-string-or-nil reply.
fn opt(c: &mut redis::Connection, args: &[&str]) -> Option<String> {
    support::query(c, args)
}

fn zadd_many(c: &mut redis::Connection, key: &str, pairs: &[(&str, &str)]) {
    let mut zadd = redis::cmd("ZADD");
    zadd.arg(key);
    for (score, member) in pairs {
        zadd.arg(*score).arg(*member);
    }
    let _: i64 = zadd.query(c).unwrap();
}

/// z = a:1 b:2 c:3 d:4 e:5
fn abcde(c: &mut redis::Connection, key: &str) {
    zadd_many(c, key, &[("1", "a"), ("2", "b"), ("3", "c"), ("4", "d"), ("5", "e")]);
}

#[test]
fn zadd_options() {
    let node = Node::classic();
    let mut c = node.conn();
    assert_eq!(int(&mut c, &["ZADD", "z", "1", "a", "2", "b", "3", "c"]), 3);
    assert_eq!(int(&mut c, &["ZADD", "z", "10", "a", "4", "d"]), 1, "updates are not counted");
    assert_eq!(int(&mut c, &["ZADD", "z", "CH", "11", "a", "4", "d", "5", "e"]), 2, "CH counts changes too");
    // NX: only new members; XX: only existing ones (and never creates the key).
    assert_eq!(int(&mut c, &["ZADD", "z", "NX", "0", "a", "6", "f"]), 1);
    assert_eq!(opt(&mut c, &["ZSCORE", "z", "a"]).as_deref(), Some("11"));
    assert_eq!(int(&mut c, &["ZADD", "z", "XX", "CH", "12", "a", "7", "g"]), 1);
    assert_eq!(opt(&mut c, &["ZSCORE", "z", "g"]), None);
    assert_eq!(int(&mut c, &["ZADD", "nokey", "XX", "1", "a"]), 0);
    assert_eq!(int(&mut c, &["EXISTS", "nokey"]), 0);
    // GT/LT: update only upwards/downwards, but always add new members.
    assert_eq!(int(&mut c, &["ZADD", "z", "GT", "CH", "1", "a", "100", "b", "1", "new"]), 2);
    assert_eq!(opt(&mut c, &["ZSCORE", "z", "a"]).as_deref(), Some("12"));
    assert_eq!(opt(&mut c, &["ZSCORE", "z", "b"]).as_deref(), Some("100"));
    assert_eq!(int(&mut c, &["ZADD", "z", "LT", "CH", "1", "a", "200", "b"]), 1);
    assert_eq!(opt(&mut c, &["ZSCORE", "z", "a"]).as_deref(), Some("1"));
    assert_eq!(int(&mut c, &["ZADD", "z", "XX", "GT", "CH", "50", "a", "1", "zz"]), 1);
    assert_eq!(opt(&mut c, &["ZSCORE", "z", "zz"]), None);
    // INCR answers the new score, or nil when an option stopped it.
    assert_eq!(opt(&mut c, &["ZADD", "z", "INCR", "2.5", "a"]).as_deref(), Some("52.5"));
    assert_eq!(opt(&mut c, &["ZADD", "z", "INCR", "7", "fresh"]).as_deref(), Some("7"));
    assert_eq!(opt(&mut c, &["ZADD", "z", "NX", "INCR", "1", "a"]), None);
    assert_eq!(opt(&mut c, &["ZADD", "z", "XX", "INCR", "1", "nope"]), None);
    assert_eq!(opt(&mut c, &["ZADD", "z", "GT", "INCR", "-1", "a"]), None);
    assert_eq!(opt(&mut c, &["ZADD", "nokey", "XX", "INCR", "1", "a"]), None);
    assert_eq!(opt(&mut c, &["ZADD", "z", "LT", "INCR", "-1.5", "a"]).as_deref(), Some("51"));
    // The same member twice in one call: the last score wins, one addition.
    assert_eq!(int(&mut c, &["ZADD", "dup", "1", "m", "2", "m", "3", "m"]), 1);
    assert_eq!(strs(&mut c, &["ZRANGE", "dup", "0", "-1", "WITHSCORES"]), ["m", "3"]);
    assert_eq!(int(&mut c, &["ZCARD", "dup"]), 1);

    // Errors, all before anything is written.
    let cases: &[(&[&str], &str)] = &[
        (&["ZADD", "z", "NX", "XX", "1", "a"], "ERR XX and NX options at the same time are not compatible"),
        (&["ZADD", "z", "GT", "LT", "1", "a"], "ERR GT, LT, and/or NX options at the same time are not compatible"),
        (&["ZADD", "z", "GT", "NX", "1", "a"], "ERR GT, LT, and/or NX options at the same time are not compatible"),
        (&["ZADD", "z", "INCR", "1", "a", "2", "b"], "ERR INCR option supports a single increment-element pair"),
        (&["ZADD", "z", "1", "a", "2"], "ERR syntax error"),
        (&["ZADD", "z", "NX", "XX", "1"], "ERR syntax error"),
        (&["ZADD", "z", "1", "x", "nan", "y"], "ERR value is not a valid float"),
        (&["ZADD", "z", "abc", "a"], "ERR value is not a valid float"),
        (&["ZADD", "z", "1"], "ERR wrong number of arguments for 'zadd' command"),
    ];
    for (args, expected) in cases {
        assert_eq!(&err(&mut c, args), expected, "{args:?}");
    }
    assert_eq!(opt(&mut c, &["ZSCORE", "z", "x"]), None, "a failed ZADD adds nothing");
    // NaN results.
    int(&mut c, &["ZADD", "inf", "inf", "m"]);
    assert_eq!(err(&mut c, &["ZADD", "inf", "INCR", "-inf", "m"]), "ERR resulting score is not a number (NaN)");
    assert_eq!(err(&mut c, &["ZINCRBY", "inf", "-inf", "m"]), "ERR resulting score is not a number (NaN)");
    assert_eq!(opt(&mut c, &["ZSCORE", "inf", "m"]).as_deref(), Some("inf"));
}

#[test]
fn writes_keep_the_ttl_and_expired_sets_start_over() {
    let node = Node::classic();
    let mut c = node.conn();
    abcde(&mut c, "z");
    let _: bool = c.expire("z", 100).unwrap();
    int(&mut c, &["ZADD", "z", "9", "a", "6", "f"]);
    opt(&mut c, &["ZINCRBY", "z", "1", "b"]);
    int(&mut c, &["ZREM", "z", "c"]);
    assert!(int(&mut c, &["TTL", "z"]) > 90, "ZADD/ZINCRBY/ZREM keep the TTL");
    // An expired set, big enough to be cleared with a range delete, does not leak into a new one.
    let mut zadd = redis::cmd("ZADD");
    zadd.arg("old");
    for i in 0..400 {
        zadd.arg(i).arg(format!("m{i}"));
    }
    let _: i64 = zadd.query(&mut c).unwrap();
    int(&mut c, &["PEXPIRE", "old", "30"]);
    std::thread::sleep(std::time::Duration::from_millis(80));
    assert_eq!(int(&mut c, &["ZADD", "old", "5", "m1"]), 1, "m1 is new again");
    assert_eq!(strs(&mut c, &["ZRANGE", "old", "0", "-1", "WITHSCORES"]), ["m1", "5"]);
    assert_eq!(int(&mut c, &["ZCARD", "old"]), 1);
    assert_eq!(int(&mut c, &["TTL", "old"]), -1);
}

#[test]
fn zincrby_and_score_formatting() {
    let node = Node::classic();
    let mut c = node.conn();
    assert_eq!(opt(&mut c, &["ZINCRBY", "z", "2", "a"]).as_deref(), Some("2"), "ZINCRBY creates");
    assert_eq!(opt(&mut c, &["ZINCRBY", "z", "-0.5", "a"]).as_deref(), Some("1.5"));
    assert_eq!(opt(&mut c, &["ZINCRBY", "z", "1e3", "b"]).as_deref(), Some("1000"));
    assert_eq!(int(&mut c, &["ZCARD", "z"]), 2);
    assert!(err(&mut c, &["ZINCRBY", "z", "x", "a"]).contains("not a valid float"));
    zadd_many(
        &mut c,
        "f",
        &[("-2.25", "neg"), ("3", "three"), ("1e20", "big"), ("+inf", "top"), ("-inf", "bottom"), ("0.5", "half")],
    );
    assert_eq!(
        strs(&mut c, &["ZRANGE", "f", "0", "-1", "WITHSCORES"]),
        ["bottom", "-inf", "neg", "-2.25", "half", "0.5", "three", "3", "big", "1e+20", "top", "inf"]
    );
    let scores: Vec<Option<String>> = cmd(&["ZMSCORE", "f", "half", "nope", "top"]).query(&mut c).unwrap();
    assert_eq!(scores, [Some("0.5".to_string()), None, Some("inf".to_string())]);
    let scores: Vec<Option<String>> = cmd(&["ZMSCORE", "missing", "a", "b"]).query(&mut c).unwrap();
    assert_eq!(scores, [None, None]);
    assert_eq!(opt(&mut c, &["ZSCORE", "missing", "a"]), None);
    // -0 and 0 are one score.
    zadd_many(&mut c, "zero", &[("-0", "a"), ("0", "b")]);
    assert_eq!(strs(&mut c, &["ZRANGEBYSCORE", "zero", "0", "0", "WITHSCORES"]), ["a", "0", "b", "0"]);
}

#[test]
fn ranges_by_rank() {
    let node = Node::classic();
    let mut c = node.conn();
    abcde(&mut c, "z");
    assert_eq!(strs(&mut c, &["ZRANGE", "z", "0", "-1"]), ["a", "b", "c", "d", "e"]);
    assert_eq!(strs(&mut c, &["ZRANGE", "z", "1", "2", "WITHSCORES"]), ["b", "2", "c", "3"]);
    assert_eq!(strs(&mut c, &["ZRANGE", "z", "-2", "-1"]), ["d", "e"]);
    assert_eq!(strs(&mut c, &["ZRANGE", "z", "-100", "100"]).len(), 5);
    assert!(strs(&mut c, &["ZRANGE", "z", "3", "1"]).is_empty());
    assert!(strs(&mut c, &["ZRANGE", "z", "5", "10"]).is_empty());
    assert!(strs(&mut c, &["ZRANGE", "missing", "0", "-1"]).is_empty());
    assert_eq!(strs(&mut c, &["ZREVRANGE", "z", "0", "1", "WITHSCORES"]), ["e", "5", "d", "4"]);
    assert_eq!(strs(&mut c, &["ZREVRANGE", "z", "-2", "-1"]), ["b", "a"]);
    assert_eq!(strs(&mut c, &["ZRANGE", "z", "0", "2", "REV"]), ["e", "d", "c"]);
    // Ties in score order by member.
    zadd_many(&mut c, "tie", &[("1", "b"), ("1", "a"), ("0", "z"), ("1", "c")]);
    assert_eq!(strs(&mut c, &["ZRANGE", "tie", "0", "-1"]), ["z", "a", "b", "c"]);
    assert_eq!(strs(&mut c, &["ZREVRANGE", "tie", "0", "-1"]), ["c", "b", "a", "z"]);
    // Option errors.
    let cases: &[(&[&str], &str)] = &[
        (
            &["ZRANGE", "z", "0", "-1", "LIMIT", "0", "1"],
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ),
        (
            &["ZRANGE", "z", "[a", "[b", "BYLEX", "WITHSCORES"],
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ),
        (&["ZRANGE", "z", "x", "1"], "ERR value is not an integer or out of range"),
        (&["ZRANGE", "z", "0", "-1", "BYLEX", "BYSCORE"], "ERR syntax error"),
        (&["ZRANGE", "z", "0", "-1", "REV", "REV"], "ERR syntax error"),
        (&["ZRANGE", "z", "0", "-1", "LIMIT", "1"], "ERR syntax error"),
        (&["ZRANGE", "z", "0", "-1", "BOGUS"], "ERR syntax error"),
        (&["ZREVRANGE", "z", "0", "-1", "REV"], "ERR syntax error"),
        (&["ZREVRANGE", "z", "0", "-1", "BYSCORE"], "ERR syntax error"),
    ];
    for (args, expected) in cases {
        assert_eq!(&err(&mut c, args), expected, "{args:?}");
    }
}

#[test]
fn rank_ranges_on_a_large_set_walk_from_either_end() {
    let node = Node::classic();
    let mut c = node.conn();
    let members: Vec<String> = (0..600).map(|i| format!("m{i:04}")).collect();
    let mut zadd = redis::cmd("ZADD");
    zadd.arg("big");
    for (i, m) in members.iter().enumerate() {
        zadd.arg(i).arg(m);
    }
    let _: i64 = zadd.query(&mut c).unwrap();
    for (start, stop) in [(0i64, 9i64), (590, 599), (-10, -1), (100, 120), (450, 470), (295, 305), (0, -1)] {
        let len = members.len() as i64;
        let (a, b) = (if start < 0 { len + start } else { start }, if stop < 0 { len + stop } else { stop });
        let expected: Vec<String> = members[a as usize..=b as usize].to_vec();
        assert_eq!(
            strs(&mut c, &["ZRANGE", "big", &start.to_string(), &stop.to_string()]),
            expected,
            "{start}..{stop}"
        );
        let mut reversed: Vec<String> = members.iter().rev().cloned().collect();
        reversed = reversed[a as usize..=b as usize].to_vec();
        assert_eq!(
            strs(&mut c, &["ZREVRANGE", "big", &start.to_string(), &stop.to_string()]),
            reversed,
            "rev {start}..{stop}"
        );
    }
    assert_eq!(int(&mut c, &["ZRANK", "big", "m0450"]), 450);
    assert_eq!(int(&mut c, &["ZREVRANK", "big", "m0450"]), 149);
    // Removing a rank range from a set past the point-delete threshold.
    assert_eq!(int(&mut c, &["ZREMRANGEBYRANK", "big", "10", "-11"]), 580);
    assert_eq!(int(&mut c, &["ZCARD", "big"]), 20);
    assert_eq!(strs(&mut c, &["ZRANGE", "big", "9", "10"]), ["m0009", "m0590"]);
}

#[test]
fn score_ranges() {
    let node = Node::classic();
    let mut c = node.conn();
    abcde(&mut c, "z");
    zadd_many(&mut c, "z", &[("-inf", "ninf"), ("+inf", "pinf")]);
    assert_eq!(strs(&mut c, &["ZRANGEBYSCORE", "z", "2", "4"]), ["b", "c", "d"]);
    assert_eq!(strs(&mut c, &["ZRANGEBYSCORE", "z", "(2", "4"]), ["c", "d"]);
    assert_eq!(strs(&mut c, &["ZRANGEBYSCORE", "z", "2", "(4"]), ["b", "c"]);
    assert_eq!(strs(&mut c, &["ZRANGEBYSCORE", "z", "(2", "(4", "WITHSCORES"]), ["c", "3"]);
    assert_eq!(strs(&mut c, &["ZRANGEBYSCORE", "z", "-inf", "(1"]), ["ninf"]);
    assert_eq!(strs(&mut c, &["ZRANGEBYSCORE", "z", "(5", "+inf"]), ["pinf"]);
    assert_eq!(strs(&mut c, &["ZRANGEBYSCORE", "z", "(-inf", "(+inf"]), ["a", "b", "c", "d", "e"]);
    assert_eq!(strs(&mut c, &["ZRANGEBYSCORE", "z", "3", "3"]), ["c"]);
    assert!(strs(&mut c, &["ZRANGEBYSCORE", "z", "(3", "3"]).is_empty());
    assert!(strs(&mut c, &["ZRANGEBYSCORE", "z", "4", "2"]).is_empty());
    assert_eq!(strs(&mut c, &["ZRANGEBYSCORE", "z", "1.5", "2.5"]), ["b"]);
    // LIMIT: a negative count means all, a negative offset nothing.
    assert_eq!(strs(&mut c, &["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "2", "2"]), ["b", "c"]);
    assert_eq!(strs(&mut c, &["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "5", "-1"]), ["e", "pinf"]);
    assert!(strs(&mut c, &["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "-1", "3"]).is_empty());
    assert!(strs(&mut c, &["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "0", "0"]).is_empty());
    // Reverse forms take max first.
    assert_eq!(strs(&mut c, &["ZREVRANGEBYSCORE", "z", "4", "(2", "WITHSCORES"]), ["d", "4", "c", "3"]);
    assert_eq!(strs(&mut c, &["ZREVRANGEBYSCORE", "z", "+inf", "-inf", "LIMIT", "1", "2"]), ["e", "d"]);
    assert!(strs(&mut c, &["ZREVRANGEBYSCORE", "z", "2", "4"]).is_empty());
    // ZRANGE BYSCORE [REV] [LIMIT].
    assert_eq!(
        strs(&mut c, &["ZRANGE", "z", "(1", "5", "BYSCORE", "LIMIT", "1", "2", "WITHSCORES"]),
        ["c", "3", "d", "4"]
    );
    assert_eq!(strs(&mut c, &["ZRANGE", "z", "5", "(1", "BYSCORE", "REV", "LIMIT", "1", "2"]), ["d", "c"]);
    assert!(strs(&mut c, &["ZRANGE", "z", "(1", "5", "BYSCORE", "REV"]).is_empty(), "REV reads max first");
    // ZCOUNT.
    assert_eq!(int(&mut c, &["ZCOUNT", "z", "-inf", "+inf"]), 7);
    assert_eq!(int(&mut c, &["ZCOUNT", "z", "(1", "(5"]), 3);
    assert_eq!(int(&mut c, &["ZCOUNT", "z", "5", "1"]), 0);
    assert_eq!(int(&mut c, &["ZCOUNT", "missing", "0", "1"]), 0);
    for args in [
        &["ZCOUNT", "z", "x", "1"][..],
        &["ZCOUNT", "z", "1", "(x"],
        &["ZCOUNT", "z", "nan", "1"],
        &["ZRANGEBYSCORE", "z", "1", "[2"],
        &["ZRANGE", "z", "a", "b", "BYSCORE"],
        &["ZREMRANGEBYSCORE", "z", "1", "b"],
    ] {
        assert_eq!(err(&mut c, args), "ERR min or max is not a float", "{args:?}");
    }
    assert!(err(&mut c, &["ZRANGEBYSCORE", "z", "1", "2", "REV"]).contains("syntax error"));
    assert!(err(&mut c, &["ZRANGEBYSCORE", "z", "1", "2", "LIMIT", "x", "1"]).contains("not an integer"));
}

#[test]
fn lex_ranges() {
    let node = Node::classic();
    let mut c = node.conn();
    let words = ["a", "b", "c", "d", "e", "f", "g", "ab", ""];
    zadd_many(&mut c, "l", &words.iter().map(|w| ("0", *w)).collect::<Vec<_>>());
    assert_eq!(strs(&mut c, &["ZRANGEBYLEX", "l", "-", "+"]), ["", "a", "ab", "b", "c", "d", "e", "f", "g"]);
    assert_eq!(strs(&mut c, &["ZRANGEBYLEX", "l", "[b", "[d"]), ["b", "c", "d"]);
    assert_eq!(strs(&mut c, &["ZRANGEBYLEX", "l", "(b", "(d"]), ["c"]);
    assert_eq!(strs(&mut c, &["ZRANGEBYLEX", "l", "(a", "[b"]), ["ab", "b"]);
    assert_eq!(strs(&mut c, &["ZRANGEBYLEX", "l", "-", "(ab"]), ["", "a"]);
    assert_eq!(strs(&mut c, &["ZRANGEBYLEX", "l", "(e", "+"]), ["f", "g"]);
    assert_eq!(strs(&mut c, &["ZRANGEBYLEX", "l", "[", "(a"]), [""], "'[' alone is the empty string");
    assert!(strs(&mut c, &["ZRANGEBYLEX", "l", "+", "-"]).is_empty());
    assert!(strs(&mut c, &["ZRANGEBYLEX", "l", "(c", "[c"]).is_empty());
    assert_eq!(strs(&mut c, &["ZRANGEBYLEX", "l", "-", "+", "LIMIT", "2", "3"]), ["ab", "b", "c"]);
    assert_eq!(strs(&mut c, &["ZREVRANGEBYLEX", "l", "[d", "(b"]), ["d", "c"]);
    assert_eq!(strs(&mut c, &["ZREVRANGEBYLEX", "l", "+", "-", "LIMIT", "1", "2"]), ["f", "e"]);
    assert_eq!(strs(&mut c, &["ZRANGE", "l", "[b", "[d", "BYLEX"]), ["b", "c", "d"]);
    assert_eq!(strs(&mut c, &["ZRANGE", "l", "+", "[c", "BYLEX", "REV", "LIMIT", "0", "2"]), ["g", "f"]);
    assert_eq!(int(&mut c, &["ZLEXCOUNT", "l", "-", "+"]), 9);
    assert_eq!(int(&mut c, &["ZLEXCOUNT", "l", "[b", "(d"]), 2);
    assert_eq!(int(&mut c, &["ZLEXCOUNT", "missing", "-", "+"]), 0);
    for args in [
        &["ZRANGEBYLEX", "l", "a", "[b"][..],
        &["ZRANGEBYLEX", "l", "[a", "b"],
        &["ZRANGEBYLEX", "l", "-a", "+"],
        &["ZLEXCOUNT", "l", "x", "y"],
        &["ZREMRANGEBYLEX", "l", "x", "+"],
        &["ZRANGE", "l", "0", "-1", "BYLEX"],
    ] {
        assert_eq!(err(&mut c, args), "ERR min or max not valid string range item", "{args:?}");
    }
    assert_eq!(
        err(&mut c, &["ZRANGEBYLEX", "l", "-", "+", "WITHSCORES"]),
        "ERR syntax error, WITHSCORES not supported in combination with BYLEX"
    );
    // Mixed scores follow Redis's walk: empty unless the first member is below max and the last
    // above min; then skip to the first member in range and stop at the first one past it.
    zadd_many(&mut c, "m", &[("1", "b"), ("2", "a"), ("3", "d"), ("3", "c"), ("4", "a2")]);
    assert!(strs(&mut c, &["ZRANGEBYLEX", "m", "[b", "[c"]).is_empty());
    assert_eq!(strs(&mut c, &["ZRANGEBYLEX", "m", "(a", "[d"]), ["b", "a", "c", "d", "a2"]);
    assert_eq!(strs(&mut c, &["ZREVRANGEBYLEX", "m", "[c", "[a"]), ["a2", "d", "c", "a", "b"]);
}

#[test]
fn zrangestore() {
    let node = Node::classic();
    let mut c = node.conn();
    abcde(&mut c, "src");
    assert_eq!(int(&mut c, &["ZRANGESTORE", "dst", "src", "1", "2"]), 2);
    assert_eq!(strs(&mut c, &["ZRANGE", "dst", "0", "-1", "WITHSCORES"]), ["b", "2", "c", "3"]);
    assert_eq!(int(&mut c, &["ZRANGESTORE", "dst", "src", "5", "(2", "BYSCORE", "REV", "LIMIT", "1", "5"]), 2);
    assert_eq!(strs(&mut c, &["ZRANGE", "dst", "0", "-1", "WITHSCORES"]), ["c", "3", "d", "4"], "old members gone");
    zadd_many(&mut c, "lex", &[("0", "x"), ("0", "y"), ("0", "z")]);
    assert_eq!(int(&mut c, &["ZRANGESTORE", "dst", "lex", "(x", "+", "BYLEX"]), 2);
    assert_eq!(strs(&mut c, &["ZRANGE", "dst", "0", "-1"]), ["y", "z"]);
    // Any type and TTL at the destination are replaced.
    let _: () = c.set("str", "v").unwrap();
    let _: bool = c.expire("str", 100).unwrap();
    assert_eq!(int(&mut c, &["ZRANGESTORE", "str", "src", "0", "0"]), 1);
    assert_eq!(strs(&mut c, &["ZRANGE", "str", "0", "-1", "WITHSCORES"]), ["a", "1"]);
    assert_eq!(int(&mut c, &["TTL", "str"]), -1);
    // The source may be the destination.
    assert_eq!(int(&mut c, &["ZRANGESTORE", "src", "src", "-2", "-1"]), 2);
    assert_eq!(strs(&mut c, &["ZRANGE", "src", "0", "-1"]), ["d", "e"]);
    // An empty result, or a missing source, deletes the destination.
    assert_eq!(int(&mut c, &["ZRANGESTORE", "dst", "src", "10", "20"]), 0);
    assert_eq!(int(&mut c, &["EXISTS", "dst"]), 0);
    assert_eq!(int(&mut c, &["ZRANGESTORE", "str", "missing", "0", "-1"]), 0);
    assert_eq!(int(&mut c, &["EXISTS", "str"]), 0);
    // Errors.
    let _: () = c.set("s", "v").unwrap();
    assert!(err(&mut c, &["ZRANGESTORE", "dst", "s", "0", "-1"]).starts_with("WRONGTYPE"));
    assert_eq!(err(&mut c, &["ZRANGESTORE", "dst", "src", "0", "-1", "WITHSCORES"]), "ERR syntax error");
    assert!(err(&mut c, &["ZRANGESTORE", "dst", "src", "0"]).contains("wrong number of arguments"));
}

#[test]
fn ranks() {
    let node = Node::classic();
    let mut c = node.conn();
    abcde(&mut c, "z");
    assert_eq!(int(&mut c, &["ZRANK", "z", "a"]), 0);
    assert_eq!(int(&mut c, &["ZRANK", "z", "d"]), 3);
    assert_eq!(int(&mut c, &["ZREVRANK", "z", "d"]), 1);
    assert_eq!(int(&mut c, &["ZREVRANK", "z", "e"]), 0);
    assert_eq!(q(&mut c, &["ZRANK", "z", "nope"]).unwrap(), redis::Value::Nil);
    assert_eq!(q(&mut c, &["ZREVRANK", "missing", "a"]).unwrap(), redis::Value::Nil);
    // Redis 7.2's WITHSCORE.
    assert_eq!(
        q(&mut c, &["ZRANK", "z", "c", "WITHSCORE"]).unwrap(),
        redis::Value::Array(vec![redis::Value::Int(2), redis::Value::BulkString(b"3".to_vec())])
    );
    assert!(err(&mut c, &["ZRANK", "z", "c", "BOGUS"]).contains("syntax error"));
    // A member that is a prefix of another, with equal scores.
    zadd_many(&mut c, "p", &[("1", "a"), ("1", "a\u{0}"), ("1", "ab")]);
    assert_eq!(int(&mut c, &["ZRANK", "p", "a"]), 0);
    assert_eq!(int(&mut c, &["ZREVRANK", "p", "a"]), 2);
    assert_eq!(int(&mut c, &["ZREVRANK", "p", "ab"]), 0);
}

#[test]
fn removals_and_pops() {
    let node = Node::classic();
    let mut c = node.conn();
    abcde(&mut c, "z");
    let _: bool = c.expire("z", 100).unwrap();
    assert_eq!(int(&mut c, &["ZREM", "z", "a", "a", "nope"]), 1);
    assert_eq!(int(&mut c, &["ZCARD", "z"]), 4);
    assert!(int(&mut c, &["TTL", "z"]) > 90, "changes keep the TTL");
    assert_eq!(int(&mut c, &["ZREM", "z", "b", "c", "d", "e"]), 4);
    assert_eq!(int(&mut c, &["EXISTS", "z"]), 0, "an emptied sorted set is deleted");
    assert_eq!(int(&mut c, &["ZREM", "z", "a"]), 0);

    abcde(&mut c, "z");
    assert_eq!(int(&mut c, &["ZREMRANGEBYRANK", "z", "1", "1"]), 1);
    assert_eq!(int(&mut c, &["ZREMRANGEBYRANK", "z", "-2", "-1"]), 2);
    assert_eq!(strs(&mut c, &["ZRANGE", "z", "0", "-1"]), ["a", "c"]);
    assert_eq!(int(&mut c, &["ZREMRANGEBYRANK", "z", "5", "10"]), 0);
    assert!(err(&mut c, &["ZREMRANGEBYRANK", "z", "x", "1"]).contains("not an integer"));
    assert_eq!(int(&mut c, &["ZREMRANGEBYRANK", "z", "0", "-1"]), 2);
    assert_eq!(int(&mut c, &["EXISTS", "z"]), 0);

    abcde(&mut c, "z");
    assert_eq!(int(&mut c, &["ZREMRANGEBYSCORE", "z", "(1", "3"]), 2);
    assert_eq!(strs(&mut c, &["ZRANGE", "z", "0", "-1"]), ["a", "d", "e"]);
    assert_eq!(int(&mut c, &["ZREMRANGEBYSCORE", "z", "5", "1"]), 0);
    assert_eq!(int(&mut c, &["ZREMRANGEBYSCORE", "z", "-inf", "+inf"]), 3);
    assert_eq!(int(&mut c, &["EXISTS", "z"]), 0);

    zadd_many(&mut c, "l", &[("0", "a"), ("0", "b"), ("0", "c"), ("0", "d")]);
    assert_eq!(int(&mut c, &["ZREMRANGEBYLEX", "l", "[b", "(d"]), 2);
    assert_eq!(strs(&mut c, &["ZRANGE", "l", "0", "-1"]), ["a", "d"]);
    assert_eq!(int(&mut c, &["ZREMRANGEBYLEX", "l", "-", "+"]), 2);
    assert_eq!(int(&mut c, &["EXISTS", "l"]), 0);

    abcde(&mut c, "z");
    assert_eq!(strs(&mut c, &["ZPOPMIN", "z"]), ["a", "1"]);
    assert_eq!(strs(&mut c, &["ZPOPMAX", "z"]), ["e", "5"]);
    assert_eq!(strs(&mut c, &["ZPOPMIN", "z", "2"]), ["b", "2", "c", "3"]);
    assert!(strs(&mut c, &["ZPOPMIN", "z", "0"]).is_empty());
    assert_eq!(int(&mut c, &["ZCARD", "z"]), 1);
    assert_eq!(strs(&mut c, &["ZPOPMAX", "z", "10"]), ["d", "4"]);
    assert_eq!(int(&mut c, &["EXISTS", "z"]), 0);
    assert!(strs(&mut c, &["ZPOPMIN", "z"]).is_empty(), "a missing key pops an empty array");
    assert!(strs(&mut c, &["ZPOPMAX", "z", "3"]).is_empty());
    for bad in ["-1", "x", "1.5"] {
        assert_eq!(err(&mut c, &["ZPOPMIN", "z", bad]), "ERR value is out of range, must be positive");
    }
    assert_eq!(err(&mut c, &["ZPOPMAX", "z", "1", "2"]), "ERR syntax error");
}

#[test]
fn zrandmember() {
    let node = Node::classic();
    let mut c = node.conn();
    abcde(&mut c, "z");
    let all: BTreeSet<String> = ["a", "b", "c", "d", "e"].iter().map(|s| s.to_string()).collect();
    let one = opt(&mut c, &["ZRANDMEMBER", "z"]).unwrap();
    assert!(all.contains(&one));
    let three = strs(&mut c, &["ZRANDMEMBER", "z", "3"]);
    assert_eq!(three.iter().collect::<BTreeSet<_>>().len(), 3);
    assert_eq!(strs(&mut c, &["ZRANDMEMBER", "z", "10"]).into_iter().collect::<BTreeSet<_>>(), all);
    let with = strs(&mut c, &["ZRANDMEMBER", "z", "-20", "WITHSCORES"]);
    assert_eq!(with.len(), 40);
    for pair in with.chunks(2) {
        let expected = (pair[0].as_bytes()[0] - b'a' + 1).to_string();
        assert_eq!(pair[1], expected, "each member comes with its own score");
    }
    assert!(strs(&mut c, &["ZRANDMEMBER", "z", "0"]).is_empty());
    assert_eq!(opt(&mut c, &["ZRANDMEMBER", "missing"]), None);
    assert!(strs(&mut c, &["ZRANDMEMBER", "missing", "2"]).is_empty());
    assert_eq!(int(&mut c, &["ZCARD", "z"]), 5);
    assert_eq!(err(&mut c, &["ZRANDMEMBER", "z", "1", "foo"]), "ERR syntax error");
    assert_eq!(err(&mut c, &["ZRANDMEMBER", "z", "1", "WITHSCORES", "x"]), "ERR syntax error");
    assert!(err(&mut c, &["ZRANDMEMBER", "z", "x"]).contains("not an integer"));
    assert_eq!(err(&mut c, &["ZRANDMEMBER", "z", "-9223372036854775807", "WITHSCORES"]), "ERR value is out of range");
}

#[test]
fn zscan() {
    let node = Node::classic();
    let mut c = node.conn();
    let mut zadd = redis::cmd("ZADD");
    zadd.arg("z");
    for i in 0..43 {
        zadd.arg(i).arg(format!("m{i}"));
    }
    let _: i64 = zadd.query(&mut c).unwrap();
    let mut cursor = "0".to_string();
    let mut seen = Vec::new();
    loop {
        let (next, page): (String, Vec<String>) = cmd(&["ZSCAN", "z", &cursor, "COUNT", "4"]).query(&mut c).unwrap();
        assert!(page.len() <= 8);
        seen.extend(page.chunks(2).map(|p| (p[0].clone(), p[1].clone())));
        if next == "0" {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen.len(), 43, "every member once");
    for (member, score) in &seen {
        assert_eq!(member[1..], score[..], "member and score stay paired");
    }
    let (next, page): (String, Vec<String>) =
        cmd(&["ZSCAN", "z", "0", "MATCH", "m4*", "COUNT", "100"]).query(&mut c).unwrap();
    assert_eq!(next, "0");
    assert_eq!(page, ["m4", "4", "m40", "40", "m41", "41", "m42", "42"]);
    let (next, page): (String, Vec<String>) = cmd(&["ZSCAN", "missing", "0"]).query(&mut c).unwrap();
    assert_eq!((next.as_str(), page.len()), ("0", 0));
    assert_eq!(err(&mut c, &["ZSCAN", "z", "x"]), "ERR invalid cursor");
    assert_eq!(err(&mut c, &["ZSCAN", "z", "0", "COUNT", "0"]), "ERR syntax error");
    assert_eq!(err(&mut c, &["ZSCAN", "z", "0", "MATCH"]), "ERR syntax error");
}

#[test]
fn union_inter_diff() {
    let node = Node::classic();
    let mut c = node.conn();
    zadd_many(&mut c, "z1", &[("1", "a"), ("2", "b"), ("3", "c")]);
    zadd_many(&mut c, "z2", &[("10", "b"), ("20", "c"), ("30", "d")]);
    int(&mut c, &["SADD", "s", "a", "d", "x"]);
    assert_eq!(strs(&mut c, &["ZUNION", "2", "z1", "z2", "WITHSCORES"]), ["a", "1", "b", "12", "c", "23", "d", "30"]);
    assert_eq!(strs(&mut c, &["ZUNION", "2", "z1", "z2"]), ["a", "b", "c", "d"]);
    assert_eq!(
        strs(&mut c, &["ZUNION", "2", "z1", "z2", "WEIGHTS", "2", "0.5", "WITHSCORES"]),
        ["a", "2", "b", "9", "d", "15", "c", "16"]
    );
    assert_eq!(
        strs(&mut c, &["ZUNION", "2", "z1", "z2", "AGGREGATE", "MIN", "WITHSCORES"]),
        ["a", "1", "b", "2", "c", "3", "d", "30"]
    );
    assert_eq!(
        strs(&mut c, &["ZUNION", "2", "z1", "z2", "AGGREGATE", "max", "WITHSCORES"]),
        ["a", "1", "b", "10", "c", "20", "d", "30"]
    );
    // Plain sets count as score 1.
    assert_eq!(
        strs(&mut c, &["ZUNION", "3", "z1", "s", "missing", "WITHSCORES"]),
        ["d", "1", "x", "1", "a", "2", "b", "2", "c", "3"]
    );
    assert_eq!(strs(&mut c, &["ZINTER", "2", "z1", "z2", "WITHSCORES"]), ["b", "12", "c", "23"]);
    assert_eq!(
        strs(&mut c, &["ZINTER", "2", "z1", "z2", "WEIGHTS", "-1", "1", "AGGREGATE", "MAX", "WITHSCORES"]),
        ["b", "10", "c", "20"]
    );
    assert_eq!(strs(&mut c, &["ZINTER", "2", "z1", "s", "WITHSCORES"]), ["a", "2"]);
    assert!(strs(&mut c, &["ZINTER", "2", "z1", "missing"]).is_empty());
    assert_eq!(strs(&mut c, &["ZDIFF", "2", "z1", "z2", "WITHSCORES"]), ["a", "1"]);
    assert_eq!(strs(&mut c, &["ZDIFF", "1", "z1"]), ["a", "b", "c"]);
    assert_eq!(strs(&mut c, &["ZDIFF", "2", "z2", "s"]), ["b", "c"]);
    assert!(strs(&mut c, &["ZDIFF", "2", "missing", "z1"]).is_empty());
    // inf + -inf sums to 0, as in Redis.
    zadd_many(&mut c, "i1", &[("inf", "p"), ("-inf", "n")]);
    zadd_many(&mut c, "i2", &[("-inf", "p"), ("-inf", "n")]);
    assert_eq!(strs(&mut c, &["ZUNION", "2", "i1", "i2", "WITHSCORES"]), ["n", "-inf", "p", "0"]);
    assert_eq!(
        strs(&mut c, &["ZINTER", "2", "i1", "i2", "WEIGHTS", "0", "1", "WITHSCORES"]),
        ["n", "-inf", "p", "-inf"]
    );

    // STORE forms replace the destination (any type, its TTL) and answer the size.
    let _: () = c.set("dst", "v").unwrap();
    let _: bool = c.expire("dst", 100).unwrap();
    assert_eq!(int(&mut c, &["ZUNIONSTORE", "dst", "2", "z1", "z2", "WEIGHTS", "1", "2"]), 4);
    assert_eq!(strs(&mut c, &["ZRANGE", "dst", "0", "-1", "WITHSCORES"]), ["a", "1", "b", "22", "c", "43", "d", "60"]);
    assert_eq!(int(&mut c, &["TTL", "dst"]), -1);
    assert_eq!(int(&mut c, &["ZINTERSTORE", "dst", "2", "z1", "z2", "AGGREGATE", "MIN"]), 2);
    assert_eq!(strs(&mut c, &["ZRANGE", "dst", "0", "-1", "WITHSCORES"]), ["b", "2", "c", "3"]);
    assert_eq!(int(&mut c, &["ZDIFFSTORE", "dst", "2", "z2", "z1"]), 1);
    assert_eq!(strs(&mut c, &["ZRANGE", "dst", "0", "-1", "WITHSCORES"]), ["d", "30"]);
    assert_eq!(int(&mut c, &["ZUNIONSTORE", "z1", "2", "z1", "s"]), 5, "the destination may be an input");
    assert_eq!(
        strs(&mut c, &["ZRANGE", "z1", "0", "-1", "WITHSCORES"]),
        ["d", "1", "x", "1", "a", "2", "b", "2", "c", "3"]
    );
    assert_eq!(int(&mut c, &["ZINTERSTORE", "dst", "2", "z1", "missing"]), 0);
    assert_eq!(int(&mut c, &["EXISTS", "dst"]), 0, "an empty result deletes the destination");

    // ZINTERCARD.
    assert_eq!(int(&mut c, &["ZINTERCARD", "2", "z1", "z2"]), 3);
    assert_eq!(int(&mut c, &["ZINTERCARD", "2", "z1", "z2", "LIMIT", "2"]), 2);
    assert_eq!(int(&mut c, &["ZINTERCARD", "2", "z1", "s"]), 3);

    // Errors, in Redis's order: the count, the input types, then the options.
    let _: () = c.set("str", "v").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["ZUNIONSTORE", "d", "0", "z1"], "ERR at least 1 input key is needed for 'zunionstore' command"),
        (&["ZINTERSTORE", "d", "-1", "z1"], "ERR at least 1 input key is needed for 'zinterstore' command"),
        (&["ZUNION", "0", "z1"], "ERR at least 1 input key is needed for 'zunion' command"),
        (&["ZDIFF", "0", "z1"], "ERR at least 1 input key is needed for 'zdiff' command"),
        (&["ZINTERCARD", "0", "z1"], "ERR at least 1 input key is needed for 'zintercard' command"),
        (&["ZUNION", "x", "z1"], "ERR value is not an integer or out of range"),
        (&["ZUNION", "3", "z1", "z2"], "ERR syntax error"),
        (&["ZINTERSTORE", "d", "2", "z1"], "ERR syntax error"),
        (
            &["ZUNION", "2", "z1", "str", "WEIGHTS", "x"],
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ),
        (&["ZUNION", "2", "z1", "z2", "WEIGHTS", "1", "x"], "ERR weight value is not a float"),
        (&["ZUNION", "2", "z1", "z2", "WEIGHTS", "1"], "ERR syntax error"),
        (&["ZUNION", "2", "z1", "z2", "AGGREGATE", "AVG"], "ERR syntax error"),
        (&["ZDIFF", "2", "z1", "z2", "WEIGHTS", "1", "1"], "ERR syntax error"),
        (&["ZDIFF", "2", "z1", "z2", "AGGREGATE", "SUM"], "ERR syntax error"),
        (&["ZUNIONSTORE", "d", "2", "z1", "z2", "WITHSCORES"], "ERR syntax error"),
        (&["ZINTERCARD", "2", "z1", "z2", "LIMIT", "-1"], "ERR LIMIT can't be negative"),
        (&["ZDIFFSTORE", "d", "0"], "ERR wrong number of arguments for 'zdiffstore' command"),
    ];
    for (args, expected) in cases {
        assert_eq!(&err(&mut c, args), expected, "{args:?}");
    }
    assert_eq!(int(&mut c, &["EXISTS", "d"]), 0, "failed STORE commands write nothing");
}

#[test]
fn wrong_types() {
    let node = Node::classic();
    let mut c = node.conn();
    let _: () = c.set("str", "v").unwrap();
    let cases: &[&[&str]] = &[
        &["ZADD", "str", "1", "a"],
        &["ZINCRBY", "str", "1", "a"],
        &["ZCARD", "str"],
        &["ZSCORE", "str", "a"],
        &["ZMSCORE", "str", "a"],
        &["ZCOUNT", "str", "0", "1"],
        &["ZLEXCOUNT", "str", "-", "+"],
        &["ZRANK", "str", "a"],
        &["ZREVRANK", "str", "a"],
        &["ZRANGE", "str", "0", "-1"],
        &["ZRANGEBYSCORE", "str", "0", "1"],
        &["ZREVRANGEBYSCORE", "str", "1", "0"],
        &["ZRANGEBYLEX", "str", "-", "+"],
        &["ZREVRANGEBYLEX", "str", "+", "-"],
        &["ZREVRANGE", "str", "0", "-1"],
        &["ZREM", "str", "a"],
        &["ZREMRANGEBYRANK", "str", "0", "1"],
        &["ZREMRANGEBYSCORE", "str", "0", "1"],
        &["ZREMRANGEBYLEX", "str", "-", "+"],
        &["ZPOPMIN", "str"],
        &["ZPOPMAX", "str"],
        &["ZRANDMEMBER", "str"],
        &["ZSCAN", "str", "0"],
        &["ZUNION", "1", "str"],
        &["ZINTERSTORE", "d", "1", "str"],
    ];
    for args in cases {
        assert!(err(&mut c, args).starts_with("WRONGTYPE"), "{args:?}");
    }
    // And a sorted set is not a set.
    int(&mut c, &["ZADD", "z", "1", "a"]);
    assert!(err(&mut c, &["SADD", "z", "a"]).starts_with("WRONGTYPE"));
    assert_eq!(q(&mut c, &["TYPE", "z"]).unwrap(), redis::Value::SimpleString("zset".into()));
}

#[test]
fn through_redis_cli() {
    if !support::have_redis_cli() {
        println!("skipped: redis-cli is not installed");
        return;
    }
    let node = Node::classic();
    assert_eq!(node.cli(&["ZADD", "z", "1.5", "a", "3", "b", "+inf", "c"]).unwrap().trim(), "3");
    assert_eq!(node.cli(&["ZRANGE", "z", "0", "-1", "WITHSCORES"]).unwrap(), "a\n1.5\nb\n3\nc\ninf\n");
    assert_eq!(node.cli(&["ZSCORE", "z", "b"]).unwrap().trim(), "3");
    assert_eq!(node.cli(&["ZRANGEBYSCORE", "z", "(1.5", "+inf"]).unwrap(), "b\nc\n");
    assert_eq!(node.cli(&["ZINCRBY", "z", "-1", "a"]).unwrap().trim(), "0.5");
    assert_eq!(node.cli(&["TYPE", "z"]).unwrap().trim(), "zset");
    assert!(node
        .cli(&["ZADD", "z", "NX", "XX", "1", "a"])
        .unwrap()
        .contains("XX and NX options at the same time are not compatible"));
}

#[test]
fn multi_key_commands_in_sharding_mode() {
    let node = Node::sharding_all(1024);
    let mut c = node.conn();
    let (a, b) = ("alpha", "beta");
    assert_ne!(common::slot::key_slot(a.as_bytes(), 1024), common::slot::key_slot(b.as_bytes(), 1024));
    zadd_many(&mut c, a, &[("1", "x"), ("2", "y")]);
    zadd_many(&mut c, b, &[("3", "y"), ("4", "z")]);
    for args in [
        &["ZUNIONSTORE", a, "2", a, b][..],
        &["ZINTERSTORE", a, "2", a, b],
        &["ZDIFFSTORE", a, "2", a, b],
        &["ZUNION", "2", a, b],
        &["ZINTER", "2", a, b],
        &["ZDIFF", "2", a, b],
        &["ZINTERCARD", "2", a, b],
        &["ZRANGESTORE", b, a, "0", "-1"],
    ] {
        let e = err(&mut c, args);
        assert!(e.contains("This command is not supported in current configuration"), "{args:?}: {e}");
    }
    assert_eq!(strs(&mut c, &["ZRANGE", a, "0", "-1"]), ["x", "y"], "a refused command writes nothing");

    let (t1, t2, t3) = ("{game}:z1", "{game}:z2", "{game}:out");
    zadd_many(&mut c, t1, &[("1", "x"), ("2", "y")]);
    zadd_many(&mut c, t2, &[("3", "y"), ("4", "z")]);
    assert_eq!(strs(&mut c, &["ZUNION", "2", t1, t2, "WITHSCORES"]), ["x", "1", "z", "4", "y", "5"]);
    assert_eq!(int(&mut c, &["ZINTERSTORE", t3, "2", t1, t2]), 1);
    assert_eq!(strs(&mut c, &["ZRANGE", t3, "0", "-1", "WITHSCORES"]), ["y", "5"]);
    assert_eq!(int(&mut c, &["ZDIFFSTORE", t3, "2", t1, t2]), 1);
    assert_eq!(int(&mut c, &["ZRANGESTORE", t3, t2, "0", "0"]), 1);
    assert_eq!(strs(&mut c, &["ZRANGE", t3, "0", "-1"]), ["y"]);
}
