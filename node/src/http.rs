//! The small HTTP endpoint for probes and scraping: `GET /health` (200 while serving, 503 while
//! shutting down), `GET /metrics` (Prometheus text). One request per connection; anything else
//! gets 404. Kept dependency-free: two routes do not need an HTTP framework.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::server::Server;

pub async fn serve(listener: TcpListener, server: Arc<Server>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let server = server.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(5), handle(stream, server)).await;
                    });
                }
            }
            _ = server.shutdown_notify.notified() => return,
        }
    }
}

async fn handle(mut stream: TcpStream, server: Arc<Server>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    // Read until the end of the request head (or a full buffer: the path is all we need).
    while len < buf.len() {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/health") | ("GET", "/healthz") | ("GET", "/ready") => {
            if server.is_shutting_down() {
                ("503 Service Unavailable", "text/plain", "shutting down\n".to_string())
            } else {
                ("200 OK", "text/plain", "ok\n".to_string())
            }
        }
        ("GET", "/metrics") => {
            crate::info::refresh_gauges(&server);
            ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", server.metrics.render())
        }
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
