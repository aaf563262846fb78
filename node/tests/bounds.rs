//! What one client can make a node hold (docs/node.md, "Limits"): a request past the query
//! limit is refused from its header and the connection closed; a client that pipelines without
//! reading its replies is not read from either. Measured as the node's resident memory.
mod support;

use std::time::{Duration, Instant};

use support::{pipeline_without_reading, q, query, rss_bytes, send_oversized, Node};

const MB: u64 = 1 << 20;

#[test]
fn a_2gb_bulk_and_a_request_past_the_query_limit_are_refused_and_memory_stays_flat() {
    let node = Node::start(&[("instance-mode", "classic"), ("client-query-buffer-limit", "8mb")]);
    let before = rss_bytes(node.pid());
    // A 2 GB bulk: refused from its header (Redis's proto-max-bulk-len, 512 MB); 256 MB sent.
    let (reply, peak) =
        send_oversized(node.port, node.pid(), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2147483648\r\n", 256 << 20);
    assert_eq!(reply, "-ERR Protocol error: invalid bulk length\r\n");
    assert!(peak < before + 32 * MB, "a 2 GB bulk: {} MB resident, {} MB before", peak / MB, before / MB);
    // Two 6 MB arguments in one request: past the 8 MB query limit once the second header
    // arrives; refused without waiting for its data, the connection closed.
    let six = 6 << 20;
    let header = format!("*5\r\n$4\r\nMSET\r\n$1\r\na\r\n${six}\r\n{}\r\n$1\r\nb\r\n${six}\r\n", "v".repeat(six));
    let (reply, peak) = send_oversized(node.port, node.pid(), header.as_bytes(), 64 << 20);
    assert_eq!(reply, "-ERR Protocol error: request larger than the query buffer limit (8388608 bytes)\r\n");
    assert!(peak < before + 48 * MB, "past the query limit: {} MB resident, {} MB before", peak / MB, before / MB);
    // Under the limit, a 6 MB value is fine; the default limit is Redis's 1 GB.
    let mut c = node.conn();
    let _: () = query(&mut c, &["SET", "k", &"v".repeat(six)]);
    assert_eq!(query::<i64>(&mut c, &["STRLEN", "k"]), six as i64);
    let got: Vec<String> = query(&mut c, &["CONFIG", "GET", "client-query-buffer-limit"]);
    assert_eq!(got[1], (8 << 20).to_string());
    let _: () = query(&mut c, &["CONFIG", "SET", "client-query-buffer-limit", "1gb"]);
    let got: Vec<String> = query(&mut Node::classic().conn(), &["CONFIG", "GET", "client-query-buffer-limit"]);
    assert_eq!(got[1], (1u64 << 30).to_string(), "the default");
}

/// SRANDMEMBER, HRANDFIELD and ZRANDMEMBER with a negative count repeat members: 300 picks of
/// a 1 MB member would be a 300 MB reply built in memory. Refused past 256 MB, with the reason.
#[test]
fn random_picks_that_repeat_large_members_are_refused_past_256_mb() {
    let node = Node::classic();
    let mut c = node.conn();
    let big = "m".repeat(1 << 20);
    let _: () = query(&mut c, &["SADD", "s", &big]);
    let _: () = query(&mut c, &["HSET", "h", &big, "v"]);
    let _: () = query(&mut c, &["ZADD", "z", "1", &big]);
    let before = rss_bytes(node.pid());
    for args in [&["SRANDMEMBER", "s", "-300"][..], &["HRANDFIELD", "h", "-300"], &["ZRANDMEMBER", "z", "-300"]] {
        let refused = q(&mut c, args).expect_err("300 MB of picks");
        assert!(refused.contains("reply too large"), "{args:?}: {refused}");
    }
    assert!(rss_bytes(node.pid()) < before + 64 * MB, "the refused picks were not built");
    // Under the budget they are answered in full.
    let picks: Vec<String> = query(&mut c, &["SRANDMEMBER", "s", "-50"]);
    assert_eq!(picks.len(), 50);
    assert!(picks.iter().all(|m| *m == big));
    let picks: Vec<String> = query(&mut c, &["HRANDFIELD", "h", "-3", "WITHVALUES"]);
    assert_eq!(picks.len(), 6);
}

#[test]
fn a_client_that_pipelines_gets_of_a_1mb_value_without_reading_holds_little() {
    let node = Node::classic();
    let mut c = node.conn();
    let _: () = query(&mut c, &["SET", "big", &"x".repeat(1 << 20)]);
    let before = rss_bytes(node.pid());
    let (written, peak, stalled) =
        pipeline_without_reading(node.port, node.pid(), "big", 1_000_000, Duration::from_secs(5));
    assert!(written < 1_000_000, "every GET taken without its reply being read: nothing held back");
    // The node stops reading a client whose replies are not read: it holds one flush (64 KiB)
    // and the reply in hand, not the replies of every GET sent.
    assert!(peak < before + 64 * MB, "{written} GETs unread: {} MB resident, {} MB before", peak / MB, before / MB);
    // Everyone else is served meanwhile.
    let started = Instant::now();
    assert_eq!(query::<String>(&mut node.conn(), &["PING"]), "PONG");
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(stalled);
    assert_eq!(q(&mut c, &["STRLEN", "big"]), Ok(redis::Value::Int(1 << 20)));
}

fn blocked(node: &Node) -> u64 {
    node.info_field("blocked_clients").parse().unwrap()
}

/// A blocked pop ends when its client goes away, is killed, or its slot stops being this node's
/// to write: nothing stays registered for a client that is gone (docs/node.md, "Limits").
#[test]
fn blocked_pops_end_on_disconnect_client_kill_and_a_slot_leaving() {
    use std::io::Write;
    let node = Node::sharding_all(16);
    let mut admin = node.conn();
    let wait = |what: &str, check: &mut dyn FnMut() -> bool| support::wait_until(Duration::from_secs(5), what, check);
    // A client that sends BLPOP and hangs up.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", node.port)).unwrap();
    s.write_all(b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n").unwrap();
    wait("BLPOP to block", &mut || blocked(&node) == 1);
    drop(s);
    wait("the wait to end with its client", &mut || blocked(&node) == 0);

    // A client killed while it waits.
    let port = node.port;
    let waiter = std::thread::spawn(move || {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap().get_connection().unwrap();
        q(&mut c, &["BLPOP", "q", "0"])
    });
    wait("BLPOP to block", &mut || blocked(&node) == 1);
    let list: String = query(&mut admin, &["CLIENT", "LIST"]);
    let id = list
        .lines()
        .find(|l| l.contains("cmd=blpop"))
        .and_then(|l| l.split_whitespace().next()?.strip_prefix("id="))
        .unwrap()
        .to_string();
    let _: i64 = query(&mut admin, &["CLIENT", "KILL", "ID", &id]);
    let popped = waiter.join().unwrap();
    assert!(popped.is_err(), "a killed client's BLPOP answered {popped:?}");
    wait("the wait to end with its client", &mut || blocked(&node) == 0);

    // Its slot fenced (as in a cutover) while it waits: the error a new request would get.
    let slot = common::slot::key_slot(b"q", 16).to_string();
    let mut c = node.conn();
    let started = Instant::now();
    let fencer = {
        let mut admin = node.conn();
        let slot = slot.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let _: () = query(&mut admin, &["PKCLUSTER", "FENCE", &slot]);
        })
    };
    let refused = q(&mut c, &["BLPOP", "q", "0"]).unwrap_err();
    fencer.join().unwrap();
    assert!(refused.to_ascii_uppercase().contains("TRYAGAIN") || refused.contains("fenced"), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(blocked(&node), 0);
    let _: () = query(&mut admin, &["PKCLUSTER", "UNFENCE", &slot]);
    let _: i64 = query(&mut admin, &["LPUSH", "q", "kept"]);
    assert_eq!(
        query::<Vec<String>>(&mut admin, &["LRANGE", "q", "0", "-1"]),
        ["kept"],
        "nothing popped by the ended waits"
    );
}
