//! Fuzzing a node over TCP (tests/fuzzer): every command name of its COMMAND list with random
//! arities and arguments, malformed, truncated and oversized requests, as the data user and as
//! admin. The node answers or closes every connection, keeps serving, lets go of every
//! connection, stays under a memory bound, and logs no panic.
//!
//! `TCP_FUZZ_SECONDS` (default 30) bounds the run; `TCP_FUZZ_SEED` replays one.
mod fuzzer;
mod support;

use std::time::Duration;

use support::{query, rss_bytes, wait_until, Node};

const SLOTS: u32 = 16;
const ADMIN: &str = "fuzz-admin-pw";

pub fn seconds() -> u64 {
    std::env::var("TCP_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30)
}

fn admin(node: &Node) -> redis::Connection {
    let mut c = node.conn();
    let _: () = query(&mut c, &["AUTH", "admin", ADMIN]);
    c
}

#[test]
fn random_requests_over_tcp_leave_the_node_serving() {
    // Both users, so the data user's refusals are fuzzed too; a sharding node, so slot
    // commands have slots to act on.
    let node = Node::start(&[
        ("instance-mode", "sharding"),
        ("default-slot-num", &SLOTS.to_string()),
        ("requirepass", ADMIN),
        ("userpass", "fuzz-user-pw"),
        // A bound the fuzzer's oversized requests meet without sending a gigabyte each.
        ("client-query-buffer-limit", "16mb"),
    ]);
    let all_slots = format!("0-{}", SLOTS - 1);
    let _: () = query(&mut admin(&node), &["pkcluster", "addslots", &all_slots]);
    let names = fuzzer::command_table(&mut admin(&node));
    assert!(names.len() > 100, "COMMAND lists {} commands", names.len());
    let target = fuzzer::Target {
        port: node.port,
        admin_password: Some(ADMIN.into()),
        user_password: Some("fuzz-user-pw".into()),
        names,
    };
    let seed = fuzzer::seed();
    let before = rss_bytes(node.pid());
    let mut peak = before;
    let pid = node.pid();
    let alive = || -> Result<(), String> {
        peak = peak.max(rss_bytes(pid));
        let mut c = fuzzer::control(&node.url(), ADMIN).map_err(|e| format!("the node: {e}"))?;
        // Slots a session deleted, fenced or leased come back, so later sessions still reach data.
        let _ = redis::cmd("pkcluster").arg("addtable").arg("0").arg(SLOTS).query::<redis::Value>(&mut c);
        let _ = redis::cmd("pkcluster").arg("addslots").arg(&all_slots).query::<redis::Value>(&mut c);
        let _ = redis::cmd("pkcluster").arg("unfence").arg(&all_slots).query::<redis::Value>(&mut c);
        let _ = redis::cmd("pkcluster").arg("lease").arg("3600000").query::<redis::Value>(&mut c);
        Ok(())
    };
    let stats = fuzzer::run(&target, seed, Duration::from_secs(seconds()), alive).unwrap_or_else(|e| panic!("{e}"));
    println!("{}", stats.summary(seed, "node", before, peak));
    assert!(stats.sessions > 100, "{stats:?}");

    // Every fuzzing connection is let go (a panic in a command would have left its entry).
    wait_until(Duration::from_secs(20), "the node to list only the checking connection", || {
        query::<String>(&mut admin(&node), &["INFO", "clients"]).contains("connected_clients:1\r")
    });
    // Oversized requests, 2 MB arguments and random picks stay within a bound.
    assert!(peak < before + (1 << 30), "resident {} MB at most, {} MB before", peak >> 20, before >> 20);
    let log = node.log();
    assert!(!log.contains("panicked"), "the node logged a panic:\n{log}");
    let mut c = admin(&node);
    let _: () = query(&mut c, &["SET", "after", "fuzzing"]);
    assert_eq!(query::<String>(&mut c, &["GET", "after"]), "fuzzing");
}
