//! Bad input: malformed RESP, hostile lengths, wrong arity and types, bad arguments. Each gets a
//! clear error, the node keeps serving other clients, and stored data is intact.
mod support;

use std::time::Duration;

use redis::Commands;
use support::{q, raw_exchange, Node};

const WAIT: Duration = Duration::from_millis(500);

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn malformed_resp_gets_protocol_errors_and_the_server_survives() {
    let node = Node::classic();
    let mut c = node.conn();
    let _: () = c.set("precious", "data").unwrap();
    let cases: &[(&[u8], &str)] = &[
        (b"*abc\r\n", "-ERR Protocol error: invalid multibulk length"),
        (b"*-10\r\n*1\r\n$4\r\nPING\r\n", "+PONG"),
        (b"*99999999999\r\n", "-ERR Protocol error: invalid multibulk length"),
        (b"*1\r\n$-3\r\n", "-ERR Protocol error: invalid bulk length"),
        (b"*1\r\n$9999999999\r\n", "-ERR Protocol error: invalid bulk length"),
        (b"*2\r\n$3\r\nGET\r\n:1\r\n", "-ERR Protocol error: expected '$', got ':'"),
        (b"*1\r\n$4\r\nPINGXX\r\n", "-ERR Protocol error"),
        (b"SET k \"unbalanced\r\n", "-ERR Protocol error: unbalanced quotes in request"),
    ];
    for (input, expected) in cases {
        let reply = text(raw_exchange(node.port, input, WAIT));
        assert!(reply.starts_with(expected), "{:?} -> {reply:?}", String::from_utf8_lossy(input));
    }
    // An inline request longer than 64 KiB without a newline.
    let reply = text(raw_exchange(node.port, &vec![b'a'; 70 * 1024], WAIT));
    assert!(reply.starts_with("-ERR Protocol error: too big inline request"), "{reply:?}");
    // Unbalanced multibulk: declares 3 args, sends 2, then the client goes away.
    let reply = raw_exchange(node.port, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n", Duration::from_millis(200));
    assert!(reply.is_empty(), "an incomplete request is not answered");
    // Truncated connection mid-bulk, then garbage: nothing breaks for others.
    let _ = raw_exchange(node.port, b"*2\r\n$3\r\nGET\r\n$100\r\nshort", Duration::from_millis(100));
    let _ = raw_exchange(node.port, &[0xff, 0x00, 0xfe, b'\r', b'\n'], Duration::from_millis(100));
    assert_eq!(c.get::<_, String>("precious").unwrap(), "data");
    let _: () = c.set("still", "works").unwrap();
}

#[test]
fn wrong_arity_types_and_arguments() {
    let node = Node::classic();
    let mut c = node.conn();
    let _: () = c.set("s", "v").unwrap();
    let _: () = redis::cmd("RPUSH").arg("l").arg("a").query(&mut c).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["GET"], "wrong number of arguments for 'get' command"),
        (&["GET", "a", "b"], "wrong number of arguments for 'get' command"),
        (&["SET", "k"], "wrong number of arguments for 'set' command"),
        (&["LPUSH", "s", "x"], "WRONGTYPE Operation against a key holding the wrong kind of value"),
        (&["INCR", "l"], "WRONGTYPE"),
        (&["EXPIRE", "s", "soon"], "value is not an integer or out of range"),
        (&["LRANGE", "l", "0", "x"], "value is not an integer or out of range"),
        (&["ZADD", "z", "notafloat", "m"], "not a valid float"),
        (&["NOSUCHCOMMAND", "x"], "unknown or unsupported command 'nosuchcommand\""),
        (&["SELECT", "-1"], "invalid DB index"),
    ];
    support::expect_errors(&mut c, cases);
    // Nothing was changed by the failed commands.
    assert_eq!(c.get::<_, String>("s").unwrap(), "v");
    assert_eq!(c.lrange::<_, Vec<String>>("l", 0, -1).unwrap(), vec!["a"]);
}

#[test]
fn bad_slot_arguments_in_sharding_mode() {
    let node = Node::start(&[("instance-mode", "sharding"), ("default-slot-num", "16")]);
    let mut c = node.conn();
    support::expect_errors(
        &mut c,
        &[
            (&["pkcluster", "addslots", "16"][..], "partition index out of range"),
            (&["pkcluster", "addslots", "99999999999"], "Corruption: syntax error"),
            (&["pkcluster", "addslots", "3-"], "Corruption: syntax error"),
            (&["pkcluster", "addslots", "a-b"], "Corruption: syntax error"),
            (&["pkcluster", "addslots", "0-4294967295"], "Corruption: syntax error"),
            (&["pkcluster", "delslots", "1"], "not exist"),
            (&["pkcluster", "addslots"], "wrong number of arguments"),
            (&["SLOTSSCAN", "-1", "0"], "no such key"),
        ],
    );
    assert_eq!(q(&mut c, &["PING"]).unwrap(), redis::Value::SimpleString("PONG".into()));
}

#[test]
fn wrong_password_and_auth_order() {
    // Both passwords: nothing but AUTH before AUTH (with the admin one alone, data commands are
    // open: tests/admin_users.rs).
    let node = Node::start(&[("instance-mode", "classic"), ("requirepass", "admin"), ("userpass", "s3cret")]);
    let reply = text(raw_exchange(node.port, b"GET k\r\n", WAIT));
    assert_eq!(reply, "-ERR NOAUTH Authentication required.\r\n");
    let reply = text(raw_exchange(node.port, b"AUTH wrong\r\nGET k\r\n", WAIT));
    assert_eq!(reply, "-ERR invalid password\r\n-ERR NOAUTH Authentication required.\r\n");
    // Unknown commands are reported before auth, as Pika does.
    let reply = text(raw_exchange(node.port, b"FOO\r\n", WAIT));
    assert!(reply.starts_with("-ERR unknown or unsupported command 'foo\""), "{reply}");
    let mut c =
        redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}/", node.port)).unwrap().get_connection().unwrap();
    let _: () = c.set("k", "v").unwrap();
    assert_eq!(c.get::<_, String>("k").unwrap(), "v");
    let bad = redis::Client::open(format!("redis://:nope@127.0.0.1:{}/", node.port)).unwrap().get_connection();
    assert!(bad.is_err());
}

#[test]
fn many_clients_and_one_bad_one() {
    let node = Node::classic();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let url = node.url();
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                for i in 0..300 {
                    let _: () = c.set(format!("t{t}:{i}"), i).unwrap();
                }
            })
        })
        .collect();
    for _ in 0..20 {
        let _ = raw_exchange(node.port, b"*1\r\n$-99\r\n", Duration::from_millis(20));
    }
    for h in handles {
        h.join().unwrap();
    }
    let mut c = node.conn();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 8 * 300);
}
