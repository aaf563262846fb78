//! The replica side of one slot: a task that follows the slot's master until cancelled
//! (`slotsslaveof` elsewhere, `no one`, delslots) and reconnects with back-off when the link
//! breaks, resuming from its own log position (or starting a full sync when the master says so).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::tls::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::master::SILENCE;
use super::protocol::{Frame, Handshake, Start};
use super::LinkState;
use crate::server::Server;
use crate::slots::Slot;
use crate::storage::{LogMeta, LogPos};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The handshake reply is one short line.
const MAX_LINE: usize = 4096;

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("master refused: {0}")]
    Refused(String),
    #[error("master silent for {0:?}")]
    Silent(Duration),
    #[error("connection closed by the master")]
    Closed,
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("apply: {0}")]
    Apply(String),
    #[error("cancelled")]
    Cancelled,
}

impl From<crate::storage::ApplyError> for SyncError {
    fn from(e: crate::storage::ApplyError) -> Self {
        SyncError::Apply(e.to_string())
    }
}

impl From<rocksdb::Error> for SyncError {
    fn from(e: rocksdb::Error) -> Self {
        SyncError::Apply(e.to_string())
    }
}

/// Starts (or restarts) the slot's replication from `master`; `full` forces a full sync.
pub fn spawn(server: &Arc<Server>, slot: Arc<Slot>, master: String, full: bool) {
    let cancel = CancellationToken::new();
    if let Some(old) = slot.upstream.lock().replace(cancel.clone()) {
        old.cancel();
    }
    slot.set_link(if full { LinkState::TryDbSync } else { LinkState::TryConnect });
    tokio::spawn(run(server.clone(), slot, master, full, cancel));
}

async fn run(server: Arc<Server>, slot: Arc<Slot>, master: String, mut full: bool, cancel: CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let outcome = tokio::select! {
            outcome = session(&server, &slot, &master, full, &cancel) => outcome,
            _ = cancel.cancelled() => Err(SyncError::Cancelled),
        };
        if cancel.is_cancelled() || server.is_shutting_down() {
            return;
        }
        let err = outcome.err().unwrap_or(SyncError::Closed);
        if slot.link_state() == LinkState::Connected {
            backoff = MIN_BACKOFF; // it worked for a while: retry promptly
        }
        // A full sync that did not finish must start over; otherwise resume from our position.
        // The link shows it (kTryDBSync) for as long as it is pending: the slot's data is partial
        // and an operator must not promote it.
        full = matches!(super::load_role(&server.store, &slot), Ok(Some((_, true, _))));
        slot.set_link(match (&err, full) {
            (_, true) => LinkState::TryDbSync,
            (SyncError::Refused(_), false) => LinkState::Error,
            _ => LinkState::TryConnect,
        });
        tracing::warn!(slot = slot.id, %master, error = %err, retry_in = ?backoff, "replication link down");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = cancel.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's worth of replication; returns only with the reason it ended.
async fn session(
    server: &Arc<Server>,
    slot: &Arc<Slot>,
    master: &str,
    full: bool,
    cancel: &CancellationToken,
) -> Result<(), SyncError> {
    slot.set_link(if full { LinkState::TryDbSync } else { LinkState::TryConnect });
    let bind = server.config.read().bind.parse::<std::net::IpAddr>().ok();
    let tls = server.config.read().replication_tls().map_err(|e| SyncError::Refused(e.to_string()))?;
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, connect_from(bind, master)).await {
        Ok(s) => s?,
        Err(_) => return Err(SyncError::Io(std::io::ErrorKind::TimedOut.into())),
    };
    tcp.set_nodelay(true)?;
    // A handshake has its own, longer bound: a master starting many slots' streams at once
    // does many handshakes.
    let mut stream = match tls {
        None => Stream::Plain(tcp),
        Some(config) => {
            match tokio::time::timeout(common::tls::HANDSHAKE_TIMEOUT, common::tls::connect(config, tcp)).await {
                Ok(s) => s?,
                Err(_) => return Err(SyncError::Io(std::io::ErrorKind::TimedOut.into())),
            }
        }
    };
    let mut buf = BytesMut::with_capacity(64 << 10);
    let (masterauth, port) = {
        let c = server.config.read();
        (c.masterauth.clone(), c.port)
    };
    if !masterauth.is_empty() {
        send(&mut stream, &resp_command(&["AUTH".to_string(), masterauth])).await?;
        let line = read_line(&mut stream, &mut buf).await?;
        if let Some(err) = line.strip_prefix('-') {
            return Err(SyncError::Refused(err.to_string()));
        }
    }
    let (history, pos) = {
        let state = slot.state();
        (state.log.history, state.head.pos())
    };
    let counted = slot.counted.load(std::sync::atomic::Ordering::Acquire);
    let handshake = Handshake { table: slot.table, slot: slot.id, port, history, pos, force: full, counted };
    send(&mut stream, &resp_command(&handshake.to_args())).await?;
    if !full {
        slot.set_link(LinkState::WaitReply);
    }
    let line = read_line(&mut stream, &mut buf).await?;
    match Start::parse(&line).map_err(SyncError::Refused)? {
        Start::Continue { history, prev_history, prev_until } => {
            let mut state = slot.state();
            let meta = LogMeta { history, prev_history, prev_until };
            let changed = meta != state.log;
            server.store.set_replica_meta(slot.prefix, meta, &mut state)?;
            if changed {
                state.head.restart_streams();
            }
            tracing::info!(slot = slot.id, %master, from = pos.seq, "replication resumed");
        }
        Start::FullSync { history, prev_history, prev_until, pos } => {
            let meta = LogMeta { history, prev_history, prev_until };
            receive_snapshot(server, slot, master, &mut stream, &mut buf, (pos, meta), cancel).await?;
        }
    }
    slot.set_link(LinkState::Connected);
    follow_log(server, slot, &mut stream, &mut buf, cancel).await
}

/// Replaces the slot's contents with the master's snapshot, then starts its log at the
/// snapshot's position.
async fn receive_snapshot(
    server: &Arc<Server>,
    slot: &Arc<Slot>,
    master: &str,
    stream: &mut Stream,
    buf: &mut BytesMut,
    (pos, meta): (LogPos, LogMeta),
    cancel: &CancellationToken,
) -> Result<(), SyncError> {
    slot.set_link(LinkState::WaitDbSync);
    super::save_role(&server.store, slot, Some((master, true))).map_err(|e| SyncError::Apply(e.to_string()))?;
    {
        let mut state = slot.state();
        if stopped(slot, cancel) {
            return Err(SyncError::Cancelled);
        }
        server.store.begin_full_sync(slot.prefix, &slot.cache, &mut state)?;
    }
    let started = std::time::Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    loop {
        match next_frame(stream, buf).await? {
            Frame::Chunk(chunk) => {
                let _state = slot.state();
                if stopped(slot, cancel) {
                    return Err(SyncError::Cancelled);
                }
                records += server.store.apply_chunk(slot.prefix, &slot.cache, &chunk)?;
                bytes += chunk.len() as u64;
            }
            Frame::SnapshotDone { records: sent } if sent == records => break,
            Frame::SnapshotDone { records: sent } => {
                return Err(SyncError::Protocol(format!("snapshot of {sent} records, received {records}")));
            }
            Frame::Keepalive(_) => {}
            other => return Err(SyncError::Protocol(format!("unexpected frame during full sync: {other:?}"))),
        }
    }
    let store = server.store.clone();
    tokio::task::spawn_blocking(move || store.flush_data()).await.map_err(|e| SyncError::Apply(e.to_string()))??;
    {
        let mut state = slot.state();
        if stopped(slot, cancel) {
            return Err(SyncError::Cancelled);
        }
        server.store.finish_full_sync(slot.prefix, pos, meta, &mut state)?;
    }
    super::save_role(&server.store, slot, Some((master, false))).map_err(|e| SyncError::Apply(e.to_string()))?;
    tracing::info!(slot = slot.id, %master, records, bytes, seq = pos.seq, elapsed_ms = started.elapsed().as_millis() as u64, "full sync done");
    Ok(())
}

/// Applies the master's entries as they come, acknowledging each burst once it is durable.
async fn follow_log(
    server: &Arc<Server>,
    slot: &Arc<Slot>,
    stream: &mut Stream,
    buf: &mut BytesMut,
    cancel: &CancellationToken,
) -> Result<(), SyncError> {
    let head = slot.head.clone();
    let mut out = BytesMut::new();
    loop {
        let (mut applied, mut pinged) = (false, false);
        loop {
            match Frame::decode(buf).map_err(|e| SyncError::Protocol(e.to_string()))? {
                Some(Frame::Entry { pos, entry }) => {
                    let mut state = slot.state();
                    if stopped(slot, cancel) {
                        return Err(SyncError::Cancelled);
                    }
                    server.store.apply_entry(slot.prefix, &slot.cache, pos, entry, &mut state)?;
                    applied = true;
                }
                Some(Frame::Keepalive(_)) => pinged = true,
                Some(other) => return Err(SyncError::Protocol(format!("unexpected frame {other:?}"))),
                None => break,
            }
        }
        if applied {
            server.store.commit_wal().await?;
        }
        if applied || pinged {
            out.clear();
            Frame::Ack(head.pos()).encode(&mut out);
            match tokio::time::timeout(SILENCE, send(stream, &out)).await {
                Ok(r) => r?,
                Err(_) => return Err(SyncError::Silent(SILENCE)),
            }
        }
        read_more(stream, buf).await?;
    }
}

/// Writes `bytes` whole (a TLS connection holds what it encrypts until flushed).
async fn send(stream: &mut Stream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

async fn read_more(stream: &mut Stream, buf: &mut BytesMut) -> Result<(), SyncError> {
    match tokio::time::timeout(SILENCE, stream.read_buf(buf)).await {
        Err(_) => Err(SyncError::Silent(SILENCE)),
        Ok(Ok(0)) => Err(SyncError::Closed),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
    }
}

async fn next_frame(stream: &mut Stream, buf: &mut BytesMut) -> Result<Frame, SyncError> {
    loop {
        if let Some(frame) = Frame::decode(buf).map_err(|e| SyncError::Protocol(e.to_string()))? {
            return Ok(frame);
        }
        read_more(stream, buf).await?;
    }
}

/// Reads one CRLF-terminated line (the RESP status of AUTH and of the handshake).
async fn read_line(stream: &mut Stream, buf: &mut BytesMut) -> Result<String, SyncError> {
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf.split_to(end + 2);
            return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
        }
        if buf.len() > MAX_LINE {
            return Err(SyncError::Protocol("handshake reply too long".into()));
        }
        read_more(stream, buf).await?;
    }
}

fn resp_command(args: &[String]) -> BytesMut {
    let mut out = BytesMut::new();
    common::resp::write_command(&mut out, args);
    out
}

/// The position a replica slot has reached (for tests and INFO).
pub fn position(slot: &Slot) -> LogPos {
    slot.head.pos()
}

/// Checked under the slot's lock before every write: the task was cancelled (new master,
/// promotion) or the slot was deleted; nothing more may be applied.
fn stopped(slot: &Slot, cancel: &CancellationToken) -> bool {
    cancel.is_cancelled() || !slot.alive.load(std::sync::atomic::Ordering::Acquire)
}

/// Connects to `master` from our bind address when it is a specific one (as Redis does): the
/// master knows its replicas by the connection's source address, which must be the address
/// others reach us at. (On a host with several loopback nodes the kernel would otherwise pick
/// 127.0.0.1 for all of them.)
async fn connect_from(bind: Option<std::net::IpAddr>, master: &str) -> std::io::Result<TcpStream> {
    let Some(ip) = bind.filter(|ip| !ip.is_unspecified()) else { return TcpStream::connect(master).await };
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, format!("{master}: no address"));
    for addr in tokio::net::lookup_host(master).await? {
        if addr.is_ipv4() != ip.is_ipv4() {
            continue;
        }
        let socket = if ip.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.bind(std::net::SocketAddr::new(ip, 0))?;
        match socket.connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}
