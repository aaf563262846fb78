//! `pika-operator local -f examples/cluster.yaml [--data-dir DIR] [--proxy-listen ADDR]`: runs a
//! PikaCluster as local processes and keeps it in line with the manifest (see `local`).
//! `pika-operator run`: the in-cluster controllers (PikaCluster, SlotMigration) behind a leader
//! Lease.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use pika_operator::local::{LocalConfig, Runtime};

#[derive(Parser, Debug)]
#[command(name = "pika-operator", version, about = "Operator for sharded Pika clusters")]
struct Args {
    /// JSON logs.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the Kubernetes controllers (in a pod, or with a kubeconfig).
    Run {
        /// Watch only this namespace (default: all).
        #[arg(long, env = "WATCH_NAMESPACE")]
        namespace: Option<String>,
        /// Address of /metrics and /health.
        #[arg(long, default_value = "0.0.0.0:8080")]
        http_listen: String,
        /// Namespace of the leader Lease (default: the pod's).
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        lease_namespace: String,
        #[arg(long, default_value = "pika-operator-leader")]
        lease_name: String,
        /// Seconds a leader may go without renewing before another instance takes over.
        #[arg(long, default_value_t = 15)]
        lease_seconds: u64,
        /// This instance's name in the Lease (default: the pod name, else host and pid).
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
    },
    /// Run a PikaCluster manifest as local pika-node/pika-proxy processes, following its edits.
    Local {
        /// The manifest (a PikaCluster; other documents are ignored).
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// Where the nodes keep their data.
        #[arg(long, default_value = "./data/local")]
        data_dir: PathBuf,
        /// Where clients connect (the proxy).
        #[arg(long, default_value = "127.0.0.1:9221")]
        proxy_listen: String,
        /// Group g, member m listens on this + 10*g + m.
        #[arg(long, default_value_t = 9301)]
        node_port_base: u16,
        /// pika-node binary (default: next to this one).
        #[arg(long)]
        node_bin: Option<PathBuf>,
        /// pika-proxy binary (default: next to this one).
        #[arg(long)]
        proxy_bin: Option<PathBuf>,
        /// Slots per cutover.
        #[arg(long, default_value_t = 16)]
        batch: usize,
    },
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join(name))).unwrap_or_else(|| name.into())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    common::process::init_tracing(args.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let (file, data_dir, proxy_listen, node_port_base, node_bin, proxy_bin, batch) = match args.command {
        Cmd::Run { namespace, http_listen, lease_namespace, lease_name, lease_seconds, identity } => {
            let identity = identity.unwrap_or_else(|| {
                let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
                format!("{}-{}", host.trim(), std::process::id())
            });
            let opts = pika_operator::k8s::RunOptions {
                namespace,
                http_listen,
                lease_namespace,
                lease_name,
                lease_duration: std::time::Duration::from_secs(lease_seconds.max(3)),
                identity,
            };
            return match runtime.block_on(pika_operator::k8s::run(opts)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pika-operator: {e}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        Cmd::Local { file, data_dir, proxy_listen, node_port_base, node_bin, proxy_bin, batch } => {
            (file, data_dir, proxy_listen, node_port_base, node_bin, proxy_bin, batch)
        }
    };
    let config = LocalConfig {
        manifest: file,
        data_dir,
        proxy_listen,
        node_port_base,
        node_bin: node_bin.unwrap_or_else(|| sibling("pika-node")),
        proxy_bin: proxy_bin.unwrap_or_else(|| sibling("pika-proxy")),
        batch,
    };
    runtime.block_on(async move {
        let rt = match Runtime::new(config) {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("pika-operator: {e}");
                return std::process::ExitCode::from(2);
            }
        };
        match rt.run().await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pika-operator: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}
