//! Replicated acknowledgement (docs/replication.md, "Replicated acknowledgement") and WAIT.
//!
//! With `min-replica-acks` N > 0, a write to a master slot is answered only once N replicas of
//! that slot acknowledged a position at or past it, i.e. have it in their WAL: a failover that
//! promotes the replica with the highest position then loses no acknowledged write. A write the
//! replicas do not confirm within `replica-ack-timeout-ms` gets an `UNACKED` error (it is on this
//! master and may or may not survive it: never a silent downgrade to asynchronous), and a write
//! to a slot with fewer than N replicas streaming is refused before it runs (`TRYAGAIN`: nothing
//! was done, the proxy retries it).
//!
//! Acknowledgements are batched by construction: a connection waits once per batch of replies
//! (after its group commit), for the highest position it wrote in each slot, and a replica
//! acknowledges each burst of entries it applied with one frame, whatever the number of writes
//! and connections in it.
//!
//! The setting is process-wide, as the lease is: it is the node's, whatever its slots.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use crate::config::Config;
use crate::error::{CmdError, CmdResult};
use crate::replication::SyncStatus;
use crate::reply::Reply;
use crate::server::{Server, Session};
use crate::slots::Slot;

static MIN_ACKS: AtomicU32 = AtomicU32::new(0);
static TIMEOUT_MS: AtomicU64 = AtomicU64::new(2000);

/// Takes the node's settings (at start and after every CONFIG SET).
pub fn configure(config: &Config) {
    MIN_ACKS.store(config.min_replica_acks, Ordering::Release);
    TIMEOUT_MS.store(config.replica_ack_timeout_ms.max(1), Ordering::Release);
}

/// Replicas a write must reach before it is answered (0: asynchronous replication).
pub fn min_acks() -> usize {
    MIN_ACKS.load(Ordering::Acquire) as usize
}

fn timeout() -> Duration {
    Duration::from_millis(TIMEOUT_MS.load(Ordering::Acquire))
}

/// Replicas of `slot` streaming from it that acknowledged `seq` (or later). A migration's target
/// streams from it too, and does not count: a failover of this group looks at the group's
/// replicas only (`pkcluster slotsslaveof ... noack`).
pub fn acked_by(slot: &Slot, seq: u64) -> usize {
    let list = slot.downstream.lock();
    list.iter().filter(|d| d.counted && d.status == SyncStatus::BinlogSync && d.acked.seq >= seq).count()
}

/// The refusal of a write to `slot` when too few replicas stream from it for its write to be
/// confirmed: refused before it runs, so a client (or the proxy) may simply retry it.
pub fn refusal(slot: &Slot) -> Option<CmdError> {
    let need = min_acks();
    if need == 0 {
        return None;
    }
    let streaming = slot.downstream.lock().iter().filter(|d| d.counted && d.status == SyncStatus::BinlogSync).count();
    (streaming < need).then_some(CmdError::TooFewReplicas { slot: slot.id, streaming, need })
}

/// Waits until `need` replicas of `slot` acknowledged `seq`, or `deadline`; whether they did.
async fn confirmed(slot: &Slot, seq: u64, need: usize, deadline: Instant) -> bool {
    loop {
        let notified = slot.acks.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if acked_by(slot, seq) >= need {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return acked_by(slot, seq) >= need;
        }
    }
}

/// A write a connection made: the slot and the position the slot had right after it.
pub type Written = (Arc<Slot>, u64);

/// What a connection remembers of its writes: the last position per slot (for WAIT), and, in
/// replicated mode, those of the command that just ran (its reply waits for them).
#[derive(Default)]
pub struct Writes {
    last: HashMap<(u32, u32), Written>,
    pub fresh: Vec<Written>,
}

impl Writes {
    /// Called after a write command succeeded on `slot`.
    pub fn note(&mut self, slot: &Arc<Slot>) {
        let seq = slot.head.pos().seq;
        self.last.insert((slot.table, slot.id), (slot.clone(), seq));
        if min_acks() > 0 {
            self.fresh.push((slot.clone(), seq));
        }
    }
}

/// A batch of replies held until the replicas confirm the writes they acknowledge.
#[derive(Default)]
pub struct Awaiting {
    replies: Vec<(Reply, Vec<Written>)>,
}

impl Awaiting {
    /// Replies a connection holds before it waits and sends them: a bound on its memory.
    pub const MAX: usize = 4096;

    pub fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }

    pub fn len(&self) -> usize {
        self.replies.len()
    }

    pub fn push(&mut self, reply: Reply, written: Vec<Written>) {
        self.replies.push((reply, written));
    }

    /// Waits (once for the whole batch: per slot, for the highest position written) and
    /// encodes the replies into `out`: a write whose confirmation did not come in time, or that
    /// is answered after this master's lease ran out, gets an `UNACKED` error instead.
    pub async fn settle(&mut self, out: &mut BytesMut) {
        let need = min_acks();
        let mut highest: HashMap<(u32, u32), Written> = HashMap::new();
        for (_, written) in &self.replies {
            for (slot, seq) in written {
                let entry = highest.entry((slot.table, slot.id)).or_insert_with(|| (slot.clone(), *seq));
                entry.1 = entry.1.max(*seq);
            }
        }
        let deadline = Instant::now() + timeout();
        let mut short: HashMap<(u32, u32), usize> = HashMap::new();
        for (key, (slot, seq)) in &highest {
            if need > 0 && !confirmed(slot, *seq, need, deadline).await {
                short.insert(*key, acked_by(slot, *seq));
            }
        }
        // Checked after the wait: a master whose lease ran out meanwhile may have been replaced
        // by a replica that lacks these writes.
        let expired = crate::lease::expired();
        for (reply, written) in self.replies.drain(..) {
            let missing = written.iter().find_map(|(slot, _)| short.get(&(slot.table, slot.id)).map(|n| (slot.id, *n)));
            let reply = match missing {
                _ if written.is_empty() => reply,
                Some((slot, acked)) => Reply::Error(format!(
                    "UNACKED slot {slot}: the write is on this master but {acked} of the {need} required replicas \
                     confirmed it within {} ms; it may be lost if this master fails",
                    timeout().as_millis()
                )),
                None if expired => Reply::Error(
                    "UNACKED this master's lease expired before the write was answered; it may be lost if another \
                     node took over"
                        .into(),
                ),
                None => reply,
            };
            reply.encode(out);
        }
    }
}

/// `WAIT numreplicas timeout`: blocks until every write this connection made was acknowledged
/// by `numreplicas` replicas (per slot: the replicas of that slot), or the timeout (ms; 0 waits
/// for ever); replies with the number that did (the fewest over the slots written). A
/// connection that wrote nothing gets the number of replicas streaming from this node's slots.
pub fn wait<'a>(
    server: &'a Arc<Server>,
    session: &'a Session,
    args: &'a [Bytes],
) -> Pin<Box<dyn Future<Output = CmdResult<Reply>> + Send + 'a>> {
    Box::pin(async move {
        let need = crate::commands::args::int(&args[1])?;
        let ms = crate::commands::args::int(&args[2])?;
        if ms < 0 {
            return Err(CmdError::err("timeout is negative"));
        }
        let deadline = (ms > 0).then(|| Instant::now() + Duration::from_millis(ms as u64));
        let targets: Vec<&Written> =
            session.writes.last.values().filter(|(s, _)| s.alive.load(Ordering::Acquire) && !s.is_replica()).collect();
        if targets.is_empty() {
            return Ok(Reply::Int(streaming_replicas(server, session.table) as i64));
        }
        loop {
            let (fewest, slot) = targets
                .iter()
                .map(|(slot, seq)| (acked_by(slot, *seq), slot))
                .min_by_key(|(n, _)| *n)
                .expect("targets");
            if fewest as i64 >= need || deadline.is_some_and(|at| Instant::now() >= at) {
                return Ok(Reply::Int(fewest as i64));
            }
            // Woken by an ack of the slot furthest behind; a short nap covers an ack that came
            // between the count and the wait (and the other slots').
            let nap = Instant::now() + Duration::from_millis(50);
            let until = deadline.map_or(nap, |at| at.min(nap));
            tokio::select! {
                _ = slot.acks.notified() => {}
                _ = tokio::time::sleep_until(until) => {}
                _ = server.shutdown_notify.notified() => return Ok(Reply::Int(fewest as i64)),
            }
        }
    })
}

/// Distinct replicas streaming from any master slot of `table` on this node.
fn streaming_replicas(server: &Server, table: u32) -> usize {
    let topology = server.slots.snapshot();
    let Some(table) = topology.table(table) else { return 0 };
    let mut addrs = std::collections::BTreeSet::new();
    for slot in table.owned() {
        for d in slot.downstream.lock().iter().filter(|d| d.status == SyncStatus::BinlogSync) {
            addrs.insert(d.addr.clone());
        }
    }
    addrs.len()
}
