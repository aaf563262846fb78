//! From a parsed request to a reply: name resolution, auth, arity, the sharding blacklist, slot
//! routing (ownership, read-only and fence checks on every key), splitting multi-slot
//! DEL/MGET/MSET/EXISTS, and blocking commands. The order of checks is Pika's
//! (docs/compatibility.md, "Command checks in sharding mode"), because it decides which error a
//! client sees.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use common::auth::{self, Role};

use crate::commands::{self, ConnCtx, Exec, Handler, Spec, Split, ADMIN, BLOCKING, NO_AUTH};
use crate::config::InstanceMode;
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;
use crate::server::{Server, Session};
use crate::slots::{Slot, Table};
use crate::storage::Group;

/// Commands Pika 3.3.6 refuses in sharding mode (docs/compatibility.md, "Commands refused in
/// sharding mode"). Those we implement are still accepted when all their keys share one slot
/// (hashtags), as Redis Cluster does.
const SHARDING_BLACKLIST: &[&str] = &[
    "msetnx",
    "scan",
    "keys",
    "scanx",
    "zunionstore",
    "zinterstore",
    "sunion",
    "sunionstore",
    "sinter",
    "sinterstore",
    "sdiff",
    "sdiffstore",
    "smove",
    "bitop",
    "pfadd",
    "pfcount",
    "pfmerge",
    "geoadd",
    "geopos",
    "geodist",
    "geohash",
    "georadius",
    "georadiusbymember",
    "pkpatternmatchdel",
    "slaveof",
    "dbslaveof",
];

/// Two-key list moves: across slots Pika answers with its hashtag error (docs/compatibility.md,
/// "Multi-key commands").
const HASHTAG_CHECKED: &[&str] = &["rpoplpush", "lmove", "brpoplpush", "blmove"];

/// Whether the request is a command that may wait (BLPOP and friends).
pub fn may_block(args: &[Bytes]) -> bool {
    // Every blocking command starts with a `b`: the others cost one comparison.
    if !args[0].first().is_some_and(|c| c.eq_ignore_ascii_case(&b'b')) {
        return false;
    }
    let name = commands::resolve_name(args);
    commands::table().get(name.as_str()).is_some_and(|spec| spec.flags & BLOCKING != 0)
}

pub async fn execute(server: &Arc<Server>, session: &mut Session, args: &[Bytes]) -> Reply {
    let name = commands::resolve_name(args);
    let sharding = server.slots.mode == InstanceMode::Sharding;
    let blacklisted = sharding && SHARDING_BLACKLIST.contains(&name.as_str());
    let Some(spec) = commands::table().get(name.as_str()) else {
        if blacklisted {
            // Known to Pika, refused in this mode: the auth check still comes first.
            return match check_permission(server, session, &name, 0) {
                Err(e) => e.into(),
                Ok(()) => CmdError::NotSupportedInSharding.into(),
            };
        }
        return Reply::Error(format!("ERR unknown or unsupported command '{name}\""));
    };
    *session.info.last_cmd.lock() = spec.name;
    let started = Instant::now();
    let reply = match run(server, session, spec, &name, args, blacklisted).await {
        Ok(reply) => reply,
        Err(err) => err.into(),
    };
    server.metrics.record(spec.name, started.elapsed(), reply.is_error());
    reply
}

/// Whether `role` may run a command with these flags, but for the blacklist: NOAUTH before
/// AUTH, NOPERM for an admin command run by the user.
pub fn check_role(role: Role, name: &str, flags: u32) -> CmdResult<()> {
    match role {
        Role::Admin => Ok(()),
        _ if flags & NO_AUTH != 0 => Ok(()),
        Role::None => Err(CmdError::msg(auth::NOAUTH)),
        Role::User if flags & ADMIN != 0 => Err(CmdError::msg(auth::no_permission(name))),
        Role::User => Ok(()),
    }
}

/// [`check_role`], then the user's `userblacklist`.
fn check_permission(server: &Server, session: &Session, name: &str, flags: u32) -> CmdResult<()> {
    check_role(session.role, name, flags)?;
    if session.role == Role::User && flags & NO_AUTH == 0 {
        let config = server.config.read();
        if !config.userblacklist.is_empty() && config.userblacklist.iter().any(|c| c == name) {
            return Err(CmdError::msg(auth::no_permission(name)));
        }
    }
    Ok(())
}

async fn run(
    server: &Arc<Server>,
    session: &mut Session,
    spec: &Spec,
    name: &str,
    args: &[Bytes],
    blacklisted: bool,
) -> CmdResult<Reply> {
    check_permission(server, session, spec.name, spec.flags)?;
    if !spec.arity_ok(args.len()) {
        return Err(CmdError::Arity(name.to_string()));
    }
    server.stats.commands_processed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match spec.handler {
        Handler::Conn(f) => {
            if blacklisted {
                return Err(CmdError::NotSupportedInSharding);
            }
            f(&mut ConnCtx { server, session }, args)
        }
        Handler::Wait(f) => f(server, session, args).await,
        Handler::Slot(f) => {
            let topology = server.slots.snapshot();
            let table = topology.table(session.table).ok_or_else(|| CmdError::err("Table not found"))?;
            count_table_stats(table, spec);
            if let Some(first) = one_slot(table, spec, args) {
                let slot = routed_slot(table, first, spec)?;
                let blocking = spec.flags & BLOCKING != 0;
                let reply = if blocking {
                    run_blocking(server, table, slot, f, args, &spec.keys_of(args)).await?
                } else {
                    f(&Exec { server, table, slot, group: None }, args)?
                };
                // (A blocking pop that timed out wrote nothing.)
                let popped_nothing = blocking && matches!(reply, Reply::Nil | Reply::NilArray);
                if spec.is_write() && !reply.is_error() && !popped_nothing {
                    session.writes.note(slot);
                }
                return Ok(reply);
            }
            match spec.split {
                Split::No if HASHTAG_CHECKED.contains(&name) => {
                    Err(CmdError::err("parameters hashtag is inconsistent"))
                }
                Split::No => Err(CmdError::NotSupportedInSharding),
                split => run_split(server, session, table, spec, f, args, split),
            }
        }
    }
}

/// The slot every key of the command maps to (a keyless command: the empty key's), or None when
/// they span several. Fixed key layouts are walked in place: most commands pay no allocation.
fn one_slot(table: &Table, spec: &Spec, args: &[Bytes]) -> Option<u32> {
    fn same<'k>(table: &Table, mut keys: impl Iterator<Item = &'k [u8]>) -> Option<u32> {
        let first = table.slot_of(keys.next().unwrap_or_default());
        keys.all(|k| table.slot_of(k) == first).then_some(first)
    }
    match spec.keys {
        commands::Keys::Custom(f) => same(table, f(args).iter().map(|k| k.as_ref())),
        _ => same(table, spec.key_positions(args.len()).map(|i| args[i].as_ref())),
    }
}

fn count_table_stats(table: &Table, spec: &Spec) {
    use std::sync::atomic::Ordering::Relaxed;
    table.stats.commands.fetch_add(1, Relaxed);
    if spec.is_write() {
        table.stats.writes.fetch_add(1, Relaxed);
    }
}

/// The owned slot for a command, or the error the command gets: not owned, or (for writes) a
/// replica or fenced slot.
fn routed_slot<'t>(table: &'t Table, slot: u32, spec: &Spec) -> CmdResult<&'t Arc<Slot>> {
    let owned = table.slot(slot).ok_or(CmdError::PartitionNotFound)?;
    if spec.is_write() {
        // (Too few replicas for replicated acknowledgement: the slot is this node's to write,
        // `writable` says so, but this write would not be confirmed.)
        if let Some(err) = owned.write_refusal().or_else(|| crate::durability::refusal(owned)) {
            return Err(err);
        }
    }
    Ok(owned)
}

/// DEL/EXISTS/MGET/MSET over several slots: every slot is checked before anything runs (unlike
/// Pika, which may apply earlier groups before failing a later one), then each slot's group runs
/// as its own command and the replies are merged in key order. The writes of all slots (MSET,
/// DEL) are one RocksDB batch: a 10-key MSET costs one write instead of ten, and is all or
/// nothing across a crash.
fn run_split(
    server: &Server,
    session: &mut Session,
    table: &Arc<Table>,
    spec: &Spec,
    f: commands::SlotFn,
    args: &[Bytes],
    split: Split,
) -> CmdResult<Reply> {
    let per_item = if split == Split::Pairs { 2 } else { 1 };
    if !(args.len() - 1).is_multiple_of(per_item) {
        return Err(CmdError::Arity(spec.name.to_string()));
    }
    // slot -> (positions of items, argv for that slot)
    let mut groups: Vec<(u32, Vec<usize>, Vec<Bytes>)> = Vec::new();
    for (i, item) in args[1..].chunks(per_item).enumerate() {
        let slot = table.slot_of(&item[0]);
        let group = match groups.iter_mut().position(|g| g.0 == slot) {
            Some(at) => &mut groups[at],
            None => {
                groups.push((slot, Vec::new(), vec![args[0].clone()]));
                groups.last_mut().unwrap()
            }
        };
        group.1.push(i);
        group.2.extend_from_slice(item);
    }
    // Ascending slot order: the write locks of a batch are always taken in the same order.
    groups.sort_unstable_by_key(|g| g.0);
    let slots: Vec<&Arc<Slot>> = groups.iter().map(|g| routed_slot(table, g.0, spec)).collect::<CmdResult<_>>()?;
    // A writing command's transactions, one per slot, committed together below.
    let writes = Group::default();
    let writes = spec.is_write().then_some(&writes);
    let mut sum = 0i64;
    let mut per_key = vec![Reply::Nil; (args.len() - 1) / per_item];
    let slots_written = slots.clone();
    for (group, slot) in groups.iter().zip(slots) {
        let reply = f(&Exec { server, table, slot, group: writes }, &group.2)?;
        match (split, reply) {
            (Split::Sum, Reply::Int(n)) => sum += n,
            (Split::PerKey, Reply::Array(items)) => {
                for (pos, item) in group.1.iter().zip(items) {
                    per_key[*pos] = item;
                }
            }
            (_, Reply::Error(e)) => return Err(CmdError::Msg(e)),
            _ => {}
        }
    }
    if let Some(writes) = writes {
        crate::storage::commit_group(&server.store, writes.take())?;
        for slot in slots_written {
            session.writes.note(slot);
        }
    }
    Ok(match split {
        Split::Sum => Reply::Int(sum),
        Split::PerKey => Reply::Array(per_key),
        _ => Reply::Ok,
    })
}

/// Parses a blocking timeout in seconds (a float, as in Redis 6).
fn blocking_timeout(arg: &[u8]) -> CmdResult<Option<Duration>> {
    let secs = crate::commands::args::parse_float(arg)
        .filter(|s| s.is_finite())
        .ok_or_else(|| CmdError::err("timeout is not a float or out of range"))?;
    if secs < 0.0 {
        return Err(CmdError::err("timeout is negative"));
    }
    // Redis's bound: the timeout in milliseconds fits an i64 (beyond it, a Duration would panic).
    if secs * 1000.0 > i64::MAX as f64 {
        return Err(CmdError::err("timeout is out of range"));
    }
    Ok((secs > 0.0).then(|| Duration::from_secs_f64(secs)))
}

/// How often a blocked pop checks that its slot is still this node's to write.
const SLOT_RECHECK: Duration = Duration::from_millis(250);

/// Runs a blocking command: try; when the handler answers nil (nothing to pop), wait for a push
/// to one of the keys, the timeout, or shutdown, and try again. Every [`SLOT_RECHECK`] and before
/// each try, the slot must still be this node's master slot, unfenced: one that left (deleted,
/// moved, demoted, fenced) ends the wait with the error a new request would get, instead of a
/// pop from a slot that is no longer its (or a wait nobody will ever end). The caller ends it
/// too when the client disconnects or is killed (`client::run`).
async fn run_blocking(
    server: &Server,
    table: &Arc<Table>,
    slot: &Arc<Slot>,
    f: commands::SlotFn,
    args: &[Bytes],
    keys: &[Bytes],
) -> CmdResult<Reply> {
    let timeout = blocking_timeout(args.last().expect("arity checked"))?;
    // (A deadline past what the clock can hold is no deadline.)
    let deadline = timeout.and_then(|t| tokio::time::Instant::now().checked_add(t));
    let interest = server.blocking.register(table.id, keys);
    loop {
        let topology = server.slots.snapshot();
        let current = topology.table(table.id).and_then(|t| t.slot(slot.id));
        if !current.is_some_and(|s| Arc::ptr_eq(s, slot)) {
            return Err(CmdError::PartitionNotFound);
        }
        if let Some(err) = slot.write_refusal() {
            return Err(err);
        }
        // The context lives only for the attempt, not across the wait (it is not `Send`).
        match f(&Exec { server, table, slot, group: None }, args)? {
            Reply::Nil | Reply::NilArray => {}
            reply => return Ok(reply),
        }
        let recheck = tokio::time::Instant::now() + SLOT_RECHECK;
        let until = deadline.map_or(recheck, |d| d.min(recheck));
        tokio::select! {
            _ = tokio::time::timeout_at(until, interest.notify.notified()) => {}
            _ = server.shutdown_notify.notified() => return Ok(Reply::NilArray),
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Ok(Reply::NilArray);
        }
    }
}
