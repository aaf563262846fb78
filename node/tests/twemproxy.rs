//! twemproxy (Debian's `nutcracker`) in front of pika-node, as Pika's wiki recipe sets it up
//! (docs/compatibility.md, "twemproxy"): `hash: crc32a`, `distribution: modula`, no
//! auto-ejection, one `servers:` entry per slot naming the node that owns the slot. With
//! `default-slot-num : 4` and two nodes owning 0-1 and 2-3, twemproxy's server index is the key's
//! slot, so every key must land on the node owning its slot and nothing may get `Partition not
//! found`.
//!
//! Skipped (with the reason printed) only where `nutcracker` is not installed.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::Value;
use support::*;

const SLOTS: u32 = 4;
const PLAIN_KEYS: usize = 10_000;
const TAGS: usize = 500;
const BATCH: usize = 500;

/// `nutcracker` on PATH, or where Debian installs it (`/usr/sbin`, not on every user's PATH).
fn nutcracker_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nutcracker"))
        .find(|p| p.is_file())
}

/// A running nutcracker; killed when dropped.
struct Nutcracker {
    child: Child,
    log: PathBuf,
}

impl Nutcracker {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two sharding nodes of 4 slots (A owns 0-1, B owns 2-3) behind one nutcracker with two pools
/// over the same four server entries: `plain` is the wiki's recipe (no hash_tag), `tagged` adds
/// `hash_tag: "{}"`.
struct Setup {
    a: Node,
    b: Node,
    nc: Nutcracker,
    plain_port: u16,
    tagged_port: u16,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// None when nutcracker is not installed.
    fn start() -> Option<Setup> {
        let Some(bin) = nutcracker_bin() else {
            println!("skipped: nutcracker not installed (apt-get install nutcracker)");
            return None;
        };
        let conf = [("instance-mode", "sharding"), ("default-slot-num", "4")];
        let a = Node::start(&conf);
        let b = Node::start(&conf);
        let _: () = query(&mut a.conn(), &["pkcluster", "addslots", "0-1"]);
        let _: () = query(&mut b.conn(), &["pkcluster", "addslots", "2-3"]);

        let dir = tempfile::tempdir().unwrap();
        let (plain_port, tagged_port) = (free_port(), free_port());
        let yaml = dir.path().join("nutcracker.yml");
        write_conf(
            &yaml,
            &[("plain", plain_port, None), ("tagged", tagged_port, Some("{}"))],
            &[a.port, a.port, b.port, b.port],
        );

        let test = Command::new(&bin).arg("-t").arg("-c").arg(&yaml).output().expect("run nutcracker -t");
        assert!(
            test.status.success(),
            "nutcracker -t rejects the config: {}{}\n{}",
            String::from_utf8_lossy(&test.stdout),
            String::from_utf8_lossy(&test.stderr),
            std::fs::read_to_string(&yaml).unwrap()
        );

        let log = dir.path().join("nutcracker.log");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&yaml)
            .args(["-s", &free_port().to_string(), "-a", "127.0.0.1"])
            .arg("-o")
            .arg(&log)
            .args(["-p", &dir.path().join("nutcracker.pid").display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nutcracker");
        let mut nc = Nutcracker { child, log };
        for port in [plain_port, tagged_port] {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !listening(port) {
                if let Some(status) = nc.child.try_wait().unwrap() {
                    panic!("nutcracker exited early ({status}); log:\n{}", nc.log());
                }
                assert!(Instant::now() < deadline, "nutcracker did not listen on {port}; log:\n{}", nc.log());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Some(Setup { a, b, nc, plain_port, tagged_port, _dir: dir })
    }

    /// A connection to a pool. The redis crate's connect-time `CLIENT SETINFO` is turned off:
    /// nutcracker does not know CLIENT and closes the connection on any command it does not know.
    fn proxy(&self, port: u16) -> redis::Connection {
        use redis::IntoConnectionInfo;
        let info = format!("redis://127.0.0.1:{port}/").into_connection_info().unwrap();
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        let c = redis::Client::open(info.set_redis_settings(settings)).unwrap().get_connection().unwrap();
        // nutcracker waits for a backend forever by default (the pools set `timeout` anyway).
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        c
    }

    /// The node owning `slot` and the other one.
    fn owner(&self, slot: u32) -> (&Node, &Node) {
        if slot < 2 {
            (&self.a, &self.b)
        } else {
            (&self.b, &self.a)
        }
    }

    /// Checks every key is on the node owning its (Pika) slot with `value(key)`, and the other
    /// node answers `Partition not found` for it.
    fn check_placement(&self, keys: &[String], value: impl Fn(&str) -> String) {
        let (mut ca, mut cb) = (self.a.conn(), self.b.conn());
        for chunk in keys.chunks(BATCH) {
            let gets = |c: &mut redis::Connection| -> Vec<Value> {
                let mut pipe = redis::pipe();
                for k in chunk {
                    pipe.cmd("GET").arg(k);
                }
                pipe.ignore_errors().query(c).unwrap()
            };
            let (on_a, on_b) = (gets(&mut ca), gets(&mut cb));
            for ((k, ra), rb) in chunk.iter().zip(on_a).zip(on_b) {
                let slot = common::slot::key_slot(k.as_bytes(), SLOTS);
                let (owner, other) = if slot < 2 { (ra, rb) } else { (rb, ra) };
                let owner_port = self.owner(slot).0.port;
                assert_eq!(
                    owner,
                    Value::BulkString(value(k).into_bytes()),
                    "{k} (slot {slot}) on its owner :{owner_port}"
                );
                assert!(
                    matches!(&other, Value::ServerError(e) if e.details().unwrap_or("").contains("Partition not found")),
                    "{k} (slot {slot}) on the node not owning it: {other:?}"
                );
            }
        }
    }
}

/// One nutcracker config file: `pools` of (name, listen port, hash_tag), each with one server
/// entry per slot (`servers[i]` is the port of the node owning slot i). Names are required: a
/// pool refuses two entries with the same host:port unless they are named apart.
fn write_conf(path: &Path, pools: &[(&str, u16, Option<&str>)], servers: &[u16]) {
    let mut f = std::fs::File::create(path).unwrap();
    for (name, port, tag) in pools {
        writeln!(f, "{name}:").unwrap();
        writeln!(f, "  listen: 127.0.0.1:{port}").unwrap();
        writeln!(f, "  hash: crc32a").unwrap();
        if let Some(tag) = tag {
            writeln!(f, "  hash_tag: \"{tag}\"").unwrap();
        }
        writeln!(f, "  distribution: modula").unwrap();
        writeln!(f, "  auto_eject_hosts: false").unwrap();
        writeln!(f, "  redis: true").unwrap();
        writeln!(f, "  timeout: 10000").unwrap();
        writeln!(f, "  servers:").unwrap();
        for (slot, port) in servers.iter().enumerate() {
            writeln!(f, "   - 127.0.0.1:{port}:1 slot{slot}").unwrap();
        }
    }
}

/// twemproxy's server index for `key` (docs/compatibility.md, "twemproxy"): crc32a of the key, or
/// of the text inside the hash tag when one is configured and that text is non-empty, modulo the
/// entries.
fn twemproxy_index(key: &str, hash_tag: bool, servers: u32) -> u32 {
    let mut hashed = key.as_bytes();
    if hash_tag {
        if let Some(open) = key.find('{') {
            if let Some(len) = key[open + 1..].find('}') {
                if len > 0 {
                    hashed = &key.as_bytes()[open + 1..open + 1 + len];
                }
            }
        }
    }
    crc32fast::hash(hashed) % servers
}

fn value_of(key: &str) -> String {
    format!("v-{key}")
}

/// Sends `cmds` pipelined in batches and returns every reply.
fn pipelined(c: &mut redis::Connection, cmds: impl IntoIterator<Item = redis::Cmd>) -> Vec<Value> {
    let cmds: Vec<redis::Cmd> = cmds.into_iter().collect();
    let mut replies = Vec::with_capacity(cmds.len());
    for chunk in cmds.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for cmd in chunk {
            pipe.add_command(cmd.clone());
        }
        replies.extend(pipe.ignore_errors().query::<Vec<Value>>(c).unwrap());
    }
    replies
}

fn assert_all_ok(what: &str, keys: &[String], replies: &[Value], nc: &Nutcracker) {
    assert_eq!(replies.len(), keys.len(), "{what}: one reply per command");
    for (k, r) in keys.iter().zip(replies) {
        assert!(matches!(r, Value::Okay), "{what} {k} through nutcracker: {r:?}; nutcracker log:\n{}", nc.log());
    }
}

/// The wiki recipe: 10k plain keys written through nutcracker (half with SET, half with MSETs of
/// 20 keys, which nutcracker splits per server entry) land on the owning node and read back.
#[test]
fn plain_keys_land_on_the_node_owning_their_slot() {
    let Some(s) = Setup::start() else { return };
    let keys: Vec<String> = (0..PLAIN_KEYS).map(|i| format!("key:{i}")).collect();
    for k in &keys {
        assert_eq!(twemproxy_index(k, false, SLOTS), common::slot::key_slot(k.as_bytes(), SLOTS), "{k}");
    }
    let slots: std::collections::BTreeSet<u32> =
        keys.iter().map(|k| common::slot::key_slot(k.as_bytes(), SLOTS)).collect();
    assert_eq!(slots.len(), SLOTS as usize, "keys cover every slot");
    let mut c = s.proxy(s.plain_port);

    let (by_set, by_mset) = keys.split_at(PLAIN_KEYS / 2);
    let replies = pipelined(&mut c, by_set.iter().map(|k| cmd(&["SET", k, &value_of(k)])));
    assert_all_ok("SET", by_set, &replies, &s.nc);
    let groups: Vec<&[String]> = by_mset.chunks(20).collect();
    let replies = pipelined(
        &mut c,
        groups.iter().map(|group| {
            let mut mset = redis::cmd("MSET");
            for k in *group {
                mset.arg(k).arg(value_of(k));
            }
            mset
        }),
    );
    let firsts: Vec<String> = groups.iter().map(|g| g[0].clone()).collect();
    assert_all_ok("MSET starting with", &firsts, &replies, &s.nc);

    s.check_placement(&keys, value_of);
    let total: i64 = int(&mut s.a.conn(), &["DBSIZE"]) + int(&mut s.b.conn(), &["DBSIZE"]);
    assert_eq!(total, PLAIN_KEYS as i64, "no key stored twice or elsewhere");

    // Read back through nutcracker: GET each, then MGETs of 50 (split per server entry and
    // reassembled in order by nutcracker).
    let replies = pipelined(&mut c, keys.iter().map(|k| cmd(&["GET", k])));
    for (k, r) in keys.iter().zip(&replies) {
        assert_eq!(*r, Value::BulkString(value_of(k).into_bytes()), "GET {k} through nutcracker");
    }
    for group in keys.chunks(50) {
        let mut mget = redis::cmd("MGET");
        for k in group {
            mget.arg(k);
        }
        mget.arg("missing:key");
        let got: Vec<Option<String>> = mget.query(&mut c).unwrap();
        let want: Vec<Option<String>> = group.iter().map(|k| Some(value_of(k))).chain([None]).collect();
        assert_eq!(got, want, "MGET through nutcracker");
    }
    assert!(!s.nc.log().contains("Partition not found"), "{}", s.nc.log());
}

/// Hashtags: Pika hashes the text inside the first `{...}`; twemproxy does so only with
/// `hash_tag: "{}"` and only when that text is non-empty. With the tag configured, keys with
/// non-empty tags land on their slot's owner (and two keys of one tag together in an MSET);
/// without it, or with an empty tag, twemproxy routes by the whole key, and the node refuses
/// (`Partition not found`) every key sent to the node not owning its slot instead of storing it.
#[test]
fn hashtag_keys_need_hash_tag_in_the_pool() {
    let Some(s) = Setup::start() else { return };
    let node_of = |slot: u32| slot / 2; // 0: A, 1: B

    // Tagged pool, non-empty tags: twemproxy and Pika agree on every key.
    let mut c = s.proxy(s.tagged_port);
    let tags: Vec<String> = (0..TAGS).map(|i| format!("{{user{i}}}")).collect();
    let replies = pipelined(
        &mut c,
        tags.iter().map(|t| {
            cmd(&[
                "MSET",
                &format!("{t}:x"),
                &value_of(&format!("{t}:x")),
                &format!("{t}:y"),
                &value_of(&format!("{t}:y")),
            ])
        }),
    );
    assert_all_ok("MSET", &tags, &replies, &s.nc);
    let keys: Vec<String> = tags.iter().flat_map(|t| [format!("{t}:x"), format!("{t}:y")]).collect();
    for k in &keys {
        assert_eq!(twemproxy_index(k, true, SLOTS), common::slot::key_slot(k.as_bytes(), SLOTS), "{k}");
    }
    s.check_placement(&keys, value_of);
    let replies = pipelined(&mut c, keys.iter().map(|k| cmd(&["GET", k])));
    for (k, r) in keys.iter().zip(&replies) {
        assert_eq!(*r, Value::BulkString(value_of(k).into_bytes()), "GET {k} through nutcracker");
    }

    // Where the two rules disagree, the key is accepted only if nutcracker's pick happens to be
    // the owner of the key's slot anyway; every other one gets Partition not found.
    let cases: Vec<(u16, bool, String)> = (0..200)
        .map(|i| (s.plain_port, false, format!("{{tag{i}}}:k")))
        .chain((0..200).map(|i| (s.tagged_port, true, format!("{{}}empty{i}"))))
        .collect();
    let (mut misrouted, mut refused) = (0, 0);
    for (port, hash_tag, key) in &cases {
        let picked = twemproxy_index(key, *hash_tag, SLOTS);
        let slot = common::slot::key_slot(key.as_bytes(), SLOTS);
        misrouted += usize::from(picked != slot);
        let reply = q(&mut s.proxy(*port), &["SET", key, "v"]);
        if node_of(picked) == node_of(slot) {
            assert_eq!(reply, Ok(Value::Okay), "{key}: entry {picked}, slot {slot}");
            assert_eq!(q(&mut s.owner(slot).0.conn(), &["GET", key]), Ok(Value::BulkString(b"v".to_vec())));
        } else {
            refused += 1;
            let e = reply.expect_err(key);
            assert!(e.contains("Partition not found"), "{key}: entry {picked}, slot {slot}: {e}");
            assert!(q(&mut s.owner(slot).0.conn(), &["GET", key]) == Ok(Value::Nil), "{key} not stored");
        }
    }
    assert!(
        misrouted > 100 && refused > 50,
        "the cases exercise the disagreement ({misrouted} misrouted, {refused} refused)"
    );
}
