//! The master side of one replica's stream for one slot: the connection that sent `PKREPL`.
//!
//! After the handshake it sends either the log from the replica's position or a snapshot and then
//! the log, never more than [`WINDOW`] bytes ahead of the replica's acknowledgements, with a
//! keepalive every second. A replica silent for [`SILENCE`] is dropped, and so is one that stops
//! reading: every write has a deadline. Nothing here holds a slot lock across an await.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::tls::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::protocol::{Frame, Handshake, Start};
use super::SyncStatus;
use crate::server::Server;
use crate::slots::Slot;
use crate::storage::LogPos;

/// Unacknowledged bytes in flight per replica.
const WINDOW: u64 = 16 << 20;
/// Log bytes read per batch.
const READ_BATCH: usize = 256 << 10;
/// Full-sync chunk size, and how many chunks may wait for the socket.
const CHUNK: usize = 256 << 10;
const CHUNKS_QUEUED: usize = 8;
/// A replica that sends nothing (acks answer keepalives) for this long is dropped.
pub const SILENCE: Duration = Duration::from_secs(20);
const KEEPALIVE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("replica stopped reading")]
    WriteTimeout,
    #[error("replica silent for {0:?}")]
    Silent(Duration),
    #[error("{0}")]
    Protocol(String),
    #[error("log entry {0} was purged; the replica will re-sync in full")]
    Purged(u64),
    #[error("the slot's log was replaced or the slot is gone")]
    Replaced,
    #[error("storage: {0}")]
    Storage(String),
}

async fn send(stream: &mut Stream, bytes: &[u8]) -> Result<(), StreamError> {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await // (TLS holds what it encrypts until flushed)
    };
    match tokio::time::timeout(SILENCE, write).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(StreamError::WriteTimeout),
    }
}

/// Serves a `PKREPL` connection until the replica goes away, the slot changes, or shutdown.
pub async fn serve(server: &Arc<Server>, stream: &mut Stream, input: BytesMut, args: &[Bytes]) {
    let handshake = match Handshake::parse(args) {
        Ok(h) => h,
        Err(err) => {
            let mut out = BytesMut::new();
            common::resp::write_error(&mut out, &err.to_string());
            let _ = send(stream, &out).await;
            return;
        }
    };
    let slot = server.slots.snapshot().table(handshake.table).and_then(|t| t.slot(handshake.slot)).cloned();
    let Some(slot) = slot else {
        let _ = send(stream, b"-ERR Partition not found\r\n").await;
        return;
    };
    if slot.state().log.history == 0 {
        // The slot is itself in the middle of a full sync: what it holds is partial.
        let _ = send(stream, b"-ERR slot is in a full sync, retry later\r\n").await;
        return;
    }
    let peer = match stream.tcp().peer_addr() {
        Ok(a) => a.ip(),
        Err(_) => return,
    };
    let addr = format!("{peer}:{}", handshake.port);
    let session = super::attach(&slot, &addr, handshake.pos, handshake.counted);
    tracing::info!(slot = slot.id, replica = %addr, from = handshake.pos.seq, force = handshake.force, "replica attached");
    let result = run(server, stream, input, &slot, &handshake, session).await;
    super::detach(&slot, session);
    match result {
        Ok(()) => tracing::info!(slot = slot.id, replica = %addr, "replica detached"),
        Err(err) => tracing::info!(slot = slot.id, replica = %addr, error = %err, "replica detached"),
    }
}

async fn run(
    server: &Arc<Server>,
    stream: &mut Stream,
    input: BytesMut,
    slot: &Arc<Slot>,
    handshake: &Handshake,
    session: u64,
) -> Result<(), StreamError> {
    use std::sync::atomic::Ordering::Relaxed;
    let (start, epoch) = match continue_point(slot, handshake) {
        Some((start, epoch)) => {
            let log = slot.state().log;
            let reply =
                Start::Continue { history: log.history, prev_history: log.prev_history, prev_until: log.prev_until };
            send(stream, reply.line().as_bytes()).await?;
            server.stats.sync_partial_ok.fetch_add(1, Relaxed);
            server.metrics.partial_syncs.inc();
            (start, epoch)
        }
        None => {
            server.stats.sync_full.fetch_add(1, Relaxed);
            server.metrics.full_syncs.inc();
            full_sync(server, stream, slot, session).await?
        }
    };
    stream_log(server, stream, input, slot, session, start, epoch).await
}

/// Whether the replica can continue from its position: if so, that position and the log epoch
/// it belongs to. Either way the slot's backlog is on from here, so nothing written after this
/// point is missed.
fn continue_point(slot: &Slot, h: &Handshake) -> Option<(LogPos, u64)> {
    let mut state = slot.state();
    let head = state.head.pos();
    let usable = !h.force
        && state.log.shares_history(h.history, h.pos.seq)
        && h.pos.seq <= head.seq
        && state.backlog.offset_at(h.pos.seq) == Some(h.pos.offset);
    state.backlog.start(head);
    usable.then(|| (h.pos, state.head.epoch()))
}

/// Streams a consistent snapshot of the slot; returns the position it corresponds to.
async fn full_sync(
    server: &Arc<Server>,
    stream: &mut Stream,
    slot: &Arc<Slot>,
    session: u64,
) -> Result<(LogPos, u64), StreamError> {
    let (start_tx, start_rx) = tokio::sync::oneshot::channel();
    let (chunk_tx, mut chunk_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(CHUNKS_QUEUED);
    let producer = {
        let (store, slot) = (server.store.clone(), slot.clone());
        tokio::task::spawn_blocking(move || {
            store.stream_slot(
                slot.prefix,
                &slot.lock,
                CHUNK,
                |state| {
                    let head = state.head.pos();
                    state.backlog.start(head);
                    let _ = start_tx.send((head, state.log, state.head.epoch()));
                },
                |chunk| chunk_tx.blocking_send(chunk).is_ok(),
            )
        })
    };
    let (pos, meta, epoch) = start_rx.await.map_err(|_| StreamError::Storage("snapshot failed to start".into()))?;
    super::record(slot, session, SyncStatus::DbSync, pos);
    let start =
        Start::FullSync { history: meta.history, prev_history: meta.prev_history, prev_until: meta.prev_until, pos };
    send(stream, start.line().as_bytes()).await?;
    let mut out = BytesMut::new();
    while let Some(chunk) = chunk_rx.recv().await {
        out.clear();
        Frame::Chunk(Bytes::from(chunk)).encode(&mut out);
        send(stream, &out).await?;
    }
    let records = producer
        .await
        .map_err(|e| StreamError::Storage(e.to_string()))?
        .map_err(|e| StreamError::Storage(e.to_string()))?;
    out.clear();
    Frame::SnapshotDone { records }.encode(&mut out);
    send(stream, &out).await?;
    tracing::info!(slot = slot.id, records, seq = pos.seq, "full sync sent");
    Ok((pos, epoch))
}

/// Sends log entries after `start` as they are written, and takes acknowledgements.
async fn stream_log(
    server: &Arc<Server>,
    stream: &mut Stream,
    mut input: BytesMut,
    slot: &Arc<Slot>,
    session: u64,
    start: LogPos,
    epoch: u64,
) -> Result<(), StreamError> {
    let head = slot.head.clone();
    if head.epoch() != epoch {
        return Err(StreamError::Replaced);
    }
    let (mut sent, mut acked) = (start, start);
    let mut heard = Instant::now();
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    let mut out = BytesMut::new();
    loop {
        if head.epoch() != epoch || !slot.alive.load(std::sync::atomic::Ordering::Acquire) {
            return Err(StreamError::Replaced);
        }
        let window_open = sent.offset.saturating_sub(acked.offset) < WINDOW;
        let notified = head.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if window_open && head.pos().seq > sent.seq {
            let entries = slot.state().backlog.read(sent.seq + 1, READ_BATCH);
            let Some(entries) = entries else { return Err(StreamError::Purged(sent.seq + 1)) };
            out.clear();
            for (pos, entry) in entries {
                Frame::Entry { pos, entry }.encode(&mut out);
                sent = pos;
            }
            send(stream, &out).await?;
            continue;
        }
        tokio::select! {
            _ = &mut notified, if window_open => {}
            read = stream.read_buf(&mut input) => {
                if read? == 0 {
                    return Ok(());
                }
                heard = Instant::now();
                loop {
                    // A replica only ever sends 16-byte acks: refuse anything else before its
                    // declared length makes us reserve memory for it.
                    if input.len() >= 5 && (input[0] != b'A' || input[1..5] != 16u32.to_be_bytes()) {
                        return Err(StreamError::Protocol("expected an ack frame".into()));
                    }
                    match Frame::decode(&mut input) {
                        Ok(Some(Frame::Ack(pos))) => {
                            if pos.seq > sent.seq {
                                return Err(StreamError::Protocol(format!("ack of {} beyond sent {}", pos.seq, sent.seq)));
                            }
                            acked = acked.max(pos);
                            if !super::record(slot, session, SyncStatus::BinlogSync, acked) {
                                return Ok(()); // replaced by a newer connection of the same replica
                            }
                        }
                        Ok(Some(other)) => return Err(StreamError::Protocol(format!("unexpected frame {other:?}"))),
                        Ok(None) => break,
                        Err(err) => return Err(StreamError::Protocol(err.to_string())),
                    }
                }
            }
            _ = keepalive.tick() => {
                if heard.elapsed() > SILENCE {
                    return Err(StreamError::Silent(heard.elapsed()));
                }
                out.clear();
                Frame::Keepalive(head.pos()).encode(&mut out);
                send(stream, &out).await?;
            }
            _ = server.shutdown_notify.notified() => return Ok(()),
        }
    }
}
