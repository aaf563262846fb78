//! The small HTTP endpoint node and proxy serve for probes and scraping: one GET per
//! connection, the path handed to the caller's handler. Dependency-free on purpose: two or three
//! routes do not need an HTTP framework.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A response: status line text (`200 OK`), content type, body.
pub struct Response {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn text(status: &'static str, body: impl Into<String>) -> Response {
        Response { status, content_type: "text/plain", body: body.into() }
    }

    /// Prometheus/OpenMetrics text.
    pub fn metrics(body: String) -> Response {
        Response { status: "200 OK", content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8", body }
    }

    pub fn not_found() -> Response {
        Response::text("404 Not Found", "not found\n")
    }
}

/// Serves until `shutdown` completes. `handler` gets the method and path of each request.
pub async fn serve<H>(listener: TcpListener, shutdown: impl Future<Output = ()>, handler: Arc<H>)
where
    H: Fn(&str, &str) -> Response + Send + Sync + 'static,
{
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(5), handle(stream, &*handler)).await;
                    });
                }
            }
            _ = &mut shutdown => return,
        }
    }
}

async fn handle<H>(mut stream: TcpStream, handler: &H) -> std::io::Result<()>
where
    H: Fn(&str, &str) -> Response,
{
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
    let r = handler(method, path);
    let response = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        r.status,
        r.content_type,
        r.body.len(),
        r.body
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// A registry's metrics as OpenMetrics text (writing to a String cannot fail).
pub fn encode_metrics(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}
