//! The admin user apart from the data user (docs/node.md, "Users and passwords"): every admin
//! command refused to a client with the user password, Pika's `userpass` and `userblacklist`
//! honoured, passwords redacted from CONFIG GET and refused on the command line.
mod support;

use std::process::{Command, Stdio};

use support::{node_bin, q, query, Node};

const ADMIN_PW: &str = "admin-secret";
const USER_PW: &str = "user-secret";

/// Every admin command of the node, with arguments it would accept from admin. Kept by hand:
/// the test below also checks it against the flags COMMAND reports, so a new admin command
/// must be added here (and so tried) for the test to pass.
const ADMIN_COMMANDS: &[&[&str]] = &[
    &["CONFIG", "SET", "timeout", "0"],
    &["CONFIG", "GET", "*"],
    &["SHUTDOWN"],
    &["SLOWLOG", "GET"],
    &["BGSAVE"],
    &["FLUSHDB"],
    &["FLUSHALL"],
    &["PKCLUSTER", "ADDSLOTS", "0-3"],
    &["PKCLUSTER", "DELSLOTS", "0-3"],
    &["PKCLUSTER", "INFO", "SLOT"],
    &["PKCLUSTER", "ADDTABLE", "1"],
    &["PKCLUSTER", "DELTABLE", "1"],
    &["PKCLUSTER", "FENCE", "0-3"],
    &["PKCLUSTER", "UNFENCE", "0-3"],
    &["PKCLUSTER", "SLOTSSLAVEOF", "no", "one", "0-3"],
    &["PKCLUSTER", "DIGEST", "0-3"],
    &["PKCLUSTER", "LEASE", "60000"],
    &["SLOTSINFO"],
    &["SLOTSDEL", "0"],
    &["SLOTSMGRTTAGSLOT-ASYNC", "127.0.0.1", "1", "1000", "100", "1024", "0", "1"],
    &["SLOTSMGRTSLOT-ASYNC", "127.0.0.1", "1", "1000", "100", "1024", "0", "1"],
    &["SLOTSMGRT-ASYNC-STATUS"],
    &["SLOTSMGRT-ASYNC-CANCEL"],
    &["SLOTSMGRTSLOT", "127.0.0.1", "1", "1000", "0"],
    &["SLOTSMGRTTAGSLOT", "127.0.0.1", "1", "1000", "0"],
    &["SLOTSMGRTONE", "127.0.0.1", "1", "1000", "k"],
    &["SLOTSMGRTTAGONE", "127.0.0.1", "1", "1000", "k"],
    // Not flagged admin as a whole (libraries send CLIENT SETNAME on connect), but these are.
    &["CLIENT", "LIST"],
    &["CLIENT", "KILL", "ID", "1"],
    // A replica's stream: a copy of every key of the slots.
    &["PKREPL", "0", "0", "0"],
];

fn node() -> Node {
    Node::start(&[
        ("instance-mode", "sharding"),
        ("default-slot-num", "16"),
        ("requirepass", ADMIN_PW),
        ("userpass", USER_PW),
        ("userblacklist", "HGETALL, randomkey"),
    ])
}

fn login(node: &Node, user: &str, password: &str) -> redis::Connection {
    let mut c = redis::Client::open(node.url()).unwrap().get_connection().unwrap();
    let _: () = query(&mut c, &["AUTH", user, password]);
    c
}

fn error_of(c: &mut redis::Connection, args: &[&str]) -> String {
    match q(c, args) {
        Ok(v) => panic!("{args:?} answered {v:?}"),
        Err(e) => e,
    }
}

#[test]
fn a_client_with_the_user_password_runs_no_admin_command() {
    let node = node();
    let mut admin = login(&node, "admin", ADMIN_PW);
    let _: () = query(&mut admin, &["PKCLUSTER", "ADDSLOTS", "0-15"]);
    let _: () = query(&mut admin, &["PKCLUSTER", "UNFENCE", "0-15"]);
    let mut user = login(&node, "default", USER_PW);
    let _: () = query(&mut user, &["SET", "kept", "1"]);
    let mut anonymous = redis::Client::open(node.url()).unwrap().get_connection().unwrap();

    for args in ADMIN_COMMANDS {
        let name = args[0].to_ascii_lowercase();
        let refused = error_of(&mut user, args);
        assert!(refused.starts_with("NOPERM") && refused.contains(&format!("'{name}")), "{args:?}: {refused}");
        let refused = error_of(&mut anonymous, args);
        assert!(refused.contains("NOAUTH"), "{args:?} before AUTH: {refused}");
    }
    // Nothing happened: the data is there, the slots are the node's, the node answers.
    assert_eq!(query::<String>(&mut user, &["GET", "kept"]), "1");
    assert_eq!(query::<String>(&mut user, &["PING"]), "PONG");
    let writable: redis::Value = query(&mut user, &["PKCLUSTER", "WRITABLE"]);
    assert!(format!("{writable:?}").contains("0-15"), "a router's question stays open: {writable:?}");

    // The same commands from admin are not refused for permission (some fail for their own
    // reasons: no such target, a slot already there...). SHUTDOWN last.
    for args in ADMIN_COMMANDS.iter().filter(|a| a[0] != "SHUTDOWN" && a[0] != "PKREPL") {
        if let Err(e) = q(&mut admin, args) {
            assert!(!e.starts_with("NOPERM") && !e.contains("NOAUTH"), "{args:?} refused to admin: {e}");
        }
    }

    // The list above is every command COMMAND flags admin.
    let table: Vec<redis::Value> = query(&mut admin, &["COMMAND"]);
    let mut flagged: Vec<String> = table
        .iter()
        .filter_map(|entry| {
            let redis::Value::Array(fields) = entry else { return None };
            let flags = format!("{:?}", fields[2]);
            let name = match &fields[0] {
                redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("{other:?}"),
            };
            flags.contains("admin").then_some(name)
        })
        .collect();
    flagged.sort();
    let mut listed: Vec<String> = ADMIN_COMMANDS
        .iter()
        .filter(|a| a[0] != "CLIENT" && a[0] != "PKREPL")
        .map(|a| match a[0] {
            "PKCLUSTER" => format!("pkcluster{}", a[1].to_ascii_lowercase()),
            name => name.to_ascii_lowercase(),
        })
        .collect();
    listed.sort();
    listed.dedup();
    assert_eq!(flagged, listed, "admin commands in COMMAND vs this test's list");
}

#[test]
fn auth_forms_the_blacklist_and_redaction() {
    let node = node();
    // AUTH <password> tries admin first, then the user.
    let mut c = redis::Client::open(node.url()).unwrap().get_connection().unwrap();
    let _: () = query(&mut c, &["AUTH", USER_PW]);
    assert!(error_of(&mut c, &["CONFIG", "GET", "port"]).starts_with("NOPERM"));
    let _: () = query(&mut c, &["AUTH", ADMIN_PW]);
    let got: Vec<String> = query(&mut c, &["CONFIG", "GET", "port"]);
    assert_eq!(got[1], node.port.to_string());
    // A failed AUTH <user> <password> keeps what the connection had (Redis 6's rule); a failed
    // AUTH <password> drops it (Pika's).
    assert!(error_of(&mut c, &["AUTH", "admin", USER_PW]).starts_with("WRONGPASS"));
    assert!(error_of(&mut c, &["AUTH", "alice", USER_PW]).starts_with("WRONGPASS"));
    let _: Vec<String> = query(&mut c, &["CONFIG", "GET", "port"]);
    assert!(error_of(&mut c, &["AUTH", "nope"]).contains("invalid password"));
    assert!(error_of(&mut c, &["GET", "k"]).contains("NOAUTH"));
    // HELLO's AUTH is the same check.
    let _: redis::Value = query(&mut c, &["HELLO", "2", "AUTH", "default", USER_PW]);
    assert!(error_of(&mut c, &["CLIENT", "LIST"]).starts_with("NOPERM"));
    let _: () = query(&mut c, &["CLIENT", "SETNAME", "app"]);

    // userblacklist: the user's, not admin's; also a command refused in sharding mode.
    let mut user = login(&node, "default", USER_PW);
    let mut admin = login(&node, "admin", ADMIN_PW);
    let _: () = query(&mut admin, &["PKCLUSTER", "ADDSLOTS", "0-15"]);
    let _: () = query(&mut admin, &["PKCLUSTER", "UNFENCE", "0-15"]);
    let _: () = query(&mut user, &["HSET", "h", "f", "v"]);
    let refused = error_of(&mut user, &["HGETALL", "h"]);
    assert!(refused.starts_with("NOPERM") && refused.contains("'hgetall'"), "{refused}");
    let _: Vec<String> = query(&mut admin, &["HGETALL", "h"]);
    assert!(error_of(&mut user, &["RANDOMKEY"]).starts_with("NOPERM"));
    // The blacklist changes live.
    let _: () = query(&mut admin, &["CONFIG", "SET", "userblacklist", "hlen"]);
    let _: Vec<String> = query(&mut user, &["HGETALL", "h"]);
    assert!(error_of(&mut user, &["HLEN", "h"]).starts_with("NOPERM"));

    // Passwords never come back; whether one is set does.
    let got: Vec<String> = query(&mut admin, &["CONFIG", "GET", "*pass*"]);
    assert!(!got.iter().any(|v| v.contains("secret")), "{got:?}");
    assert!(got.windows(2).any(|kv| kv[0] == "requirepass" && kv[1] == common::options::REDACTED), "{got:?}");
    assert!(got.windows(2).any(|kv| kv[0] == "requirepass-previous" && kv[1].is_empty()), "{got:?}");
    // A user password without an admin password is refused, and nothing changes.
    let refused = error_of(&mut admin, &["CONFIG", "SET", "requirepass", ""]);
    assert!(refused.contains("every client admin"), "{refused}");
    let _: () = query(&mut login(&node, "admin", ADMIN_PW), &["PING"]);
}

#[test]
fn an_admin_password_alone_leaves_data_open_and_admin_closed() {
    let node = Node::start(&[("instance-mode", "classic"), ("requirepass", ADMIN_PW)]);
    let mut c = redis::Client::open(node.url()).unwrap().get_connection().unwrap();
    let _: () = query(&mut c, &["SET", "k", "v"]);
    assert!(error_of(&mut c, &["FLUSHALL"]).starts_with("NOPERM"));
    // The default user has no password: any is accepted, and it stays a user.
    let _: () = query(&mut c, &["AUTH", "default", "anything"]);
    assert!(error_of(&mut c, &["FLUSHALL"]).starts_with("NOPERM"));
    let _: () = query(&mut c, &["AUTH", "admin", ADMIN_PW]);
    let _: () = query(&mut c, &["FLUSHALL"]);
    assert_eq!(query::<Option<String>>(&mut c, &["GET", "k"]), None);
}

fn start_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(node_bin());
    cmd.args(["--port", "0", "--db-path"]).arg(dir.path().join("db")).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output().unwrap();
    assert!(!out.status.success(), "{args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn passwords_stay_off_the_command_line_and_a_lone_userpass_is_refused_at_start() {
    let refused = start_error(&["--set", "requirepass=x"], &[]);
    assert!(refused.contains("PIKA_REQUIREPASS") && refused.contains("not on the command line"), "{refused}");
    let refused = start_error(&[], &[("PIKA_USERPASS", "u")]);
    assert!(refused.contains("requirepass"), "{refused}");
    // From the environment: the node starts with them, and `ps` shows none.
    let port = support::free_port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(node_bin())
        .args(["--port", &port, "--db-path"])
        .arg(dir.path().join("db"))
        .env("PIKA_REQUIREPASS", ADMIN_PW)
        .env("PIKA_USERPASS", USER_PW)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    support::wait_until(std::time::Duration::from_secs(20), "the node listens", || {
        support::listening(port.parse().unwrap())
    });
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("secret"));
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap().get_connection().unwrap();
    assert!(error_of(&mut c, &["GET", "k"]).contains("NOAUTH"));
    let _: () = query(&mut c, &["AUTH", "default", USER_PW]);
    let _: () = query(&mut c, &["SET", "k", "v"]);
    let _: () = query(&mut c, &["AUTH", "admin", ADMIN_PW]);
    let _ = q(&mut c, &["SHUTDOWN"]);
    assert!(child.wait().unwrap().success());
}
