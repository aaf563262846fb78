//! `pkcluster` admin commands (docs/compatibility.md, "pkcluster commands and replies"): slot
//! ownership, tables, the info reports, and our fencing commands used by cutovers.

use bytes::Bytes;

use super::args;
use super::{ConnCtx, Spec, ADMIN};
use crate::config::InstanceMode;
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;
use crate::slots::{Slot, Table};
use common::pkinfo::{MasterRole, ReplicaInfo, SlaveRole, SlotInfo, TableInfo};
use common::protocol::SlotError;
use common::slotset::parse_slots;

pub fn specs() -> Vec<Spec> {
    vec![
        Spec::conn("pkclusteraddslots", -3, ADMIN, addslots),
        Spec::conn("pkclusterdelslots", -3, ADMIN, delslots),
        Spec::conn("pkclusterinfo", -3, ADMIN, info),
        Spec::conn("pkclusteraddtable", -2, ADMIN, addtable),
        Spec::conn("pkclusterdeltable", -2, ADMIN, deltable),
        Spec::conn("pkclusterfence", -3, ADMIN, fence),
        Spec::conn("pkclusterunfence", -3, ADMIN, unfence),
        Spec::conn("pkclusterslotsslaveof", -5, ADMIN, slotsslaveof),
        Spec::conn("pkclusterdigest", -3, ADMIN, digest),
        // What a router needs (as CLUSTER SLOTS is to Redis clients): the user may ask.
        Spec::conn("pkclusterwritable", -2, 0, writable),
        Spec::conn("pkclusterlease", 3, ADMIN, lease),
    ]
}

/// Pika's binlog files are this big; our byte offset is shown split the same way, so
/// `binlog_offset=<file> <offset>` and Pika's lag arithmetic both carry over.
const BINLOG_FILE_SIZE: u64 = 100 << 20;

fn sharding_only(ctx: &ConnCtx, what: &str) -> CmdResult<()> {
    if ctx.server.slots.mode == InstanceMode::Classic {
        return Err(CmdError::err(format!("{what} only support on sharding mode")));
    }
    Ok(())
}

/// An optional trailing table id (unsigned decimal), defaulting to the default table.
fn table_arg(ctx: &ConnCtx, arg: Option<&Bytes>) -> CmdResult<u32> {
    match arg {
        None => Ok(ctx.server.slots.snapshot().default_table),
        Some(a) => std::str::from_utf8(a)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or(CmdError::Syntax),
    }
}

fn slot_group(arg: &[u8]) -> CmdResult<Vec<u32>> {
    parse_slots(&String::from_utf8_lossy(arg)).map_err(CmdError::err)
}

/// pkcluster addslots <slots> [table]
fn addslots(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    sharding_only(ctx, "PkClusterAddSlots/PkClusterDelSlots")?;
    if args.len() > 4 {
        return Err(CmdError::Syntax);
    }
    let slots = slot_group(&args[2])?;
    let table = table_arg(ctx, args.get(3))?;
    ctx.server.slots.add_slots(table, &slots)?;
    tracing::info!(table, slots = %common::slotset::format_slots(&slots), "addslots");
    Ok(Reply::Ok)
}

/// pkcluster delslots <slots> [table]
fn delslots(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    sharding_only(ctx, "PkClusterAddSlots/PkClusterDelSlots")?;
    if args.len() > 4 {
        return Err(CmdError::Syntax);
    }
    let slots = slot_group(&args[2])?;
    let table = table_arg(ctx, args.get(3))?;
    let name = format!("db{table}");
    let removed = ctx.server.slots.del_slots(table, &slots, |slot| crate::replication::busy_reason(slot, &name))?;
    crate::replication::forget(ctx.server, &removed)?;
    tracing::info!(table, slots = %common::slotset::format_slots(&slots), "delslots");
    Ok(Reply::Ok)
}

/// pkcluster info slot [[<table>:]<slots>] | pkcluster info table [id]
fn info(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    sharding_only(ctx, "PkClusterInfo")?;
    if args.len() > 4 {
        return Err(CmdError::Arity("pkclusterinfo".into()));
    }
    let topology = ctx.server.slots.snapshot();
    let mut out = String::new();
    match args::upper(&args[2]).as_str() {
        "SLOT" => {
            let invalid = || CmdError::err("Invalid Argument");
            let selection: Option<(&Table, Vec<u32>)> = match args.get(3) {
                None => None,
                Some(arg) => {
                    let text = String::from_utf8_lossy(arg);
                    let (table, group) = match text.split_once(':') {
                        Some((name, group)) => {
                            let id = name.strip_prefix("db").and_then(|n| n.parse::<u32>().ok());
                            (id.and_then(|id| topology.table(id)).map(|t| &**t), group.to_string())
                        }
                        None => (topology.default().map(|t| &**t), text.to_string()),
                    };
                    let slots = parse_slots(&group).map_err(|_| invalid())?;
                    match table {
                        Some(t) => Some((t, slots)),
                        // An unknown table: nothing owned, an empty reply.
                        None => return Ok(Reply::bulk("")),
                    }
                }
            };
            match selection {
                Some((table, slots)) => {
                    for id in slots {
                        if let Some(slot) = table.slot(id) {
                            slot_info(table, slot).render(&mut out);
                        }
                    }
                }
                None => {
                    // Every table, in name order (a string sort, as Pika: db0, db1, db10, db2).
                    let mut tables: Vec<&Table> = topology.tables.values().map(|t| &**t).collect();
                    tables.sort_by_key(|t| t.name());
                    for table in tables {
                        for slot in table.owned() {
                            slot_info(table, slot).render(&mut out);
                        }
                    }
                }
            }
        }
        "TABLE" => {
            let single = match args.get(3) {
                None => None,
                Some(a) => Some(
                    std::str::from_utf8(a)
                        .ok()
                        .and_then(|s| s.parse::<u32>().ok())
                        .ok_or_else(|| CmdError::err("Invalid Argument"))?,
                ),
            };
            for table in topology.tables.values() {
                if single.is_some_and(|id| id != table.id) {
                    continue;
                }
                table_info(table, single.is_none()).render(&mut out);
            }
        }
        _ => {}
    }
    Ok(Reply::bulk(out))
}

fn slot_info(table: &Table, slot: &Slot) -> SlotInfo {
    let head = slot.head.pos();
    let replicas: Vec<ReplicaInfo> = slot
        .downstream
        .lock()
        .iter()
        .map(|d| ReplicaInfo {
            addr: d.addr.clone(),
            status: d.status,
            lag: Some(head.offset.saturating_sub(d.acked.offset)),
        })
        .collect();
    let slave = slot.master_addr().map(|master| SlaveRole { master, state: slot.link_state() });
    // A replica slot shows its master half only when something replicates from it (chaining).
    let master = (slave.is_none() || !replicas.is_empty()).then_some(MasterRole { replicas });
    SlotInfo {
        table: table.name(),
        slot: slot.id,
        binlog_offset: (head.offset / BINLOG_FILE_SIZE, head.offset % BINLOG_FILE_SIZE),
        safety_purge: "none".into(),
        master,
        slave,
    }
}

fn table_info(table: &Table, with_totals: bool) -> TableInfo {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &table.stats;
    let (qps, write_qps) = (s.qps.load(Relaxed), s.write_qps.load(Relaxed));
    TableInfo {
        id: table.id,
        partition_num: table.slot_count,
        total_commands: with_totals.then(|| s.commands.load(Relaxed)),
        total_write_commands: with_totals.then(|| s.writes.load(Relaxed)),
        qps,
        write_qps,
        read_qps: qps.saturating_sub(write_qps),
    }
}

/// pkcluster addtable <id> <slot_num>
fn addtable(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    sharding_only(ctx, "PkClusterTable Cmd")?;
    if args.len() != 4 {
        return Err(CmdError::Syntax);
    }
    let id = table_arg(ctx, Some(&args[2]))?;
    let slots = table_arg(ctx, Some(&args[3]))?;
    if slots == 0 || slots > 1 << 16 {
        return Err(CmdError::Syntax);
    }
    ctx.server.slots.add_table(id, slots)?;
    Ok(Reply::Ok)
}

/// pkcluster deltable <id>: drops the table and every slot it owns (none may be replicating).
fn deltable(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    sharding_only(ctx, "PkClusterTable Cmd")?;
    if args.len() != 3 {
        return Err(CmdError::Syntax);
    }
    let id = table_arg(ctx, Some(&args[2]))?;
    let name = format!("db{id}");
    let removed = ctx.server.slots.del_table(id, |slot| crate::replication::busy_reason(slot, &name))?;
    crate::replication::forget(ctx.server, &removed)?;
    Ok(Reply::Ok)
}

/// Parses `<slots|all> [table]` (fence, unfence, digest) into the owned slots it names.
fn fence_targets(ctx: &ConnCtx, args: &[Bytes]) -> CmdResult<Vec<std::sync::Arc<Slot>>> {
    if args.len() > 4 {
        return Err(CmdError::Syntax);
    }
    let table_id = table_arg(ctx, args.get(3))?;
    let topology = ctx.server.slots.snapshot();
    let table = topology.table(table_id).ok_or_else(|| CmdError::err("invalid Table for ''"))?;
    let ids = if args::is(&args[2], "all") { table.owned_ids() } else { slot_group(&args[2])? };
    ids.iter()
        .map(|id| table.slot(*id).cloned().ok_or_else(|| CmdError::msg(SlotError::NotFound(*id).text())))
        .collect()
}

/// pkcluster fence <slots|all> [table]: master slots refuse writes with a retryable TRYAGAIN
/// error until unfenced. Taking each slot's write lock makes the fence a barrier: when the reply
/// is sent, no write to those slots is in flight and none will be acknowledged.
fn fence(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    sharding_only(ctx, "PkClusterFence")?;
    for slot in fence_targets(ctx, args)? {
        let _barrier = slot.state();
        slot.fenced.store(true, std::sync::atomic::Ordering::Release);
    }
    Ok(Reply::Ok)
}

/// pkcluster unfence <slots|all> [table]
fn unfence(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    sharding_only(ctx, "PkClusterFence")?;
    for slot in fence_targets(ctx, args)? {
        slot.fenced.store(false, std::sync::atomic::Ordering::Release);
    }
    Ok(Reply::Ok)
}

/// pkcluster slotsslaveof no one <slots|all> [table]
/// pkcluster slotsslaveof <ip> <port> <slots|all> [force] [noack] [table]
///
/// Replies at once; replication proceeds in the background (`pkcluster info slot` shows it).
/// `noack` (ours): the master does not count this copy's acknowledgements for replicated
/// acknowledgement (a migration's target is not one of the source group's replicas).
fn slotsslaveof(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    sharding_only(ctx, "PkClusterSlotSync")?;
    if args.len() > 8 {
        return Err(CmdError::Syntax);
    }
    let no_one = args::is(&args[2], "no") && args::is(&args[3], "one");
    let mut at = 5;
    let force = args.get(at).is_some_and(|a| args::is(a, "force"));
    at += usize::from(force);
    let noack = args.get(at).is_some_and(|a| args::is(a, "noack"));
    at += usize::from(noack);
    if args.len() > at + 1 || ((no_one) && (force || noack)) {
        return Err(CmdError::Syntax);
    }
    let table_arg_at = at;
    let master = if no_one {
        None
    } else {
        let host = String::from_utf8_lossy(&args[2]).to_ascii_lowercase();
        let port = args::int(&args[3])?;
        if !(1..=65535).contains(&port) {
            return Err(CmdError::NotInteger);
        }
        if is_self(ctx, &host, port as u16) {
            return Err(CmdError::err("You fucked up"));
        }
        Some(format!("{host}:{port}"))
    };
    let slots = slot_group(&args[4]).or_else(|e| if args::is(&args[4], "all") { Ok(Vec::new()) } else { Err(e) })?;
    let table_id = table_arg(ctx, args.get(table_arg_at))?;
    let topology = ctx.server.slots.snapshot();
    let table = topology.table(table_id).ok_or_else(|| CmdError::err("invalid Table for ''"))?;
    let ids = if args::is(&args[4], "all") { table.owned_ids() } else { slots };
    if ids.is_empty() {
        return Err(CmdError::err("Slots set empty"));
    }
    let targets: Vec<_> = ids
        .iter()
        .map(|id| table.slot(*id).cloned().ok_or_else(|| CmdError::msg(SlotError::NotFound(*id).text())))
        .collect::<CmdResult<_>>()?;
    match master {
        None => {
            if let Some(slot) = targets.iter().find(|s| crate::replication::full_sync_pending(ctx.server, s)) {
                return Err(CmdError::err(format!("Slot {} is in a full sync: its data is partial", slot.id)));
            }
            for slot in &targets {
                crate::replication::promote(ctx.server, slot)?;
            }
            tracing::info!(table = table_id, slots = %common::slotset::format_slots(&ids), "slotsslaveof no one");
        }
        Some(master) => {
            if !reachable(&master) {
                return Err(CmdError::err("Corruption: connect remote node error"));
            }
            for slot in &targets {
                crate::replication::follow(ctx.server, slot, &master, force, !noack)?;
            }
            tracing::info!(table = table_id, slots = %common::slotset::format_slots(&ids), %master, force, noack, "slotsslaveof");
        }
    }
    Ok(Reply::Ok)
}

/// Whether `host:port` is this node: its port on a loopback, unspecified or the bound address.
/// Resolved, so `127.1` or `localhost` count too (Pika compares the literal text only). Other
/// interfaces of a node bound to 0.0.0.0 are not detected (that needs the interface list).
fn is_self(ctx: &ConnCtx, host: &str, port: u16) -> bool {
    use std::net::ToSocketAddrs;
    let (own_port, bind) = {
        let c = ctx.server.config.read();
        (c.port, c.bind.parse::<std::net::IpAddr>().ok())
    };
    if port != own_port {
        return false;
    }
    let resolved: Vec<std::net::SocketAddr> =
        crate::storage::offload::off_worker(|| (host, port).to_socket_addrs().map(|a| a.collect()).unwrap_or_default());
    // The target is this node when connecting to it reaches our listener: any local address
    // when we listen on all of them, else our bind address only (several nodes may listen on
    // different loopback addresses of one host; 127.0.0.2 is not 127.0.0.1).
    resolved.iter().any(|a| {
        let ip = a.ip();
        match bind {
            None => ip.is_loopback() || ip.is_unspecified(),
            Some(b) if b.is_unspecified() => ip.is_loopback() || ip.is_unspecified(),
            Some(b) => ip == b || (ip.is_unspecified() && b.is_loopback()),
        }
    })
}

/// Whether a TCP connection to `addr` opens within 1.5 s (Pika checks this before replying).
fn reachable(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    crate::storage::offload::off_worker(|| {
        addr.to_socket_addrs().map(|mut addrs| {
            addrs.any(|a| std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_millis(1500)).is_ok())
        })
    })
    .unwrap_or(false)
}

/// pkcluster digest <slots|all> [table]: for each owned slot, `[slot, crc32 hex, records, seq,
/// offset]`: a CRC-32 over the slot's stored records and the log position it corresponds to. Two
/// copies of a slot at the same position have the same digest (our addition, for verifying
/// replication and migrations).
fn digest(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    sharding_only(ctx, "PkClusterDigest")?;
    let mut out = Vec::new();
    for slot in fence_targets(ctx, args)? {
        let (crc, records, pos) =
            crate::storage::offload::off_worker(|| ctx.server.store.slot_digest(slot.prefix, &slot.lock))?;
        out.push(Reply::Array(vec![
            Reply::Int(slot.id as i64),
            Reply::bulk(format!("{crc:08x}")),
            Reply::Int(records as i64),
            Reply::Int(pos.seq as i64),
            Reply::Int(pos.offset as i64),
        ]));
    }
    Ok(Reply::Array(out))
}

/// pkcluster writable: per table, `[table id, slot count, slots]` where slots (range syntax) are
/// the master slots that accept writes (not fenced). What a proxy rebuilding its routing table
/// asks every node (ours; `info slot` has no fence state and its layout is fixed by Codis).
fn writable(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    sharding_only(ctx, "PkClusterWritable")?;
    if args.len() > 2 {
        return Err(CmdError::Arity("pkclusterwritable".into()));
    }
    let topology = ctx.server.slots.snapshot();
    let tables = topology.tables.values().map(|t| {
        let ids: Vec<u32> = t.owned().filter(|s| s.write_refusal().is_none()).map(|s| s.id).collect();
        Reply::Array(vec![
            Reply::Int(t.id as i64),
            Reply::Int(t.slot_count as i64),
            Reply::bulk(common::slotset::format_slots(&ids)),
        ])
    });
    Ok(Reply::Array(tables.collect()))
}

/// pkcluster lease <ms>: master slots accept writes for `ms` milliseconds from when the request
/// reached this host (0: stop now); see `crate::lease`.
fn lease(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    sharding_only(ctx, "PkClusterLease")?;
    let ms = args::int(&args[2])?;
    if ms < 0 {
        return Err(CmdError::NotInteger);
    }
    let age = ctx.session.socket.and_then(crate::lease::input_age_ms).unwrap_or(0);
    crate::lease::grant((ms as u64).saturating_sub(age));
    Ok(Reply::Ok)
}
