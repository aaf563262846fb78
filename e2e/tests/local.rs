//! `pika-operator local`: a manifest becomes running processes; editing `groups` moves slots
//! under a steady write load without losing an acknowledged write; SIGTERM stops everything.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn sibling(name: &str) -> PathBuf {
    pika_e2e::workspace_bin(name)
}

fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn conn(port: u16) -> redis::Connection {
    redis::Client::open(pika_e2e::admin_url(&format!("127.0.0.1:{port}"))).unwrap().get_connection().unwrap()
}

/// Slots node `port` accepts writes for (`pkcluster writable`, table 0), or None if it is down.
fn writable(port: u16) -> Option<usize> {
    let mut c = redis::Client::open(pika_e2e::admin_url(&format!("127.0.0.1:{port}"))).ok()?.get_connection().ok()?;
    let tables: Vec<(i64, i64, String)> = redis::cmd("pkcluster").arg("writable").query(&mut c).ok()?;
    let slots = &tables.iter().find(|t| t.0 == 0)?.2;
    Some(common::slotset::parse_slots(slots).ok()?.len())
}

fn manifest(groups: u32) -> String {
    format!(
        "apiVersion: pika.sharding.io/v1alpha1\nkind: PikaCluster\nmetadata:\n  name: e2e\nspec:\n  groups: {groups}\n  replicasPerGroup: 1\n  slots: 64\n"
    )
}

/// The runtime, and what to clean up if a test fails halfway: every process whose command
/// line names the test's directory (the nodes) or its proxy port.
struct Operator(Child, PathBuf, u16);

/// The runtime adopts whatever answers on its ports, so two clusters of these tests must never
/// share a port range: they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts `pika-operator local` on `file`, logging to `log`, with extra environment.
fn start(file: &Path, dir: &Path, base: u16, proxy: u16, env: &[(&str, &str)]) -> Operator {
    start_with(file, dir, base, proxy, env, &sibling("pika-node"))
}

/// [`start`] with the node binary at `node_bin`.
fn start_with(file: &Path, dir: &Path, base: u16, proxy: u16, env: &[(&str, &str)], node_bin: &Path) -> Operator {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("operator.log")).unwrap();
    let child = Command::new(sibling("pika-operator"))
        .args(["local", "-f"])
        .arg(file)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--proxy-listen", &format!("127.0.0.1:{proxy}"), "--node-port-base", &base.to_string()])
        .arg("--node-bin")
        .arg(node_bin)
        .arg("--proxy-bin")
        .arg(sibling("pika-proxy"))
        .args(["--batch", "8"])
        .env("PIKA_ADMIN_PASSWORD", pika_e2e::ADMIN_PASSWORD)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Operator(child, dir.to_path_buf(), proxy)
}

fn wait_serving(proxy: u16) {
    wait_until(Duration::from_secs(60), "the cluster to serve through the proxy", || {
        TcpStream::connect(("127.0.0.1", proxy)).is_ok()
            && redis::cmd("SET").arg("probe").arg(1).query::<()>(&mut conn(proxy)).is_ok()
    });
}

fn balanced(base: u16, groups: u16) -> bool {
    let total = 64;
    let (lo, hi) = (total / groups as usize, total.div_ceil(groups as usize));
    // Whichever member is the group's master now (only a master lists writable slots).
    let served = |g: u16| (0..2).filter_map(|m| writable(base + 10 * g + m)).max();
    (0..groups).all(|g| served(g).is_some_and(|n| (lo..=hi).contains(&n)))
}

/// Checks every acknowledged `key:i = i` through the proxy.
fn check_acked(proxy: u16, acked: &[u64], log: impl Fn() -> String) {
    let mut c = conn(proxy);
    for chunk in acked.chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("key:{i}")).collect();
        let values: Vec<Option<u64>> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
        for (i, v) in chunk.iter().zip(values) {
            assert_eq!(v, Some(*i), "key:{i} acknowledged but not found\n{}", log());
        }
    }
}

/// Stops the operator with SIGTERM and checks every listed port closed.
fn terminate(operator: &mut Operator, ports: &[u16]) {
    Command::new("kill").arg("-TERM").arg(operator.0.id().to_string()).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while operator.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "operator did not exit on SIGTERM");
        thread::sleep(Duration::from_millis(50));
    }
    wait_until(Duration::from_secs(10), "every process of the cluster to stop", || {
        ports.iter().all(|&p| TcpStream::connect(("127.0.0.1", p)).is_err())
    });
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            let _ = Command::new("pkill").arg("-9").arg("-f").arg(self.1.display().to_string()).status();
            let _ =
                Command::new("pkill").args(["-9", "-f", "--"]).arg(format!("--listen 127.0.0.1:{}", self.2)).status();
        }
    }
}

#[test]
fn local_runtime_bootstraps_scales_out_and_in_without_losing_writes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, manifest(2)).unwrap();
    let (base, proxy) = pika_e2e::free_ports();
    let mut operator = start(&file, dir.path(), base, proxy, &[]);
    let operator_log = || std::fs::read_to_string(dir.path().join("operator.log")).unwrap_or_default();
    wait_serving(proxy);
    assert_eq!((writable(base), writable(base + 10)), (Some(32), Some(32)), "{}", operator_log());
    // redis-cli through the proxy: keys of both groups, a split MSET/MGET.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli").arg("-p").arg(proxy.to_string()).args(args).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match cli(&["mset", "a", "1", "b", "2", "c", "3", "d", "4"]) {
        Ok(reply) => {
            assert_eq!(reply, "OK");
            // (a nil prints as an empty line, trimmed away here)
            assert_eq!(cli(&["mget", "a", "b", "c", "d", "missing"]).unwrap(), "1\n2\n3\n4");
            assert_eq!(cli(&["dbsize"]).unwrap(), "5", "a..d and the probe key");
        }
        Err(e) => eprintln!("redis-cli part skipped: {e} (apt install redis-tools)"),
    }

    // A steady writer through the proxy while the manifest changes.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(proxy, stop.clone(), false);
    thread::sleep(Duration::from_millis(500));
    std::fs::write(&file, manifest(3)).unwrap();
    wait_balanced(base, 3, &operator_log);
    // Scale back in: group 2 drains and stops.
    std::fs::write(&file, manifest(2)).unwrap();
    wait_until(Duration::from_secs(120), "group 2 to drain and stop", || {
        balanced(base, 2) && TcpStream::connect(("127.0.0.1", base + 20)).is_err()
    });
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let acked = writer.join().unwrap();
    assert!(acked.len() > 200, "only {} writes", acked.len());
    check_acked(proxy, &acked, operator_log);
    assert!(operator_log().contains("slots moved"), "{}", operator_log());
    terminate(&mut operator, &[proxy, base, base + 1, base + 10, base + 11]);
}

/// Writes `key:i = i` through the proxy until stopped; with `retry`, a refused write (the
/// operator died holding its slot) is tried again until it succeeds.
fn spawn_writer(proxy: u16, stop: Arc<AtomicBool>, retry: bool) -> thread::JoinHandle<Vec<u64>> {
    thread::spawn(move || {
        let mut c = conn(proxy);
        let mut acked = Vec::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            loop {
                match redis::cmd("SET").arg(format!("key:{i}")).arg(i).query::<()>(&mut c) {
                    Ok(()) => {
                        acked.push(i);
                        break;
                    }
                    Err(e) if retry && !stop.load(Ordering::Relaxed) => {
                        // Held too long, or its master down (it is replaced or restarted).
                        let text = e.to_string();
                        let retryable = text.to_ascii_uppercase().contains("TRYAGAIN");
                        assert!(retryable || text.contains("unavailable") || e.is_io_error(), "{e}");
                        if e.is_io_error() {
                            c = conn(proxy);
                        }
                        thread::sleep(Duration::from_millis(50));
                    }
                    Err(_) if retry => return acked,
                    Err(e) => panic!("write {i} failed: {e}"),
                }
            }
        }
        acked
    })
}

/// Waits up to 2 minutes for `groups` balanced groups; the operator's log tells why not.
fn wait_balanced(base: u16, groups: u16, log: &impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !balanced(base, groups) {
        assert!(Instant::now() < deadline, "not {groups} balanced groups after 120 s\n{}", log());
        thread::sleep(Duration::from_millis(100));
    }
}

/// Lets the writer run a little longer, stops it, and reads back every write it had
/// acknowledged (more than 100 of them).
fn stop_and_check_writes(
    proxy: u16,
    stop: &AtomicBool,
    writer: thread::JoinHandle<Vec<u64>>,
    log: &impl Fn() -> String,
) {
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let acked = writer.join().unwrap();
    assert!(acked.len() > 100, "only {} writes\n{}", acked.len(), log());
    check_acked(proxy, &acked, log);
}

#[test]
fn an_operator_killed_mid_cutover_is_restarted_and_the_cluster_converges() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, manifest(2)).unwrap();
    let (base, proxy) = pika_e2e::free_ports();
    // The first operator dies right after it fenced the first batch (writes to it held).
    let mut crashing = start(&file, dir.path(), base, proxy, &[("PIKA_OPERATOR_CRASH_AT", "drain")]);
    let operator_log = || std::fs::read_to_string(dir.path().join("operator.log")).unwrap_or_default();
    wait_serving(proxy);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(proxy, stop.clone(), true);
    thread::sleep(Duration::from_millis(300));
    std::fs::write(&file, manifest(3)).unwrap();
    wait_until(Duration::from_secs(60), "the operator to die mid-cutover", || crashing.0.try_wait().unwrap().is_some());
    // Its nodes and proxy live on; a new operator adopts them and settles the batch.
    assert!(TcpStream::connect(("127.0.0.1", base)).is_ok() && TcpStream::connect(("127.0.0.1", proxy)).is_ok());
    let mut operator = start(&file, dir.path(), base, proxy, &[]);
    wait_balanced(base, 3, &operator_log);
    stop_and_check_writes(proxy, &stop, writer, &operator_log);
    let log = operator_log();
    assert!(log.contains("aborting") && log.contains("adopted a running proxy"), "{log}");
    terminate(&mut operator, &[proxy, base, base + 1, base + 10, base + 11, base + 20, base + 21]);
}

/// The target master of a move killed in the middle of a batch: before promotion no replica
/// can replace it (its replica follows it for part of a batch only), so the runtime starts it
/// again; the move, recorded in `move.json`, resumes and finishes; no write is lost.
#[test]
fn a_target_master_killed_mid_move_comes_back_and_the_move_finishes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, format!("{}  failoverAfterSeconds: 2\n", manifest(2))).unwrap();
    let (base, proxy) = pika_e2e::free_ports();
    // The runtime stops 3 s at the first batch's catch-up: the kill lands before promotion.
    let mut operator = start(&file, dir.path(), base, proxy, &[("PIKA_OPERATOR_PAUSE_AT", "catch-up")]);
    let operator_log = || std::fs::read_to_string(dir.path().join("operator.log")).unwrap_or_default();
    wait_serving(proxy);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(proxy, stop.clone(), true);
    thread::sleep(Duration::from_millis(300));
    std::fs::write(&file, manifest(3)).unwrap();
    let record = dir.path().join("data/e2e/move.json");
    wait_until(Duration::from_secs(60), "the first batch into group 2 at its catch-up", || {
        std::fs::read_to_string(&record).unwrap_or_default().contains("\"catch-up\"")
    });
    let target = dir.path().join("data/e2e/g2-m0/pika.conf");
    assert!(Command::new("pkill").args(["-9", "-f"]).arg(target.display().to_string()).status().unwrap().success());
    wait_balanced(base, 3, &operator_log);
    wait_until(Duration::from_secs(10), "the move record to go", || !record.exists());
    stop_and_check_writes(proxy, &stop, writer, &operator_log);
    assert!(operator_log().contains("starting it again"), "{}", operator_log());
    terminate(&mut operator, &[proxy, base, base + 1, base + 10, base + 11, base + 20, base + 21]);
}

#[test]
fn a_failed_master_is_replaced_by_its_replica_and_comes_back_as_one() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, format!("{}  failoverAfterSeconds: 2\n", manifest(2))).unwrap();
    let (base, proxy) = pika_e2e::free_ports();
    let mut operator = start(&file, dir.path(), base, proxy, &[]);
    let operator_log = || std::fs::read_to_string(dir.path().join("operator.log")).unwrap_or_default();
    wait_serving(proxy);
    let mut c = conn(proxy);
    let acked: Vec<u64> = (1..=500).collect();
    for i in &acked {
        let _: () = redis::cmd("SET").arg(format!("key:{i}")).arg(i).query(&mut c).unwrap();
    }
    // Replicated (lag 0 on every slot of group 0) before the master dies: nothing may be lost.
    wait_until(Duration::from_secs(30), "group 0's replica to catch up", || {
        let mut m = conn(base);
        let text: String = redis::cmd("pkcluster").arg("info").arg("slot").query(&mut m).unwrap();
        let slots = common::pkinfo::parse_slot_info(&text).unwrap();
        slots.iter().all(|s| {
            s.master.as_ref().is_some_and(|m| {
                m.replicas.iter().any(|r| r.status == common::protocol::SyncStatus::BinlogSync && r.lag == Some(0))
            })
        })
    });
    let master_conf = dir.path().join("data/e2e/g0-m0/pika.conf");
    let killed = Command::new("pkill").args(["-9", "-f"]).arg(master_conf.display().to_string()).status().unwrap();
    assert!(killed.success());
    let started = Instant::now();
    wait_until(Duration::from_secs(60), "the replica to take over group 0", || writable(base + 1) == Some(32));
    eprintln!("failover after {:?}", started.elapsed());
    // Every acknowledged write is served, and new writes to group 0's slots work.
    wait_until(Duration::from_secs(20), "writes through the proxy", || {
        redis::cmd("SET").arg("after").arg(1).query::<()>(&mut conn(proxy)).is_ok()
    });
    check_acked(proxy, &acked, operator_log);
    let extra: Vec<u64> = (501..=700).collect();
    let mut c = conn(proxy);
    for i in &extra {
        let _: () = redis::cmd("SET").arg(format!("key:{i}")).arg(i).query(&mut c).unwrap();
    }
    // The old master is back, as a replica of the new one, read-only, and in sync.
    wait_until(Duration::from_secs(60), "the old master back as a replica", || {
        let Ok(mut old) =
            redis::Client::open(pika_e2e::admin_url(&format!("127.0.0.1:{base}"))).unwrap().get_connection()
        else {
            return false;
        };
        let text: String = redis::cmd("pkcluster").arg("info").arg("slot").arg("0").query(&mut old).unwrap_or_default();
        text.contains(&format!("master: 127.0.0.1:{}", base + 1)) && text.contains("kConnected")
    });
    // A key of slot 0, the slot the wait above saw re-pointed: the others re-sync one by one.
    let key = (1..=700).map(|i| format!("key:{i}")).find(|k| common::slot::key_slot(k.as_bytes(), 64) == 0).unwrap();
    let refused = redis::cmd("SET").arg(&key).arg(0).query::<()>(&mut conn(base)).unwrap_err();
    assert!(refused.to_string().contains("read-only"), "{refused}");
    assert!(operator_log().contains("reason=\"Failover\""), "{}", operator_log());
    terminate(&mut operator, &[proxy, base, base + 1, base + 10, base + 11]);
}

#[test]
fn replica_count_changes_add_and_remove_replicas() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, manifest(1)).unwrap();
    let (base, proxy) = pika_e2e::free_ports();
    let mut operator = start(&file, dir.path(), base, proxy, &[]);
    wait_serving(proxy);
    let mut c = conn(proxy);
    for i in 0..100 {
        let _: () = redis::cmd("SET").arg(format!("key:{i}")).arg(i).query(&mut c).unwrap();
    }
    // One more replica: it starts, follows the master and catches up.
    std::fs::write(&file, manifest(1).replace("replicasPerGroup: 1", "replicasPerGroup: 2")).unwrap();
    wait_until(Duration::from_secs(60), "the new replica in sync", || {
        let Ok(mut r) =
            redis::Client::open(pika_e2e::admin_url(&format!("127.0.0.1:{}", base + 2))).unwrap().get_connection()
        else {
            return false;
        };
        let text: String = redis::cmd("pkcluster").arg("info").arg("slot").query(&mut r).unwrap_or_default();
        let slots = common::pkinfo::parse_slot_info(&text).unwrap_or_default();
        slots.len() == 64
            && slots.iter().all(|s| s.slave.as_ref().is_some_and(|r| r.state == common::protocol::LinkState::Connected))
            && redis::cmd("GET").arg("key:7").query::<Option<i64>>(&mut r).ok().flatten() == Some(7)
    });
    // Back to one: the extra replica stops; the master and the first replica stay.
    std::fs::write(&file, manifest(1)).unwrap();
    wait_until(Duration::from_secs(30), "the extra replica to stop", || {
        TcpStream::connect(("127.0.0.1", base + 2)).is_err()
    });
    assert_eq!(writable(base), Some(64));
    let _: () = redis::cmd("SET").arg("after").arg(1).query(&mut c).unwrap();
    terminate(&mut operator, &[proxy, base, base + 1]);
}

/// The start of the tests that change a running cluster: a runtime (nodes from `node_bin`) in
/// a fresh directory, with two groups serving and balanced. Returns the directory, the
/// manifest, the first node port, the proxy port and the runtime.
fn two_balanced_groups(node_bin: &Path) -> (tempfile::TempDir, PathBuf, u16, u16, Operator) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, manifest(2)).unwrap();
    let (base, proxy) = pika_e2e::free_ports();
    let operator = start_with(&file, dir.path(), base, proxy, &[], node_bin);
    wait_serving(proxy);
    wait_balanced(base, 2, &|| log_of(dir.path()));
    (dir, file, base, proxy, operator)
}

/// The runtime's log in `dir`.
fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("operator.log")).unwrap_or_default()
}

/// Full syncs each node on `ports` served so far.
fn full_syncs(ports: &[u16]) -> Vec<u64> {
    ports.iter().map(|p| pika_e2e::full_syncs_served(&format!("127.0.0.1:{p}"))).collect()
}

/// A planned switchover asked for with the manifest's annotation, under a writer that takes no
/// error: no request fails (they are held, not refused), every acknowledged write is there,
/// group 0's replica is its master, the old master follows it, and no node did a full sync.
#[test]
fn a_switchover_annotation_hands_a_master_over_without_a_failed_request() {
    let _serial = serial();
    let (dir, file, base, proxy, mut operator) = two_balanced_groups(&sibling("pika-node"));
    let operator_log = || log_of(dir.path());
    let nodes = [base, base + 1, base + 10, base + 11];
    let full_before = full_syncs(&nodes);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(proxy, stop.clone(), false);
    thread::sleep(Duration::from_millis(500));
    let annotated =
        manifest(2).replace("  name: e2e\n", "  name: e2e\n  annotations:\n    pika.sharding.io/switchover: g0\n");
    std::fs::write(&file, annotated).unwrap();
    let started = Instant::now();
    wait_until(Duration::from_secs(60), "g0-m1 to serve group 0", || {
        writable(base + 1) == Some(32) && writable(base) == Some(0)
    });
    eprintln!("switchover done after {:?}", started.elapsed());
    let status = dir.path().join("data/e2e/switchover.json");
    wait_until(Duration::from_secs(10), "the switchover recorded as done", || {
        std::fs::read_to_string(&status).unwrap_or_default().contains("Succeeded")
    });
    stop_and_check_writes(proxy, &stop, writer, &operator_log);
    wait_until(Duration::from_secs(30), "the old master to follow the new one", || {
        let text: String = redis::cmd("pkcluster").arg("info").arg("slot").arg("0").query(&mut conn(base)).unwrap();
        text.contains(&format!("master: 127.0.0.1:{}", base + 1)) && text.contains("kConnected")
    });
    assert_eq!(full_syncs(&nodes), full_before, "a full sync during the switchover\n{}", operator_log());
    assert!(operator_log().contains("reason=\"Switchover\""), "{}", operator_log());
    terminate(&mut operator, &[proxy, base, base + 1, base + 10, base + 11]);
}

/// The pid a node gives in INFO, or None if it does not answer.
fn pid(port: u16) -> Option<u32> {
    let mut c = redis::Client::open(pika_e2e::admin_url(&format!("127.0.0.1:{port}"))).ok()?.get_connection().ok()?;
    let info: String = redis::cmd("INFO").query(&mut c).ok()?;
    common::protocol::info_process_id(&info)
}

/// Slots the nodes of `dir` re-synced in full, from their logs (kept across restarts).
fn full_syncs_done(dir: &Path) -> usize {
    let data = dir.join("data/e2e");
    let logs = std::fs::read_dir(&data).unwrap().filter_map(|e| Some(e.ok()?.path().join("node.log")));
    logs.map(|l| std::fs::read_to_string(l).unwrap_or_default().matches("full sync done").count()).sum()
}

/// A new node binary (here: the same one copied again, a new revision) restarts every member
/// once, one at a time, replicas first and each master after a switchover, under a writer
/// that takes no error; no slot re-syncs in full.
#[test]
fn a_new_node_binary_rolls_every_member_replicas_first_without_a_failed_request() {
    let _serial = serial();
    let bin = tempfile::tempdir().unwrap();
    let install = || {
        std::fs::copy(sibling("pika-node"), bin.path().join("pika-node.new")).unwrap();
        std::fs::rename(bin.path().join("pika-node.new"), bin.path().join("pika-node")).unwrap();
    };
    install();
    let (dir, _file, base, proxy, mut operator) = two_balanced_groups(&bin.path().join("pika-node"));
    let operator_log = || log_of(dir.path());
    let nodes = [base, base + 1, base + 10, base + 11];
    assert_eq!((writable(base), writable(base + 10)), (Some(32), Some(32)), "member 0 of each group is master");
    let pids: Vec<Option<u32>> = nodes.iter().map(|&p| pid(p)).collect();
    let synced = full_syncs_done(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(proxy, stop.clone(), false);
    thread::sleep(Duration::from_millis(500));
    thread::sleep(Duration::from_millis(20)); // a new modification time
    install();
    let started = Instant::now();
    wait_until(Duration::from_secs(120), "every member restarted", || {
        nodes.iter().zip(&pids).all(|(&p, before)| pid(p).is_some_and(|now| Some(now) != *before)) && balanced(base, 2)
    });
    eprintln!("rolling update of 4 members took {:?}", started.elapsed());
    stop_and_check_writes(proxy, &stop, writer, &operator_log);
    let log = operator_log();
    let restarted =
        |member: &str| log.find(&format!("restarting {member} on")).unwrap_or_else(|| panic!("{member}\n{log}"));
    for g in 0..2 {
        assert!(restarted(&format!("g{g}-m1")) < restarted(&format!("g{g}-m0")), "group {g}: the master last\n{log}");
    }
    assert_eq!((writable(base + 1), writable(base + 11)), (Some(32), Some(32)), "the masters were handed over");
    assert_eq!(full_syncs_done(dir.path()), synced, "a slot re-synced in full during the roll\n{log}");
    terminate(&mut operator, &[proxy, base, base + 1, base + 10, base + 11]);
}

/// A node's option as CONFIG GET reports it.
fn config_get(port: u16, name: &str) -> Option<String> {
    let mut c = redis::Client::open(pika_e2e::admin_url(&format!("127.0.0.1:{port}"))).ok()?.get_connection().ok()?;
    let kv: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(&mut c).ok()?;
    kv.get(1).cloned()
}

/// `spec.config` edits under a writer that takes no error: a live option reaches every node
/// without a restart (an unknown one is left out and logged); an option that needs a restart
/// rolls the members as a new binary does.
#[test]
fn config_changes_are_set_live_or_rolled_out() {
    let _serial = serial();
    let (dir, file, base, proxy, mut operator) = two_balanced_groups(&sibling("pika-node"));
    let operator_log = || log_of(dir.path());
    let nodes = [base, base + 1, base + 10, base + 11];
    let pids: Vec<Option<u32>> = nodes.iter().map(|&p| pid(p)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(proxy, stop.clone(), false);
    let with_config = |config: &str| format!("{}  config:\n{config}", manifest(2));
    std::fs::write(&file, with_config("    slowlog-max-len: '333'\n    no-such-option: x\n")).unwrap();
    wait_until(Duration::from_secs(30), "slowlog-max-len set on every node", || {
        nodes.iter().all(|&p| config_get(p, "slowlog-max-len").as_deref() == Some("333"))
    });
    assert_eq!(nodes.iter().map(|&p| pid(p)).collect::<Vec<_>>(), pids, "a live option restarted a node");
    assert!(operator_log().contains("no-such-option: \"x\": unknown option"), "{}", operator_log());
    std::fs::write(&file, with_config("    slowlog-max-len: '333'\n    block-cache: 64mb\n")).unwrap();
    wait_until(Duration::from_secs(120), "every member restarted with the new block-cache", || {
        nodes.iter().zip(&pids).all(|(&p, before)| pid(p).is_some_and(|now| Some(now) != *before))
            && nodes.iter().all(|&p| config_get(p, "block-cache").as_deref() == Some("67108864"))
            && balanced(base, 2)
    });
    stop_and_check_writes(proxy, &stop, writer, &operator_log);
    assert!(nodes.iter().all(|&p| config_get(p, "slowlog-max-len").as_deref() == Some("333")));
    terminate(&mut operator, &[proxy, base, base + 1, base + 10, base + 11]);
}

/// docs/operator.md, "Passwords": the runtime makes the admin password, keeps it (and every
/// node's pika.conf) readable by its owner only, puts no password on a command line, and the
/// data password opens no admin command on the nodes or the proxy.
#[test]
fn secrets_stay_off_command_lines_and_the_data_user_runs_no_admin_command() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(
        &file,
        manifest(1).replace("  slots: 64\n", "  slots: 64\n  passwordSecretRef: {name: e2e-password}\n"),
    )
    .unwrap();
    let (base, proxy) = pika_e2e::free_ports();
    // No admin password given: the runtime makes one.
    let mut operator =
        start(&file, dir.path(), base, proxy, &[("PIKA_PASSWORD", "data-pw"), ("PIKA_ADMIN_PASSWORD", "")]);
    let log = || log_of(dir.path());
    let data_url = |port: u16| format!("redis://:data-pw@127.0.0.1:{port}/");
    wait_until(Duration::from_secs(60), "the cluster to serve the data password", || {
        let c = redis::Client::open(data_url(proxy)).unwrap().get_connection();
        c.is_ok_and(|mut c| redis::cmd("SET").arg("probe").arg(1).query::<()>(&mut c).is_ok())
    });
    let admin_file = dir.path().join("data/e2e/admin-password");
    let admin_password = std::fs::read_to_string(&admin_file).unwrap();
    assert!(admin_password.len() >= 32, "{admin_password:?}");
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&admin_file), 0o600, "{}", admin_file.display());
    for member in ["g0-m0", "g0-m1"] {
        let conf = dir.path().join("data/e2e").join(member).join("pika.conf");
        assert_eq!(mode(&conf), 0o600, "{}", conf.display());
        assert!(std::fs::read_to_string(&conf).unwrap().contains("userpass : data-pw"));
    }
    // No process shows a password in its command line.
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(!cmdline.contains(&admin_password) && !cmdline.contains("data-pw"), "{cmdline}");
    }
    // The data password runs data commands, never admin ones.
    for (port, admin_command) in [
        (base, &["CONFIG", "GET", "port"][..]),
        (base, &["FLUSHALL"]),
        (proxy, &["PXROUTE", "GET"]),
        (proxy, &["FLUSHALL"]),
    ] {
        let mut c = redis::Client::open(data_url(port)).unwrap().get_connection().unwrap();
        let refused = redis::cmd(admin_command[0]).arg(&admin_command[1..]).query::<redis::Value>(&mut c);
        let text = refused.map_err(|e| e.to_string()).expect_err("an admin command for the data password");
        assert!(text.to_ascii_uppercase().contains("NOPERM"), "{port} {admin_command:?}: {text}\n{}", log());
    }
    let admin = format!("redis://admin:{admin_password}@127.0.0.1:{base}/");
    let mut c = redis::Client::open(admin).unwrap().get_connection().unwrap();
    let shown: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("*pass*").query(&mut c).unwrap();
    assert!(shown.iter().all(|v| !v.contains("data-pw") && !v.contains(&admin_password)), "{shown:?}");
    // (No connection of ours left open: the processes stop without waiting for them.)
    drop(c);
    terminate(&mut operator, &[proxy, base, base + 1]);
}
