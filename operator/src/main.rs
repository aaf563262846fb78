//! `pika-operator local -f examples/cluster.yaml [--data-dir DIR] [--proxy-listen ADDR]`: runs a
//! PikaCluster as local processes and keeps it in line with the manifest (see `local`).
//! (The in-cluster controller, `pika-operator run`, comes with the Kubernetes controllers.)

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
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join(name))).unwrap_or_else(|| name.into())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    common::process::init_tracing(args.log_json);
    let Cmd::Local { file, data_dir, proxy_listen, node_port_base, node_bin, proxy_bin, batch } = args.command;
    let config = LocalConfig {
        manifest: file,
        data_dir,
        proxy_listen,
        node_port_base,
        node_bin: node_bin.unwrap_or_else(|| sibling("pika-node")),
        proxy_bin: proxy_bin.unwrap_or_else(|| sibling("pika-proxy")),
        batch,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
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
