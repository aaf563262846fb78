//! The command table: every command's name, arity, flags, key positions and handler.
//!
//! Each family lives in its own module and lists its commands in a `specs()` function. Handlers
//! come in two shapes:
//! - [`Handler::Slot`]: a keyed command run against the one slot all its keys map to (the
//!   dispatcher checks ownership, roles and fencing first, and splits DEL/MGET/MSET/EXISTS by
//!   slot);
//! - [`Handler::Conn`]: a keyless command run with the connection and the whole server.

pub mod args;
pub mod codis;
pub mod collection;
pub mod connection;
pub mod generic;
pub mod hashes;
pub mod lists;
pub mod pkcluster;
pub mod scan;
pub mod server;
pub mod sets;
pub mod strings;
pub mod zsets;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::error::CmdResult;
use crate::reply::Reply;
use crate::server::{Server, Session};
use crate::slots::{Slot, Table};
use crate::storage::{Group, Txn};

/// Context of a keyed command: the slot its keys map to.
pub struct Exec<'a> {
    pub server: &'a Server,
    pub table: &'a Arc<Table>,
    pub slot: &'a Arc<Slot>,
    /// Set when the command spans several slots and writes them in one batch.
    pub group: Option<&'a Group<'a>>,
}

impl<'a> Exec<'a> {
    /// A read-only view of the slot.
    pub fn read(&self) -> Txn<'a> {
        self.server.store.txn(self.slot.prefix, &self.slot.cache, None)
    }

    /// A transaction holding the slot's write lock, ownership and role checked under it
    /// ([`Slot::write_txn`]).
    pub fn write(&self) -> CmdResult<Txn<'a>> {
        let txn = self.slot.write_txn(&self.server.store)?;
        Ok(match self.group {
            Some(group) => txn.in_group(group),
            None => txn,
        })
    }

    /// Wakes clients blocked on `key` (list pushes).
    pub fn signal_key(&self, key: &[u8]) {
        self.server.blocking.signal(self.table.id, key);
    }
}

/// Context of a keyless command.
pub struct ConnCtx<'a> {
    pub server: &'a Arc<Server>,
    pub session: &'a mut Session,
}

pub type SlotFn = fn(&Exec, &[Bytes]) -> CmdResult<Reply>;
pub type ConnFn = fn(&mut ConnCtx, &[Bytes]) -> CmdResult<Reply>;
/// A keyless command that waits (WAIT): its reply is a future.
pub type WaitFn = for<'a> fn(
    &'a Arc<Server>,
    &'a Session,
    &'a [Bytes],
) -> std::pin::Pin<Box<dyn std::future::Future<Output = CmdResult<Reply>> + Send + 'a>>;

#[derive(Clone, Copy)]
pub enum Handler {
    Slot(SlotFn),
    Conn(ConnFn),
    Wait(WaitFn),
}

/// Where a command's keys are.
#[derive(Clone, Copy)]
pub enum Keys {
    None,
    /// Redis's (first, last, step); a negative `last` counts from the end (-1 = last argument).
    Range(i32, i32, i32),
    /// Commands with a key count argument (ZUNIONSTORE and friends).
    Custom(fn(&[Bytes]) -> Vec<Bytes>),
}

/// How a command whose keys span several slots of this node is split and merged
/// (docs/compatibility.md, "Multi-key commands": DEL, MGET, MSET, EXISTS).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Must stay in one slot; across slots it is refused in sharding mode.
    No,
    /// Integer replies summed (DEL, EXISTS, UNLINK, TOUCH).
    Sum,
    /// One reply per key, merged back in key order (MGET).
    PerKey,
    /// Key/value pairs; `+OK` (MSET).
    Pairs,
}

pub const WRITE: u32 = 1;
pub const ADMIN: u32 = 1 << 1;
/// Allowed before AUTH.
pub const NO_AUTH: u32 = 1 << 2;
/// May block (BLPOP and friends): the handler's nil reply means "nothing yet".
pub const BLOCKING: u32 = 1 << 3;
/// Refused in sharding mode (docs/compatibility.md, "Commands refused in sharding mode"), even
/// when its keys share a slot.
pub const CLASSIC_ONLY: u32 = 1 << 4;
/// Counted as a write in statistics and for the read-only check only (FLUSHDB etc.).
pub const FAST: u32 = 1 << 5;

#[derive(Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    /// Redis convention: N = exactly N arguments including the name, -N = at least N.
    pub arity: i32,
    pub flags: u32,
    pub keys: Keys,
    pub split: Split,
    pub handler: Handler,
}

impl Spec {
    pub const fn slot(name: &'static str, arity: i32, flags: u32, keys: Keys, run: SlotFn) -> Spec {
        Spec { name, arity, flags, keys, split: Split::No, handler: Handler::Slot(run) }
    }

    pub const fn conn(name: &'static str, arity: i32, flags: u32, run: ConnFn) -> Spec {
        Spec { name, arity, flags, keys: Keys::None, split: Split::No, handler: Handler::Conn(run) }
    }

    pub const fn wait(name: &'static str, arity: i32, flags: u32, run: WaitFn) -> Spec {
        Spec { name, arity, flags, keys: Keys::None, split: Split::No, handler: Handler::Wait(run) }
    }

    pub const fn split(mut self, split: Split) -> Spec {
        self.split = split;
        self
    }

    pub fn is_write(&self) -> bool {
        self.flags & WRITE != 0
    }

    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i32;
        if self.arity >= 0 {
            argc == self.arity
        } else {
            argc >= -self.arity
        }
    }

    /// The command's keys, in argument order.
    pub fn keys_of(&self, args: &[Bytes]) -> Vec<Bytes> {
        match self.keys {
            Keys::Custom(f) => f(args),
            _ => self.key_positions(args.len()).map(|i| args[i].clone()).collect(),
        }
    }

    /// Where the keys are among `argc` arguments, for commands with a fixed key layout (none
    /// for [`Keys::Custom`]).
    pub fn key_positions(&self, argc: usize) -> std::iter::StepBy<std::ops::Range<usize>> {
        match self.keys {
            Keys::Range(first, last, step) => {
                let n = argc as i32;
                let last = if last < 0 { n + last } else { last.min(n - 1) };
                (first as usize..(last + 1).max(first) as usize).step_by(step.max(1) as usize)
            }
            Keys::None | Keys::Custom(_) => (0..0).step_by(1),
        }
    }
}

/// A single key at argument 1: the shape of most commands.
pub const KEY1: Keys = Keys::Range(1, 1, 1);
/// Every argument from 1 on is a key.
pub const ALL_KEYS: Keys = Keys::Range(1, -1, 1);

/// The command table, keyed by lower-case name (`pkcluster` subcommands fused: `pkclusterinfo`).
pub fn table() -> &'static HashMap<&'static str, Spec> {
    static TABLE: OnceLock<HashMap<&'static str, Spec>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let families: [fn() -> Vec<Spec>; 10] = [
            strings::specs,
            generic::specs,
            hashes::specs,
            lists::specs,
            sets::specs,
            zsets::specs,
            connection::specs,
            server::specs,
            pkcluster::specs,
            codis::specs,
        ];
        let mut map = HashMap::new();
        for spec in families.iter().flat_map(|f| f()) {
            let previous = map.insert(spec.name, spec);
            assert!(previous.is_none(), "command {} registered twice", spec.name);
        }
        map
    })
}

/// Resolves a request's command name as Pika does: lower-cased, `pkcluster <sub>` fused.
pub fn resolve_name(args: &[Bytes]) -> String {
    let mut name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    if name == "pkcluster" && args.len() > 1 {
        name.push_str(&String::from_utf8_lossy(&args[1]).to_ascii_lowercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(spec_keys: Keys, args: &[&str]) -> Vec<String> {
        let spec = Spec::slot("x", -1, 0, spec_keys, |_, _| Ok(Reply::Ok));
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect();
        spec.keys_of(&args).iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect()
    }

    /// `dispatch::may_block` relies on it to look nothing up for the other commands.
    #[test]
    fn every_blocking_command_starts_with_b() {
        for spec in table().values().filter(|s| s.flags & BLOCKING != 0) {
            assert!(spec.name.starts_with('b'), "{}", spec.name);
        }
    }

    #[test]
    fn key_layouts() {
        assert_eq!(keys(KEY1, &["get", "k"]), ["k"]);
        assert_eq!(keys(ALL_KEYS, &["del", "a", "b", "c"]), ["a", "b", "c"]);
        assert_eq!(keys(Keys::Range(1, -1, 2), &["mset", "a", "1", "b", "2"]), ["a", "b"]);
        assert_eq!(keys(Keys::Range(1, -2, 1), &["blpop", "a", "b", "0"]), ["a", "b"]);
        assert_eq!(keys(Keys::Range(1, 2, 1), &["rename", "a", "b"]), ["a", "b"]);
        assert!(keys(Keys::Range(2, 2, 1), &["object", "encoding"]).is_empty(), "key beyond the arguments");
        assert!(keys(Keys::Range(1, -2, 1), &["blpop"]).is_empty());
        assert!(keys(Keys::None, &["ping", "x"]).is_empty());
    }
}
