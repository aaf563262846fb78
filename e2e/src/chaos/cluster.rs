//! A cluster under test: `pika-operator local` started on a manifest in a work directory, and
//! what the faults need from outside: the processes' pids, signals, the manifest's group count,
//! which member masters which slots, and whether the cluster is whole again.
//!
//! Everything is asked of the processes themselves (`INFO` for pids, `pkcluster writable` and
//! `pkcluster info slot` for roles), as an operations team would, not of the operator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::pkinfo::parse_slot_info;
use common::slotset::{format_slots, parse_slots};

/// The failover setting of the manifest: a master silent this long is replaced (its lease has
/// run out by then).
pub const FAILOVER_AFTER_SECONDS: u64 = 3;

pub struct LocalCluster {
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub base: u16,
    pub proxy: u16,
    /// `spec.groups` as the manifest says now.
    pub groups: u32,
    /// The most groups the manifest ever asked for (members of retired groups may still run).
    pub max_groups: u32,
    pub replicas: u32,
    pub slots: u32,
    /// `spec.durability.mode`: writes acknowledged once on a replica too.
    pub replicated: bool,
    bins: PathBuf,
    operator: Option<Child>,
    /// Processes this run stopped with SIGSTOP and has not continued yet.
    stopped: Vec<u32>,
}

pub struct ClusterOptions {
    pub groups: u32,
    pub replicas: u32,
    pub slots: u32,
    /// Replicated acknowledgement (`spec.durability.mode: replicated`, one replica's ack).
    pub replicated: bool,
    /// Where the cluster's data and logs go (a temporary directory if None).
    pub dir: Option<PathBuf>,
    /// Where pika-operator, pika-node and pika-proxy are.
    pub bins: PathBuf,
}

fn conn(port: u16) -> Option<redis::Connection> {
    let client = redis::Client::open(crate::admin_url(&format!("127.0.0.1:{port}"))).ok()?;
    let conn = client.get_connection_with_timeout(Duration::from_secs(1)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    Some(conn)
}

/// Sends a signal with kill(1) (`-9`, `-STOP`, `-CONT`, `-TERM`).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(sig).arg(pid.to_string()).stderr(Stdio::null()).status();
}

impl LocalCluster {
    pub fn start(opts: ClusterOptions) -> Result<LocalCluster, String> {
        let (dir, tmp) = match opts.dir {
            Some(d) => {
                std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
                (d, None)
            }
            None => {
                let t = tempfile::Builder::new().prefix("pika-chaos").tempdir().map_err(|e| e.to_string())?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        for bin in ["pika-operator", "pika-node", "pika-proxy"] {
            if !opts.bins.join(bin).exists() {
                return Err(format!("{} missing: build the workspace first", opts.bins.join(bin).display()));
            }
        }
        if opts.groups + 1 > 4 || opts.replicas > 9 {
            return Err("at most 3 groups (one more while scaling) and 9 replicas: the ports are base + 10*group + member, below base + 40".into());
        }
        let (base, proxy) = crate::free_ports();
        let mut cluster = LocalCluster {
            dir,
            _tmp: tmp,
            base,
            proxy,
            groups: opts.groups,
            max_groups: opts.groups,
            replicas: opts.replicas,
            slots: opts.slots,
            replicated: opts.replicated,
            bins: opts.bins,
            operator: None,
            stopped: Vec::new(),
        };
        cluster.write_manifest()?;
        cluster.start_operator(None, 16)?;
        Ok(cluster)
    }

    fn manifest_path(&self) -> PathBuf {
        self.dir.join("cluster.yaml")
    }

    fn write_manifest(&self) -> Result<(), String> {
        let mut text = format!(
            "apiVersion: pika.sharding.io/v1alpha1\nkind: PikaCluster\nmetadata:\n  name: chaos\nspec:\n  groups: {}\n  \
             replicasPerGroup: {}\n  slots: {}\n  failoverAfterSeconds: {FAILOVER_AFTER_SECONDS}\n",
            self.groups, self.replicas, self.slots
        );
        if self.replicated {
            text.push_str("  durability:\n    mode: replicated\n    minReplicaAcks: 1\n");
        }
        std::fs::write(self.manifest_path(), text).map_err(|e| e.to_string())
    }

    /// Edits the manifest's group count: the operator moves slots to the new groups, or out of
    /// the leaving ones.
    pub fn set_groups(&mut self, groups: u32) -> Result<(), String> {
        self.groups = groups;
        self.max_groups = self.max_groups.max(groups);
        self.write_manifest()
    }

    /// Starts the operator (`crash_at`: it aborts at that cutover step, see
    /// `PIKA_OPERATOR_CRASH_AT`), moving `batch` slots per cutover.
    pub fn start_operator(&mut self, crash_at: Option<&str>, batch: usize) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("operator.log"))
            .map_err(|e| e.to_string())?;
        let mut cmd = Command::new(self.bins.join("pika-operator"));
        cmd.args(["local", "-f"])
            .arg(self.manifest_path())
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--proxy-listen", &self.proxy_addr(), "--node-port-base", &self.base.to_string()])
            .arg("--node-bin")
            .arg(self.bins.join("pika-node"))
            .arg("--proxy-bin")
            .arg(self.bins.join("pika-proxy"))
            .args(["--batch", &batch.to_string()])
            // RUST_LOG overrides (say `pika_operator=debug` to follow a hang).
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("PIKA_ADMIN_PASSWORD", crate::ADMIN_PASSWORD)
            .env_remove("PIKA_OPERATOR_CRASH_AT")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(step) = crash_at {
            cmd.env("PIKA_OPERATOR_CRASH_AT", step);
        }
        self.operator = Some(cmd.spawn().map_err(|e| format!("cannot start pika-operator: {e}"))?);
        Ok(())
    }

    /// Whether the operator process is gone (killed, or aborted at a crash point).
    pub fn operator_exited(&mut self) -> bool {
        match self.operator.as_mut() {
            None => true,
            Some(child) => !matches!(child.try_wait(), Ok(None)),
        }
    }

    pub fn kill_operator(&mut self) {
        if let Some(mut child) = self.operator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn proxy_addr(&self) -> String {
        format!("127.0.0.1:{}", self.proxy)
    }

    pub fn port(&self, group: u32, member: u32) -> u16 {
        self.base + (10 * group + member) as u16
    }

    /// The pid a node or proxy reports in `INFO` (None if it does not answer).
    pub fn pid(&self, port: u16) -> Option<u32> {
        let info: String = redis::cmd("INFO").query(&mut conn(port)?).ok()?;
        common::protocol::info_process_id(&info)
    }

    /// The slots a node accepts writes for (table 0), None if it does not answer.
    pub fn writable(&self, port: u16) -> Option<Vec<u32>> {
        let tables: Vec<(i64, i64, String)> = redis::cmd("pkcluster").arg("writable").query(&mut conn(port)?).ok()?;
        let slots = tables.iter().find(|t| t.0 == 0).map_or("", |t| t.2.as_str());
        parse_slots(slots).ok()
    }

    /// Group `g`'s master: the member that accepts writes, with its slots.
    pub fn master(&self, group: u32) -> Option<(u16, Vec<u32>)> {
        (0..=self.replicas).map(|m| self.port(group, m)).find_map(|p| {
            let slots = self.writable(p)?;
            (!slots.is_empty()).then_some((p, slots))
        })
    }

    /// Group `g`'s members that answer and accept no writes.
    pub fn replicas_of(&self, group: u32) -> Vec<u16> {
        let ports = (0..=self.replicas).map(|m| self.port(group, m));
        ports.filter(|&p| self.writable(p).is_some_and(|s| s.is_empty())).collect()
    }

    pub fn stop(&mut self, pid: u32) {
        signal(pid, "-STOP");
        self.stopped.push(pid);
    }

    pub fn resume(&mut self, pid: u32) {
        signal(pid, "-CONT");
        self.stopped.retain(|&p| p != pid);
    }

    /// Every node port this cluster may have processes on.
    fn all_ports(&self) -> Vec<u16> {
        (0..self.max_groups)
            .flat_map(|g| (0..=self.replicas).map(move |m| (g, m)))
            .map(|(g, m)| self.port(g, m))
            .collect()
    }

    /// Slots that two nodes accept writes for at once. Nodes are read one after the other, so a
    /// slot handed over between two reads looks writable on both; a pair is reported only if it
    /// still does when read again in the opposite order (a handover fences the old master
    /// before the new one takes writes, so that order cannot see both unless both are).
    pub fn two_writable(&self) -> Vec<String> {
        let ports = self.all_ports();
        let mut owners: BTreeMap<u32, Vec<u16>> = BTreeMap::new();
        for &p in &ports {
            for s in self.writable(p).unwrap_or_default() {
                owners.entry(s).or_default().push(p);
            }
        }
        let mut found = Vec::new();
        for (slot, nodes) in owners.into_iter().filter(|(_, n)| n.len() > 1) {
            let again: Vec<u16> =
                nodes.iter().rev().copied().filter(|&p| self.writable(p).is_some_and(|s| s.contains(&slot))).collect();
            if again.len() > 1 {
                found.push(format!("slot {slot} writable on ports {again:?}"));
            }
        }
        found
    }

    /// Whether the cluster is whole: every member of every group answers, every slot has one
    /// master, and each master slot has its replicas attached and streaming. Err says what is
    /// missing.
    pub fn whole(&self) -> Result<(), String> {
        for g in 0..self.groups {
            for m in 0..=self.replicas {
                let p = self.port(g, m);
                conn(p).ok_or(format!("g{g}-m{m} (port {p}) does not answer"))?;
            }
        }
        if conn(self.proxy).is_none() {
            return Err("the proxy does not answer".into());
        }
        let mut owner: BTreeMap<u32, u16> = BTreeMap::new();
        for p in self.all_ports() {
            let slots = self.writable(p).unwrap_or_default();
            for &s in &slots {
                if let Some(other) = owner.insert(s, p) {
                    return Err(format!("slot {s} writable on ports {other} and {p}"));
                }
            }
            if slots.is_empty() {
                continue;
            }
            let info: String = redis::cmd("pkcluster")
                .arg("info")
                .arg("slot")
                .arg(format_slots(&slots))
                .query(&mut conn(p).ok_or("a master stopped answering")?)
                .map_err(|e| format!("pkcluster info slot on {p}: {e}"))?;
            for slot in parse_slot_info(&info).map_err(|e| e.to_string())? {
                let streaming = slot.streaming_replicas();
                if streaming < self.replicas as usize {
                    return Err(format!(
                        "slot {} on {p}: {streaming} of {} replicas streaming",
                        slot.slot, self.replicas
                    ));
                }
            }
        }
        if let Some(s) = (0..self.slots).find(|s| !owner.contains_key(s)) {
            return Err(format!("slot {s} has no writable master"));
        }
        Ok(())
    }

    /// Continues every stopped process, stops the operator (which stops the processes it runs)
    /// and kills whatever is left of this cluster: processes adopted by a restarted operator
    /// that did not stop, and nodes of a group the operator lost track of.
    pub fn shut_down(&mut self) {
        for pid in std::mem::take(&mut self.stopped) {
            signal(pid, "-CONT");
        }
        if let Some(mut child) = self.operator.take() {
            signal(child.id(), "-TERM");
            for _ in 0..200 {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Trailing separators so that a port or directory is not matched inside a longer one.
        let marks = [format!("{}/", self.dir.display()), format!("127.0.0.1:{} ", self.proxy)];
        for pid in processes_mentioning(&marks) {
            signal(pid, "-9");
        }
    }

    pub fn log_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Pids whose command line contains one of `marks`.
fn processes_mentioning(marks: &[String]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let me = std::process::id();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            marks.iter().any(|m| cmdline.contains(m.as_str()))
        })
        .collect()
}
