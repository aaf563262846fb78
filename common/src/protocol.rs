//! Facts of the admin protocol that the node states and the operator and proxy react to, kept in
//! one place: the replication state names `pkcluster info slot` shows (Pika's names,
//! docs/compatibility.md "Replication states"), and the error replies whose meaning a caller acts
//! on (a slot already owned, not owned, fenced, or not served here).

use std::fmt;
use std::str::FromStr;

/// A replica slot's link to its master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LinkState {
    NoConnect,
    TryConnect,
    TryDbSync,
    WaitDbSync,
    WaitReply,
    Connected,
    Error,
    DbNoConnect,
}

impl LinkState {
    pub const ALL: [LinkState; 8] = [
        LinkState::NoConnect,
        LinkState::TryConnect,
        LinkState::TryDbSync,
        LinkState::WaitDbSync,
        LinkState::WaitReply,
        LinkState::Connected,
        LinkState::Error,
        LinkState::DbNoConnect,
    ];

    /// The state stored as a byte (the node keeps it in an atomic).
    pub fn from_u8(v: u8) -> LinkState {
        Self::ALL.get(v as usize).copied().unwrap_or(LinkState::Error)
    }

    pub fn name(self) -> &'static str {
        match self {
            LinkState::NoConnect => "kNoConnect",
            LinkState::TryConnect => "kTryConnect",
            LinkState::TryDbSync => "kTryDBSync",
            LinkState::WaitDbSync => "kWaitDBSync",
            LinkState::WaitReply => "kWaitReply",
            LinkState::Connected => "kConnected",
            LinkState::Error => "kError",
            LinkState::DbNoConnect => "kDBNoConnect",
        }
    }

    /// A full sync is pending or running: the slot's data on this replica is partial (it must
    /// never be promoted, and it is no copy of anything yet).
    pub fn in_full_sync(self) -> bool {
        matches!(self, LinkState::TryDbSync | LinkState::WaitDbSync)
    }
}

/// How far an attached replica is, as its master sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncStatus {
    NotSync,
    DbSync,
    BinlogSync,
}

impl SyncStatus {
    pub const ALL: [SyncStatus; 3] = [SyncStatus::NotSync, SyncStatus::DbSync, SyncStatus::BinlogSync];

    pub fn name(self) -> &'static str {
        match self {
            SyncStatus::NotSync => "SlaveNotSync",
            SyncStatus::DbSync => "SlaveDbSync",
            SyncStatus::BinlogSync => "SlaveBinlogSync",
        }
    }
}

/// A state name this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown replication state {0:?}")]
pub struct UnknownState(pub String);

macro_rules! named {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl FromStr for $t {
            type Err = UnknownState;
            fn from_str(s: &str) -> Result<Self, UnknownState> {
                Self::ALL.into_iter().find(|v| v.name() == s).ok_or_else(|| UnknownState(s.into()))
            }
        }
    };
}
named!(LinkState);
named!(SyncStatus);

/// The error replies of slot administration that callers react to. The node builds its replies
/// with [`SlotError::text`]; the operator and proxy classify replies with [`SlotError::of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotError {
    /// `addslots` of a slot the node owns already (a retried step: done).
    Exists(u32),
    /// `delslots` of a slot the node does not own (a retried step: done).
    NotExists(u32),
    /// `fence`, `unfence`, `slotsslaveof` of a slot the node does not own.
    NotFound(u32),
}

impl SlotError {
    pub fn text(self) -> String {
        match self {
            SlotError::Exists(id) => format!("ERR Corruption: partition : {id} exist"),
            SlotError::NotExists(id) => format!("ERR Corruption: partition : {id} not exist"),
            SlotError::NotFound(id) => format!("ERR Slot {id} not found!"),
        }
    }

    /// Which of these a reply's text (with or without its `ERR ` prefix) is, if any.
    pub fn of(text: &str) -> Option<SlotError> {
        let text = text.strip_prefix("ERR ").unwrap_or(text);
        let id = |s: &str| s.trim().parse::<u32>().ok();
        if let Some(rest) = text.strip_prefix("Corruption: partition : ") {
            if let Some(n) = rest.strip_suffix(" not exist") {
                return id(n).map(SlotError::NotExists);
            }
            return rest.strip_suffix(" exist").and_then(id).map(SlotError::Exists);
        }
        text.strip_prefix("Slot ").and_then(|r| r.strip_suffix(" not found!")).and_then(id).map(SlotError::NotFound)
    }
}

/// The reply to a data command for a slot this node does not own.
pub const PARTITION_NOT_FOUND: &str = "ERR Partition not found";
/// The prefix of the reply to a write to a fenced slot (retry once the route changes).
pub const TRYAGAIN: &str = "TRYAGAIN";

/// Whether a node's reply (an error text, without the leading `-`) means "not executed here,
/// ask again elsewhere": the slot is not owned here, or it is fenced for a cutover.
pub fn is_redirect(error: &[u8]) -> bool {
    error.starts_with(PARTITION_NOT_FOUND.as_bytes()) || error.starts_with(TRYAGAIN.as_bytes())
}

/// The `process_id` field of an `INFO` reply (node and proxy both give it): how the local
/// runtime and the tests tell which process answers on a port.
pub fn info_process_id(info: &str) -> Option<u32> {
    info.lines().find_map(|l| l.strip_prefix("process_id:")).and_then(|p| p.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip() {
        for s in LinkState::ALL {
            assert_eq!(s.name().parse::<LinkState>(), Ok(s));
            assert_eq!(LinkState::from_u8(s as u8), s);
        }
        for s in SyncStatus::ALL {
            assert_eq!(s.to_string().parse::<SyncStatus>(), Ok(s));
        }
        assert!("kBogus".parse::<LinkState>().is_err());
        assert!(LinkState::WaitDbSync.in_full_sync() && !LinkState::Connected.in_full_sync());
    }

    #[test]
    fn slot_errors_are_recognised_from_their_text() {
        for e in [SlotError::Exists(7), SlotError::NotExists(7), SlotError::NotFound(1023)] {
            assert_eq!(SlotError::of(&e.text()), Some(e));
        }
        assert_eq!(SlotError::of("ERR Partition not found"), None);
        assert!(is_redirect(b"TRYAGAIN slot 3 is fenced for a cutover, retry later"));
        assert!(is_redirect(PARTITION_NOT_FOUND.as_bytes()) && !is_redirect(b"ERR syntax error"));
    }
}
