//! The proxy process: listeners, the first routing table, background timers, shutdown.

use std::sync::Arc;
use std::time::Duration;

use common::http::Response;
use common::tls::TlsListener;
use tokio::net::TcpListener;

use crate::proxy::Proxy;

/// Serves until SIGINT/SIGTERM.
pub async fn run(proxy: Arc<Proxy>, listener: TcpListener, tls: Option<TlsListener>, http: Option<TcpListener>) {
    if let Some(http) = http {
        let p = proxy.clone();
        let handler = Arc::new(move |method: &str, path: &str| match (method, path) {
            ("GET", "/health") | ("GET", "/healthz") => Response::text("200 OK", "ok\n"),
            // Not ready while draining: load balancers stop sending new clients.
            ("GET", "/ready") if *p.draining.borrow() => Response::text("503 Service Unavailable", "draining\n"),
            ("GET", "/ready") => Response::text("200 OK", "ok\n"),
            ("GET", "/metrics") => Response::metrics(p.metrics.render()),
            _ => Response::not_found(),
        });
        let p = proxy.clone();
        tokio::spawn(async move { common::http::serve(http, p.shutdown.notified(), handler).await });
    }
    tokio::spawn(first_table(proxy.clone()));
    tokio::spawn(expire_holds(proxy.clone()));
    if let Some((_, config)) = &tls {
        tokio::spawn(config.clone().watch("proxy", common::tls::RELOAD_EVERY));
    }
    let signals = common::process::shutdown_signal();
    tokio::pin!(signals);
    let drain = loop {
        tokio::select! {
            (accepted, secure) = common::tls::accept_either(&listener, tls.as_ref()) => match accepted {
                Ok((stream, _)) if proxy.metrics.connections.get() >= proxy.config.maxclients as i64 => {
                    tokio::spawn(common::tls::refuse(secure, stream));
                }
                Ok((stream, addr)) => {
                    // Counted here, not in the task: a burst of connections cannot slip past
                    // `maxclients` before their tasks run.
                    let counted = crate::client::Counted::new(&proxy);
                    let proxy = proxy.clone();
                    common::tls::spawn_serving(secure, stream, addr, move |s| crate::client::serve(proxy, s, counted));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut signals => break true,
            _ = proxy.stop.notified() => break false,
        }
    };
    if drain {
        // Before the listener closes: a client that sees the port closed must find its open
        // connection draining too, never served one more request (CI saw that once).
        proxy.draining.send_replace(true);
    }
    drop(listener);
    drop(tls);
    if drain {
        // A rolling update stops proxies with SIGTERM: the clients' requests in flight are
        // answered, each connection then closes, and the clients reconnect (through the
        // Service) to another proxy.
        let open = proxy.metrics.connections.get();
        tracing::info!(open, timeout = ?proxy.config.drain_timeout, "draining: no new connections");
        let deadline = tokio::time::Instant::now() + proxy.config.drain_timeout;
        while proxy.metrics.connections.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tracing::info!(open = proxy.metrics.connections.get(), "shutting down");
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
