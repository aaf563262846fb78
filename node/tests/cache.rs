//! The meta-record cache in front of RocksDB (`cache-maxmemory`): what a client reads is what
//! was written, through every path that changes a slot behind a single key's back (FLUSHDB,
//! delslots, codis SLOTSDEL, expiry, replication, a full sync over a slot that had been read),
//! at a budget far too small for the data, and with the cache off.

mod support;

use std::time::Duration;

use support::*;

const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

fn sharding(slots: u32, extra: &[(&str, &str)]) -> Node {
    Node::sharding_all_with(slots, extra)
}

fn cache_field(node: &Node, name: &str) -> u64 {
    let text: String = query(&mut node.conn(), &["info", "cache"]);
    let prefix = format!("{name}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{name} missing from INFO cache: {text:?}"))
        .trim_end_matches('%')
        .parse::<f64>()
        .unwrap() as u64
}

fn get(c: &mut redis::Connection, key: &str) -> Option<String> {
    query(c, &["GET", key])
}

#[test]
fn repeated_reads_are_served_from_memory_and_config_controls_it() {
    let node = sharding(16, &[]);
    let mut c = node.conn();
    assert_eq!(strs(&mut c, &["CONFIG", "GET", "cache-maxmemory"]), ["cache-maxmemory", "134217728"]);
    for i in 0..100 {
        let _: () = query(&mut c, &["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    let hits = cache_field(&node, "cache_hits");
    for _ in 0..5 {
        for i in 0..100 {
            assert_eq!(get(&mut c, &format!("k{i}")).as_deref(), Some(format!("v{i}").as_str()));
        }
    }
    assert!(cache_field(&node, "cache_hits") >= hits + 500, "every read of a written key hits");
    assert!(cache_field(&node, "cache_memory") > 0);
    let (_, metrics) = node.http_get("/metrics");
    assert!(metrics.contains("pika_node_meta_cache_hits_total"), "{metrics}");

    // Off: reads still answer, nothing is held.
    let _: () = query(&mut c, &["CONFIG", "SET", "cache-maxmemory", "0"]);
    let _: () = query(&mut c, &["SET", "after", "off"]);
    assert_eq!(get(&mut c, "after").as_deref(), Some("off"));
    wait_until(Duration::from_secs(5), "the cache to give its memory back", || cache_field(&node, "cache_memory") == 0);
    expect_errors(&mut c, &[(&["CONFIG", "SET", "cache-maxmemory", "lots"], "not a size")]);
}

#[test]
fn writes_behind_a_key_are_never_hidden_by_the_cache() {
    let node = sharding(8, &[]);
    let mut c = node.conn();
    let keys: Vec<String> = (0..200).map(|i| format!("key:{i}")).collect();
    let write_all = |c: &mut redis::Connection, tag: &str| {
        for k in &keys {
            let _: () = query(c, &["SET", k, &format!("{tag}:{k}")]);
        }
    };
    let read_all = |c: &mut redis::Connection| -> Vec<Option<String>> { keys.iter().map(|k| get(c, k)).collect() };

    // Type changes and deletes of cached keys.
    write_all(&mut c, "a");
    assert!(read_all(&mut c).iter().all(Option::is_some));
    assert_eq!(int(&mut c, &["DEL", "key:1"]), 1);
    assert_eq!(get(&mut c, "key:1"), None);
    assert_eq!(int(&mut c, &["LPUSH", "key:1", "x"]), 1);
    assert!(err(&mut c, &["GET", "key:1"]).contains("WRONGTYPE"));
    assert_eq!(query::<String>(&mut c, &["TYPE", "key:1"]), "list");

    // FLUSHDB drops every slot wholesale.
    let _: () = query(&mut c, &["FLUSHDB"]);
    assert!(read_all(&mut c).iter().all(Option::is_none), "FLUSHDB left cached values visible");
    assert_eq!(int(&mut c, &["EXISTS", "key:1"]), 0);

    // delslots drops the data; slots added back start empty.
    write_all(&mut c, "b");
    read_all(&mut c);
    let _: () = query(&mut c, &["pkcluster", "delslots", "0-7"]);
    let _: () = query(&mut c, &["pkcluster", "addslots", "0-7"]);
    assert!(read_all(&mut c).iter().all(Option::is_none), "delslots left cached values visible");

    // Codis SLOTSDEL empties one slot.
    write_all(&mut c, "c");
    read_all(&mut c);
    let slot: Vec<i64> = query(&mut c, &["SLOTSHASHKEY", "key:7"]);
    let slot = slot[0];
    let _: redis::Value = query(&mut c, &["SLOTSDEL", &slot.to_string()]);
    assert_eq!(get(&mut c, "key:7"), None, "SLOTSDEL left a cached value visible");

    // Expiry: a cached record past its time reads as absent, and the background expirer's
    // delete reaches the cache.
    let _: () = query(&mut c, &["SET", "short", "lived", "PX", "150"]);
    assert_eq!(get(&mut c, "short").as_deref(), Some("lived"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&mut c, "short"), None);
    assert_eq!(int(&mut c, &["EXISTS", "short"]), 0);
}

#[test]
fn a_budget_far_below_the_data_keeps_every_value_right() {
    let node = sharding(4, &[("cache-maxmemory", "16kb")]);
    let mut c = node.conn();
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("SET").arg(format!("k{i}")).arg(format!("value-{i}")).ignore();
    }
    let _: () = pipe.query(&mut c).unwrap();
    for round in 0..2 {
        for i in (0..5000).step_by(7) {
            assert_eq!(get(&mut c, &format!("k{i}")), Some(format!("value-{i}")), "round {round}");
        }
    }
    assert!(cache_field(&node, "cache_memory") <= 16 * 1024, "over budget");
    // A hot set that fits is served from memory even while the rest churns through.
    let hits = cache_field(&node, "cache_hits");
    for _ in 0..10 {
        for i in 0..20 {
            assert_eq!(get(&mut c, &format!("k{i}")), Some(format!("value-{i}")));
        }
        assert_eq!(get(&mut c, &format!("k{}", 4000 + hits % 900)), Some(format!("value-{}", 4000 + hits % 900)));
    }
    assert!(cache_field(&node, "cache_hits") >= hits + 150, "the hot set was not kept");
}

#[test]
fn replicas_read_what_the_master_wrote_including_over_cached_keys() {
    let master = sharding(4, &[]);
    let mut replica = sharding(4, &[]);
    let mut m = master.conn();
    let mut r = replica.conn();
    // The replica-to-be has its own values, read (cached) before it follows.
    for i in 0..50 {
        let _: () = query(&mut r, &["SET", &format!("k{i}"), "stale"]);
        assert_eq!(get(&mut r, &format!("k{i}")).as_deref(), Some("stale"));
        assert_eq!(get(&mut r, &format!("missing{i}")), None);
    }
    for i in 0..50 {
        let _: () = query(&mut m, &["SET", &format!("k{i}"), &format!("m{i}")]);
        let _: () = query(&mut m, &["SET", &format!("missing{i}"), "now-here"]);
    }
    replica.follow(&master, "0-3", false);
    wait_in_sync(&master, &replica, "0-3", SYNC_TIMEOUT);
    r = replica.conn();
    for i in 0..50 {
        assert_eq!(get(&mut r, &format!("k{i}")), Some(format!("m{i}")), "full sync hidden by the cache");
        assert_eq!(get(&mut r, &format!("missing{i}")).as_deref(), Some("now-here"));
    }
    // The incremental stream: overwrites, deletes, a FLUSHDB, all over keys the replica cached.
    for i in 0..50 {
        let _: () = query(&mut m, &["SET", &format!("k{i}"), &format!("m2-{i}")]);
    }
    assert_eq!(int(&mut m, &["DEL", "k0", "k1"]), 2);
    wait_in_sync(&master, &replica, "0-3", SYNC_TIMEOUT);
    assert_eq!(get(&mut r, "k0"), None);
    assert_eq!(get(&mut r, "k2").as_deref(), Some("m2-2"));
    let _: () = query(&mut m, &["FLUSHDB"]);
    wait_in_sync(&master, &replica, "0-3", SYNC_TIMEOUT);
    for i in 0..50 {
        assert_eq!(get(&mut r, &format!("k{i}")), None, "a replicated FLUSHDB hidden by the cache");
    }
    replica.stop();
}
