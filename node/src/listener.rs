//! The node process: listeners, background tasks, and an orderly shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::server::Server;

/// Binds the client and HTTP ports. Separate from [`run`] so a caller learns bind errors first.
pub struct Listeners {
    pub client: TcpListener,
    pub http: Option<TcpListener>,
}

pub async fn bind(server: &Server) -> std::io::Result<Listeners> {
    let (bind, port, http_port) = {
        let c = server.config.read();
        (c.bind.clone(), c.port, c.http_port)
    };
    let client = TcpListener::bind((bind.as_str(), port)).await?;
    let http = match http_port {
        0 => None,
        p => Some(TcpListener::bind((bind.as_str(), p)).await?),
    };
    Ok(Listeners { client, http })
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
    // Registered before the flag is first checked: `begin_shutdown` wakes only registered
    // waiters, and one signalled while this loop handled a connection was missed until the
    // next connection arrived (the port stayed open).
    let shutdown = server.shutdown_notify.notified();
    tokio::pin!(shutdown);
    shutdown.as_mut().enable();
    while !server.is_shutting_down() {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    server.stats.connections_received.fetch_add(1, Ordering::Relaxed);
                    if server.clients.count() >= server.config.read().maxclients {
                        server.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(refuse(stream));
                        continue;
                    }
                    tokio::spawn(crate::client::serve(server.clone(), stream, addr));
                }
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
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

async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
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
