//! pika-proxy in front of real pika-node processes on loopback: routing across groups, split
//! multi-key commands, holds during a slot move, restarts of the proxy and of a backend.

#[path = "../../node/tests/fuzzer/mod.rs"]
mod fuzzer;
#[path = "../../node/tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::*;

const SLOTS: u32 = 1024;
const PROXY_BIN: &str = env!("CARGO_BIN_EXE_pika-proxy");

struct Proxy {
    port: u16,
    args: Vec<String>,
    /// Passwords, as the operator gives them: in the environment, never as arguments.
    env: Vec<(String, String)>,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Proxy {
    fn start(seeds: &[&Node], extra: &[&str]) -> Proxy {
        Proxy::start_with_env(seeds, extra, &[])
    }

    fn start_with_env(seeds: &[&Node], extra: &[&str], env: &[(&str, &str)]) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let seeds: Vec<String> = seeds.iter().map(|n| n.addr()).collect();
        let mut args =
            vec!["--listen".to_string(), format!("127.0.0.1:{port}"), "--seed-nodes".into(), seeds.join(",")];
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = dir.path().join("proxy.log");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut p = Proxy { port, args, env, log, _dir: dir, child: None };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(PROXY_BIN);
        cmd.args(&self.args).envs(self.env.iter().map(|(k, v)| (k, v)));
        self.child = Some(cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap());
        wait_until(Duration::from_secs(20), "the proxy to listen", || listening(self.port));
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn conn(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).unwrap().get_connection().unwrap()
    }

    /// Waits until the proxy has built a table covering every slot of db0.
    fn wait_routed(&self) {
        wait_until(Duration::from_secs(20), "the proxy's routing table", || {
            let text: String = query(&mut self.conn(), &["pxroute", "get"]);
            text.contains("table 0 slots") && text.lines().filter(|l| l.starts_with("group")).count() > 0
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn node(owned: &str, extra: &[(&str, &str)]) -> Node {
    let mut conf = vec![("instance-mode", "sharding"), ("default-slot-num", "1024")];
    conf.extend_from_slice(extra);
    let n = Node::start(&conf);
    if !owned.is_empty() {
        let _: () = query(&mut n.conn(), &["pkcluster", "addslots", owned]);
    }
    n
}

fn slot_of(key: &str) -> u32 {
    common::slot::key_slot(key.as_bytes(), SLOTS)
}

/// A hashtag whose keys all land in `slot`.
fn tag_for(slot: u32) -> String {
    (0..).map(|i| format!("t{i}")).find(|t| slot_of(t) == slot).unwrap()
}

#[test]
fn routes_across_three_groups_and_splits_multi_key_commands() {
    let nodes = [node("0-340", &[]), node("341-681", &[]), node("682-1023", &[])];
    let owner = |key: &str| {
        let s = slot_of(key);
        &nodes[if s <= 340 {
            0
        } else if s <= 681 {
            1
        } else {
            2
        }]
    };
    let proxy = Proxy::start(&nodes.iter().collect::<Vec<_>>(), &[]);
    proxy.wait_routed();
    let mut c = proxy.conn();
    for i in 0..300 {
        let _: () = query(&mut c, &["SET", &format!("key:{i}"), &format!("v{i}")]);
    }
    for i in 0..300 {
        let key = format!("key:{i}");
        assert_eq!(query::<String>(&mut owner(&key).conn(), &["GET", &key]), format!("v{i}"), "{key} on its owner");
    }
    // MGET across all groups, with missing keys, in key order.
    let keys: Vec<String> = (0..40).map(|i| format!("key:{}", i * 7)).chain(["missing:1".into()]).collect();
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    let values: Vec<Option<String>> = query(&mut c, &mget);
    for (k, v) in keys.iter().zip(&values) {
        let expected = k.strip_prefix("key:").map(|n| format!("v{n}"));
        assert_eq!(v, &expected, "{k}");
    }
    // MSET across groups, then DEL and EXISTS summed.
    let mut mset = vec!["MSET".to_string()];
    for i in 0..40 {
        mset.push(format!("m:{i}"));
        mset.push(i.to_string());
    }
    let _: () = query(&mut c, &mset.iter().map(String::as_str).collect::<Vec<_>>());
    for i in 0..40 {
        let key = format!("m:{i}");
        assert_eq!(int(&mut owner(&key).conn(), &["GET", &key]), i);
    }
    let mut exists = vec!["EXISTS".to_string()];
    exists.extend((0..40).map(|i| format!("m:{i}")));
    exists.push("nope".into());
    assert_eq!(int(&mut c, &exists.iter().map(String::as_str).collect::<Vec<_>>()), 40);
    exists[0] = "DEL".into();
    assert_eq!(int(&mut c, &exists.iter().map(String::as_str).collect::<Vec<_>>()), 40);
    assert_eq!(int(&mut c, &["EXISTS", "m:1", "m:2"]), 0);
    // Errors pass through; what cannot work through a proxy is refused clearly.
    let _: () = query(&mut c, &["LPUSH", "list", "x"]);
    expect_errors(
        &mut c,
        &[
            (&["GET", "list"], "WRONGTYPE"),
            (&["MSET", "a", "1", "b"], "wrong number of arguments"),
            (&["MSETNX", "a", "1"], "not supported in current configuration"),
            (&["KEYS", "*"], "not supported through pika-proxy"),
            (&["NOSUCH", "x"], "unknown or unsupported command"),
            (&["SELECT", "9"], "invalid Table"),
        ],
    );
    let a = (0..).map(|i| format!("a{i}")).find(|k| owner(k).port == nodes[0].port).unwrap();
    let b = (0..).map(|i| format!("b{i}")).find(|k| owner(k).port == nodes[1].port).unwrap();
    assert!(err(&mut c, &["RPOPLPUSH", &a, &b]).starts_with("CROSSSLOT"));
    // Keyless commands: PING, ECHO, DBSIZE summed, FLUSHDB everywhere.
    assert_eq!(query::<String>(&mut c, &["PING"]), "PONG");
    assert_eq!(query::<String>(&mut c, &["ECHO", "hi"]), "hi");
    let _: i64 = query(&mut c, &["DBSIZE"]);
    let _: () = query(&mut c, &["FLUSHDB"]);
    for i in 0..300 {
        let key = format!("key:{i}");
        assert_eq!(q(&mut owner(&key).conn(), &["GET", &key]), Ok(redis::Value::Nil), "{key} flushed");
    }
    // redis-cli works through the proxy too.
    if have_redis_cli() {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &proxy.port.to_string(), "SET", "cli", "1"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
    }
}

/// Moves `slot` from `from` to `to` the way the operator does, with `proxies` holding it.
fn move_slot(slot: u32, from: &Node, to: &Node, proxies: &[&Proxy], epoch: u64, from_slots: &str, to_slots: &str) {
    let s = slot.to_string();
    let _: () = query(&mut to.conn(), &["pkcluster", "addslots", &s]);
    to.follow(from, &s, false);
    // Writes keep coming: wait for the full sync to end, not for lag 0.
    wait_until(Duration::from_secs(30), "the new owner to follow the log", || from.replica_lags(to, &s).is_some());
    for p in proxies {
        let _: () = query(&mut p.conn(), &["pxhold", "0", &s]);
    }
    let _: () = query(&mut from.conn(), &["pkcluster", "fence", &s]);
    wait_in_sync(from, to, &s, Duration::from_secs(30));
    let _: () = query(&mut to.conn(), &["pkcluster", "slotsslaveof", "no", "one", &s]);
    for p in proxies {
        let e = epoch.to_string();
        let route = ["pxroute", "set", &e, "0", "1024", "ga", &from.addr(), from_slots, "gb", &to.addr(), to_slots];
        let _: () = query(&mut p.conn(), &route);
    }
}

#[test]
fn a_held_slot_moves_to_another_node_and_every_acknowledged_write_lands_there_once() {
    let a = node("0-1023", &[]);
    let b = node("", &[]);
    let proxy = Proxy::start(&[&a, &b], &[]);
    proxy.wait_routed();
    let slot = 77;
    let tag = tag_for(slot);
    let list = format!("{{{tag}}}:list");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (stop, list, port) = (stop.clone(), list.clone(), proxy.port);
            thread::spawn(move || {
                let mut c =
                    redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap().get_connection().unwrap();
                let mut acked = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let value = format!("{w}-{i}");
                    // Another slot too: unaffected by the hold.
                    let _: () = redis::cmd("SET").arg(format!("other:{w}")).arg(i).query(&mut c).unwrap();
                    match redis::cmd("RPUSH").arg(&list).arg(&value).query::<i64>(&mut c) {
                        Ok(_) => acked.push(value),
                        Err(e) => panic!("write refused during the move: {e}"),
                    }
                }
                acked
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    move_slot(slot, &a, &b, &[&proxy], 1, "0-76,78-1023", "77");
    let _: () = query(&mut a.conn(), &["pkcluster", "delslots", "77"]);
    eprintln!("slot moved in {:?}", started.elapsed());
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<String> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert!(acked.len() > 100, "only {} writes", acked.len());
    let on_b: Vec<String> = query(&mut b.conn(), &["LRANGE", &list, "0", "-1"]);
    let mut sorted_b = on_b.clone();
    sorted_b.sort();
    sorted_b.dedup();
    assert_eq!(sorted_b.len(), on_b.len(), "no value twice");
    let mut sorted_acked = acked.clone();
    sorted_acked.sort();
    assert_eq!(sorted_b, sorted_acked, "every acknowledged push on the new owner, exactly once");
    assert_eq!(err(&mut a.conn(), &["LLEN", &list]), "ERR Partition not found");
}

#[test]
fn a_proxy_restarted_during_a_hold_and_a_proxy_that_missed_the_update_both_reach_the_new_owner() {
    let a = node("0-1023", &[]);
    let b = node("", &[]);
    let mut restarted = Proxy::start(&[&a, &b], &[]);
    let stale = Proxy::start(&[&a, &b], &[]);
    restarted.wait_routed();
    stale.wait_routed();
    let slot = 300;
    let key = format!("{{{}}}:k", tag_for(slot));
    let _: () = query(&mut restarted.conn(), &["SET", &key, "before"]);
    let _: () = query(&mut restarted.conn(), &["pxhold", "0", "300"]);
    restarted.kill9();
    // The move happens while that proxy is down; the other never hears of it. The old owner
    // stays fenced (not deleted) so both must tell the two claimants apart.
    let s = slot.to_string();
    let _: () = query(&mut b.conn(), &["pkcluster", "addslots", &s]);
    b.follow(&a, &s, false);
    wait_in_sync(&a, &b, &s, Duration::from_secs(30));
    let _: () = query(&mut a.conn(), &["pkcluster", "fence", &s]);
    wait_in_sync(&a, &b, &s, Duration::from_secs(30));
    let _: () = query(&mut b.conn(), &["pkcluster", "slotsslaveof", "no", "one", &s]);
    restarted.spawn();
    restarted.wait_routed();
    assert_eq!(query::<String>(&mut restarted.conn(), &["GET", &key]), "before");
    let _: () = query(&mut restarted.conn(), &["SET", &key, "via-restarted"]);
    assert_eq!(query::<String>(&mut b.conn(), &["GET", &key]), "via-restarted");
    // The stale proxy still routes the slot to A: A answers TRYAGAIN (fenced), the proxy
    // rebuilds its table and retries on B.
    let _: () = query(&mut stale.conn(), &["SET", &key, "via-stale"]);
    assert_eq!(query::<String>(&mut b.conn(), &["GET", &key]), "via-stale");
    // After A deletes the slot, "Partition not found" works the same way.
    let _: () = query(&mut a.conn(), &["pkcluster", "delslots", &s]);
    let _: () = query(&mut stale.conn(), &["SET", &key, "after-delete"]);
    assert_eq!(query::<String>(&mut b.conn(), &["GET", &key]), "after-delete");
}

#[test]
fn holds_time_out_cleanly_and_leave_other_slots_alone() {
    let a = node("0-1023", &[]);
    let proxy = Proxy::start(&[&a], &["--hold-timeout-ms", "300"]);
    proxy.wait_routed();
    let mut c = proxy.conn();
    let held = format!("{{{}}}:k", tag_for(5));
    let free = format!("{{{}}}:k", tag_for(6));
    let _: () = query(&mut c, &["pxhold", "0", "5"]);
    let started = Instant::now();
    let text = err(&mut c, &["SET", &held, "x"]);
    assert!(text.starts_with("TRYAGAIN slot 5 is held"), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
    let _: () = query(&mut c, &["SET", &free, "y"]);
    let _: () = query(&mut c, &["pxrelease", "0", "5"]);
    let _: () = query(&mut c, &["SET", &held, "x"]);
    assert_eq!(q(&mut a.conn(), &["GET", &held]), Ok(redis::Value::BulkString(b"x".to_vec())));
    // A request parked on a hold is answered as soon as the slot is released.
    let _: () = query(&mut c, &["pxhold", "0", "5"]);
    let port = proxy.port;
    let held2 = held.clone();
    let waiter = thread::spawn(move || {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap().get_connection().unwrap();
        redis::cmd("SET").arg(&held2).arg("parked").query::<()>(&mut c)
    });
    thread::sleep(Duration::from_millis(100));
    let _: () = query(&mut c, &["pxrelease", "0", "all"]);
    waiter.join().unwrap().expect("the parked write succeeds after the release");
    assert_eq!(query::<String>(&mut a.conn(), &["GET", &held]), "parked");
}

/// SIGTERM (a rolling update): no new connection is accepted, a request in flight (here parked
/// on a held slot) is still answered, then its connection closes and the process exits.
#[test]
fn a_stopping_proxy_answers_what_it_was_sent_then_closes() {
    let a = node("0-1023", &[]);
    // The hold ends by itself (as one an operator never released): nothing can connect to a
    // stopping proxy to release it.
    let conf = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(conf.path(), "hold-expire-ms : 1500\nhold-timeout-ms : 5000\n").unwrap();
    let mut proxy = Proxy::start(&[&a], &["-c", conf.path().to_str().unwrap()]);
    proxy.wait_routed();
    let mut admin = proxy.conn();
    let mut idle = proxy.conn();
    let _: () = query(&mut idle, &["PING"]);
    let held = format!("{{{}}}:k", tag_for(5));
    let _: () = query(&mut admin, &["pxhold", "0", "5"]);
    let port = proxy.port;
    let key = held.clone();
    let in_flight = thread::spawn(move || {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap().get_connection().unwrap();
        let reply = redis::cmd("SET").arg(&key).arg("in-flight").query::<()>(&mut c);
        // The next request on the same connection finds it closed: the client reconnects.
        (reply, redis::cmd("PING").query::<String>(&mut c).is_err())
    });
    thread::sleep(Duration::from_millis(200));
    let child = proxy.child.as_ref().unwrap();
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    wait_until(Duration::from_secs(5), "the listener to close", || !listening(port));
    assert!(redis::cmd("PING").query::<String>(&mut idle).is_err(), "an idle connection closes");
    let (reply, closed) = in_flight.join().unwrap();
    reply.expect("the request in flight is answered");
    assert!(closed, "its connection closes once it is answered");
    assert_eq!(query::<String>(&mut a.conn(), &["GET", &held]), "in-flight");
    let mut child = proxy.child.take().unwrap();
    wait_until(Duration::from_secs(5), "the proxy to exit", || matches!(child.try_wait(), Ok(Some(_))));
}

/// A node that cannot be connected to (killed) got nothing: requests for its slots wait, as
/// for a cutover, until it answers again or its slots are routed to another node (a failover),
/// and only a hold that outlasts `hold-timeout-ms` fails, with a clear error. Other slots are
/// served meanwhile.
#[test]
fn requests_for_a_killed_node_wait_for_its_return_or_its_successor() {
    let a = node("0-511", &[]);
    let mut b = node("512-1023", &[]);
    let proxy = Proxy::start(&[&a, &b], &["--hold-timeout-ms", "3000"]);
    proxy.wait_routed();
    let mut c = proxy.conn();
    let on_b = (0..).map(|i| format!("k{i}")).find(|k| slot_of(k) >= 512).unwrap();
    let on_a = (0..).map(|i| format!("k{i}")).find(|k| slot_of(k) < 512).unwrap();
    let _: () = query(&mut c, &["SET", &on_b, "1"]);
    let in_background = |args: Vec<String>| {
        let port = proxy.port;
        thread::spawn(move || {
            let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap().get_connection().unwrap();
            let started = Instant::now();
            (redis::cmd(&args[0]).arg(&args[1..]).query::<Option<String>>(&mut c), started.elapsed())
        })
    };

    // Back on its own: the request waits for it.
    b.kill9();
    thread::sleep(Duration::from_millis(200));
    let waiting = in_background(vec!["GET".into(), on_b.clone()]);
    thread::sleep(Duration::from_millis(500));
    let _: () = query(&mut c, &["SET", &on_a, "still served"]);
    assert!(!waiting.is_finished(), "answered while its node was down");
    b.spawn();
    let (reply, waited) = waiting.join().unwrap();
    assert_eq!(reply.expect("held, then served"), Some("1".into()));
    assert!(waited >= Duration::from_millis(500), "{waited:?}");

    // Replaced: the slots are routed to another node, which takes the held write.
    let successor = node("512-1023", &[]);
    b.kill9();
    thread::sleep(Duration::from_millis(200));
    let waiting = in_background(vec!["SET".into(), on_b.clone(), "2".into()]);
    thread::sleep(Duration::from_millis(500));
    assert!(!waiting.is_finished(), "answered while its node was down");
    let route = ["pxroute", "set", "1", "0", "1024", "ga", &a.addr(), "0-511", "gb", &successor.addr(), "512-1023"];
    let _: () = query(&mut c, &route);
    let (reply, _) = waiting.join().unwrap();
    reply.expect("held, then sent to the successor");
    assert_eq!(query::<String>(&mut successor.conn(), &["GET", &on_b]), "2");

    // Neither: the hold times out with a clear error.
    drop(successor);
    thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let text = err(&mut c, &["GET", &on_b]);
    assert!(text.starts_with("TRYAGAIN slot") && text.contains("timed out"), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(2500), "{:?}", started.elapsed());
}

/// Every admin command of the proxy, with arguments admin could send. FLUSHDB and FLUSHALL
/// are admin on the nodes too; the proxy sends them with its admin credential.
const PROXY_ADMIN_COMMANDS: &[&[&str]] = &[
    &["PXROUTE", "GET"],
    &["PXROUTE", "SET", "99", "0", "1024", "g", "127.0.0.1:1", "0-1023"],
    &["PXHOLD", "0", "0-1023"],
    &["PXRELEASE", "0", "all"],
    &["PXREFRESH"],
    &["PXPASSWORD", "mine"],
    &["SHUTDOWN"],
    &["FLUSHDB"],
    &["FLUSHALL"],
];

#[test]
fn passwords_and_admin_commands_are_checked() {
    let a = node("", &[("requirepass", "adm"), ("userpass", "secret")]);
    let mut admin =
        redis::Client::open(format!("redis://admin:adm@127.0.0.1:{}/", a.port)).unwrap().get_connection().unwrap();
    let _: () = query(&mut admin, &["pkcluster", "addslots", "0-1023"]);
    let proxy = Proxy::start_with_env(&[&a], &[], &[("PIKA_PASSWORD", "secret"), ("PIKA_ADMIN_PASSWORD", "adm")]);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", proxy.child.as_ref().unwrap().id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("secret"), "a password on the command line");
    let mut c = proxy.conn();
    assert_eq!(err(&mut c, &["GET", "k"]), "ERR NOAUTH Authentication required.");
    assert_eq!(err(&mut c, &["pxroute", "get"]), "ERR NOAUTH Authentication required.");
    assert_eq!(err(&mut c, &["AUTH", "wrong"]), "ERR invalid password");
    let _: () = query(&mut c, &["AUTH", "admin", "adm"]);
    proxy.wait_routed_authed(&mut c);
    let mut user = proxy.conn();
    let _: () = query(&mut user, &["AUTH", "secret"]);
    let _: () = query(&mut user, &["SET", "k", "v"]);
    assert_eq!(query::<String>(&mut admin, &["GET", "k"]), "v", "the proxy authenticates to the node");

    // The data user runs no admin command, on the proxy or (through it) on the nodes.
    for args in PROXY_ADMIN_COMMANDS {
        let refused = err(&mut user, args);
        assert!(refused.starts_with("NOPERM"), "{args:?}: {refused}");
        assert!(err(&mut proxy.conn(), args).contains("NOAUTH"), "{args:?} before AUTH");
    }
    assert_eq!(query::<String>(&mut user, &["GET", "k"]), "v", "nothing was flushed");
    assert_eq!(query::<String>(&mut user, &["PING"]), "PONG", "nothing was shut down");
    let routes: String = query(&mut c, &["pxroute", "get"]);
    assert!(!routes.contains("epoch 99") && routes.contains(&a.addr()), "the user's PXROUTE SET took:\n{routes}");

    // A rotation of the data password: the node, then the proxy, accept the old and the new
    // password; the proxy reaches the node with the new one (a backend connection opened after
    // the change); once the old one is retired only the new one is accepted. No connection is
    // dropped.
    let _: () = query(&mut admin, &["CONFIG", "SET", "userpass-previous", "secret"]);
    let _: () = query(&mut admin, &["CONFIG", "SET", "userpass", "rotated"]);
    let _: () = query(&mut c, &["PXPASSWORD", "rotated", "secret"]);
    for pw in ["secret", "rotated"] {
        let mut fresh = proxy.conn();
        let _: () = query(&mut fresh, &["AUTH", pw]);
        let _: () = query(&mut fresh, &["SET", "k", pw]);
    }
    // The proxy's connections to the node go: the ones it opens next authenticate anew.
    let me: i64 = query(&mut admin, &["CLIENT", "ID"]);
    let list: String = query(&mut admin, &["CLIENT", "LIST"]);
    let ids = list.lines().filter_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("id="))?.parse().ok());
    for id in ids.filter(|id: &i64| *id != me) {
        let _: i64 = query(&mut admin, &["CLIENT", "KILL", "ID", &id.to_string()]);
    }
    thread::sleep(Duration::from_millis(200));
    let _: () = query(&mut admin, &["CONFIG", "SET", "userpass-previous", ""]);
    let _: () = query(&mut c, &["PXPASSWORD", "rotated"]);
    assert_eq!(err(&mut proxy.conn(), &["AUTH", "secret"]), "ERR invalid password");
    let mut fresh = proxy.conn();
    let _: () = query(&mut fresh, &["AUTH", "rotated"]);
    let _: () = query(&mut fresh, &["SET", "k", "after"]);
    let _: () = query(&mut user, &["SET", "k", "still-authenticated"]);
    assert_eq!(query::<String>(&mut admin, &["GET", "k"]), "still-authenticated");
    // Admin flushes through the proxy: the nodes take it from the proxy's admin credential.
    let _: () = query(&mut c, &["FLUSHALL"]);
    assert_eq!(query::<Option<String>>(&mut admin, &["GET", "k"]), None);
    assert!(err(&mut c, &["PXPASSWORD"]).contains("usage"));
    fn route(epoch: &str) -> Vec<&str> {
        vec!["pxroute", "set", epoch, "0", "1024", "g", "127.0.0.1:1", "0-1023"]
    }
    let _: () = query(&mut c, &route("5"));
    expect_errors(
        &mut c,
        &[
            (&route("4"), "stale route epoch 4 (current 5)"),
            (&["pxroute", "set", "6", "0", "1024", "g", "127.0.0.1:1", "0-2000"], "beyond the slot count"),
            (&["pxroute", "set", "6", "0"], "expected <epoch>"),
            (&["pxhold", "0", "x-y"], "syntax"),
            (&["pxhold", "0"], "wrong number of arguments"),
        ],
    );
}

impl Proxy {
    fn wait_routed_authed(&self, c: &mut redis::Connection) {
        wait_until(Duration::from_secs(20), "the proxy's routing table", || {
            query::<String>(c, &["pxroute", "get"]).contains("group")
        });
    }
}

#[test]
fn metrics_health_and_a_config_file() {
    let a = node("0-1023", &[]);
    let dir = tempfile::tempdir().unwrap();
    let (port, http) = (free_port(), free_port());
    let conf = dir.path().join("proxy.conf");
    std::fs::write(
        &conf,
        format!("# pika-proxy\nlisten : 127.0.0.1:{port}\nseed-nodes : {}\nhttp-listen : 127.0.0.1:{http}\n", a.addr()),
    )
    .unwrap();
    let mut child = Command::new(PROXY_BIN).arg("-c").arg(&conf).stderr(Stdio::null()).spawn().unwrap();
    wait_until(Duration::from_secs(20), "the proxy from its config file", || listening(port));
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap().get_connection().unwrap();
    wait_until(Duration::from_secs(20), "routes", || query::<String>(&mut c, &["pxroute", "get"]).contains("group"));
    let _: () = query(&mut c, &["SET", "k", "v"]);
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    assert!(get("/health").starts_with("HTTP/1.1 200 OK"));
    let metrics = get("/metrics");
    for name in ["pika_proxy_requests_total", "pika_proxy_request_duration_seconds", "pika_proxy_held_requests"] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    assert!(get("/nope").starts_with("HTTP/1.1 404"));
    // A bad config file is refused with the reason.
    std::fs::write(&conf, "pool-size : many\n").unwrap();
    let out = Command::new(PROXY_BIN).arg("-c").arg(&conf).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value \"many\" for `pool-size`"));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn blocking_pops_do_not_stall_other_clients_and_bad_key_counts_are_errors() {
    let a = node("0-1023", &[]);
    let proxy = Proxy::start(&[&a], &["--pool-size", "1"]);
    proxy.wait_routed();
    // With one pooled connection per node, a BLPOP sharing it would block the LPUSH that wakes it.
    let port = proxy.port;
    let waiter = thread::spawn(move || {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap().get_connection().unwrap();
        redis::cmd("BLPOP").arg("queue").arg(5).query::<(String, String)>(&mut c)
    });
    thread::sleep(Duration::from_millis(200));
    let mut c = proxy.conn();
    let started = Instant::now();
    let _: i64 = query(&mut c, &["LPUSH", "queue", "job"]);
    assert!(started.elapsed() < Duration::from_secs(1), "LPUSH waited {:?}", started.elapsed());
    assert_eq!(waiter.join().unwrap().unwrap(), ("queue".to_string(), "job".to_string()));
    // A key count that overflows is an error, and the connection stays usable.
    assert!(err(&mut c, &["ZUNION", "18446744073709551615", "a"]).contains("wrong number of arguments"));
    assert_eq!(query::<String>(&mut c, &["PING"]), "PONG");
}

/// What client libraries send when they connect, answered alike by a node and by the proxy:
/// redis-py 8 with its defaults (HELLO 3 -> NOPROTO -> RESP2, CLIENT SETINFO, SETNAME), and the
/// `redis` crate with the handshake commands sent one by one.
#[test]
fn client_libraries_connect_with_their_defaults() {
    let passwords = [("requirepass", "adm"), ("userpass", "secret")];
    let a = node("", &passwords);
    let b = node("", &passwords);
    for (n, slots) in [(&a, "0-511"), (&b, "512-1023")] {
        let mut c = redis::Client::open(format!("redis://admin:adm@{}/", n.addr())).unwrap().get_connection().unwrap();
        let _: () = query(&mut c, &["pkcluster", "addslots", slots]);
    }
    let proxy = Proxy::start_with_env(&[&a, &b], &[], &[("PIKA_PASSWORD", "secret"), ("PIKA_ADMIN_PASSWORD", "adm")]);
    let mut c =
        redis::Client::open(format!("redis://admin:adm@127.0.0.1:{}/", proxy.port)).unwrap().get_connection().unwrap();
    proxy.wait_routed_authed(&mut c);
    // Straight to a node: one that owns every slot, as a lone node would.
    let solo = node("", &passwords);
    let mut s = redis::Client::open(format!("redis://admin:adm@{}/", solo.addr())).unwrap().get_connection().unwrap();
    let _: () = query(&mut s, &["pkcluster", "addslots", "0-1023"]);

    for (what, port) in [("proxy", proxy.port), ("node", solo.port)] {
        let mut c =
            redis::Client::open(format!("redis://:secret@127.0.0.1:{port}/")).unwrap().get_connection().unwrap();
        // The handshake, one command at a time, with the replies a library checks.
        assert!(err(&mut c, &["HELLO", "3"]).starts_with("NOPROTO"), "{what}: HELLO 3");
        assert!(err(&mut c, &["HELLO", "3", "AUTH", "default", "secret"]).starts_with("NOPROTO"), "{what}");
        let hello: Vec<redis::Value> = query(&mut c, &["HELLO", "2", "AUTH", "default", "secret", "SETNAME", "lib"]);
        let fields: Vec<String> =
            hello.iter().step_by(2).map(|v| redis::from_redis_value::<String>(v.clone()).unwrap()).collect();
        assert_eq!(fields, ["server", "version", "proto", "id", "mode", "role", "modules"], "{what}");
        assert_eq!(hello[5], redis::Value::Int(2), "{what}: proto");
        assert_eq!(query::<String>(&mut c, &["CLIENT", "GETNAME"]), "lib", "{what}: HELLO SETNAME");
        let _: () = query(&mut c, &["CLIENT", "SETINFO", "LIB-NAME", "redis-rs"]);
        let _: () = query(&mut c, &["CLIENT", "SETINFO", "LIB-VER", "1.0.0"]);
        let _: () = query(&mut c, &["CLIENT", "SETNAME", "worker-1"]);
        assert_eq!(query::<String>(&mut c, &["CLIENT", "GETNAME"]), "worker-1", "{what}");
        let id = int(&mut c, &["CLIENT", "ID"]);
        assert!(query::<String>(&mut c, &["CLIENT", "INFO"]).starts_with(&format!("id={id} ")), "{what}");
        let _: () = query(&mut c, &["SELECT", "0"]);
        assert!(err(&mut c, &["CLIENT", "SETNAME", "has space"]).contains("cannot contain spaces"), "{what}");
        assert!(err(&mut c, &["CLIENT", "NOSUCH"]).contains("Unknown subcommand"), "{what}");
        assert_eq!(err(&mut c, &["AUTH", "alice", "secret"]).split(' ').next(), Some("WRONGPASS"), "{what}");
        assert_eq!(q(&mut c, &["SET", "rs:x", "1"]), Ok(redis::Value::Okay), "{what}: SET");
        // HELLO before AUTH on a new connection is refused, as Redis refuses it.
        let mut fresh = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap().get_connection().unwrap();
        assert_eq!(err(&mut fresh, &["HELLO", "2"]), "ERR NOAUTH Authentication required.", "{what}");

        if !python_has_redis_py() {
            eprintln!("skipped: redis-py through the {what}: needs python3 with redis-py 8 (scripts/install-deps.sh)");
            continue;
        }
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/redis_py_defaults.py");
        let out = Command::new("python3").arg(script).arg(port.to_string()).arg("secret").output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "redis-py with its defaults through the {what}:\n{text}");
        assert!(text.contains("ok protocol=2"), "{what}: {text}");
    }
    // What redis-py wrote through the proxy is on the nodes.
    let mut on_a = redis::Client::open(format!("redis://:secret@{}/", a.addr())).unwrap().get_connection().unwrap();
    let mut on_b = redis::Client::open(format!("redis://:secret@{}/", b.addr())).unwrap().get_connection().unwrap();
    if python_has_redis_py() {
        let holder = if slot_of("py:x") <= 511 { &mut on_a } else { &mut on_b };
        assert_eq!(query::<String>(holder, &["GET", "py:x"]), "1");
    }
}

fn python_has_redis_py() -> bool {
    Command::new("python3")
        .args(["-c", "import redis, sys; sys.exit(int(redis.__version__.split('.')[0]) < 8)"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// docs/proxy.md, "Limits": a request past the query limit is refused from its header and the
/// connection closed; a client that pipelines without reading makes the proxy hold at most
/// one round of replies (128), not one per request sent.
#[test]
fn one_client_cannot_make_the_proxy_hold_much() {
    const MB: u64 = 1 << 20;
    let a = node("0-1023", &[]);
    let proxy = Proxy::start(&[&a], &[]);
    proxy.wait_routed();
    let pid = proxy.child.as_ref().unwrap().id();
    let before = rss_bytes(pid);
    let (reply, peak) = send_oversized(proxy.port, pid, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2147483648\r\n", 256 << 20);
    assert_eq!(reply, "-ERR Protocol error: invalid bulk length\r\n");
    assert!(peak < before + 32 * MB, "a 2 GB bulk: {} MB resident, {} MB before", peak / MB, before / MB);

    let mut c = proxy.conn();
    let _: () = query(&mut c, &["SET", "big", &"x".repeat(1 << 20)]);
    let before = rss_bytes(pid);
    let (written, peak, stalled) = pipeline_without_reading(proxy.port, pid, "big", 1_000_000, Duration::from_secs(5));
    assert!(written < 1_000_000, "every GET taken without its reply being read");
    assert!(peak < before + 200 * MB, "{written} GETs unread: {} MB resident, {} MB before", peak / MB, before / MB);
    let node_rss = rss_bytes(a.pid());
    assert!(node_rss < 256 * MB, "the node behind it: {} MB", node_rss / MB);
    let started = Instant::now();
    assert_eq!(query::<Option<String>>(&mut proxy.conn(), &["GET", "k"]), None, "others are served meanwhile");
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(stalled);
    assert_eq!(query::<i64>(&mut c, &["STRLEN", "big"]), 1 << 20);
}

/// docs/proxy.md, "Limits": ten thousand connections, past `maxclients` refused with the
/// node's error, the proxy's memory small; an idle connection closed after `timeout`.
#[test]
fn ten_thousand_connections_maxclients_and_idle_timeout() {
    use std::io::Read;
    const MB: u64 = 1 << 20;
    let a = node("0-1023", &[]);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("proxy.conf");
    std::fs::write(&conf, "maxclients : 8000\n").unwrap();
    let proxy = Proxy::start(&[&a], &["-c", conf.to_str().unwrap()]);
    proxy.wait_routed();
    let pid = proxy.child.as_ref().unwrap().id();
    let before = rss_bytes(pid);
    let port = proxy.port;
    let openers: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                (0..2_500).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()).collect::<Vec<_>>()
            })
        })
        .collect();
    let open: Vec<std::net::TcpStream> = openers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert_eq!(open.len(), 10_000);
    // Those past 8000 get the error and are closed.
    for s in &open {
        s.set_nonblocking(true).unwrap();
    }
    let mut refused = vec![false; open.len()];
    let deadline = Instant::now() + Duration::from_secs(20);
    while refused.iter().filter(|r| **r).count() < 2_000 && Instant::now() < deadline {
        for (s, seen) in open.iter().zip(refused.iter_mut()).filter(|(_, seen)| !**seen) {
            let mut buf = [0u8; 64];
            if let Ok(n) = (&*s).read(&mut buf) {
                assert_eq!(&buf[..n], b"-ERR max number of clients reached\r\n");
                *seen = true;
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(refused.iter().filter(|r| **r).count(), 2_000, "connections refused past maxclients");
    let peak = rss_bytes(pid);
    assert!(peak < before + 100 * MB, "10k connections: {} MB resident, {} MB before", peak / MB, before / MB);
    drop(open);
    wait_until(Duration::from_secs(10), "the proxy to serve again", || {
        redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .is_ok_and(|mut c| q(&mut c, &["SET", "k", "v"]).is_ok())
    });

    // `timeout`: an idle connection is closed.
    std::fs::write(&conf, "timeout : 1\n").unwrap();
    let idle_proxy = Proxy::start(&[&a], &["-c", conf.to_str().unwrap()]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", idle_proxy.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    assert_eq!(s.read(&mut [0u8; 16]).unwrap(), 0, "an idle connection closed");
    assert!(started.elapsed() >= Duration::from_millis(900) && started.elapsed() < Duration::from_secs(3));
}

/// Fuzzing the proxy over TCP (node/tests/fuzzer): every command a node knows and the proxy's
/// own, with random arities and arguments, malformed, truncated and oversized requests, as the
/// data user and as admin, across two groups. The proxy answers or closes every connection,
/// keeps serving, lets go of every connection, stays under a memory bound and logs no panic;
/// the nodes behind it too. `TCP_FUZZ_SECONDS` (default 30) bounds it, `TCP_FUZZ_SEED`
/// replays one run.
#[test]
fn random_requests_over_tcp_leave_the_proxy_serving() {
    const ADMIN: &str = "fuzz-admin-pw";
    let passwords = [("requirepass", ADMIN), ("userpass", "fuzz-user-pw")];
    let (a, b) = (node("", &passwords), node("", &passwords));
    let admin_conn = |port: u16| {
        redis::Client::open(format!("redis://admin:{ADMIN}@127.0.0.1:{port}/")).unwrap().get_connection().unwrap()
    };
    let _: () = query(&mut admin_conn(a.port), &["pkcluster", "addslots", "0-511"]);
    let _: () = query(&mut admin_conn(b.port), &["pkcluster", "addslots", "512-1023"]);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("proxy.conf");
    // Short holds: a session's PXHOLD must not stall the ones after it for long.
    std::fs::write(&conf, "client-query-buffer-limit : 16mb\nhold-timeout-ms : 200\nhold-expire-ms : 1000\n").unwrap();
    let env = [("PIKA_PASSWORD", "fuzz-user-pw"), ("PIKA_ADMIN_PASSWORD", ADMIN)];
    let proxy = Proxy::start_with_env(&[&a, &b], &["-c", conf.to_str().unwrap()], &env);
    proxy.wait_routed_authed(&mut admin_conn(proxy.port));
    let mut names = fuzzer::command_table(&mut admin_conn(a.port));
    names.extend([("pxroute", -2), ("pxhold", 3), ("pxrelease", 3), ("pxrefresh", 1)].map(|(n, a)| (n.to_string(), a)));
    let target = fuzzer::Target {
        port: proxy.port,
        admin_password: Some(ADMIN.into()),
        user_password: Some("fuzz-user-pw".into()),
        names,
    };
    let seed = fuzzer::seed();
    let pid = proxy.child.as_ref().unwrap().id();
    let before = rss_bytes(pid);
    let mut peak = before;
    let alive = || -> Result<(), String> {
        peak = peak.max(rss_bytes(pid));
        let url = format!("redis://127.0.0.1:{}/", proxy.port);
        let mut c = fuzzer::control(&url, ADMIN).map_err(|e| format!("the proxy: {e}"))?;
        // Holds a session placed are released, so later sessions still reach the nodes.
        let _ = redis::cmd("pxrelease").arg("0").arg("all").query::<redis::Value>(&mut c);
        Ok(())
    };
    let seconds = std::env::var("TCP_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let stats = fuzzer::run(&target, seed, Duration::from_secs(seconds), alive).unwrap_or_else(|e| panic!("{e}"));
    println!("{}", stats.summary(seed, "proxy", before, peak));
    assert!(stats.sessions > 100, "{stats:?}");
    wait_until(Duration::from_secs(20), "the proxy to count only the checking connection", || {
        query::<String>(&mut admin_conn(proxy.port), &["INFO"]).contains("connected_clients:1\r")
    });
    assert!(peak < before + (1 << 30), "proxy resident {} MB at most, {} MB before", peak >> 20, before >> 20);
    let log = std::fs::read_to_string(&proxy.log).unwrap();
    assert!(!log.contains("panicked"), "the proxy logged a panic:\n{log}");
    for n in [&a, &b] {
        let log = n.log();
        assert!(!log.contains("panicked"), "a node logged a panic:\n{log}");
    }
    let mut c = admin_conn(proxy.port);
    let _: () = query(&mut c, &["SET", "after", "fuzzing"]);
    assert_eq!(query::<String>(&mut c, &["GET", "after"]), "fuzzing");
}

/// docs/proxy.md, "TLS": a TLS port beside the plain one, for the `redis` crate and
/// `redis-cli --tls`, with client certificates when asked for; the certificate reloaded when
/// its files change.
#[test]
fn a_tls_port_beside_the_plain_one_with_client_certificates() {
    use support::certs::{cli_tls, tls_client, Ca};
    let a = node("0-1023", &[]);
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("proxy test CA");
    let secret = ca.write_secret(&dir.path().join("proxy-tls"), "proxy");
    let app = ca.write_secret(&dir.path().join("app-tls"), "app");
    let tls_port = free_port();
    let conf = dir.path().join("proxy.conf");
    let file = |f: &str| secret.join(f).display().to_string();
    std::fs::write(
        &conf,
        format!(
            "tls-listen : 127.0.0.1:{tls_port}\ntls-cert-file : {}\ntls-key-file : {}\ntls-ca-cert-file : {}\ntls-auth-clients : optional\n",
            file("tls.crt"),
            file("tls.key"),
            file("ca.crt")
        ),
    )
    .unwrap();
    let proxy = Proxy::start(&[&a], &["-c", conf.to_str().unwrap()]);
    proxy.wait_routed();
    let mut tls = tls_client(tls_port, &secret, None).get_connection().unwrap();
    let _: () = query(&mut tls, &["SET", "through", "tls"]);
    assert_eq!(query::<String>(&mut proxy.conn(), &["GET", "through"]), "tls", "the plain port, the same data");
    let mut with_cert = tls_client(tls_port, &secret, Some(&app)).get_connection().unwrap();
    let values: Vec<String> = query(&mut with_cert, &["MGET", "through", "through"]);
    assert_eq!(values, ["tls", "tls"]);
    let stranger = Ca::new("a stranger's CA").write_secret(&dir.path().join("stranger"), "x");
    let refused = tls_client(tls_port, &secret, Some(&stranger))
        .get_connection()
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(refused.is_err(), "a client certificate from another CA: {refused:?}");
    if let Some((ok, out)) = cli_tls(tls_port, &secret, None, &["GET", "through"]) {
        assert!(ok && out == "tls", "{out}");
    }
    // Renewed by a new CA: new connections get it within seconds; open ones go on.
    Ca::new("renewed CA").write_secret(&secret, "proxy");
    wait_until(Duration::from_secs(15), "the proxy to serve the renewed certificate", || {
        tls_client(tls_port, &secret, None).get_connection().is_ok()
    });
    assert_eq!(query::<String>(&mut tls, &["GET", "through"]), "tls");

    // A TLS port without its files is refused at start, by name.
    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, format!("tls-listen : 127.0.0.1:{}\n", free_port())).unwrap();
    let out = Command::new(PROXY_BIN).args(["-c", bad.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls-cert-file"), "{}", String::from_utf8_lossy(&out.stderr));
}
