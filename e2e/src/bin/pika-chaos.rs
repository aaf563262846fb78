//! `pika-chaos --seed 7 --duration 60s`: starts a local cluster (pika-operator local, next to
//! this binary), writes through its proxy from concurrent clients while a seeded schedule of
//! faults runs, reads everything back and prints, as its last line,
//! `acknowledged=N lost=L duplicated=D phantom=P failed=X in_doubt=D max_pause_ms=M faults=F`.
//! `--proxy HOST:PORT` runs the clients and the checker against an existing cluster instead
//! (a Kubernetes cluster's proxy, with faults injected from outside).
//!
//! Exit status: 0 nothing wrong; 1 a write lost, duplicated or invented, two writable masters,
//! or a cluster that did not recover; 2 only writes lost to asynchronous replication.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pika_e2e::chaos::{self, cluster::ClusterOptions, faults::Fault};

#[derive(Parser)]
#[command(version, about = "Fault injection and a write checker for a pika-sharding cluster")]
struct Args {
    /// Seeds the fault schedule and the clients' choices.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// How long faults are injected (`60s`, `30m`, `1h`); then the cluster recovers and is checked.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: u32,
    /// Faults to inject, comma-separated (default: all of them).
    #[arg(long, value_delimiter = ',')]
    faults: Vec<Fault>,
    /// Inject no faults (a baseline for the checker and the pauses).
    #[arg(long, conflicts_with = "faults")]
    no_faults: bool,
    /// Groups the local cluster starts with (scaling adds one and takes it away again).
    #[arg(long, default_value_t = 2)]
    groups: u32,
    #[arg(long, default_value_t = 1)]
    replicas: u32,
    #[arg(long, default_value_t = 64)]
    slots: u32,
    /// `spec.durability.mode` of the local cluster: `async`, or `replicated` (a write is
    /// acknowledged once a replica has it too; then no loss is excused by a master fault).
    #[arg(long, default_value = "async", value_parser = ["async", "replicated"])]
    durability: String,
    /// Where the local cluster keeps its data and logs (default: a temporary directory, removed
    /// at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Check an existing cluster through this proxy instead of starting one (no faults).
    #[arg(long)]
    proxy: Option<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number.parse().map_err(|_| format!("{text:?}: expected a number and s, m or h"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{text:?}: the unit is s, m or h")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let bins = std::env::current_exe().ok().and_then(|p| p.parent().map(PathBuf::from)).unwrap_or_default();
    let faults = match (args.no_faults, args.faults.is_empty()) {
        (true, _) => Vec::new(),
        (false, true) => Fault::ALL.to_vec(),
        (false, false) => args.faults,
    };
    let opts = chaos::Options {
        seed: args.seed,
        duration: args.duration,
        clients: args.clients.max(1),
        faults,
        proxy: args.proxy,
        cluster: Some(ClusterOptions {
            groups: args.groups.max(1),
            replicas: args.replicas,
            slots: args.slots,
            replicated: args.durability == "replicated",
            dir: args.dir,
            bins,
        }),
    };
    let report = match chaos::run(opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pika-chaos: {e}");
            return ExitCode::from(1);
        }
    };
    let v = &report.verdict;
    println!("seed={} {}", args.seed, chaos::faults_line(&report));
    for example in &v.examples {
        println!("  {example}");
    }
    let errors: Vec<String> = report.errors.iter().map(|(e, n)| format!("{e}: {n}")).collect();
    println!("unacknowledged writes by reason: {}", if errors.is_empty() { "none".into() } else { errors.join(", ") });
    for found in &report.two_writable {
        println!("  two writable masters: {found}");
    }
    if let Some(why) = &report.unrecovered {
        println!("  did not recover: {why}");
    }
    println!(
        "unknown={} lost_async={} (acknowledged by a master that failed before its replica had them: \
         asynchronous replication) two_writable={} recovered={}",
        v.unknown,
        v.lost_async,
        report.two_writable.len(),
        report.unrecovered.is_none()
    );
    println!("{}", report.summary());
    ExitCode::from(report.exit_code())
}
