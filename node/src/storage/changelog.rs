//! The per-slot change log's formats. Pure functions, no I/O. (The entries themselves are kept
//! in memory, `backlog`; what is persisted is each replica slot's position, `slotlog`.)
//!
//! Every committed write to a slot becomes one log entry: the list of RocksDB operations it made,
//! with keys *relative to the slot prefix*. A replica prepends its own copy of the prefix, so an
//! entry can only ever touch the slot it was read for (a cross-slot MSET commits one entry per
//! slot, each holding that slot's keys only; docs/compatibility.md, "Change-log entries per
//! slot"). Replaying the entries in order reproduces the slot byte for byte.
//!
//! Positions: `seq` counts entries (1 = the first write since the slot's history began) and
//! `offset` counts entry bytes, so lag in bytes is a subtraction, as Pika reports it.
//!
//! A slot's *history* is a random id drawn when the slot starts as a master; replicas adopt
//! their master's. Promotion (`slotsslaveof no one`) draws a new one and remembers the previous
//! id and the last position written under it, so replicas of the old master can continue
//! incrementally from the new one when their positions are no later than that point, and a
//! returning old master that wrote past it is sent a full sync instead of diverging silently.

use thiserror::Error;

const OP_PUT: u8 = b'P';
const OP_DELETE: u8 = b'D';
const OP_DELETE_RANGE: u8 = b'R';

/// A position in a slot's log: the last entry applied and the byte offset after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct LogPos {
    pub seq: u64,
    pub offset: u64,
}

/// Why bytes did not decode as an entry or record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("corrupt change-log data: {0}")]
pub struct Corrupt(pub &'static str);

/// One operation of an entry, keys relative to the slot prefix. An empty range end means "to the
/// end of the slot".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<'a> {
    Put(&'a [u8], &'a [u8]),
    Delete(&'a [u8]),
    DeleteRange(&'a [u8], &'a [u8]),
}

/// The operations of one transaction, encoded as they are added (the encoding is the log entry).
/// A slot without replicas keeps no backlog: its change sets only count the entry's length (the
/// log offset still advances), so a write pays for no second copy of its keys and values.
#[derive(Debug, Clone)]
pub struct ChangeSet {
    buf: Vec<u8>,
    /// Length of the encoded entry, kept or not.
    len: u64,
    keep: bool,
}

impl Default for ChangeSet {
    fn default() -> Self {
        ChangeSet::new(true)
    }
}

impl ChangeSet {
    /// `keep`: encode the operations (the slot logs); otherwise only measure them.
    pub fn new(keep: bool) -> Self {
        ChangeSet { buf: Vec::new(), len: 0, keep }
    }

    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.op(OP_PUT, key, Some(value));
    }

    pub fn delete(&mut self, key: &[u8]) {
        self.op(OP_DELETE, key, None);
    }

    pub fn delete_range(&mut self, start: &[u8], end: &[u8]) {
        self.op(OP_DELETE_RANGE, start, Some(end));
    }

    fn op(&mut self, tag: u8, first: &[u8], second: Option<&[u8]>) {
        self.len += 1 + 4 + first.len() as u64 + second.map_or(0, |b| 4 + b.len() as u64);
        if self.keep {
            self.buf.push(tag);
            put_bytes(&mut self.buf, first);
            if let Some(b) = second {
                put_bytes(&mut self.buf, b);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Length of the entry (what the log offset advances by).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> bytes::Bytes {
        bytes::Bytes::from(self.buf)
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// Reads a length-prefixed byte string from the front of `input`.
fn take_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], Corrupt> {
    let len = take_u32(input)? as usize;
    if input.len() < len {
        return Err(Corrupt("length past the end"));
    }
    let (head, rest) = input.split_at(len);
    *input = rest;
    Ok(head)
}

fn take_u32(input: &mut &[u8]) -> Result<u32, Corrupt> {
    let Some((head, rest)) = input.split_first_chunk::<4>() else { return Err(Corrupt("truncated length")) };
    *input = rest;
    Ok(u32::from_be_bytes(*head))
}

pub fn take_u64(input: &mut &[u8]) -> Result<u64, Corrupt> {
    let Some((head, rest)) = input.split_first_chunk::<8>() else { return Err(Corrupt("truncated integer")) };
    *input = rest;
    Ok(u64::from_be_bytes(*head))
}

/// Decodes a whole entry. Nothing is applied unless all of it decodes.
pub fn decode_entry(mut input: &[u8]) -> Result<Vec<Op<'_>>, Corrupt> {
    let mut ops = Vec::new();
    while let Some((&tag, rest)) = input.split_first() {
        input = rest;
        ops.push(match tag {
            OP_PUT => {
                let key = take_bytes(&mut input)?;
                Op::Put(key, take_bytes(&mut input)?)
            }
            OP_DELETE => Op::Delete(take_bytes(&mut input)?),
            OP_DELETE_RANGE => {
                let start = take_bytes(&mut input)?;
                Op::DeleteRange(start, take_bytes(&mut input)?)
            }
            _ => return Err(Corrupt("unknown operation")),
        });
    }
    Ok(ops)
}

/// Key/value pairs of a full-sync chunk: `(u32 len, key, u32 len, value)*`, keys relative.
pub fn encode_pair(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    put_bytes(out, key);
    put_bytes(out, value);
}

/// A key and its value, borrowed from a chunk.
pub type Pair<'a> = (&'a [u8], &'a [u8]);

pub fn decode_pairs(mut input: &[u8]) -> Result<Vec<Pair<'_>>, Corrupt> {
    let mut pairs = Vec::new();
    while !input.is_empty() {
        let key = take_bytes(&mut input)?;
        pairs.push((key, take_bytes(&mut input)?));
    }
    Ok(pairs)
}

/// A slot's history ids (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogMeta {
    pub history: u64,
    pub prev_history: u64,
    /// The last sequence number written under `prev_history`.
    pub prev_until: u64,
}

impl LogMeta {
    /// Whether a replica at `pos` under `history` has a prefix of this slot's log, judged by ids
    /// only (the caller also checks that the position exists and its offset matches).
    pub fn shares_history(&self, history: u64, seq: u64) -> bool {
        // 0 is "no history" (a slot in the middle of a full sync): never shared.
        history != 0 && (history == self.history || (history == self.prev_history && seq <= self.prev_until))
    }

    /// The bookkeeping after this slot is promoted at `head`.
    pub fn promoted(&self, head: LogPos, new_history: u64) -> LogMeta {
        LogMeta { history: new_history, prev_history: self.history, prev_until: head.seq }
    }
}

/// What a replica slot persists with every applied entry, in the same batch: its position and
/// history, so after a restart it resumes exactly where its data is.
pub fn encode_replica_state(pos: LogPos, meta: &LogMeta) -> [u8; 40] {
    let mut out = [0u8; 40];
    for (i, v) in [pos.seq, pos.offset, meta.history, meta.prev_history, meta.prev_until].into_iter().enumerate() {
        out[i * 8..(i + 1) * 8].copy_from_slice(&v.to_be_bytes());
    }
    out
}

pub fn decode_replica_state(mut input: &[u8]) -> Result<(LogPos, LogMeta), Corrupt> {
    let pos = LogPos { seq: take_u64(&mut input)?, offset: take_u64(&mut input)? };
    let meta = LogMeta {
        history: take_u64(&mut input)?,
        prev_history: take_u64(&mut input)?,
        prev_until: take_u64(&mut input)?,
    };
    Ok((pos, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn entry_round_trips() {
        let mut c = ChangeSet::default();
        c.put(b"kfoo", b"bar");
        c.delete(b"kgone");
        c.delete_range(b"d", b"");
        let ops = decode_entry(c.bytes()).unwrap();
        assert_eq!(ops, vec![Op::Put(b"kfoo", b"bar"), Op::Delete(b"kgone"), Op::DeleteRange(b"d", b"")]);
        assert_eq!(c.len(), c.bytes().len() as u64);
        // Measured only: same length, nothing kept.
        let mut m = ChangeSet::new(false);
        m.put(b"kfoo", b"bar");
        m.delete(b"kgone");
        m.delete_range(b"d", b"");
        assert_eq!((m.len(), m.bytes().len()), (c.len(), 0));
    }

    #[test]
    fn truncated_and_unknown_entries_are_refused() {
        let mut c = ChangeSet::default();
        c.put(b"key", b"value");
        let bytes = c.bytes();
        for cut in 1..bytes.len() {
            assert!(decode_entry(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(decode_entry(b"X"), Err(Corrupt("unknown operation")));
        assert_eq!(decode_entry(b"P\xff\xff\xff\xff"), Err(Corrupt("length past the end")));
    }

    #[test]
    fn promotion_keeps_the_old_history_up_to_the_promotion_point() {
        let m = LogMeta { history: 7, prev_history: 0, prev_until: 0 };
        let p = m.promoted(LogPos { seq: 10, offset: 100 }, 9);
        assert!(p.shares_history(9, 50));
        assert!(p.shares_history(7, 10));
        assert!(!p.shares_history(7, 11), "the old master wrote past the promotion point");
        assert!(!p.shares_history(0, 0), "no history is never shared");
        let pos = LogPos { seq: 3, offset: 4 };
        assert_eq!(decode_replica_state(&encode_replica_state(pos, &p)).unwrap(), (pos, p));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_entry(&bytes);
            let _ = decode_pairs(&bytes);
            let _ = decode_replica_state(&bytes);
        }

        #[test]
        fn pairs_round_trip(pairs in proptest::collection::vec((any::<Vec<u8>>(), any::<Vec<u8>>()), 0..8)) {
            let mut buf = Vec::new();
            for (k, v) in &pairs {
                encode_pair(&mut buf, k, v);
            }
            let back = decode_pairs(&buf).unwrap();
            prop_assert_eq!(back.len(), pairs.len());
            for ((k, v), (bk, bv)) in pairs.iter().zip(back) {
                prop_assert_eq!(k.as_slice(), bk);
                prop_assert_eq!(v.as_slice(), bv);
            }
        }
    }
}
