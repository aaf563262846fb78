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
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::process::{Child, Command};

use crate::admin::{Admin, DataPlane};
use crate::authority::Authority;
use crate::control;
use crate::crd::{PikaCluster, PikaClusterSpec, SwitchoverStatus, SWITCHOVER_ANNOTATION};
use crate::cutover::{self, GroupNodes, Limits};
use crate::dataplane::{self, Ownership};
use crate::node_config::{self, NodeConfig};
use crate::rollout;
use crate::switchover;
use common::auth::{Accepted, Credential, Passwords};

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
    /// An adopted process's pid (from its `INFO`), to notice when it dies.
    pid: Option<u32>,
    /// The process exited (or was killed): it is started again, unless it is a master.
    exited: bool,
    /// What it was started from (the binary and its config: [`Runtime::revision`]); another
    /// one than the current makes it outdated, for the rolling update.
    revision: Option<String>,
}

impl Proc {
    fn started(port: u16, child: Child) -> Proc {
        Proc { port, child: Some(child), pid: None, exited: false, revision: None }
    }

    fn adopted(port: u16, pid: Option<u32>) -> Proc {
        Proc { port, child: None, pid, exited: false, revision: None }
    }

    /// Whether the process is gone: ours has exited, an adopted one's pid runs no more.
    fn gone(&mut self) -> bool {
        if !self.exited {
            self.exited = match (self.child.as_mut(), self.pid) {
                (Some(child), _) => !matches!(child.try_wait(), Ok(None)),
                (None, Some(pid)) => !pid_runs(pid),
                (None, None) => false,
            };
            if self.exited {
                self.child = None;
            }
        }
        self.exited
    }
}

/// Whether `pid` is a running process (not a zombie). Without /proc, assumed running.
fn pid_runs(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

type Member = Proc;

/// The move this runtime is making, written to `<data>/<name>/move.json` before each cutover
/// step as the Kubernetes runtime writes a SlotMigration's status: the pass knows about it (a
/// failover of either group mid-move promotes what the batch's step says it should, the repair
/// leaves its slots alone), and a restarted runtime resumes it where it was. Without it, a
/// target master killed mid-move left its group without a master: its replica followed it for
/// a batch it had not fully received, so no replica could safely replace it (pika-chaos, seed
/// 11, 30 minutes).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Moving {
    slots: Vec<u32>,
    to: u32,
    /// The batch in flight (empty between batches), its source, and the last step recorded.
    batch: Vec<u32>,
    from: Option<u32>,
    step: Option<cutover::CutoverStep>,
    done: Vec<u32>,
    /// Failed attempts of the batch (the move is given up after a few, unless promoted).
    attempts: u32,
}

impl Moving {
    fn promoted(&self) -> bool {
        control::InFlight::is_promoted(&self.batch, self.step)
    }

    fn in_flight(&self) -> control::InFlight {
        control::InFlight {
            slots: self.slots.clone(),
            to: self.to,
            batch: self.batch.clone(),
            from: self.from,
            promoted: self.promoted(),
            done: self.done.clone(),
        }
    }
}

/// Records each cutover step in the move file before it acts.
struct FileSteps<'a> {
    path: &'a Path,
    moving: &'a mut Moving,
}

impl cutover::Steps for FileSteps<'_> {
    fn step(
        &mut self,
        step: cutover::CutoverStep,
    ) -> impl std::future::Future<Output = Result<(), cutover::CutoverError>> + Send {
        self.moving.step = Some(step);
        let result =
            write_move(self.path, Some(self.moving)).map_err(|text| cutover::CutoverError::Record { step, text });
        tracing::debug!(slots = %common::slotset::format_slots(&self.moving.batch), %step, "cutover step");
        if result.is_ok() {
            cutover::crash_point(step);
        }
        std::future::ready(result)
    }
}

/// Writes the move file (whole, by rename), or removes it when no move is in flight.
fn write_move(path: &Path, moving: Option<&Moving>) -> Result<(), String> {
    match moving {
        Some(m) => write_file(path, &serde_json::to_string(m).expect("a move serialises")),
        None => match std::fs::remove_file(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other.map_err(|e| format!("{}: {e}", path.display())),
        },
    }
}

pub struct Runtime {
    config: LocalConfig,
    /// What the data-plane pass keeps between passes (masters, demoted members, owned slots).
    /// Members are named `g<group>-m<member>`.
    record: control::Record,
    epochs: control::Epochs,
    name: String,
    spec: PikaClusterSpec,
    manifest_mtime: Option<SystemTime>,
    groups: BTreeMap<u32, Vec<Member>>,
    proxy: Option<Proc>,
    admin: Admin,
    /// The admin and data passwords the nodes and the proxy start with.
    passwords: Passwords,
    /// The move in flight (see [`Moving`]).
    moving: Option<Moving>,
    /// From the last pass: a silent master's failover wait ends this soon.
    recheck_after: Option<Duration>,
    /// The manifest's `pika.sharding.io/switchover` annotation, and where the last switchover
    /// asked for stands (kept in `<data>/<name>/switchover.json`).
    switchover: Option<String>,
    switchover_status: Option<SwitchoverStatus>,
    /// The checksum of the live options last set on every node (`node_config`).
    live_config: Option<String>,
}

/// The local runtime's journal: the groups' record is not written (see
/// [`control::Unrecorded`]); the switchover's progress is, in a file.
struct LocalJournal<'a> {
    path: PathBuf,
    status: &'a mut Option<SwitchoverStatus>,
}

impl control::Journal for LocalJournal<'_> {
    fn save(
        &mut self,
        _: &BTreeMap<u32, control::GroupRecord>,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send {
        std::future::ready(Ok(()))
    }
}

impl switchover::Progress for LocalJournal<'_> {
    fn save(&mut self, status: &SwitchoverStatus) -> impl std::future::Future<Output = Result<(), String>> + Send {
        let written = serde_json::to_string_pretty(status)
            .map_err(|e| e.to_string())
            .and_then(|text| write_file(&self.path, &text));
        if written.is_ok() {
            *self.status = Some(status.clone());
        }
        std::future::ready(written)
    }
}

/// Entries of `spec.config` the nodes would not take (they are left out of pika.conf).
fn report_config(cluster: &PikaCluster) {
    for problem in NodeConfig::of(&cluster.spec).problems {
        tracing::error!(%problem, "spec.config entry left out of pika.conf");
    }
}

/// Writes `text` to `path` through a temporary file, so a crash leaves the old or the new.
fn write_file(path: &Path, text: &str) -> Result<(), String> {
    write_with_mode(path, text, 0o644)
}

/// [`write_file`] for a file with passwords in it: readable by its owner only.
fn write_secret_file(path: &Path, text: &str) -> Result<(), String> {
    write_with_mode(path, text, 0o600)
}

fn write_with_mode(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The local cluster's admin password: `PIKA_ADMIN_PASSWORD`, else the one kept in
/// `<data>/<name>/admin-password` (0600), made on the first start.
fn admin_password(dir: &Path) -> Result<String, String> {
    if let Some(pw) = std::env::var(common::auth::env_name("admin-password")).ok().filter(|p| !p.is_empty()) {
        return Ok(pw);
    }
    let path = dir.join("admin-password");
    match std::fs::read_to_string(&path) {
        Ok(pw) if !pw.trim().is_empty() => Ok(pw.trim().to_string()),
        _ => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let pw = crate::admin::generate_password();
            write_secret_file(&path, &pw)?;
            tracing::info!(file = %path.display(), "admin password made (AUTH admin <password> for admin commands)");
            Ok(pw)
        }
    }
}

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// The value of a PikaCluster's switchover annotation.
fn switchover_annotation(cluster: &PikaCluster) -> Option<String> {
    cluster.metadata.annotations.as_ref()?.get(SWITCHOVER_ANNOTATION).cloned()
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
        // The time stamp before the content: an edit in between is then seen as a change by
        // the next `reload` (the other order missed it: pika-chaos, seed 11).
        let manifest_mtime = std::fs::metadata(&config.manifest).and_then(|m| m.modified()).ok();
        let cluster = read_manifest(&config.manifest)?;
        let name = cluster.metadata.name.clone().unwrap_or_else(|| "cluster".into());
        let switchover = switchover_annotation(&cluster);
        report_config(&cluster);
        let password = match &cluster.spec.password_secret_ref {
            // Locally there is no Secret store: the runtime takes the data password from the env.
            Some(_) => std::env::var(common::auth::env_name("password")).ok().filter(|p| !p.is_empty()),
            None => None,
        };
        let admin_password = admin_password(&config.data_dir.join(&name))?;
        let admin = Admin {
            credential: Some(Credential::admin(&admin_password)),
            fallbacks: password.iter().map(Credential::password).collect(),
            authority: Arc::new(Authority::unlimited()),
        };
        Ok(Runtime {
            record: control::Record::default(),
            epochs: control::Epochs::default(),
            manifest_mtime,
            config,
            name,
            spec: cluster.spec,
            groups: BTreeMap::new(),
            proxy: None,
            admin,
            passwords: Passwords {
                admin: Accepted::new(admin_password, ""),
                user: Accepted::new(password.unwrap_or_default(), ""),
            },
            moving: None,
            recheck_after: None,
            switchover,
            switchover_status: None,
            live_config: None,
        }
        .with_recorded_move()
        .with_recorded_switchover())
    }

    fn move_file(&self) -> PathBuf {
        self.config.data_dir.join(&self.name).join("move.json")
    }

    /// Picks up the move a previous run of this runtime left unfinished.
    fn with_recorded_move(mut self) -> Runtime {
        let path = self.move_file();
        if let Ok(text) = std::fs::read_to_string(&path) {
            match serde_json::from_str::<Moving>(&text) {
                Ok(m) => {
                    tracing::info!(to = m.to, batch = %common::slotset::format_slots(&m.batch), step = ?m.step, "resuming a move");
                    self.moving = Some(m);
                }
                Err(e) => tracing::error!(file = %path.display(), error = %e, "unreadable move record ignored"),
            }
        }
        self
    }

    /// Nothing restarts a dead replica while this runtime moves slots, so the cleanup does not
    /// wait long for the target's replicas (pika-chaos, seed 11: a move waited minutes for a
    /// replica only the next pass would start); the repair deletes the old copies once they
    /// stream.
    fn limits(&self) -> Limits {
        Limits {
            cleanup_wait: Duration::from_secs(5),
            target_copies: self.spec.durability.min_acks() as usize,
            ..Limits::default()
        }
    }

    fn switchover_file(&self) -> PathBuf {
        self.config.data_dir.join(&self.name).join("switchover.json")
    }

    /// Picks up where the last switchover stands.
    fn with_recorded_switchover(mut self) -> Runtime {
        if let Ok(text) = std::fs::read_to_string(self.switchover_file()) {
            self.switchover_status = serde_json::from_str(&text).ok();
        }
        self
    }

    fn save_move(&self) -> Result<(), String> {
        write_move(&self.move_file(), self.moving.as_ref())
    }

    fn port(&self, group: u32, member: u32) -> u16 {
        self.config.node_port_base + (10 * group + member) as u16
    }

    fn member_dir(&self, group: u32, member: u32) -> PathBuf {
        self.config.data_dir.join(&self.name).join(format!("g{group}-m{member}"))
    }

    /// The options of a member's pika.conf the operator sets (the layout, paths, password).
    fn managed_conf(&self, group: u32, member: u32) -> String {
        let port = self.port(group, member);
        let mut conf = format!(
            "port : {port}\nbind : 127.0.0.1\ninstance-mode : sharding\ndefault-slot-num : {}\ndb-path : {}\n",
            self.spec.slots,
            self.member_dir(group, member).join("db").display()
        );
        // (The file is its owner's only: `write_secret_file`.)
        let pw = &self.passwords;
        conf.push_str(&format!("requirepass : {0}\nmasterauth : {0}\n", pw.admin.current));
        if pw.user.is_set() {
            conf.push_str(&format!("userpass : {}\n", pw.user.current));
        }
        // As in Kubernetes: nothing takes writes before the operator says so (a restarted
        // master comes back fenced; slots created by addslots are fenced until they are a
        // replica's or promoted).
        conf.push_str("start-fenced : yes\n");
        conf
    }

    /// A member's pika.conf: the managed options and the valid entries of `spec.config`.
    fn node_conf(&self, group: u32, member: u32) -> String {
        let mut conf = self.managed_conf(group, member);
        for (k, v) in NodeConfig::of(&self.spec).entries() {
            conf.push_str(&format!("{k} : {v}\n"));
        }
        conf
    }

    /// What every member started now would run, whatever its place: the options that need a
    /// restart and the node binary (its size and modification time, so a rebuilt or replaced
    /// binary is a new revision, as a new image is in Kubernetes). Live options are left out:
    /// they are set with CONFIG SET.
    fn spec_revision(&self) -> Vec<u8> {
        let mut spec = NodeConfig::of(&self.spec).restart_checksum().into_bytes();
        spec.extend_from_slice(self.spec.image.as_bytes());
        if let Ok(meta) = std::fs::metadata(&self.config.node_bin) {
            spec.extend_from_slice(&meta.len().to_le_bytes());
            let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            spec.extend_from_slice(&mtime.unwrap_or_default().as_nanos().to_le_bytes());
        }
        spec
    }

    /// What a member started now would run: its managed options and `spec` (from
    /// [`Self::spec_revision`]), as a checksum.
    fn revision(&self, group: u32, member: u32, spec: &[u8]) -> String {
        let mut hash = crc32fast::Hasher::new();
        hash.update(self.managed_conf(group, member).as_bytes());
        hash.update(spec);
        format!("{:08x}", hash.finalize())
    }

    /// Starts a member's process (its data directory and config are created on first start).
    async fn start_member(&self, group: u32, member: u32) -> Result<Member, String> {
        let port = self.port(group, member);
        let dir = self.member_dir(group, member);
        let revision_file = dir.join("revision");
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
            let mut proc = Proc::adopted(port, self.pid_of(&addr(port)).await);
            proc.revision = std::fs::read_to_string(&revision_file).ok();
            return Ok(proc);
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let conf_path = dir.join("pika.conf");
        write_secret_file(&conf_path, &self.node_conf(group, member))?;
        let revision = self.revision(group, member, &self.spec_revision());
        let mut cmd = Command::new(&self.config.node_bin);
        cmd.arg("-c").arg(&conf_path);
        let child = spawn_logged(cmd, &dir.join("node.log"), port).await?;
        write_file(&revision_file, &revision)?;
        tracing::info!(group, member, port, %revision, "node started");
        let mut proc = Proc::started(port, child);
        proc.revision = Some(revision);
        Ok(proc)
    }

    /// The pid a node or proxy gives in `INFO` (`process_id`).
    async fn pid_of(&self, at: &str) -> Option<u32> {
        let info = self.admin.call(at, &["info"]).await.ok()?;
        common::protocol::info_process_id(&String::from_utf8_lossy(info.as_bytes()?))
    }

    /// Groups that have a data directory: a restarted runtime must run (or adopt) every one of
    /// them, not only the manifest's. A group the manifest dropped may still hold slots (a
    /// scale-in that had not finished), and slots no known group holds are created afresh:
    /// empty and writable next to the real ones (found by pika-chaos: the manifest lowered
    /// while slots moved into the new group, then the runtime restarted). Groups that hold
    /// nothing are stopped again by the pass's retirement.
    fn groups_on_disk(&self) -> u32 {
        let Ok(entries) = std::fs::read_dir(self.config.data_dir.join(&self.name)) else { return 0 };
        entries
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix('g')?.split_once("-m")?.0.parse::<u32>().ok()
            })
            .max()
            .map_or(0, |g| g + 1)
    }

    fn member_name(group: u32, member: usize) -> String {
        format!("g{group}-m{member}")
    }

    /// The member that is group `g`'s master (member 0 until the pass says otherwise).
    fn master(&self, g: u32) -> usize {
        let name = self.record.groups.get(&g).and_then(|r| r.master.as_deref());
        name.and_then(|n| Some(Self::member_of(n)?.1 as usize)).unwrap_or(0)
    }

    fn nodes(&self, group: u32) -> GroupNodes {
        let members = &self.groups[&group];
        let master = self.master(group);
        GroupNodes {
            master: addr(members[master].port),
            replicas: members.iter().enumerate().filter(|(i, _)| *i != master).map(|(_, m)| addr(m.port)).collect(),
            size: members.len(),
        }
    }

    /// The cluster as the pass sees it: a member whose process exited has no address.
    fn observed(&mut self) -> control::Cluster {
        let spec = self.spec_revision();
        let revisions: BTreeMap<(u32, u32), String> = (self.groups.iter())
            .flat_map(|(&g, procs)| (0..procs.len() as u32).map(move |m| (g, m)))
            .map(|(g, m)| ((g, m), self.revision(g, m, &spec)))
            .collect();
        let mut members = BTreeMap::new();
        for (&g, procs) in self.groups.iter_mut() {
            let list = procs
                .iter_mut()
                .enumerate()
                .map(|(i, p)| control::Member {
                    name: Self::member_name(g, i),
                    addr: (!p.gone()).then(|| addr(p.port)),
                    outdated: p.revision.as_ref().is_some_and(|r| r != &revisions[&(g, i as u32)]),
                })
                .collect();
            members.insert(g, list);
        }
        control::Cluster {
            slots: self.spec.slots,
            groups: self.spec.groups,
            failover_after: Duration::from_secs(self.spec.failover_after_seconds.max(1) as u64),
            min_replica_acks: self.spec.durability.min_acks(),
            members,
            // A proxy that died is started again after the pass; until then it is not asked.
            proxies: self
                .proxy
                .iter_mut()
                .filter_map(|p| (!p.gone()).then(|| self.config.proxy_listen.clone()))
                .collect(),
            in_flight: self.moving.iter().map(Moving::in_flight).collect(),
        }
    }

    /// Members that are not the master and whose process exited are started again: a replica
    /// resumes as a replica; a former master replaced by a failover comes back fenced and the
    /// pass makes it re-sync in full before it serves anything.
    async fn restart_exited(&mut self) -> Result<(), String> {
        let groups: Vec<u32> = self.groups.keys().copied().collect();
        for g in groups {
            // Only a recorded master is left for the failover; without a record (a restarted
            // runtime) every member is started again, or the pass would wait for it forever.
            let master = self.record.groups.get(&g).and_then(|r| r.master.as_ref()).map(|_| self.master(g));
            for m in 0..self.groups[&g].len() {
                if Some(m) == master || !self.groups.get_mut(&g).expect("group")[m].gone() {
                    continue;
                }
                let proc = self.start_member(g, m as u32).await?;
                self.groups.get_mut(&g).expect("group")[m] = proc;
            }
        }
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
                let member = self.start_member(g, m).await?;
                self.groups.entry(g).or_default().push(member);
            }
            let master = self.master(g);
            while self.groups[&g].len() > size as usize && self.groups[&g].len() - 1 != master {
                let m = self.groups.get_mut(&g).expect("group").pop().expect("non-empty");
                let index = self.groups[&g].len();
                if let Some(r) = self.record.groups.get_mut(&g) {
                    r.demoted.retain(|d| *d != Self::member_name(g, index));
                }
                tracing::info!(group = g, member = index, "replica removed");
                self.stop(m).await;
            }
        }
        Ok(())
    }

    async fn ensure_proxy(&mut self) -> Result<(), String> {
        match self.proxy.as_mut().map(Proc::gone) {
            Some(true) => {
                tracing::warn!(listen = %self.config.proxy_listen, "the proxy exited; starting it again");
                self.proxy = None;
            }
            Some(false) => return Ok(()),
            None => {}
        }
        let port: u16 = self.config.proxy_listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(9221);
        if self.admin.answers(&self.config.proxy_listen).await {
            // Left by a runtime that stopped mid-cutover: nothing of ours is in flight now, so
            // whatever it holds is released (the repair pass has settled every slot).
            self.admin.release(&self.config.proxy_listen, "all").await.map_err(|e| e.to_string())?;
            self.proxy = Some(Proc::adopted(port, self.pid_of(&self.config.proxy_listen).await));
            tracing::info!(listen = %self.config.proxy_listen, "adopted a running proxy");
            return Ok(());
        }
        let seeds: Vec<String> = self.groups.keys().map(|&g| self.nodes(g).master).collect();
        let mut cmd = Command::new(&self.config.proxy_bin);
        let failover_after = Duration::from_secs(self.spec.failover_after_seconds.max(1) as u64);
        let hold_ms = control::proxy_hold_timeout(failover_after).as_millis().to_string();
        cmd.args([
            "--listen",
            &self.config.proxy_listen,
            "--seed-nodes",
            &seeds.join(","),
            "--hold-timeout-ms",
            &hold_ms,
        ]);
        // Passwords in the environment, never on the command line.
        cmd.env(common::auth::env_name("admin-password"), &self.passwords.admin.current);
        if self.passwords.user.is_set() {
            cmd.env(common::auth::env_name("password"), &self.passwords.user.current);
        }
        let child = spawn_logged(cmd, &self.config.data_dir.join(&self.name).join("proxy.log"), port).await?;
        self.proxy = Some(Proc::started(port, child));
        tracing::info!(listen = %self.config.proxy_listen, "proxy started");
        Ok(())
    }

    /// One pass: processes, then the data-plane pass (failover, bootstrap, repair, replicas,
    /// routes), then the moves it plans and the groups it retires.
    async fn reconcile(&mut self) -> Result<(), String> {
        let groups = self.spec.groups;
        let running = self.groups.keys().next_back().map_or(0, |g| g + 1);
        // On the first pass, every group with data (see `groups_on_disk`); later only the
        // manifest's and those still running (retired ones stay stopped).
        let on_disk = if self.record.groups.is_empty() && self.groups.is_empty() { self.groups_on_disk() } else { 0 };
        self.ensure_groups(groups.max(running).max(on_disk)).await?;
        self.restart_exited().await?;
        let cluster = self.observed();
        let epochs = &self.epochs;
        let out = control::pass(&self.admin, &cluster, &mut self.record, &mut control::Unrecorded, &|| epochs.next())
            .await
            .map_err(|e| e.to_string())?;
        self.recheck_after = out.recheck_after;
        for happened in &out.happened {
            tracing::warn!(reason = happened.reason(), "{happened}");
            if let control::Happened::Failover { group, old, .. } = happened {
                self.stop_replaced(*group, old).await;
            }
        }
        if let Some(why) = out.degraded.as_ref().or(out.waiting.as_ref()) {
            tracing::warn!(%why, "cluster not settled");
        }
        for master in &out.unreplaceable {
            self.restart_unreplaceable(master).await?;
        }
        self.ensure_proxy().await?;
        if out.owned.is_empty() {
            return Ok(()); // the pass stopped early (a group has no master): no move
        }
        // A switchover asked for goes before any new move (and waits for the one in flight).
        if out.degraded.is_none() && self.moving.is_none() {
            let (epoch, limits) = (self.epochs.next(), self.limits());
            let mut journal = LocalJournal { path: self.switchover_file(), status: &mut self.switchover_status };
            let last = journal.status.clone();
            let driven = switchover::drive(
                &self.admin,
                &cluster,
                &mut self.record,
                &mut journal,
                self.switchover.as_deref(),
                last.as_ref(),
                epoch,
                limits,
            )
            .await;
            match driven {
                switchover::Driven::Idle => {}
                switchover::Driven::Done { group, from, to } => {
                    tracing::warn!(reason = "Switchover", group, %from, %to, "group {group}: master {from} handed over to {to}");
                    return Ok(()); // the next pass plans on the new masters
                }
                switchover::Driven::Failed { request, why } => tracing::error!(%request, %why, "switchover refused"),
                switchover::Driven::Waiting(why) => tracing::warn!(%why, "switchover waits"),
            }
        }
        self.apply_live_config(&cluster).await;
        // The rolling update, as in Kubernetes (`rollout`): one restart or switchover per pass,
        // after a healthy pass, with no move or switchover going on; no new move meanwhile.
        let rolling = rollout::current_group(&cluster).is_some();
        let switching = switchover::pending(self.switchover.as_deref(), self.switchover_status.as_ref());
        if rolling && rollout::may_step(Some(&out), &cluster, switching) {
            let (epoch, limits) = (self.epochs.next(), self.limits());
            let rolled =
                rollout::drive(&self.admin, &cluster, &mut self.record, &mut control::Unrecorded, epoch, limits).await;
            self.act_on_rollout(rolled).await?;
        }
        // One move at a time: the one in flight, else the first the pass planned (the next
        // pass plans the others again).
        if self.moving.is_none() && !rolling {
            if let Some(mv) = out.moves.into_iter().next() {
                self.moving = Some(Moving { slots: mv.slots, to: mv.to, ..Moving::default() });
                self.save_move()?;
            }
        }
        let mut owned = out.owned;
        self.continue_move(&mut owned).await?;
        // Groups beyond the spec that hold nothing now: stop them (their data stays on disk).
        for g in out.retire {
            for m in self.groups.remove(&g).unwrap_or_default() {
                self.stop(m).await;
            }
            self.record.groups.remove(&g);
            tracing::info!(group = g, "group retired");
        }
        Ok(())
    }

    /// Sets the live options of `spec.config` on every node when they changed (as in
    /// Kubernetes; the others roll the members through their revision).
    async fn apply_live_config(&mut self, cluster: &control::Cluster) {
        let config = NodeConfig::of(&self.spec);
        let live = config.live_checksum();
        let nodes: Option<Vec<String>> = cluster.members.values().flatten().map(|m| m.addr.clone()).collect();
        let Some(nodes) = nodes.filter(|_| self.live_config.as_ref() != Some(&live)) else { return };
        match node_config::apply_live(&self.admin, &nodes, &config).await {
            Ok(()) => {
                tracing::info!(reason = "ConfigApplied", nodes = nodes.len(), "live options set without a restart");
                self.live_config = Some(live);
            }
            Err(e) => tracing::warn!(error = %e, "live options not applied yet"),
        }
    }

    /// Does the rolling update's restart: the member stops (SIGTERM) and starts again from the
    /// current binary and config.
    async fn act_on_rollout(&mut self, rolled: rollout::Rolled) -> Result<(), String> {
        match rolled {
            rollout::Rolled::Done => {}
            rollout::Rolled::Waiting(why) => tracing::info!(%why, "rolling update waits"),
            rollout::Rolled::SwitchedOver { group, from, to } => {
                tracing::warn!(reason = "Switchover", group, %from, %to, "group {group}: master {from} handed over to {to} before it restarts");
            }
            rollout::Rolled::Restart { group, member, master } => {
                let Some((g, m)) = Self::member_of(&member) else { return Ok(()) };
                tracing::warn!(reason = "RollingUpdate", group, %member, master, "restarting {member} on the new binary or config");
                let stopped = Proc { port: self.port(g, m), child: None, pid: None, exited: true, revision: None };
                let old = std::mem::replace(&mut self.groups.get_mut(&g).expect("group")[m as usize], stopped);
                self.stop(old).await;
                let proc = self.start_member(g, m).await?;
                self.groups.get_mut(&g).expect("group")[m as usize] = proc;
            }
        }
        Ok(())
    }

    /// A master no member can replace is started again (fenced, as every node starts; the
    /// pass leases it once it answers), as Kubernetes restarts a pod: without it, a target
    /// master killed in the middle of a move, whose replica had only part of the batch, left
    /// its group without a master for good (pika-chaos, seed 11, 30 minutes).
    async fn restart_unreplaceable(&mut self, master: &str) -> Result<(), String> {
        let Some((g, m)) = Self::member_of(master) else { return Ok(()) };
        let gone = self.groups.get_mut(&g).and_then(|p| p.get_mut(m as usize)).is_some_and(Proc::gone);
        if gone {
            tracing::warn!(group = g, member = m, "no replica can replace the master: starting it again");
            let proc = self.start_member(g, m).await?;
            self.groups.get_mut(&g).expect("group")[m as usize] = proc;
        }
        Ok(())
    }

    /// Group and member of a member name (`g<group>-m<member>`).
    fn member_of(name: &str) -> Option<(u32, u32)> {
        let (g, m) = name.strip_prefix('g')?.split_once("-m")?;
        Some((g.parse().ok()?, m.parse().ok()?))
    }

    /// A master replaced by a failover must not take writes any more, alive or not: it is
    /// killed (a stopped process too; an adopted one by its pid, else asked to shut down).
    async fn stop_replaced(&mut self, g: u32, old: &str) {
        let Some(m) = Self::member_of(old).map(|(_, m)| m as usize) else { return };
        let Some(proc) = self.groups.get_mut(&g).and_then(|p| p.get_mut(m)) else { return };
        if proc.gone() {
            return;
        }
        match (proc.child.take(), proc.pid) {
            (Some(mut child), _) => {
                let _ = child.kill().await;
            }
            (None, Some(pid)) => {
                let _ = std::process::Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            }
            (None, None) => {
                let _ = self.admin.call(&addr(proc.port), &["shutdown"]).await;
            }
        }
        proc.exited = true;
    }

    /// Moves the recorded move's batches until it is done (a batch that fails stays recorded
    /// and is resumed by the next pass, or the move is given up as `control::give_up` says,
    /// once the copies of its unpromoted batch at the target are dropped).
    async fn continue_move(&mut self, owned: &mut Ownership) -> Result<(), String> {
        while let Some(mut mv) = self.moving.take() {
            if let Some(why) = control::give_up(mv.to, self.spec.groups.max(1), mv.attempts, mv.promoted()) {
                if !mv.batch.is_empty() {
                    if let Err(e) = self.abandon(&mv).await {
                        self.moving = Some(mv);
                        return Err(format!("giving up a move: {e}"));
                    }
                }
                tracing::warn!(to = mv.to, ?why, attempts = mv.attempts, "move given up");
                return self.save_move();
            }
            let (batch, from) = match (mv.batch.is_empty(), mv.from) {
                (false, Some(from)) => (mv.batch.clone(), from),
                _ => match control::next_batch(owned, &mv.slots, mv.to, self.config.batch.max(1)) {
                    control::NextBatch::Done => {
                        tracing::info!(to = mv.to, slots = %common::slotset::format_slots(&mv.slots), "move done");
                        return self.save_move();
                    }
                    control::NextBatch::Unserved(s) => {
                        self.moving = Some(mv);
                        return Err(format!("slot {s} is served by no group: the move waits"));
                    }
                    control::NextBatch::Move { slots, from } => {
                        mv = Moving { batch: slots.clone(), from: Some(from), step: None, attempts: 0, ..mv };
                        self.moving = Some(mv.clone());
                        self.save_move()?;
                        (slots, from)
                    }
                },
            };
            let result = self.move_batch(owned, from, mv.to, &batch, &mut mv).await;
            match result {
                Ok(()) => {
                    mv.done.extend(batch);
                    mv = Moving { batch: Vec::new(), from: None, step: None, attempts: 0, ..mv };
                    self.moving = Some(mv);
                    self.save_move()?;
                }
                Err(e) => {
                    // Given up (at the next call) after control::BATCH_ATTEMPTS.
                    mv.attempts += 1;
                    self.moving = Some(mv);
                    self.save_move()?;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Gives up the recorded move's unpromoted batch (`cutover::abandon`).
    async fn abandon(&mut self, mv: &Moving) -> Result<(), String> {
        let topology = control::topology(&self.observed(), &self.record.masters()).ok_or("a master is not running")?;
        let (Some(from), Some(to)) = (mv.from.and_then(|g| topology.groups.get(&g)), topology.groups.get(&mv.to))
        else {
            return Ok(()); // a group without members holds no copy
        };
        let proxies = vec![self.config.proxy_listen.clone()];
        let ranges = common::slotset::format_slots(&mv.batch);
        let wait = self.limits().cleanup_wait;
        cutover::abandon(&self.admin, mv.step, (from, to), &proxies, &ranges, wait).await.map_err(|e| e.to_string())
    }

    /// One batch of the move, from where its record says (`cutover::resume_point`).
    async fn move_batch(
        &mut self,
        owned: &mut Ownership,
        from: u32,
        to: u32,
        batch: &[u32],
        moving: &mut Moving,
    ) -> Result<(), String> {
        let ranges = common::slotset::format_slots(batch);
        let after = dataplane::after_move(owned, from, to, batch);
        let epoch = self.epochs.next();
        let topology = control::topology(&self.observed(), &self.record.masters()).ok_or("a master is not running")?;
        let (Some(from_nodes), Some(to_nodes)) = (topology.groups.get(&from), topology.groups.get(&to)) else {
            return Err(format!("waiting for groups {from} and {to}"));
        };
        let routes = topology.routes(&after);
        let proxies = vec![self.config.proxy_listen.clone()];
        let start = cutover::resume_point(&self.admin, moving.step, from_nodes, &proxies, &ranges).await;
        let path = self.move_file();
        let mut steps = FileSteps { path: &path, moving };
        // No pass runs while this runtime moves slots: the masters' leases are renewed
        // meanwhile, or every write would stop once they ran out.
        let asked = Arc::new(std::sync::Mutex::new(control::Record::default()));
        let renewal = {
            let (admin, cluster, record) = (self.admin.clone(), self.observed(), self.record.clone());
            let asked = asked.clone();
            tokio::spawn(async move {
                loop {
                    control::renew_leases(&admin, &cluster, &record)
                        .await
                        .note(&mut asked.lock().expect("not poisoned"));
                    tokio::time::sleep(control::pass_interval(cluster.failover_after)).await;
                }
            })
        };
        let outcome = cutover::move_slots(
            &self.admin,
            &ranges,
            from_nodes,
            to_nodes,
            &proxies,
            (epoch, self.spec.slots, &routes),
            self.limits(),
            start,
            &mut steps,
        )
        .await;
        renewal.abort();
        // A failover waits from the last renewal asked of a master, these included.
        for (master, at) in std::mem::take(&mut asked.lock().expect("not poisoned").lease_asked) {
            let last = self.record.lease_asked.entry(master).or_insert(at);
            *last = (*last).max(at);
        }
        let outcome = outcome.map_err(|e| format!("moving {ranges} from g{from} to g{to}: {e}"))?;
        let pause_ms = outcome.pause.map(|p| p.as_millis() as u64);
        tracing::info!(slots = %ranges, from, to, pause_ms, attempts = outcome.attempts, "slots moved");
        // What a failover promotes and what the proxies have: must follow every move.
        for (g, rec) in self.record.groups.iter_mut() {
            rec.slots = after.get(g).cloned().unwrap_or_default();
        }
        self.record.routes = Some((epoch, routes));
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
                report_config(&c);
                self.switchover = switchover_annotation(&c);
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
            let failover_after = Duration::from_secs(self.spec.failover_after_seconds.max(1) as u64);
            let interval = control::next_pass(failover_after, self.recheck_after.take());
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
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
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    wait_port(&mut child, port).await.map_err(|e| format!("{program}: {e} (see {})", log.display()))?;
    Ok(child)
}

/// Waits until `child` listens on `port`. A connection to a free port of the ephemeral range
/// can connect to itself (TCP simultaneous open), which does not count; nor does anything
/// once the child has exited (it could not bind, for example: pika-chaos saw a node that never
/// started taken for running, and its group waited for it forever).
async fn wait_port(child: &mut Child, port: u16) -> Result<(), String> {
    for _ in 0..300 {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited ({status}) before listening on port {port}"));
        }
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            if s.local_addr().ok().map(|a| a.port()) != Some(port) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("nothing listens on port {port} after 15 s"))
}
