//! A minimal async client for admin traffic to nodes and proxies: connect (with AUTH and
//! SELECT), and one request on a fresh connection. Data traffic uses the proxy's pooled,
//! pipelined connections instead.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::Credential;
use crate::resp::{self, Frame};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one admin request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a question about state (PING, roles, a lease) may take. Short, because a process
/// that accepts connections but does not answer (stopped, hung) must be seen as down within a
/// failover's wait, not after several request timeouts in one pass; any reply within it proves
/// life.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a liveness probe waits, connection included.
pub const ALIVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether a process answers at all: a PING, without AUTH, on a fresh connection, within
/// [`ALIVE_TIMEOUT`]. Any reply proves life: an error (NOAUTH with a password set, a client
/// limit reached) as much as PONG. A process that accepts connections but does not answer
/// (stopped, hung) does not.
pub async fn alive(addr: &str) -> bool {
    let probe = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        exchange(stream, addr, &["PING"], None).await
    };
    matches!(tokio::time::timeout(ALIVE_TIMEOUT, probe).await, Ok(Ok(_)))
}

/// Opens a connection, authenticates and selects the table.
pub async fn connect(addr: &str, table: u32, credential: Option<&Credential>) -> Result<TcpStream, String> {
    let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("connect timed out".into()),
    };
    let _ = stream.set_nodelay(true);
    let mut setup = BytesMut::new();
    let mut expected = 0;
    if let Some(credential) = credential {
        resp::write_command(&mut setup, &credential.auth_args());
        expected += 1;
    }
    if table != 0 {
        resp::write_command(&mut setup, &["SELECT".to_string(), table.to_string()]);
        expected += 1;
    }
    if expected == 0 {
        return Ok(stream);
    }
    stream.write_all(&setup).await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::new();
    while expected > 0 {
        match resp::take_frame(&mut buf).map_err(|e| e.to_string())? {
            Some(frame) if frame.starts_with(b"-") => {
                return Err(String::from_utf8_lossy(&frame).trim_end().to_string());
            }
            Some(_) => expected -= 1,
            None => {
                let read = tokio::time::timeout(CONNECT_TIMEOUT, stream.read_buf(&mut buf)).await;
                match read {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return Err("no answer to AUTH/SELECT".into()),
                }
            }
        }
    }
    Ok(stream)
}

/// One request on a fresh connection; the reply (an error reply is `Ok(Frame::Error)`).
pub async fn request<A: AsRef<[u8]>>(addr: &str, credential: Option<&Credential>, args: &[A]) -> Result<Frame, String> {
    request_within(addr, credential, args, REQUEST_TIMEOUT).await
}

/// [`request`] with its own time limit (for example [`PROBE_TIMEOUT`]).
pub async fn request_within<A: AsRef<[u8]>>(
    addr: &str,
    credential: Option<&Credential>,
    args: &[A],
    timeout: Duration,
) -> Result<Frame, String> {
    let frame = request_raw(addr, 0, credential, args, Some(timeout)).await?;
    Ok(resp::decode_reply(&frame))
}

/// One request on a fresh connection to `table`, the reply as raw bytes; `timeout` None waits
/// as long as the server takes (a blocking pop with timeout 0).
pub async fn request_raw<A: AsRef<[u8]>>(
    addr: &str,
    table: u32,
    credential: Option<&Credential>,
    args: &[A],
    timeout: Option<Duration>,
) -> Result<bytes::Bytes, String> {
    let stream = connect(addr, table, credential).await?;
    exchange(stream, addr, args, timeout).await
}

/// [`request_within`], sent only if `may_send()` still holds once the connection is set up
/// (`Ok(None)`: not sent). The operator asks it whether it still leads: a connection slow to set
/// up must not carry a request decided before it lost its Lease.
pub async fn request_if<A: AsRef<[u8]>>(
    addr: &str,
    credential: Option<&Credential>,
    args: &[A],
    timeout: Duration,
    may_send: impl FnOnce() -> bool,
) -> Result<Option<Frame>, String> {
    let stream = connect(addr, 0, credential).await?;
    if !may_send() {
        return Ok(None);
    }
    let frame = exchange(stream, addr, args, Some(timeout)).await?;
    Ok(Some(resp::decode_reply(&frame)))
}

async fn exchange<A: AsRef<[u8]>>(
    mut stream: TcpStream,
    addr: &str,
    args: &[A],
    timeout: Option<Duration>,
) -> Result<bytes::Bytes, String> {
    let mut out = BytesMut::new();
    resp::write_command(&mut out, args);
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::new();
    loop {
        if let Some(frame) = resp::take_frame(&mut buf).map_err(|e| e.to_string())? {
            return Ok(frame);
        }
        let read = match timeout {
            Some(t) => tokio::time::timeout(t, stream.read_buf(&mut buf)).await.map_err(|_| ()),
            None => Ok(stream.read_buf(&mut buf).await),
        };
        match read {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Err(format!("no answer from {addr}")),
        }
    }
}
