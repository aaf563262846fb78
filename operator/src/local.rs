//! The local runtime: `pika-operator local -f cluster.yaml` runs a PikaCluster as local
//! processes (pika-node per group member, one pika-proxy) instead of StatefulSets, with the same
//! planner and cutover as in Kubernetes, and keeps it in line with the manifest: editing
//! `groups` moves slots to new groups or drains leaving ones.
//!
//! Layout: group `g`, member `m` (0 = the first master) listens on `node_port_base + 10*g + m`
//! with its data in `<data-dir>/<cluster>/g<g>-m<m>/`; the proxy listens on `--proxy-listen`.
//! Everything the cluster knows is in the nodes (slots, roles), so a restarted runtime finds
//! its cluster where it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio::process::{Child, Command};

use crate::admin::Admin;
use crate::crd::{PikaCluster, PikaClusterSpec};
use crate::cutover::{self, GroupNodes, Limits};
use crate::dataplane::{self, Ownership, Topology};
use crate::planner;

#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub manifest: PathBuf,
    pub data_dir: PathBuf,
    pub proxy_listen: String,
    pub node_port_base: u16,
    pub node_bin: PathBuf,
    pub proxy_bin: PathBuf,
    /// Slots moved per cutover.
    pub batch: usize,
}

/// A process of the cluster: started by this runtime, or adopted (found already serving on its
/// port, left by a runtime that crashed).
struct Proc {
    port: u16,
    child: Option<Child>,
}

type Member = Proc;

pub struct Runtime {
    config: LocalConfig,
    /// Per group, which member is the master (member 0 until a failover).
    masters: BTreeMap<u32, usize>,
    /// Members not answering, since when.
    down_since: BTreeMap<(u32, usize), Instant>,
    /// Former masters replaced by a failover: they come back fenced and re-sync in full.
    demoted: std::collections::BTreeSet<(u32, usize)>,
    /// Slots each group's master owned writable when last observed: what a failover promotes.
    last_owned: BTreeMap<u32, Vec<u32>>,
    name: String,
    spec: PikaClusterSpec,
    manifest_mtime: Option<SystemTime>,
    groups: BTreeMap<u32, Vec<Member>>,
    proxy: Option<Proc>,
    admin: Admin,
    epoch: u64,
}

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Reads the manifest's PikaCluster (the first document of that kind).
pub fn read_manifest(path: &Path) -> Result<PikaCluster, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    for doc in text.split("\n---") {
        if doc.contains("kind: PikaCluster") {
            let c: PikaCluster = serde_yaml::from_str(doc).map_err(|e| format!("{}: {e}", path.display()))?;
            if c.spec.groups == 0 {
                return Err(format!("{}: spec.groups must be at least 1", path.display()));
            }
            return Ok(c);
        }
    }
    Err(format!("{}: no PikaCluster in it", path.display()))
}

impl Runtime {
    pub fn new(config: LocalConfig) -> Result<Runtime, String> {
        let cluster = read_manifest(&config.manifest)?;
        let name = cluster.metadata.name.clone().unwrap_or_else(|| "cluster".into());
        let password = match &cluster.spec.password_secret_ref {
            // Locally there is no Secret store: the runtime takes the password from the env.
            Some(_) => std::env::var("PIKA_PASSWORD").ok(),
            None => None,
        };
        Ok(Runtime {
            masters: BTreeMap::new(),
            down_since: BTreeMap::new(),
            demoted: Default::default(),
            last_owned: BTreeMap::new(),
            manifest_mtime: std::fs::metadata(&config.manifest).and_then(|m| m.modified()).ok(),
            config,
            name,
            spec: cluster.spec,
            groups: BTreeMap::new(),
            proxy: None,
            admin: Admin { password },
            epoch: 0,
        })
    }

    fn port(&self, group: u32, member: u32) -> u16 {
        self.config.node_port_base + (10 * group + member) as u16
    }

    /// Starts a member's process (its data directory and config are created on first start).
    async fn start_member(&self, group: u32, member: u32, fenced: bool) -> Result<Member, String> {
        let port = self.port(group, member);
        let dir = self.config.data_dir.join(&self.name).join(format!("g{group}-m{member}"));
        if self.admin.answers(&addr(port)).await {
            // Adopt it only if it is this member (its data directory), not a stranger on the port.
            let db = dir.join("db").display().to_string();
            let reply = self.admin.call(&addr(port), &["config", "get", "db-path"]).await;
            let theirs = match reply {
                Ok(common::resp::Frame::Array(kv)) => {
                    kv.get(1).and_then(|f| f.as_bytes()).map(|b| String::from_utf8_lossy(b).into_owned())
                }
                _ => None,
            };
            if theirs.as_deref() != Some(db.as_str()) {
                return Err(format!("port {port} is in use by another process ({theirs:?}, expected {db})"));
            }
            tracing::info!(group, member, port, "adopted a running node");
            return Ok(Proc { port, child: None });
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut conf = format!(
            "port : {port}\nbind : 127.0.0.1\ninstance-mode : sharding\ndefault-slot-num : {}\ndb-path : {}\n",
            self.spec.slots,
            dir.join("db").display()
        );
        if let Some(pw) = &self.admin.password {
            conf.push_str(&format!("requirepass : {pw}\nmasterauth : {pw}\n"));
        }
        for (k, v) in &self.spec.config {
            conf.push_str(&format!("{k} : {v}\n"));
        }
        if fenced {
            conf.push_str("start-fenced : yes\n");
        }
        let conf_path = dir.join("pika.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.config.node_bin);
        cmd.arg("-c").arg(&conf_path);
        let child = spawn_logged(cmd, &dir.join("node.log"), port).await?;
        tracing::info!(group, member, port, "node started");
        Ok(Proc { port, child: Some(child) })
    }

    fn nodes(&self, group: u32) -> GroupNodes {
        let members = &self.groups[&group];
        let master = self.masters.get(&group).copied().unwrap_or(0);
        GroupNodes {
            master: addr(members[master].port),
            replicas: members.iter().enumerate().filter(|(i, _)| *i != master).map(|(_, m)| addr(m.port)).collect(),
        }
    }

    fn topology(&self) -> Topology {
        Topology { slots: self.spec.slots, groups: self.groups.keys().map(|&g| (g, self.nodes(g))).collect() }
    }

    /// For groups whose master is not known yet (a new runtime), the member that is (after a
    /// failover it is not member 0).
    async fn discover_masters(&mut self) {
        let unknown: Vec<u32> = self.groups.keys().copied().filter(|g| !self.masters.contains_key(g)).collect();
        for g in unknown {
            let members: Vec<String> = self.groups[&g].iter().map(|m| addr(m.port)).collect();
            let master = dataplane::find_master(&self.admin, &members, self.spec.slots).await;
            self.masters.insert(g, master);
        }
    }

    /// Whether a member serves: its process runs (ours) and it answers PING.
    async fn is_up(&mut self, group: u32, member: usize) -> bool {
        let proc = &mut self.groups.get_mut(&group).expect("group")[member];
        if let Some(child) = proc.child.as_mut() {
            if !matches!(child.try_wait(), Ok(None)) {
                proc.child = None;
                return false;
            }
        }
        let port = proc.port;
        self.admin.answers(&addr(port)).await
    }

    /// Watches every member: a replica that died is restarted at once (it resumes as a
    /// replica); a master unreachable for `failoverAfterSeconds` is replaced by the replica that
    /// acknowledged the most (never one in a full sync, never an empty one), the others follow
    /// it, the proxy is re-routed, and the old master comes back fenced and re-syncs in full
    /// before it serves anything.
    async fn watch_health(&mut self) -> Result<(), String> {
        let now = Instant::now();
        let failover_after = Duration::from_secs(self.spec.failover_after_seconds.max(1) as u64);
        let groups: Vec<u32> = self.groups.keys().copied().collect();
        for g in groups {
            let size = self.groups[&g].len();
            let master = self.masters.get(&g).copied().unwrap_or(0);
            for m in 0..size {
                if self.is_up(g, m).await {
                    self.down_since.remove(&(g, m));
                    continue;
                }
                let since = *self.down_since.entry((g, m)).or_insert(now);
                let exited = self.groups[&g][m].child.is_none();
                if m == master {
                    if now.duration_since(since) >= failover_after {
                        self.fail_over(g, m).await?;
                    }
                } else if exited {
                    let demoted = self.demoted.contains(&(g, m));
                    let proc = self.start_member(g, m as u32, demoted).await?;
                    self.groups.get_mut(&g).expect("group")[m] = proc;
                    if demoted {
                        let master = self.nodes(g).master;
                        self.admin
                            .follow_force(&addr(self.port(g, m as u32)), &master, "all")
                            .await
                            .map_err(|e| e.to_string())?;
                        self.demoted.remove(&(g, m));
                        tracing::info!(group = g, member = m, %master, "old master back as a replica (full sync)");
                    }
                    self.down_since.remove(&(g, m));
                }
            }
        }
        Ok(())
    }

    async fn fail_over(&mut self, g: u32, old: usize) -> Result<(), String> {
        let survivors: Vec<(usize, String)> =
            self.groups[&g].iter().enumerate().filter(|(i, _)| *i != old).map(|(i, m)| (i, addr(m.port))).collect();
        let Some(new) = dataplane::choose_successor(&self.admin, &survivors, self.spec.slots).await else {
            tracing::warn!(group = g, "master down and no replica can safely replace it; waiting");
            return Ok(());
        };
        let new_addr = addr(self.groups[&g][new].port);
        // Only what the old master owned as a writable master is taken over: slots the group
        // was still receiving from another group stay with that group.
        let slots = common::slotset::format_slots(self.last_owned.get(&g).map_or(&[][..], Vec::as_slice));
        tracing::warn!(group = g, old = old, new = new, master = %new_addr, slots = %slots, "failover");
        // The old master must not take writes any more, alive or not: ours is killed, an
        // adopted one is fenced if it still answers.
        let old_addr = addr(self.groups[&g][old].port);
        match self.groups.get_mut(&g).expect("group")[old].child.take() {
            Some(mut child) => {
                let _ = child.kill().await;
            }
            None => {
                let _ = self.admin.fence(&old_addr, "all").await;
                let _ = self.admin.call(&old_addr, &["shutdown"]).await;
            }
        }
        self.masters.insert(g, new);
        self.demoted.insert((g, old));
        let followers: Vec<String> = survivors.into_iter().filter(|(i, _)| *i != new).map(|(_, a)| a).collect();
        dataplane::take_over(&self.admin, &new_addr, &followers, &slots).await.map_err(|e| e.to_string())?;
        let owned = self.ownership().await?;
        self.push_routes(&owned).await?;
        Ok(())
    }

    /// Makes sure groups `0..n` run with `1 + replicasPerGroup` members each.
    /// Fewer replicas: the highest-numbered members that are not the master are stopped (their
    /// data stays; raised again, they come back as replicas and resume).
    async fn ensure_groups(&mut self, n: u32) -> Result<(), String> {
        let size = 1 + self.spec.replicas_per_group;
        for g in 0..n {
            let have = self.groups.get(&g).map_or(0, Vec::len) as u32;
            for m in have..size {
                let member = self.start_member(g, m, false).await?;
                self.groups.entry(g).or_default().push(member);
            }
            let master = self.masters.get(&g).copied().unwrap_or(0);
            while self.groups[&g].len() > size as usize && self.groups[&g].len() - 1 != master {
                let m = self.groups.get_mut(&g).expect("group").pop().expect("non-empty");
                let index = self.groups[&g].len();
                self.down_since.remove(&(g, index));
                self.demoted.remove(&(g, index));
                tracing::info!(group = g, member = index, "replica removed");
                self.stop(m).await;
            }
        }
        Ok(())
    }

    /// Slots each running group's master accepts writes for (remembered for failovers).
    async fn ownership(&mut self) -> Result<Ownership, String> {
        let owned = self.topology().ownership(&self.admin).await.map_err(|e| e.to_string())?;
        self.last_owned = owned.clone();
        Ok(owned)
    }

    async fn push_routes(&mut self, owned: &Ownership) -> Result<(), String> {
        self.epoch += 1;
        let routes = self.topology().routes(owned);
        self.admin
            .set_route(&self.config.proxy_listen, self.epoch, self.spec.slots, &routes)
            .await
            .map_err(|e| e.to_string())
    }

    async fn ensure_proxy(&mut self) -> Result<(), String> {
        if self.proxy.is_some() {
            return Ok(());
        }
        let port: u16 = self.config.proxy_listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(9221);
        if self.admin.answers(&self.config.proxy_listen).await {
            // Left by a runtime that stopped mid-cutover: nothing of ours is in flight now, so
            // whatever it holds is released (the repair pass has settled every slot).
            self.admin.release(&self.config.proxy_listen, "all").await.map_err(|e| e.to_string())?;
            self.epoch = self.admin.route_epoch(&self.config.proxy_listen).await.unwrap_or(0);
            self.proxy = Some(Proc { port, child: None });
            tracing::info!(listen = %self.config.proxy_listen, "adopted a running proxy");
            return Ok(());
        }
        let seeds: Vec<String> = self.groups.keys().map(|&g| self.nodes(g).master).collect();
        let mut cmd = Command::new(&self.config.proxy_bin);
        cmd.args(["--listen", &self.config.proxy_listen, "--seed-nodes", &seeds.join(",")]);
        if let Some(pw) = &self.admin.password {
            cmd.args(["--password", pw]);
        }
        let child = spawn_logged(cmd, &self.config.data_dir.join(&self.name).join("proxy.log"), port).await?;
        self.epoch = self.admin.route_epoch(&self.config.proxy_listen).await.unwrap_or(0);
        self.proxy = Some(Proc { port, child: Some(child) });
        tracing::info!(listen = %self.config.proxy_listen, "proxy started");
        Ok(())
    }

    /// One pass: processes, bootstrap, rebalance, retire drained groups.
    async fn reconcile(&mut self) -> Result<(), String> {
        let groups = self.spec.groups;
        let running = self.groups.keys().next_back().map_or(0, |g| g + 1);
        self.ensure_groups(groups.max(running)).await?;
        self.discover_masters().await;
        self.watch_health().await?;
        if self.groups.keys().any(|&g| self.down_since.contains_key(&(g, self.masters.get(&g).copied().unwrap_or(0)))) {
            return Ok(()); // a master is down: no slot moves until the group has one again
        }
        let topology = self.topology();
        let err = |e: crate::admin::AdminError| e.to_string();
        let owned = self.ownership().await?;
        if owned.is_empty() && !topology.any_slot_owned(&self.admin).await.map_err(err)? {
            topology.bootstrap(&self.admin, groups).await.map_err(err)?;
            tracing::info!(groups, slots = self.spec.slots, "bootstrapped");
        }
        topology.repair(&self.admin, &owned, &Default::default()).await.map_err(|e| e.to_string())?;
        let mut owned = self.ownership().await?;
        for r in topology.attach_replicas(&self.admin, &owned).await.map_err(err)? {
            tracing::warn!(replica = %r, "replica not answering; attached when it is back");
        }
        self.ensure_proxy().await?;
        if self.epoch == 0 {
            self.push_routes(&owned).await?;
        }
        for mv in planner::rebalance(&owned, groups) {
            for batch in mv.slots.chunks(self.config.batch.max(1)) {
                self.move_batch(&mut owned, mv.from, mv.to, batch).await?;
            }
        }
        // Groups beyond the spec own nothing now: stop them (their data stays on disk).
        let retired: Vec<u32> =
            self.groups.keys().copied().filter(|&g| g >= groups && !owned.contains_key(&g)).collect();
        for g in retired {
            for m in self.groups.remove(&g).unwrap_or_default() {
                self.stop(m).await;
            }
            tracing::info!(group = g, "group retired");
        }
        Ok(())
    }

    async fn move_batch(&mut self, owned: &mut Ownership, from: u32, to: u32, batch: &[u32]) -> Result<(), String> {
        let ranges = common::slotset::format_slots(batch);
        let after = dataplane::after_move(owned, from, to, batch);
        self.epoch += 1;
        let routes = self.topology().routes(&after);
        let proxies = vec![self.config.proxy_listen.clone()];
        let mut steps = cutover::Logged(|step: cutover::CutoverStep| {
            tracing::debug!(slots = %ranges, %step, "cutover step");
            cutover::crash_point(step);
        });
        let outcome = cutover::move_slots(
            &self.admin,
            &ranges,
            &self.nodes(from),
            &self.nodes(to),
            &proxies,
            (self.epoch, self.spec.slots, &routes),
            Limits::default(),
            cutover::Start::Beginning,
            &mut steps,
        )
        .await
        .map_err(|e| format!("moving {ranges} from g{from} to g{to}: {e}"))?;
        let pause_ms = outcome.pause.map(|p| p.as_millis() as u64);
        tracing::info!(slots = %ranges, from, to, pause_ms, attempts = outcome.attempts, "slots moved");
        // What a failover promotes: must follow every move, not only the last full observation.
        self.last_owned = after.clone();
        *owned = after;
        Ok(())
    }

    /// Re-reads the manifest if it changed. A change of `slots` is refused (immutable).
    fn reload(&mut self) {
        let mtime = std::fs::metadata(&self.config.manifest).and_then(|m| m.modified()).ok();
        if mtime == self.manifest_mtime {
            return;
        }
        self.manifest_mtime = mtime;
        match read_manifest(&self.config.manifest) {
            Ok(c) if c.spec.slots != self.spec.slots => {
                tracing::error!(was = self.spec.slots, now = c.spec.slots, "spec.slots is immutable; change ignored");
            }
            Ok(c) => {
                tracing::info!(groups = c.spec.groups, replicas = c.spec.replicas_per_group, "manifest changed");
                self.spec = c.spec;
            }
            Err(e) => tracing::error!(error = %e, "manifest not applied"),
        }
    }

    /// Runs until SIGINT/SIGTERM, then stops every process it started.
    pub async fn run(mut self) -> Result<(), String> {
        let mut signals = Box::pin(common::process::shutdown_signal());
        loop {
            self.reload();
            if !self.spec.paused {
                if let Err(e) = self.reconcile().await {
                    tracing::error!(error = %e, "reconcile failed; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = &mut signals => break,
            }
        }
        tracing::info!("stopping the cluster's processes");
        if let Some(p) = self.proxy.take() {
            self.stop(p).await;
        }
        for (_, members) in std::mem::take(&mut self.groups) {
            for m in members {
                self.stop(m).await;
            }
        }
        Ok(())
    }
}

impl Runtime {
    /// Stops a process: ours by SIGTERM, an adopted one by its SHUTDOWN command.
    async fn stop(&self, proc: Proc) {
        match proc.child {
            Some(mut child) => stop_child(&mut child).await,
            None => {
                let _ = self.admin.call(&addr(proc.port), &["shutdown"]).await;
            }
        }
    }
}

/// SIGTERM, then wait (SIGKILL after 10 s).
async fn stop_child(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// Starts one of the cluster's processes, its stderr appended to `log`, and waits until it
/// listens on `port`.
async fn spawn_logged(mut cmd: Command, log: &Path, port: u16) -> Result<Child, String> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(|e| e.to_string())?;
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    wait_port(port).await?;
    Ok(child)
}

async fn wait_port(port: u16) -> Result<(), String> {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("nothing listens on port {port} after 15 s"))
}
