//! Test harness: starts the real `pika-node` binary on loopback with its own data directory,
//! and drives it with the `redis` crate and `redis-cli`.
#![allow(dead_code)]

pub mod certs;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `pika-node` binary: Cargo's path for the node's own tests; for other packages' tests
/// (the proxy's) the one built next to them in the same target directory.
pub fn node_bin() -> PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_pika-node") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe.parent().and_then(Path::parent).expect("target/<profile>/deps").join("pika-node");
    assert!(path.exists(), "{} missing: run `cargo build -p pika-node` first", path.display());
    path
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether something listens on the loopback `port`. A connection to a port of the ephemeral
/// range where nothing listens can connect to itself (TCP simultaneous open, when the kernel
/// picks that very port as the source), which must not count: it made a node that failed to
/// bind look started (CI, `zsets::multi_key_commands_in_sharding_mode`).
pub fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok_and(|s| s.local_addr().ok().map(|a| a.port()) != Some(port))
}

pub struct Node {
    pub port: u16,
    pub http_port: u16,
    pub dir: PathBuf,
    /// Keeps the temporary directory alive (None when the caller owns the directory).
    _tmp: Option<tempfile::TempDir>,
    child: Option<Child>,
    conf: Vec<(String, String)>,
    /// Started once: its ports are known to others and must not change.
    started: bool,
}

impl Node {
    /// A classic-mode node.
    pub fn classic() -> Node {
        Node::start(&[("instance-mode", "classic")])
    }

    /// A sharding-mode node with `slots` slots in db0, owning all of them.
    pub fn sharding_all(slots: u32) -> Node {
        Node::sharding_all_with(slots, &[])
    }

    /// Like [`Node::sharding_all`], with more pika.conf options.
    pub fn sharding_all_with(slots: u32, extra: &[(&str, &str)]) -> Node {
        let slot_num = slots.to_string();
        let mut conf = vec![("instance-mode", "sharding"), ("default-slot-num", slot_num.as_str())];
        conf.extend_from_slice(extra);
        let node = Node::start(&conf);
        let mut c = node.conn();
        let _: () = redis::cmd("pkcluster").arg("addslots").arg(format!("0-{}", slots - 1)).query(&mut c).unwrap();
        node
    }

    /// A node with the given pika.conf options, in a fresh temporary directory.
    pub fn start(conf: &[(&str, &str)]) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut node = Node::new_in(&dir, conf);
        node._tmp = Some(tmp);
        node.spawn();
        node
    }

    /// A node description for `dir` (not started).
    pub fn new_in(dir: &Path, conf: &[(&str, &str)]) -> Node {
        Node {
            port: free_port(),
            http_port: free_port(),
            dir: dir.to_path_buf(),
            _tmp: None,
            child: None,
            conf: conf.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            started: false,
        }
    }

    fn write_conf(&self) -> PathBuf {
        let path = self.dir.join("pika.conf");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, "port : {}", self.port).unwrap();
        writeln!(f, "bind : 127.0.0.1").unwrap();
        writeln!(f, "http-port : {}", self.http_port).unwrap();
        writeln!(f, "db-path : {}", self.dir.join("db").display()).unwrap();
        writeln!(f, "log-path : {}", self.dir.join("log").display()).unwrap();
        writeln!(f, "daemonize : yes").unwrap();
        for (k, v) in &self.conf {
            writeln!(f, "{k} : {v}").unwrap();
        }
        path
    }

    /// Starts (or restarts) the process and waits until it accepts connections. On a first
    /// start, ports another process grabbed since `free_port` chose them are replaced.
    pub fn spawn(&mut self) {
        for attempt in 0.. {
            match self.try_spawn() {
                Ok(()) => break,
                Err(log) if !self.started && attempt < 5 && log.contains("cannot listen") => {
                    self.port = free_port();
                    self.http_port = free_port();
                    for (key, value) in &mut self.conf {
                        if key == "tls-port" {
                            *value = free_port().to_string();
                        }
                    }
                }
                Err(log) => panic!("pika-node exited early; log:\n{log}"),
            }
        }
        self.started = true;
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        let conf = self.write_conf();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("node.log")).unwrap();
        let child = Command::new(node_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start pika-node");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        // Ours must be the process that answers: another test's node may hold the port this
        // one chose (then ours cannot bind and exits, and the retry picks other ports).
        let pid = self.child.as_ref().unwrap().id();
        while !(listening(self.port) && self.answering_pid() == Some(pid)) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("({status})\n{}", self.log()));
            }
            assert!(Instant::now() < deadline, "pika-node did not start; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Starts the process once; Err with its log when it exits instead (a refused setting).
    pub fn try_start(&mut self) -> Result<(), String> {
        self.try_spawn()
    }

    /// The pid in `INFO` of whatever answers on the port (logging in when it has a password).
    fn answering_pid(&self) -> Option<u32> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut request = Vec::new();
        if let Some((_, pw)) = self.conf.iter().find(|(k, _)| k == "requirepass") {
            request.extend(format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{pw}\r\n", pw.len()).into_bytes());
        }
        request.extend(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n");
        s.write_all(&request).ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        let complete = |r: &[u8]| {
            let text = String::from_utf8_lossy(r);
            text.find("process_id:").is_some_and(|i| text[i..].contains("\r\n"))
        };
        while !complete(&reply) {
            let n = std::io::Read::read(&mut s, &mut buf).ok().filter(|&n| n > 0)?;
            reply.extend_from_slice(&buf[..n]);
        }
        common::protocol::info_process_id(&String::from_utf8_lossy(&reply))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection().unwrap()
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe_sigterm(child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "pika-node did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Stops the process (SIGSTOP) and returns once every thread of it is stopped. `kill`
    /// returning is not enough: the kernel wakes one thread to take the signal, and on a busy
    /// machine the others run on (a replica stopped so still acknowledged a write, in CI) until
    /// that thread is scheduled.
    pub fn pause(&self) {
        pause(self.pid());
    }

    /// Continues a process stopped by `pause`.
    pub fn resume(&self) {
        signal(self.pid(), "-CONT");
    }

    /// Runs `redis-cli -p PORT args...`; None (test says skipped) when redis-cli is missing.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli").arg("-p").arg(self.port.to_string()).args(args).output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs redis-cli with `input` on stdin (pipe mode of the interactive client).
    pub fn cli_stdin(&self, args: &[&str], input: &str) -> Option<String> {
        let mut child = Command::new("redis-cli")
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// HTTP GET on the node's metrics/health port: (status line, body).
    pub fn http_get(&self, path: &str) -> (String, String) {
        use std::io::Read;
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.lines().next().unwrap_or("").to_string(), body.to_string())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

/// Whether redis-cli is installed; tests that need it print why they skip.
pub fn have_redis_cli() -> bool {
    Command::new("redis-cli").arg("--version").output().is_ok()
}

/// Sends raw bytes and reads replies until `expect_replies` complete frames arrived or the peer
/// closed; returns the raw reply bytes.
pub fn raw_exchange(port: u16, input: &[u8], wait: Duration) -> Vec<u8> {
    use std::io::Read;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(input).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

/// A command from its words.
pub fn cmd(args: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd
}

/// Runs one command and returns the reply as a generic value; an error reply as its wire text
/// (`WRONGTYPE Operation against ...`, `ERR syntax error`).
pub fn q(c: &mut redis::Connection, args: &[&str]) -> Result<redis::Value, String> {
    cmd(args).query::<redis::Value>(c).map_err(|e| error_text(&e))
}

/// Runs one command that must succeed, converting its reply.
pub fn query<T: redis::FromRedisValue>(c: &mut redis::Connection, args: &[&str]) -> T {
    cmd(args).query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// An integer reply.
pub fn int(c: &mut redis::Connection, args: &[&str]) -> i64 {
    query(c, args)
}

/// An array reply of bulk strings.
pub fn strs(c: &mut redis::Connection, args: &[&str]) -> Vec<String> {
    query(c, args)
}

/// The error text of a command that must fail.
pub fn err(c: &mut redis::Connection, args: &[&str]) -> String {
    q(c, args).expect_err(&format!("{args:?} should fail"))
}

/// Runs each command and checks its error contains the expected text.
pub fn expect_errors(c: &mut redis::Connection, cases: &[(&[&str], &str)]) {
    for (args, expected) in cases {
        let text = err(c, args);
        assert!(text.contains(expected), "{args:?}: {text}");
    }
}

/// The server's error text as it was on the wire, where the redis crate keeps it apart.
pub fn error_text(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => e.to_string(),
    }
}

// ---- replication ----

/// Polls `check` every 50 ms until it holds; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One row of `pkcluster digest`: slot, CRC-32 (hex), records, log seq, log offset.
pub type Digest = (i64, String, i64, i64, i64);

impl Node {
    /// `host:port` as other nodes (and the master's replica list) name this node.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `pkcluster info slot [group]`, parsed.
    pub fn slot_info(&self, group: Option<&str>) -> Vec<common::pkinfo::SlotInfo> {
        let mut c = self.conn();
        let mut args = vec!["pkcluster", "info", "slot"];
        args.extend(group);
        let text: String = query(&mut c, &args);
        common::pkinfo::parse_slot_info(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"))
    }

    /// `pkcluster digest <group>`.
    pub fn digest(&self, group: &str) -> Vec<Digest> {
        query(&mut self.conn(), &["pkcluster", "digest", group])
    }

    /// `pkcluster slotsslaveof 127.0.0.1 <master port> <group> [force]`.
    pub fn follow(&self, master: &Node, group: &str, force: bool) {
        let port = master.port.to_string();
        let mut args = vec!["pkcluster", "slotsslaveof", "127.0.0.1", port.as_str(), group];
        if force {
            args.push("force");
        }
        let _: () = query(&mut self.conn(), &args);
    }

    /// The lag the master reports for `replica` on every slot of `group`, if it is attached in
    /// BinlogSync on all of them.
    pub fn replica_lags(&self, replica: &Node, group: &str) -> Option<Vec<u64>> {
        let addr = replica.addr();
        self.slot_info(Some(group))
            .iter()
            .map(|s| {
                let r = s.master.as_ref()?.replicas.iter().find(|r| r.addr == addr)?;
                (r.status == common::protocol::SyncStatus::BinlogSync).then_some(r.lag?)
            })
            .collect()
    }

    /// An INFO field (`sync_full`, `role`, ...).
    pub fn info_field(&self, name: &str) -> String {
        let text: String = query(&mut self.conn(), &["info", "all"]);
        let prefix = format!("{name}:");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_default().to_string()
    }
}

/// Waits until `replica` is attached to `master` in BinlogSync on every slot of `group` with lag 0,
/// then checks both copies have the same digest (same records at the same log position).
pub fn wait_in_sync(master: &Node, replica: &Node, group: &str, timeout: Duration) {
    wait_until(timeout, &format!("{} to catch up with {} on {group}", replica.addr(), master.addr()), || {
        master.replica_lags(replica, group).is_some_and(|lags| lags.iter().all(|&l| l == 0))
            && master.digest(group) == replica.digest(group)
    });
}

/// Resident memory of process `pid` in bytes (`VmRSS` of /proc/<pid>/status).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Sends `header`, then `body_bytes` of filler as fast as the server takes them (it may close
/// first), and returns what the server answered before closing, and the most resident memory
/// of `pid` seen meanwhile.
pub fn send_oversized(port: u16, pid: u32, header: &[u8], body_bytes: usize) -> (String, u64) {
    use std::io::Read;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut peak = rss_bytes(pid);
    let _ = s.write_all(header);
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0;
    while sent < body_bytes {
        if s.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
        if sent % (16 << 20) == 0 {
            peak = peak.max(rss_bytes(pid));
        }
    }
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    (String::from_utf8_lossy(&reply).into_owned(), peak.max(rss_bytes(pid)))
}

/// Pipelines up to `count` `GET <key>` requests without reading a reply, for at most `for_how
/// long`; returns how many were written and the most resident memory of `pid` seen meanwhile
/// (sampled while the writes go on and for a second after they stop).
pub fn pipeline_without_reading(
    port: u16,
    pid: u32,
    key: &str,
    count: usize,
    for_how_long: Duration,
) -> (usize, u64, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let one = format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
    let batch = one.repeat(1000);
    let (started, mut written, mut peak) = (Instant::now(), 0, rss_bytes(pid));
    while written < count && started.elapsed() < for_how_long {
        if s.write_all(batch.as_bytes()).is_err() {
            break; // the server stopped reading: its socket buffers are full
        }
        written += 1000;
        peak = peak.max(rss_bytes(pid));
    }
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rss_bytes(pid));
    }
    (written, peak, s)
}

/// Sends `sig` (`-STOP`, `-CONT`...) to `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill").arg(sig).arg(pid.to_string()).status().expect("kill");
    assert!(status.success(), "kill {sig} {pid}");
}

/// SIGSTOP, then waits until every thread of `pid` shows state `T` in /proc.
pub fn pause(pid: u32) {
    signal(pid, "-STOP");
    let stopped = || {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return true };
        tasks.flatten().all(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // The state follows the command name, which is in parentheses and may hold spaces.
            stat.rsplit_once(") ").is_none_or(|(_, rest)| rest.starts_with('T'))
        })
    };
    wait_until(Duration::from_secs(10), "every thread of the process to stop", stopped);
}
