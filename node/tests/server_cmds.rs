//! Server and connection commands: INFO, CONFIG, CLIENT, COMMAND, FLUSHDB/FLUSHALL, SHUTDOWN,
//! the HTTP metrics and health endpoints, and many idle connections.
mod support;

use std::time::{Duration, Instant};

use redis::Commands;
use support::{q, Node};

#[test]
fn info_sections() {
    let node = Node::sharding_all(1024);
    let mut c = node.conn();
    let _: () = c.set("a", "1").unwrap();
    let _: () = redis::cmd("HSET").arg("h").arg("f").arg("v").query(&mut c).unwrap();
    let all: String = redis::cmd("INFO").query(&mut c).unwrap();
    for header in ["# Server", "# Clients", "# Stats", "# Replication(MASTER)", "# Keyspace", "# Data"] {
        assert!(all.contains(header), "missing {header}");
    }
    assert!(all.contains("instance_mode:sharding"));
    assert!(all.contains("role:master"));
    assert!(all.contains(&format!("tcp_port:{}", node.port)));
    // Codis reads used_memory and db_size from INFO.
    for field in ["used_memory:", "db_size:", "connected_clients:", "total_commands_processed:"] {
        assert!(all.contains(field), "missing {field}");
    }
    let ks: String = redis::cmd("INFO").arg("keyspace").arg("1").query(&mut c).unwrap();
    assert!(ks.contains("db0 Strings_keys=1, expires=0, invalid_keys=0"), "{ks}");
    assert!(ks.contains("db0 Hashes_keys=1,"), "{ks}");
    let only: String = redis::cmd("INFO").arg("server").query(&mut c).unwrap();
    assert!(only.contains("# Server") && !only.contains("# Stats"));
}

#[test]
fn config_get_set() {
    let node = Node::start(&[("instance-mode", "sharding"), ("default-slot-num", "128")]);
    let mut c = node.conn();
    let got: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("instance-mode").query(&mut c).unwrap();
    assert_eq!(got, vec!["instance-mode", "sharding"]);
    let got: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("default-slot-num").query(&mut c).unwrap();
    assert_eq!(got, vec!["default-slot-num", "128"]);
    // Codis needs `maxmemory` as an integer.
    let got: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("maxmemory").query(&mut c).unwrap();
    assert_eq!(got.len(), 2);
    assert!(got[1].parse::<u64>().is_ok());
    let _: () = redis::cmd("CONFIG").arg("SET").arg("timeout").arg("30").query(&mut c).unwrap();
    let got: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("timeout").query(&mut c).unwrap();
    assert_eq!(got, vec!["timeout", "30"]);
    assert!(q(&mut c, &["CONFIG", "SET", "port", "1"]).unwrap_err().contains("cannot be changed at runtime"));
    assert!(q(&mut c, &["CONFIG", "SET", "timeout", "x"]).unwrap_err().contains("not an integer"));
    let classic = Node::classic();
    let mut cc = classic.conn();
    let got: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("default-slot-num").query(&mut cc).unwrap();
    assert!(got.is_empty(), "default-slot-num only in sharding mode");
    // Passwords set at runtime apply to new connections (the admin password with the user's
    // in one CONFIG SET: a user password alone is refused).
    assert!(q(&mut cc, &["CONFIG", "SET", "userpass", "pw"]).unwrap_err().contains("requirepass"));
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("adm").arg("userpass").arg("pw").query(&mut cc).unwrap();
    let mut fresh = classic.conn();
    assert!(q(&mut fresh, &["GET", "x"]).unwrap_err().contains("NOAUTH"));
    // A rotation of the user password: the new one and the previous one are both accepted,
    // until the previous one is retired; connections authenticated before stay so.
    let _: () = redis::cmd("AUTH").arg("adm").query(&mut fresh).unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("userpass-previous").arg("pw").query(&mut fresh).unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("userpass").arg("pw2").query(&mut fresh).unwrap();
    for pw in ["pw", "pw2"] {
        let _: () = redis::cmd("AUTH").arg(pw).query(&mut classic.conn()).unwrap();
    }
    let _: () = redis::cmd("CONFIG").arg("SET").arg("userpass-previous").arg("").query(&mut fresh).unwrap();
    assert!(q(&mut classic.conn(), &["AUTH", "pw"]).unwrap_err().contains("invalid password"));
    let _: () = redis::cmd("AUTH").arg("pw2").query(&mut classic.conn()).unwrap();
    assert_eq!(redis::cmd("PING").query::<String>(&mut fresh).unwrap(), "PONG");
}

#[test]
fn client_commands() {
    let node = Node::classic();
    let mut a = node.conn();
    let mut b = node.conn();
    let _: () = redis::cmd("CLIENT").arg("SETNAME").arg("worker-1").query(&mut a).unwrap();
    assert_eq!(redis::cmd("CLIENT").arg("GETNAME").query::<String>(&mut a).unwrap(), "worker-1");
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut b).unwrap();
    assert!(list.contains("name=worker-1"), "{list}");
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut a).unwrap();
    assert_eq!(redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query::<i64>(&mut b).unwrap(), 1);
    std::thread::sleep(Duration::from_millis(100));
    assert!(q(&mut a, &["PING"]).is_err(), "killed connection is closed");
    assert!(q(&mut b, &["CLIENT", "SETNAME", "has space"]).unwrap_err().contains("cannot contain spaces"));
    assert_eq!(redis::cmd("ECHO").arg("hi").query::<String>(&mut b).unwrap(), "hi");
    let t: Vec<String> = redis::cmd("TIME").query(&mut b).unwrap();
    assert!(t[0].parse::<u64>().unwrap() > 1_600_000_000);
    assert!(redis::cmd("COMMAND").arg("COUNT").query::<i64>(&mut b).unwrap() > 100);
    let info: Vec<redis::Value> = redis::cmd("COMMAND").arg("INFO").arg("get").query(&mut b).unwrap();
    assert_eq!(info.len(), 1);
    assert!(q(&mut b, &["HELLO", "3"]).unwrap_err().contains("NOPROTO"));
}

#[test]
fn flushdb_and_flushall() {
    let node = Node::start(&[("instance-mode", "classic"), ("databases", "2")]);
    let mut c = node.conn();
    let _: () = c.set("s", "1").unwrap();
    let _: () = redis::cmd("HSET").arg("h").arg("f").arg("v").query(&mut c).unwrap();
    let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
    let _: () = c.set("other", "1").unwrap();
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
    let _: () = redis::cmd("FLUSHDB").arg("hash").query(&mut c).unwrap();
    assert_eq!(c.exists::<_, i64>("h").unwrap(), 0);
    assert_eq!(c.exists::<_, i64>("s").unwrap(), 1);
    assert!(q(&mut c, &["FLUSHDB", "bogus"]).unwrap_err().contains("invalid DB for ''"));
    let _: () = redis::cmd("FLUSHDB").query(&mut c).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 0);
    let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 1, "FLUSHDB is per table");
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 0);
}

#[test]
fn metrics_and_health_over_http() {
    let node = Node::classic();
    let mut c = node.conn();
    let _: () = c.set("k", "v").unwrap();
    let (status, body) = node.http_get("/health");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body.trim(), "ok");
    let (status, body) = node.http_get("/metrics");
    assert!(status.contains("200"));
    assert!(body.contains("pika_node_commands_total{command=\"set\"} 1"), "{body}");
    assert!(body.contains("pika_node_connected_clients"));
    assert!(body.contains("pika_node_command_duration_seconds_bucket"));
    let (status, _) = node.http_get("/nope");
    assert!(status.contains("404"));
}

#[test]
fn shutdown_command_and_sigterm_exit_cleanly() {
    let mut node = Node::classic();
    let mut c = node.conn();
    let _ = q(&mut c, &["SHUTDOWN"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.is_running() {
        assert!(Instant::now() < deadline, "SHUTDOWN did not stop the node");
        std::thread::sleep(Duration::from_millis(20));
    }
    node.spawn();
    assert!(node.stop().success());
}

#[test]
fn ten_thousand_idle_connections() {
    let node = Node::classic();
    let port = node.port;
    let before = support::rss_bytes(node.pid());
    let openers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                (0..2_500).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()).collect::<Vec<_>>()
            })
        })
        .collect();
    let idle: Vec<std::net::TcpStream> = openers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert_eq!(idle.len(), 10_000);
    let mut c = node.conn();
    // The node accepted them all and still answers promptly.
    let started = Instant::now();
    for i in 0..2000 {
        let _: () = c.set(format!("k{i}"), i).unwrap();
    }
    let elapsed = started.elapsed();
    let clients: String = redis::cmd("INFO").arg("clients").query(&mut c).unwrap();
    let connected: usize =
        clients.lines().find_map(|l| l.strip_prefix("connected_clients:")).and_then(|v| v.trim().parse().ok()).unwrap();
    assert!(connected >= 10_001, "{connected}");
    assert!(elapsed < Duration::from_secs(10), "2000 SETs took {elapsed:?} with 10k idle clients");
    // An idle connection holds no buffer: its task and its socket only.
    let grown = support::rss_bytes(node.pid()).saturating_sub(before);
    assert!(grown < 100 << 20, "10k idle connections: {} MB more resident", grown >> 20);
    drop(idle);
}
