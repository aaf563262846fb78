//! The node process: listeners, background tasks, and an orderly shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::tls::{ServerTls, TlsListener};
use tokio::net::TcpListener;

use crate::server::Server;

/// Binds the client, TLS and HTTP ports, and loads the TLS files. Separate from [`run`] so a
/// caller learns bind errors (and bad certificates) first.
pub struct Listeners {
    pub client: TcpListener,
    pub tls: Option<TlsListener>,
    pub http: Option<TcpListener>,
}

pub async fn bind(server: &Server) -> std::io::Result<Listeners> {
    let (bind, port, http_port, tls) = {
        let c = server.config.read();
        (c.bind.clone(), c.port, c.http_port, c.tls_files().map(|files| (c.tls_port, files, c.tls_auth_clients)))
    };
    let client = TcpListener::bind((bind.as_str(), port)).await?;
    let tls = match tls {
        None => None,
        Some((tls_port, files, auth)) => {
            let config = ServerTls::load(files, auth).map_err(|e| std::io::Error::other(e.to_string()))?;
            Some((TcpListener::bind((bind.as_str(), tls_port)).await?, Arc::new(config)))
        }
    };
    let http = match http_port {
        0 => None,
        p => Some(TcpListener::bind((bind.as_str(), p)).await?),
    };
    Ok(Listeners { client, tls, http })
}

/// Serves until shutdown (SIGINT/SIGTERM or the SHUTDOWN command), then stops accepting, lets
/// connections finish the command they are in, and syncs the WAL.
pub async fn run(server: Arc<Server>, listeners: Listeners) {
    if let Some(http) = listeners.http {
        tokio::spawn(crate::http::serve(http, server.clone()));
    }
    tokio::spawn(crate::expire::run(server.clone()));
    tokio::spawn(crate::replication::purge_loop(server.clone()));
    if let Err(err) = crate::replication::restore(&server) {
        tracing::error!(error = %err, "cannot restore replica roles");
    }
    tokio::spawn(sample_ops(server.clone()));
    tokio::spawn(watch_signals(server.clone()));
    let listener = listeners.client;
    let tls = listeners.tls;
    if let Some((_, config)) = &tls {
        tokio::spawn(config.clone().watch("node", common::tls::RELOAD_EVERY));
    }
    // Registered before the flag is first checked: `begin_shutdown` wakes only registered
    // waiters, and one signalled while this loop handled a connection was missed until the
    // next connection arrived (the port stayed open).
    let shutdown = server.shutdown_notify.notified();
    tokio::pin!(shutdown);
    shutdown.as_mut().enable();
    while !server.is_shutting_down() {
        let (accepted, secure) = tokio::select! {
            accepted = common::tls::accept_either(&listener, tls.as_ref()) => accepted,
            _ = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, addr)) => {
                server.stats.connections_received.fetch_add(1, Ordering::Relaxed);
                if server.clients.count() >= server.config.read().maxclients {
                    server.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(common::tls::refuse(secure, stream));
                    continue;
                }
                let server = server.clone();
                common::tls::spawn_serving(secure, stream, addr, move |s| crate::client::serve(server, s, addr));
            }
            Err(err) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    drop(tls);
    // Give connections a moment to write their last replies.
    for _ in 0..50 {
        if server.clients.count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Err(err) = server.store.flush_wal() {
        tracing::error!(error = %err, "WAL sync at shutdown failed");
    }
    tracing::info!("shutdown complete");
}

async fn watch_signals(server: Arc<Server>) {
    common::process::shutdown_signal().await;
    tracing::info!("shutting down");
    server.begin_shutdown();
}

/// Samples the command counter once a second for INFO's instantaneous_ops_per_sec.
async fn sample_ops(server: Arc<Server>) {
    let mut last = server.stats.commands_processed.load(Ordering::Relaxed);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = server.stats.commands_processed.load(Ordering::Relaxed);
        server.stats.ops_per_sec.store(now - last, Ordering::Relaxed);
        last = now;
        let topology = server.slots.snapshot();
        for table in topology.tables.values() {
            table.stats.sample();
        }
        // Over the cache budget: every slot gives back its least recently used share, so slots
        // that went cold make room for hot ones.
        if let Some(keep) = server.store.cache().trim_ratio() {
            for slot in topology.tables.values().flat_map(|t| t.owned()) {
                slot.cache.trim(keep);
            }
        }
    }
}
