//! `pika-proxy --listen 127.0.0.1:9221 --seed-nodes 127.0.0.1:9301,127.0.0.1:9302`; passwords from
//! the config file or `PIKA_PASSWORD` / `PIKA_ADMIN_PASSWORD` (docs/proxy.md), never a flag.

use std::path::PathBuf;

use clap::Parser;
use pika_proxy::config::Config;

#[derive(Parser, Debug)]
#[command(name = "pika-proxy", version, about = "Slot-aware router in front of pika-node groups")]
struct Args {
    /// A `key : value` file with the options below (names without dashes); flags override it.
    #[arg(short = 'c', long)]
    config: Option<PathBuf>,
    /// Where clients connect (default 127.0.0.1:9221).
    #[arg(long)]
    listen: Option<String>,
    /// Nodes to build the routing table from, comma-separated host:port.
    #[arg(long)]
    seed_nodes: Option<String>,
    /// Address for /metrics and /health.
    #[arg(long)]
    http_listen: Option<String>,
    /// Connections per node.
    #[arg(long)]
    pool_size: Option<usize>,
    /// How long a request waits on a held slot, in ms.
    #[arg(long)]
    hold_timeout_ms: Option<u64>,
    /// JSON logs.
    #[arg(long)]
    log_json: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    common::process::init_tracing(args.log_json);
    let config = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pika-proxy: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&config.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("pika-proxy: cannot listen on {}: {e}", config.listen);
                return std::process::ExitCode::from(1);
            }
        };
        let tls = match (&config.tls_listen, config.tls_files()) {
            (Some(addr), Some(files)) => {
                let tls = match common::tls::ServerTls::load(files, config.tls_auth_clients) {
                    Ok(tls) => std::sync::Arc::new(tls),
                    Err(e) => {
                        eprintln!("pika-proxy: {e}");
                        return std::process::ExitCode::from(2);
                    }
                };
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => Some((l, tls)),
                    Err(e) => {
                        eprintln!("pika-proxy: cannot listen on {addr}: {e}");
                        return std::process::ExitCode::from(1);
                    }
                }
            }
            _ => None,
        };
        let http = match &config.http_listen {
            None => None,
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("pika-proxy: cannot listen on {addr}: {e}");
                    return std::process::ExitCode::from(1);
                }
            },
        };
        tracing::info!(listen = %config.listen, seeds = ?config.seed_nodes, "pika-proxy serving");
        let proxy = pika_proxy::proxy::Proxy::new(config);
        pika_proxy::server::run(proxy, listener, tls, http).await;
        std::process::ExitCode::SUCCESS
    })
}

fn build_config(args: &Args) -> Result<Config, String> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let flags = [
        ("listen", args.listen.clone()),
        ("seed-nodes", args.seed_nodes.clone()),
        ("http-listen", args.http_listen.clone()),
        ("pool-size", args.pool_size.map(|n| n.to_string())),
        ("hold-timeout-ms", args.hold_timeout_ms.map(|n| n.to_string())),
    ];
    for (key, value) in flags {
        if let Some(v) = value {
            config.set(key, &v).map_err(|e| e.to_string())?;
        }
    }
    config.set_secrets_from_env().map_err(|e| e.to_string())?;
    config.check().map_err(|e| e.to_string())?;
    Ok(config)
}
