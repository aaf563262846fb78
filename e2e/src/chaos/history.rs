//! What the clients did: every operation they sent, whether the cluster acknowledged it, and
//! when. The values are unique (a client number and a sequence number), so a value read back
//! names the one operation that wrote it.

use std::time::Instant;

/// One write sent through the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `SET key value` of a key no other operation writes.
    Set { key: String, value: String },
    /// `RPUSH list element` of an element no other operation pushes.
    Push { list: String, element: String },
    /// `INCR counter`.
    Incr { counter: String },
}

impl Op {
    /// The key the operation writes (its slot decides which group serves it).
    pub fn key(&self) -> &str {
        match self {
            Op::Set { key, .. } => key,
            Op::Push { list, .. } => list,
            Op::Incr { counter } => counter,
        }
    }
}

/// What the client saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The expected reply: the write is acknowledged and must survive.
    Acked,
    /// An error or no reply: the write may or may not have happened.
    Unknown,
}

/// Whether an error leaves the write in doubt (it may have been applied): no reply in time, a
/// connection lost with the request sent, or a reply that says so (a write the replicas did not
/// confirm, a request a node died with). Any other error reply is a failed request: the
/// cluster refused it (the proxy gave up waiting for a slot, a node refused it) and a client
/// would have to retry it.
pub fn in_doubt(e: &redis::RedisError) -> bool {
    if e.is_timeout() || e.is_connection_dropped() || (e.is_io_error() && !e.is_connection_refusal()) {
        return true;
    }
    let text = e.to_string();
    text.contains("UNACKED") || text.contains("may have been executed")
}

/// Why a write's outcome is unknown, in a few words (the error reply's first word, or how the
/// connection failed), for the report.
pub fn error_kind(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connection_refusal() {
        "connection refused".into()
    } else if e.is_io_error() || e.is_connection_dropped() {
        "connection lost".into()
    } else {
        // The reply's words with numbers blanked, so that one cause is one line of the report.
        let text: String = e.to_string().chars().map(|c| if c.is_ascii_digit() { 'N' } else { c }).collect();
        let mut words: Vec<&str> = text.split_whitespace().take(8).collect();
        words.dedup();
        words.join(" ")
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub op: Op,
    pub outcome: Outcome,
    /// For an unknown outcome: why.
    pub error: Option<String>,
    /// For an unknown outcome: whether it may have been applied (else the request failed).
    pub in_doubt: bool,
    pub sent: Instant,
    pub replied: Instant,
}

/// Key names and unique values, in one place for the clients and the read-back.
pub mod keys {
    /// Lists and counters are shared by all clients (so concurrent writers meet on one key);
    /// string keys are one per operation.
    pub const LISTS: u32 = 16;
    pub const COUNTERS: u32 = 8;

    pub fn string(client: u32, seq: u64) -> String {
        format!("chaos:s:{client}:{seq}")
    }
    pub fn list(n: u32) -> String {
        format!("chaos:l:{n}")
    }
    pub fn counter(n: u32) -> String {
        format!("chaos:c:{n}")
    }
    pub fn value(client: u32, seq: u64) -> String {
        format!("{client}:{seq}")
    }
}
