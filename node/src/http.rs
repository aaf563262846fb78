//! The node's HTTP endpoint for probes and scraping: `GET /health` (200 while serving, 503 while
//! shutting down), `GET /metrics` (Prometheus text); the server itself is `common::http`.

use std::sync::Arc;

use common::http::Response;
use tokio::net::TcpListener;

use crate::server::Server;

pub async fn serve(listener: TcpListener, server: Arc<Server>) {
    let handler = {
        let server = server.clone();
        Arc::new(move |method: &str, path: &str| match (method, path) {
            ("GET", "/health") | ("GET", "/healthz") | ("GET", "/ready") => {
                if server.is_shutting_down() {
                    Response::text("503 Service Unavailable", "shutting down\n")
                } else {
                    Response::text("200 OK", "ok\n")
                }
            }
            ("GET", "/metrics") => {
                crate::info::refresh_gauges(&server);
                Response::metrics(server.metrics.render())
            }
            _ => Response::not_found(),
        })
    };
    common::http::serve(listener, server.shutdown_notify.notified(), handler).await;
}
