//! `pika-node -c pika.conf [--port N] [...]`: starts a node the way Pika starts.

use std::path::PathBuf;

use clap::Parser;
use pika_node::config::Config;

#[derive(Parser, Debug)]
#[command(name = "pika-node", version, about = "Pika-compatible sharding-mode storage node on RocksDB")]
struct Args {
    /// pika.conf (Pika's `key : value` format).
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Overrides `port`.
    #[arg(long)]
    port: Option<u16>,
    /// Overrides `bind`.
    #[arg(long)]
    bind: Option<String>,
    /// Overrides `http-port` (metrics and health; 0 = off).
    #[arg(long)]
    http_port: Option<u16>,
    /// Overrides `db-path`.
    #[arg(long)]
    db_path: Option<PathBuf>,
    /// Overrides `instance-mode` (classic or sharding).
    #[arg(long)]
    instance_mode: Option<String>,
    /// Overrides `default-slot-num`.
    #[arg(long)]
    default_slot_num: Option<u32>,
    /// Start with every master slot fenced (writes refused until `pkcluster unfence`).
    #[arg(long)]
    fenced: bool,
    /// Extra `key=value` options, as in pika.conf; not passwords (a command line is readable by
    /// every user of the machine): those come from the file or from `PIKA_REQUIREPASS`,
    /// `PIKA_USERPASS`, `PIKA_MASTERAUTH`... (see docs/node.md, "Users and passwords").
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    common::process::init_tracing(args.log_json);
    let config = match build_config(&args) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("pika-node: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let (code, server) = runtime.block_on(async move {
        let server = match pika_node::server::Server::open(config) {
            Ok(s) => s,
            Err(err) => {
                eprintln!("pika-node: {err}");
                return (std::process::ExitCode::from(1), None);
            }
        };
        let listeners = match pika_node::listener::bind(&server).await {
            Ok(l) => l,
            Err(err) => {
                eprintln!("pika-node: cannot listen: {err}");
                return (std::process::ExitCode::from(1), None);
            }
        };
        {
            let c = server.config.read();
            tracing::info!(port = c.port, mode = c.instance_mode.name(), db = %c.db_path.display(), "pika-node serving");
            if cfg!(feature = "bench-skip-storage-writes") {
                tracing::warn!("built with bench-skip-storage-writes: data writes are NOT stored");
            }
        }
        // On a worker thread: the accept loop then shares the runtime's threads instead of
        // waiting for the main thread to be scheduled for every connection.
        match tokio::spawn(pika_node::listener::run(server.clone(), listeners)).await {
            Ok(()) => (std::process::ExitCode::SUCCESS, Some(server)),
            Err(_) => (std::process::ExitCode::FAILURE, None),
        }
    });
    // Every task stopped with the runtime: nothing writes any more. The master slots' logs are
    // saved, so their replicas continue incrementally after the restart.
    drop(runtime);
    if let Some(server) = server {
        pika_node::replication::save_masters(&server);
    }
    code
}

fn build_config(args: &Args) -> Result<Config, String> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let mut set = |k: &str, v: String| config.set(k, &v, true).map_err(|e| e.to_string());
    if let Some(p) = args.port {
        set("port", p.to_string())?;
    }
    if let Some(b) = &args.bind {
        set("bind", b.clone())?;
    }
    if let Some(p) = args.http_port {
        set("http-port", p.to_string())?;
    }
    if let Some(p) = &args.db_path {
        set("db-path", p.display().to_string())?;
    }
    if let Some(m) = &args.instance_mode {
        set("instance-mode", m.clone())?;
    }
    if let Some(n) = args.default_slot_num {
        set("default-slot-num", n.to_string())?;
    }
    if args.fenced {
        set("start-fenced", "yes".into())?;
    }
    for kv in &args.set {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("--set expects KEY=VALUE, got {kv:?}"))?;
        if common::options::find(k.trim()).is_some_and(|o| o.kind == common::options::Kind::Secret) {
            let env = common::auth::env_name(k.trim());
            return Err(format!(
                "{} is a password: give it in the config file or in {env}, not on the command line",
                k.trim()
            ));
        }
        set(k.trim(), v.trim().to_string())?;
    }
    config.set_secrets_from_env().map_err(|e| e.to_string())?;
    config.check().map_err(|e| e.to_string())?;
    Ok(config)
}
