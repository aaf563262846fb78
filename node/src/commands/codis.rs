//! The Codis `slots*` commands of Pika's sharding mode (docs/compatibility.md, "Codis slots*
//! commands"): SLOTSINFO, SLOTSHASHKEY, SLOTSSCAN, SLOTSDEL (default table), and the semi-async
//! migration probes SLOTSMGRT*: in Pika's design a slot moves by replication (`pkcluster
//! slotsslaveof`), and Codis's "migrate" calls only ask whether the target still replicates the
//! slot.

use bytes::Bytes;

use super::args;
use super::{ConnCtx, Spec, ADMIN};
use crate::config::InstanceMode;
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;
use crate::slots::Table;

pub fn specs() -> Vec<Spec> {
    vec![
        Spec::conn("slotsinfo", -1, ADMIN, slotsinfo),
        Spec::conn("slotshashkey", -2, 0, slotshashkey),
        Spec::conn("slotsscan", -3, 0, slotsscan),
        Spec::conn("slotsdel", -2, ADMIN, slotsdel),
        Spec::conn("slotsmgrttagslot-async", 8, ADMIN, slotsmgrttagslot_async),
        Spec::conn("slotsmgrtslot-async", 8, ADMIN, slotsmgrtslot_async),
        Spec::conn("slotsmgrt-exec-wrapper", -3, 0, slotsmgrt_exec_wrapper),
        Spec::conn("slotsmgrt-async-status", 1, ADMIN, slotsmgrt_async_status),
        Spec::conn("slotsmgrt-async-cancel", 1, ADMIN, slotsmgrt_async_cancel),
        Spec::conn("slotsmgrtslot", -1, ADMIN, sync_migration_refused),
        Spec::conn("slotsmgrttagslot", -1, ADMIN, sync_migration_refused),
        Spec::conn("slotsmgrtone", -1, ADMIN, sync_migration_refused),
        Spec::conn("slotsmgrttagone", -1, ADMIN, sync_migration_refused),
    ]
}

fn sharding_only(ctx: &ConnCtx, name: &str) -> CmdResult<std::sync::Arc<crate::slots::Topology>> {
    if ctx.server.slots.mode == InstanceMode::Classic {
        return Err(CmdError::err(format!("{name} only support on sharding mode")));
    }
    Ok(ctx.server.slots.snapshot())
}

fn default_table(topology: &crate::slots::Topology) -> CmdResult<&std::sync::Arc<Table>> {
    topology.default().ok_or_else(|| CmdError::err("Table not found"))
}

/// Live key count of every owned slot of the default table, as `[[slot, count], ...]`.
/// (Pika answers from its last background scan; a live count is what Codis wants to show.)
fn slotsinfo(ctx: &mut ConnCtx, _args: &[Bytes]) -> CmdResult<Reply> {
    let topology = sharding_only(ctx, "SLOTSINFO")?;
    let table = default_table(&topology)?;
    let mut out = Vec::new();
    for slot in table.owned() {
        let n = ctx.server.store.txn(slot.prefix, &slot.cache, None).metas().count();
        out.push(Reply::Array(vec![Reply::Int(slot.id as i64), Reply::Int(n as i64)]));
    }
    Ok(Reply::Array(out))
}

fn slotshashkey(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    let topology = sharding_only(ctx, "SLOTSHASHKEY")?;
    let table = default_table(&topology)?;
    Ok(Reply::Array(args[1..].iter().map(|k| Reply::Int(table.slot_of(k) as i64)).collect()))
}

/// SLOTSSCAN slot cursor [MATCH pattern] [COUNT n]
fn slotsscan(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    let topology = sharding_only(ctx, "SLOTSSCAN")?;
    let table = default_table(&topology)?;
    let slot_id = args::int(&args[1])?;
    let cursor = args::int(&args[2])?;
    if cursor < 0 {
        return Err(CmdError::NotInteger);
    }
    let options = super::scan::parse_options(args, 3, false)?;
    let slot = u32::try_from(slot_id).ok().and_then(|id| table.slot(id)).ok_or(CmdError::NoSuchKey)?;
    let resume = if cursor == 0 { Vec::new() } else { ctx.server.cursors.resume(cursor as u64).unwrap_or_default() };
    let txn = ctx.server.store.txn(slot.prefix, &slot.cache, None);
    let mut keys = Vec::new();
    let mut next = 0;
    for (visited, (key, _)) in txn.metas_from(&resume).enumerate() {
        if visited == options.count {
            next = ctx.server.cursors.store(key);
            break;
        }
        if options.matches(&key) {
            keys.push(Reply::Bulk(key));
        }
    }
    Ok(super::scan::reply(next, keys))
}

/// SLOTSDEL slot [slot ...]: empties the listed owned slots of the default table.
fn slotsdel(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    let topology = sharding_only(ctx, "SLOTSDEL")?;
    let table = default_table(&topology)?;
    let mut out = Vec::new();
    for arg in &args[1..] {
        let id = args::int(arg)?;
        let Some(slot) = u32::try_from(id).ok().and_then(|id| table.slot(id)) else { continue };
        // Judged under the slot's write lock; a slot deleted meanwhile is skipped.
        let mut txn = match slot.write_txn(&ctx.server.store) {
            Ok(txn) => txn,
            Err(CmdError::PartitionNotFound) => continue,
            Err(e) => return Err(e),
        };
        txn.clear_slot();
        txn.commit()?;
        out.push(Reply::Array(vec![Reply::Int(id), Reply::Int(0)]));
    }
    Ok(Reply::Array(out))
}

/// SLOTSMGRTTAGSLOT-ASYNC host port timeout maxbulks maxbytes slot numkeys: `[0, remained]`,
/// remained = 1 while `host:port` is a replica attached to the slot (the migration is not done).
fn slotsmgrttagslot_async(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    let topology = sharding_only(ctx, "SLOTSMGRTTAGSLOT-ASYNC ")?;
    let host = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let port = args::int(&args[2])?;
    if !(1..=65535).contains(&port) {
        return Err(CmdError::NotInteger);
    }
    let own = ctx.server.config.read().port as i64;
    if port == own && (host == "127.0.0.1" || host == "localhost") {
        return Err(CmdError::err("destination address error"));
    }
    for arg in &args[3..6] {
        args::int(arg)?;
    }
    let table = topology.table(ctx.session.table).ok_or_else(|| CmdError::err("Table not found"))?;
    let slot_id = args::int(&args[6])?;
    if slot_id < 0 || slot_id >= table.slot_count as i64 {
        return Err(CmdError::NotInteger);
    }
    let slot = table.slot(slot_id as u32).ok_or(CmdError::NoSuchKey)?;
    let remained = crate::replication::is_attached(slot, &format!("{host}:{port}"));
    Ok(Reply::Array(vec![Reply::Int(0), Reply::Int(remained as i64)]))
}

fn slotsmgrtslot_async(ctx: &mut ConnCtx, _args: &[Bytes]) -> CmdResult<Reply> {
    sharding_only(ctx, "SLOTSMGRTTAGSLOT-ASYNC")?;
    Ok(Reply::Array(vec![Reply::Int(0), Reply::Int(0)]))
}

/// Always "being migrated, retry later" (`[1, 1]`): nothing is executed, as in Pika.
fn slotsmgrt_exec_wrapper(ctx: &mut ConnCtx, _args: &[Bytes]) -> CmdResult<Reply> {
    sharding_only(ctx, "SLOTSMGRT-EXEC-WRAPPER")?;
    Ok(Reply::Array(vec![Reply::Int(1), Reply::Int(1)]))
}

fn slotsmgrt_async_status(ctx: &mut ConnCtx, _args: &[Bytes]) -> CmdResult<Reply> {
    sharding_only(ctx, "SLOTSMGRT-ASYNC-STATUS")?;
    Ok(Reply::bulks([
        "dest server: none:-1",
        "slot number: -1",
        "migrating  : no",
        "moved keys : -1",
        "remain keys: -1",
    ]))
}

fn slotsmgrt_async_cancel(ctx: &mut ConnCtx, _args: &[Bytes]) -> CmdResult<Reply> {
    sharding_only(ctx, "SLOTSMGRT-ASYNC-CANCEL")?;
    Ok(Reply::Ok)
}

/// Codis's synchronous migration cannot work against Pika (docs/compatibility.md, "Codis slots*
/// commands").
fn sync_migration_refused(_ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    Err(CmdError::err(format!("{} NOT supported", String::from_utf8_lossy(&args[0]).to_ascii_lowercase())))
}
