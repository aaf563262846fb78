//! Server commands: INFO, CONFIG, TIME, FLUSHDB, FLUSHALL, COMMAND, SHUTDOWN, SLOWLOG and the
//! persistence no-ops clients probe (LASTSAVE, BGSAVE).

use std::sync::Arc;

use bytes::Bytes;

use super::args::{self, is};
use super::{ConnCtx, Handler, Keys, Spec, ADMIN, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;
use crate::server::Server;
use crate::slots::Slot;
use crate::storage::Kind;

pub fn specs() -> Vec<Spec> {
    vec![
        Spec::conn("info", -1, 0, info),
        Spec::conn("config", -2, ADMIN, config),
        Spec::conn("time", 1, 0, time),
        Spec::conn("flushdb", -1, WRITE | ADMIN, flushdb),
        Spec::conn("flushall", 1, WRITE | ADMIN, flushall),
        Spec::conn("command", -1, 0, command),
        Spec::conn("shutdown", -1, ADMIN, shutdown),
        Spec::conn("slowlog", -2, ADMIN, slowlog),
        Spec::conn("lastsave", 1, 0, lastsave),
        Spec::conn("bgsave", -1, ADMIN, bgsave),
    ]
}

fn info(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    let section = args.get(1).map(|s| String::from_utf8_lossy(s).to_ascii_lowercase());
    let rescan = args.get(2).is_some_and(|a| a.as_ref() == b"1");
    Ok(Reply::bulk(crate::info::render(ctx.server, ctx.session.table, section.as_deref(), rescan)))
}

fn config(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    let sub = args::upper(&args[1]);
    match (sub.as_str(), args.len()) {
        ("GET", n) if n >= 3 => {
            let config = ctx.server.config.read();
            let mut out = Vec::new();
            for pattern in &args[2..] {
                for (k, v) in config.get_matching(pattern) {
                    if !out.iter().any(|r: &Reply| *r == Reply::bulk(k.clone())) {
                        out.push(Reply::bulk(k));
                        out.push(Reply::bulk(v));
                    }
                }
            }
            Ok(Reply::Array(out))
        }
        ("SET", n) if n >= 4 && n % 2 == 0 => {
            let mut config = ctx.server.config.write();
            let mut next = config.clone();
            for pair in args[2..].chunks(2) {
                let key = String::from_utf8_lossy(&pair[0]).to_string();
                let value = String::from_utf8_lossy(&pair[1]).to_string();
                next.set(&key, &value, false).map_err(|e| CmdError::err(format!("CONFIG SET failed: {e}")))?;
            }
            next.check().map_err(|e| CmdError::err(format!("CONFIG SET failed: {e}")))?;
            ctx.server.store.cache().set_limit(next.cache_maxmemory);
            crate::durability::configure(&next);
            *config = next;
            Ok(Reply::Ok)
        }
        ("RESETSTAT", 2) => Ok(Reply::Ok),
        ("REWRITE", 2) => Err(CmdError::err("CONFIG REWRITE is not supported; edit pika.conf")),
        _ => Err(CmdError::err(format!(
            "Unknown subcommand or wrong number of arguments for '{}'. Try CONFIG HELP.",
            String::from_utf8_lossy(&args[1])
        ))),
    }
}

fn time(_ctx: &mut ConnCtx, _args: &[Bytes]) -> CmdResult<Reply> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Ok(Reply::bulks([now.as_secs().to_string(), now.subsec_micros().to_string()]))
}

/// Empties `slot`, or only its keys of `kind`. Replica slots are skipped: they follow their
/// master (upstream Pika flushes them too; docs/compatibility.md, "FLUSHDB and FLUSHALL").
fn flush_slot(server: &Server, slot: &Arc<Slot>, kind: Option<Kind>) -> CmdResult<()> {
    // Judged under the slot's write lock, as for every write (a slot that refuses is skipped).
    let Ok(mut txn) = slot.write_txn(&server.store) else { return Ok(()) };
    match kind {
        None => txn.clear_slot(),
        Some(kind) => {
            let keys: Vec<(Vec<u8>, crate::storage::Meta)> = txn.metas().filter(|(_, m)| m.kind == kind).collect();
            for (key, meta) in keys {
                txn.delete_key(&key, &meta)?;
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// FLUSHDB [string|hash|set|zset|list]: every owned slot of the current table.
fn flushdb(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    let kind = match args.get(1) {
        None => None,
        Some(t) => Some(match String::from_utf8_lossy(t).to_ascii_lowercase().as_str() {
            "string" | "strings" => Kind::String,
            "hash" | "hashes" => Kind::Hash,
            "list" | "lists" => Kind::List,
            "set" | "sets" => Kind::Set,
            "zset" | "zsets" => Kind::ZSet,
            _ => return Err(CmdError::err("invalid DB for ''")),
        }),
    };
    if args.len() > 2 {
        return Err(CmdError::Arity("flushdb".into()));
    }
    let topology = ctx.server.slots.snapshot();
    let table = topology.table(ctx.session.table).ok_or_else(|| CmdError::err("Table not found"))?;
    for slot in table.owned() {
        flush_slot(ctx.server, slot, kind)?;
    }
    Ok(Reply::Ok)
}

fn flushall(ctx: &mut ConnCtx, _args: &[Bytes]) -> CmdResult<Reply> {
    let topology = ctx.server.slots.snapshot();
    for table in topology.tables.values() {
        for slot in table.owned() {
            flush_slot(ctx.server, slot, None)?;
        }
    }
    Ok(Reply::Ok)
}

/// COMMAND, COMMAND COUNT, COMMAND INFO name..., COMMAND DOCS: enough for redis-cli and client
/// libraries to start and to learn key positions.
fn command(_ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    let table = super::table();
    let describe = |spec: &Spec| {
        let (first, last, step) = match spec.keys {
            Keys::Range(f, l, s) => (f as i64, l as i64, s as i64),
            Keys::Custom(_) => (0, 0, 0),
            Keys::None => (0, 0, 0),
        };
        let mut flags = vec![Reply::simple(if spec.is_write() { "write" } else { "readonly" })];
        if matches!(spec.handler, Handler::Conn(_) | Handler::Wait(_)) {
            flags.push(Reply::simple("fast"));
        }
        if spec.flags & ADMIN != 0 {
            flags.push(Reply::simple("admin"));
        }
        Reply::Array(vec![
            Reply::bulk(spec.name),
            Reply::Int(spec.arity as i64),
            Reply::Array(flags),
            Reply::Int(first),
            Reply::Int(last),
            Reply::Int(step),
        ])
    };
    match args.get(1).map(|a| args::upper(a)).as_deref() {
        None => {
            let mut specs: Vec<&Spec> = table.values().collect();
            specs.sort_by_key(|s| s.name);
            Ok(Reply::Array(specs.into_iter().map(describe).collect()))
        }
        Some("COUNT") => Ok(Reply::Int(table.len() as i64)),
        Some("INFO") => Ok(Reply::Array(
            args[2..]
                .iter()
                .map(|n| {
                    table
                        .get(String::from_utf8_lossy(n).to_ascii_lowercase().as_str())
                        .map_or(Reply::NilArray, describe)
                })
                .collect(),
        )),
        Some("DOCS") => Ok(Reply::Array(vec![])),
        Some(_) => Err(CmdError::err("unknown subcommand for 'command'")),
    }
}

fn shutdown(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    for opt in &args[1..] {
        if !(is(opt, "NOSAVE") || is(opt, "SAVE") || is(opt, "NOW") || is(opt, "FORCE")) {
            return Err(CmdError::Syntax);
        }
    }
    tracing::info!("SHUTDOWN command: shutting down");
    ctx.server.begin_shutdown();
    ctx.session.quit = true;
    Ok(Reply::Ok)
}

fn slowlog(_ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    match args::upper(&args[1]).as_str() {
        "GET" => Ok(Reply::Array(vec![])),
        "LEN" => Ok(Reply::Int(0)),
        "RESET" => Ok(Reply::Ok),
        _ => Err(CmdError::err("Unknown SLOWLOG subcommand or wrong # of args. Try SLOWLOG HELP.")),
    }
}

fn lastsave(ctx: &mut ConnCtx, _args: &[Bytes]) -> CmdResult<Reply> {
    let started = std::time::SystemTime::now() - ctx.server.started.elapsed();
    Ok(Reply::Int(started.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)))
}

/// Every write is in the WAL already; BGSAVE flushes it to disk and reports as Pika does.
fn bgsave(ctx: &mut ConnCtx, _args: &[Bytes]) -> CmdResult<Reply> {
    ctx.server.store.flush_wal()?;
    Ok(Reply::simple("Background saving started"))
}
