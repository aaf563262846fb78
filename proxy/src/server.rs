//! The proxy process: listeners, the first routing table, background timers, shutdown.

use std::sync::Arc;
use std::time::Duration;

use common::http::Response;
use tokio::net::TcpListener;

use crate::proxy::Proxy;

/// Serves until SIGINT/SIGTERM.
pub async fn run(proxy: Arc<Proxy>, listener: TcpListener, http: Option<TcpListener>) {
    if let Some(http) = http {
        let p = proxy.clone();
        let handler = Arc::new(move |method: &str, path: &str| match (method, path) {
            ("GET", "/health") | ("GET", "/healthz") | ("GET", "/ready") => Response::text("200 OK", "ok\n"),
            ("GET", "/metrics") => Response::metrics(p.metrics.render()),
            _ => Response::not_found(),
        });
        let p = proxy.clone();
        tokio::spawn(async move { common::http::serve(http, p.shutdown.notified(), handler).await });
    }
    tokio::spawn(first_table(proxy.clone()));
    tokio::spawn(expire_holds(proxy.clone()));
    let signals = common::process::shutdown_signal();
    tokio::pin!(signals);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => { tokio::spawn(crate::client::serve(proxy.clone(), stream)); }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut signals => break,
            _ = proxy.stop.notified() => break,
        }
    }
    tracing::info!("shutting down");
    proxy.shutdown.notify_waiters();
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Builds the table from the seed nodes, retrying until one answers.
async fn first_table(proxy: Arc<Proxy>) {
    if proxy.config.seed_nodes.is_empty() {
        return;
    }
    loop {
        match proxy.refresh().await {
            Ok(()) if !proxy.routes().tables.is_empty() => {
                tracing::info!(epoch = proxy.routes().epoch, "routing table built from the nodes");
                return;
            }
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "no routing table yet"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn expire_holds(proxy: Arc<Proxy>) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        proxy.expire_holds();
    }
}
