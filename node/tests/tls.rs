//! TLS on the node (docs/node.md, "TLS"): a TLS port beside the plain one, used by the `redis`
//! crate and `redis-cli --tls`; client certificates when asked for; certificates reloaded when
//! their files change; replication over TLS; bad files refused at start with their name.
mod support;

use std::path::Path;
use std::time::Duration;

use support::certs::{cli_tls, tls_client, tls_conf, Ca};
use support::{free_port, query, wait_until, Node};

const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// A node with a TLS port and the files in `dir`, and that port (as the node reports it: a
/// start retried on other ports moves it).
fn tls_node(dir: &Path, extra: &[(&str, &str)]) -> (Node, u16) {
    let conf = tls_conf(dir, free_port());
    let mut all: Vec<(&str, &str)> = conf.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.extend_from_slice(extra);
    let node = Node::start(&all);
    let port: Vec<String> = query(&mut node.conn(), &["CONFIG", "GET", "tls-port"]);
    let port = port[1].parse().unwrap();
    (node, port)
}

#[test]
fn a_tls_port_beside_the_plain_one_serves_the_redis_crate_and_redis_cli() {
    let dir = tempfile::tempdir().unwrap();
    let secret = Ca::new("pika test CA").write_secret(&dir.path().join("node-tls"), "node");
    let (node, tls_port) = tls_node(&secret, &[]);
    let mut tls = tls_client(tls_port, &secret, None).get_connection().unwrap();
    let _: () = query(&mut tls, &["SET", "over", "tls"]);
    assert_eq!(query::<String>(&mut tls, &["GET", "over"]), "tls");
    // The plain port still serves, the same data: a cluster moves to TLS client by client.
    assert_eq!(query::<String>(&mut node.conn(), &["GET", "over"]), "tls");
    // A pipeline of large values crosses many TLS records both ways.
    let big = "x".repeat(300_000);
    let mut pipe = redis::pipe();
    for i in 0..20 {
        pipe.cmd("SET").arg(format!("big{i}")).arg(&big).ignore();
    }
    for i in 0..20 {
        pipe.cmd("STRLEN").arg(format!("big{i}"));
    }
    let lens: Vec<usize> = pipe.query(&mut tls).unwrap();
    assert_eq!(lens, vec![big.len(); 20]);
    // A client that speaks plain RESP to the TLS port gets nowhere, and the node goes on.
    let garbage = support::raw_exchange(tls_port, b"*1\r\n$4\r\nPING\r\n", Duration::from_millis(300));
    assert!(!String::from_utf8_lossy(&garbage).contains("PONG"), "{garbage:?}");
    let info = query::<Vec<String>>(&mut tls, &["CONFIG", "GET", "tls-port"]).join(" ");
    assert_eq!(info, format!("tls-port {tls_port}"));

    if let Some((ok, out)) = cli_tls(tls_port, &secret, None, &["SET", "cli", "tls"]) {
        assert!(ok && out == "OK", "{out}");
        let (_, out) = cli_tls(tls_port, &secret, None, &["GET", "over"]).unwrap();
        assert_eq!(out, "tls");
        // Trusting another CA, redis-cli refuses the node's certificate.
        let other = Ca::new("another CA").write_secret(&dir.path().join("other"), "x");
        let (ok, out) = cli_tls(tls_port, &other, None, &["PING"]).unwrap();
        assert!(!ok || !out.contains("PONG"), "{out}");
    }
}

#[test]
fn client_certificates_are_required_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("pika test CA");
    let secret = ca.write_secret(&dir.path().join("node-tls"), "node");
    let client = ca.write_secret(&dir.path().join("client-tls"), "app");
    let stranger = Ca::new("a stranger's CA").write_secret(&dir.path().join("stranger"), "app");
    let (_node, port) = tls_node(&secret, &[("tls-auth-clients", "yes")]);
    let mut with_cert = tls_client(port, &secret, Some(&client)).get_connection().unwrap();
    assert_eq!(query::<String>(&mut with_cert, &["PING"]), "PONG");
    let refused =
        tls_client(port, &secret, None).get_connection().and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(refused.is_err(), "no client certificate: {refused:?}");
    let refused = tls_client(port, &secret, Some(&stranger))
        .get_connection()
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(refused.is_err(), "a certificate from another CA: {refused:?}");
    if let Some((ok, out)) = cli_tls(port, &secret, Some(&client), &["PING"]) {
        assert!(ok && out == "PONG", "{out}");
    }

    // Optional: either way, but a certificate shown must chain to the CA.
    let (_node, port) = tls_node(&secret, &[("tls-auth-clients", "optional")]);
    assert_eq!(query::<String>(&mut tls_client(port, &secret, None).get_connection().unwrap(), &["PING"]), "PONG");
    assert_eq!(
        query::<String>(&mut tls_client(port, &secret, Some(&client)).get_connection().unwrap(), &["PING"]),
        "PONG"
    );
}

/// cert-manager renews a certificate by rewriting the Secret's files: new connections get the
/// new certificate within seconds, without a restart; open ones go on.
#[test]
fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let secret = Ca::new("first CA").write_secret(&dir.path().join("node-tls"), "node");
    let (node, port) = tls_node(&secret, &[]);
    let mut open = tls_client(port, &secret, None).get_connection().unwrap();
    let old_ca = dir.path().join("old-ca");
    std::fs::create_dir_all(&old_ca).unwrap();
    std::fs::copy(secret.join("ca.crt"), old_ca.join("ca.crt")).unwrap();

    // Rotated to a certificate of a new CA: a client trusting only the new CA gets in once the
    // node has reloaded.
    Ca::new("second CA").write_secret(&secret, "node");
    wait_until(Duration::from_secs(15), "the node to serve the renewed certificate", || {
        tls_client(port, &secret, None).get_connection().is_ok()
    });
    assert!(tls_client(port, &old_ca, None).get_connection().is_err(), "the old certificate is still served");
    assert_eq!(query::<String>(&mut open, &["PING"]), "PONG", "an open connection goes on");

    // A broken file (a key that does not match) keeps the last good certificate. (A check may
    // also have caught the rotation above half-done: count the warnings from here.)
    let warnings = || node.log().matches("cannot be loaded").count();
    let before = warnings();
    std::fs::write(secret.join("tls.key"), Ca::new("x").issue("y").1).unwrap();
    wait_until(Duration::from_secs(15), "the bad key to be seen and logged", || warnings() > before);
    assert!(tls_client(port, &secret, None).get_connection().is_ok(), "the last good certificate is kept");
}

#[test]
fn replicas_follow_their_master_over_tls() {
    const SHARDING: [(&str, &str); 2] = [("instance-mode", "sharding"), ("default-slot-num", "4")];
    /// A sharding node with TLS and slots 0-3, with `extra` options; its TLS port.
    fn sharded(secret: &Path, extra: &[(&str, &str)]) -> (Node, u16) {
        let (node, port) = tls_node(secret, &[&SHARDING[..], extra].concat());
        let _: () = query(&mut node.conn(), &["pkcluster", "addslots", "0-3"]);
        (node, port)
    }
    /// A node with `extra` options following the master at `tls_port`, for slots 0-3.
    fn replica_of(secret: &Path, tls_port: u16, extra: &[(&str, &str)]) -> Node {
        let (node, _) = sharded(secret, extra);
        let _: () = query(&mut node.conn(), &["pkcluster", "slotsslaveof", "127.0.0.1", &tls_port.to_string(), "0-3"]);
        node
    }
    let has = |node: &Node, key: &str, value: &str| {
        query::<Option<String>>(&mut node.conn(), &["GET", key]).as_deref() == Some(value)
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster CA");
    let (m, r) = (ca.write_secret(&dir.path().join("m"), "master"), ca.write_secret(&dir.path().join("r"), "replica"));
    let (master, master_tls) = sharded(&m, &[("tls-auth-clients", "yes")]);
    let mut c = master.conn();
    for i in 0..100 {
        let _: () = query(&mut c, &["SET", &format!("k{i}"), "v"]);
    }
    // The replica dials the master's TLS port (which asks for its certificate).
    let replica = replica_of(&r, master_tls, &[("tls-replication", "yes")]);
    wait_until(SYNC_TIMEOUT, "the replica to stream over TLS", || {
        query::<i64>(&mut replica.conn(), &["DBSIZE"]) == 100
    });
    let _: () = query(&mut c, &["SET", "after", "sync"]);
    wait_until(SYNC_TIMEOUT, "a later write to arrive", || has(&replica, "after", "sync"));

    // The master's certificate names neither the address the replica dials nor localhost: as in
    // Redis, only its chain to the CA is checked.
    let (master2, master2_tls) = sharded(&ca.write_secret_for(&dir.path().join("m2"), "master-2", false), &[]);
    let _: () = query(&mut master2.conn(), &["SET", "named", "elsewhere"]);
    let replica2 = replica_of(&r, master2_tls, &[("tls-replication", "yes")]);
    wait_until(SYNC_TIMEOUT, "a replica of a master whose certificate names another host", || {
        has(&replica2, "named", "elsewhere")
    });
    // A master whose certificate comes from another CA is refused, and the replica says why.
    let (master3, master3_tls) = sharded(&Ca::new("another CA").write_secret(&dir.path().join("m3"), "master-3"), &[]);
    let _: () = query(&mut master3.conn(), &["SET", "foreign", "data"]);
    let replica3 = replica_of(&r, master3_tls, &[("tls-replication", "yes")]);
    wait_until(SYNC_TIMEOUT, "the replica to log the refused certificate", || {
        let log = replica3.log();
        log.contains("UnknownIssuer") || log.contains("invalid peer certificate")
    });
    assert_eq!(query::<i64>(&mut replica3.conn(), &["DBSIZE"]), 0);

    // A replica without TLS gets nothing from the TLS port.
    let plain = replica_of(&r, master_tls, &[]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(query::<i64>(&mut plain.conn(), &["DBSIZE"]), 0);
}

#[test]
fn bad_tls_settings_are_refused_at_start_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let secret = Ca::new("ca").write_secret(&dir.path().join("s"), "node");
    std::fs::remove_file(secret.join("tls.key")).unwrap();
    let conf = tls_conf(&secret, free_port());
    let mut node = Node::new_in(dir.path(), &conf.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>());
    let log = node.try_start().expect_err("a missing key file");
    assert!(log.contains("tls.key"), "{log}");

    let mut node = Node::new_in(dir.path(), &[("tls-port", &free_port().to_string())]);
    let log = node.try_start().expect_err("a TLS port without files");
    assert!(log.contains("tls-cert-file"), "{log}");

    let mut node = Node::new_in(dir.path(), &[("tls-auth-clients", "sometimes")]);
    let log = node.try_start().expect_err("a bad tls-auth-clients");
    assert!(log.contains("tls-auth-clients"), "{log}");
}
