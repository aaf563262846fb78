//! `pika-chaos`: concurrent clients write through the proxy and record every acknowledged
//! operation while a seeded schedule of faults runs against the cluster; at the end everything
//! is read back and checked (see [`check`]). docs/testing.md says how to run it.
//!
//! - [`history`]: the operations and what the clients saw;
//! - [`workload`]: the client threads;
//! - [`cluster`]: a local cluster under `pika-operator local`, and how faults reach it;
//! - [`faults`]: the fault kinds and their injection;
//! - [`check`]: the checker.

pub mod check;
pub mod cluster;
pub mod faults;
pub mod history;
pub mod workload;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use check::{ReadBack, Verdict};
use cluster::{ClusterOptions, LocalCluster};
use faults::{Fault, Injector};
use history::{keys, Entry, Op};

/// How long the cluster may take to be whole again after a fault.
const RECOVERY: Duration = Duration::from_secs(120);

pub struct Options {
    pub seed: u64,
    pub duration: Duration,
    pub clients: u32,
    pub faults: Vec<Fault>,
    /// An existing cluster's proxy: only clients and the checker run (faults come from outside).
    pub proxy: Option<String>,
    pub cluster: Option<ClusterOptions>,
}

pub struct Report {
    pub verdict: Verdict,
    /// Writes the cluster refused (an error reply that says it was not applied): a client
    /// would have had to retry them.
    pub failed: u64,
    /// Writes whose outcome stayed open (no reply, a connection lost with the request sent,
    /// a reply that says it may have been applied).
    pub in_doubt: u64,
    /// Why writes had no acknowledgement: (reason, count), most frequent first.
    pub errors: Vec<(String, u64)>,
    pub max_pause_ms: u64,
    pub faults: u32,
    pub faults_by_kind: Vec<(Fault, u32)>,
    pub skipped: u32,
    /// Slots seen writable on two nodes at once during the run.
    pub two_writable: Vec<String>,
    /// Why the cluster did not become whole again after a fault (None: it always did).
    pub unrecovered: Option<String>,
}

impl Report {
    /// The summary's last line.
    pub fn summary(&self) -> String {
        let v = &self.verdict;
        format!(
            "acknowledged={} lost={} duplicated={} phantom={} failed={} in_doubt={} max_pause_ms={} faults={}",
            v.acknowledged, v.lost, v.duplicated, v.phantom, self.failed, self.in_doubt, self.max_pause_ms, self.faults
        )
    }

    /// 0: nothing wrong; 2: only writes lost to asynchronous replication; 1: anything else.
    pub fn exit_code(&self) -> u8 {
        let v = &self.verdict;
        if v.lost > 0
            || v.duplicated > 0
            || v.phantom > 0
            || !self.two_writable.is_empty()
            || self.unrecovered.is_some()
        {
            1
        } else if v.lost_async > 0 {
            2
        } else {
            0
        }
    }
}

fn progress(start: Instant, what: &str) {
    eprintln!("[{:>6.1}s] {what}", start.elapsed().as_secs_f64());
}

/// Runs the clients (and, on a local cluster, the faults) and checks the result.
pub fn run(opts: Options) -> Result<Report, String> {
    let start = Instant::now();
    let mut cluster = match opts.cluster {
        Some(c) if opts.proxy.is_none() => Some(LocalCluster::start(c)?),
        _ => None,
    };
    let proxy = match (&opts.proxy, &cluster) {
        (Some(p), _) => p.clone(),
        (None, Some(c)) => c.proxy_addr(),
        (None, None) => return Err("no cluster: give --proxy or let pika-chaos start one".into()),
    };
    if let Some(c) = &cluster {
        progress(start, &format!("cluster in {} (proxy {proxy}, nodes from port {})", c.log_dir().display(), c.base));
        wait_whole(c, start, Duration::from_secs(180)).map_err(|e| format!("the cluster never became whole: {e}"))?;
    }
    let workload = workload::Workload::start(&proxy, opts.clients, opts.seed);
    let groups = cluster.as_ref().map_or(0, |c| c.groups);
    let mut injector = Injector::new(StdRng::seed_from_u64(opts.seed), opts.faults.clone(), groups);
    let mut two_writable = Vec::new();
    let mut unrecovered = None;
    let deadline = start + opts.duration;
    if let Some(c) = cluster.as_mut() {
        while Instant::now() < deadline && unrecovered.is_none() {
            std::thread::sleep(injector.gap());
            if !injector.enabled.is_empty() {
                match injector.inject(c)? {
                    Some(what) => progress(start, &what),
                    None => progress(start, "fault skipped (nothing to inject it into right now)"),
                }
            }
            let acked = || workload.acked.load(std::sync::atomic::Ordering::Relaxed);
            match recover(c, &mut injector, start, &mut two_writable) {
                Ok(()) => progress(start, &format!("whole again; {} writes acknowledged so far", acked())),
                Err(e) => {
                    progress(start, &e);
                    unrecovered = Some(e);
                }
            }
        }
    } else {
        std::thread::sleep(opts.duration);
    }
    // A little more traffic on the whole cluster, then the read-back.
    std::thread::sleep(Duration::from_secs(2));
    let max_pause_ms = *workload.max_wait_ms.lock().expect("max wait");
    let history = workload.finish();
    progress(start, &format!("{} writes sent; reading back", history.len()));
    let slots = cluster.as_ref().map_or(1024, |c| c.slots);
    let back = read_back(&proxy, &history);
    let mut errors: HashMap<String, u64> = HashMap::new();
    for e in history.iter().filter_map(|e| e.error.clone()) {
        *errors.entry(e).or_default() += 1;
    }
    let mut errors: Vec<(String, u64)> = errors.into_iter().collect();
    errors.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    // With replicated acknowledgement no loss is excused by a master fault.
    let replicated = cluster.as_ref().is_some_and(|c| c.replicated);
    let excused: &[check::MasterFault] = if replicated { &[] } else { &injector.master_faults };
    let verdict = match back {
        Ok(back) => check::check(&history, &back, excused, |k| common::slot::key_slot(k.as_bytes(), slots)),
        Err(e) => {
            // Nothing to check against: only the acknowledgements are counted; the run fails.
            unrecovered.get_or_insert(e);
            let acknowledged = history.iter().filter(|e| e.outcome == history::Outcome::Acked).count() as u64;
            Verdict { acknowledged, unknown: history.len() as u64 - acknowledged, ..Verdict::default() }
        }
    };
    if let Some(c) = cluster.as_mut() {
        c.shut_down();
    }
    let in_doubt = history.iter().filter(|e| e.outcome == history::Outcome::Unknown && e.in_doubt).count() as u64;
    let failed = history.iter().filter(|e| e.outcome == history::Outcome::Unknown && !e.in_doubt).count() as u64;
    Ok(Report {
        verdict,
        failed,
        in_doubt,
        errors,
        max_pause_ms,
        faults: injector.total(),
        faults_by_kind: injector.done.iter().map(|(f, n)| (*f, *n)).collect(),
        skipped: injector.skipped,
        two_writable,
        unrecovered,
    })
}

/// Waits until the cluster is whole, restarting the operator if it exited (killed, or aborted
/// at its crash point) and watching for slots writable on two nodes meanwhile.
fn recover(
    cluster: &mut LocalCluster,
    injector: &mut Injector,
    start: Instant,
    two_writable: &mut Vec<String>,
) -> Result<(), String> {
    let deadline = Instant::now() + RECOVERY;
    loop {
        if cluster.operator_exited() {
            progress(start, "the operator exited; starting it again");
            injector.restart_operator(cluster, None)?;
        }
        for found in cluster.two_writable() {
            progress(start, &format!("VIOLATION: {found}"));
            two_writable.push(found);
        }
        match cluster.whole() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("not whole {}s after a fault: {e}", RECOVERY.as_secs()))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn wait_whole(cluster: &LocalCluster, start: Instant, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match cluster.whole() {
            Ok(()) => {
                progress(start, "cluster whole");
                return Ok(());
            }
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// One read through the proxy, retried for up to a minute (the proxy may still be refreshing).
fn read<T: redis::FromRedisValue>(proxy: &str, cmd: &redis::Cmd) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = redis::Client::open(format!("redis://{proxy}/"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut c| cmd.query::<T>(&mut c));
        match attempt {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(format!("reading back through {proxy}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Reads every key the history touched.
fn read_back(proxy: &str, history: &[Entry]) -> Result<ReadBack, String> {
    let mut back = ReadBack::default();
    let strings: Vec<&str> = history
        .iter()
        .filter_map(|e| match &e.op {
            Op::Set { key, .. } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    for chunk in strings.chunks(200) {
        let values: Vec<Option<String>> = read(proxy, redis::cmd("MGET").arg(chunk))?;
        back.strings.extend(chunk.iter().map(|k| k.to_string()).zip(values));
    }
    for n in 0..keys::LISTS {
        let list = keys::list(n);
        let elements: Vec<String> = read(proxy, redis::cmd("LRANGE").arg(&list).arg(0).arg(-1))?;
        back.lists.insert(list, elements);
    }
    for n in 0..keys::COUNTERS {
        let counter = keys::counter(n);
        let value: Option<i64> = read(proxy, redis::cmd("GET").arg(&counter))?;
        back.counters.insert(counter, value.unwrap_or(0));
    }
    Ok(back)
}

/// For reports: the faults of a run, `kind=count` each.
pub fn faults_line(report: &Report) -> String {
    let parts: Vec<String> = report.faults_by_kind.iter().map(|(f, n)| format!("{f}={n}")).collect();
    format!("faults: {} (skipped {})", parts.join(" "), report.skipped)
}
