//! Commands on keys of any type: DEL, EXISTS, TYPE, the EXPIRE/TTL family, PERSIST, OBJECT,
//! RENAME; and keyspace-wide ones in the connection's table: KEYS, SCAN, RANDOMKEY, DBSIZE.

use bytes::Bytes;

use super::args;
use super::{ConnCtx, Exec, Spec, Split, ALL_KEYS, KEY1, WRITE};
use crate::commands::Keys;
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;
use crate::storage::{Kind, Meta, MetaBody, Txn};

pub fn specs() -> Vec<Spec> {
    vec![
        Spec::slot("del", -2, WRITE, ALL_KEYS, del).split(Split::Sum),
        Spec::slot("unlink", -2, WRITE, ALL_KEYS, del).split(Split::Sum),
        Spec::slot("exists", -2, 0, ALL_KEYS, exists).split(Split::Sum),
        Spec::slot("touch", -2, 0, ALL_KEYS, exists).split(Split::Sum),
        Spec::slot("type", 2, 0, KEY1, type_),
        Spec::slot("ttl", 2, 0, KEY1, ttl),
        Spec::slot("pttl", 2, 0, KEY1, pttl),
        Spec::slot("expiretime", 2, 0, KEY1, expiretime),
        Spec::slot("pexpiretime", 2, 0, KEY1, pexpiretime),
        Spec::slot("expire", -3, WRITE, KEY1, expire),
        Spec::slot("pexpire", -3, WRITE, KEY1, pexpire),
        Spec::slot("expireat", -3, WRITE, KEY1, expireat),
        Spec::slot("pexpireat", -3, WRITE, KEY1, pexpireat),
        Spec::slot("persist", 2, WRITE, KEY1, persist),
        Spec::slot("object", -2, 0, Keys::Range(2, 2, 1), object),
        Spec::slot("rename", 3, WRITE, Keys::Range(1, 2, 1), rename),
        Spec::slot("renamenx", 3, WRITE, Keys::Range(1, 2, 1), renamenx),
        Spec::conn("keys", 2, 0, keys),
        Spec::conn("scan", -2, 0, scan),
        Spec::conn("randomkey", 1, 0, randomkey),
        Spec::conn("dbsize", 1, 0, dbsize),
    ]
}

/// Deletes `key` if it exists; whether it did.
pub fn delete(txn: &mut Txn, key: &[u8]) -> CmdResult<bool> {
    match txn.meta_for_write(key)? {
        Some(meta) => {
            txn.delete_key(key, &meta)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

fn del(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let mut txn = ex.write()?;
    let mut n = 0;
    for key in &args[1..] {
        n += delete(&mut txn, key)? as i64;
    }
    txn.commit()?;
    Ok(Reply::Int(n))
}

fn exists(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let txn = ex.read();
    let mut n = 0;
    for key in &args[1..] {
        n += txn.meta(key)?.is_some() as i64;
    }
    Ok(Reply::Int(n))
}

fn type_(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let name = ex.read().meta(&args[1])?.map_or("none", |m| m.kind.name());
    Ok(Reply::simple(name))
}

/// Remaining time to live in ms: -2 missing, -1 persistent.
fn remaining_ms(ex: &Exec, key: &[u8]) -> CmdResult<i64> {
    let txn = ex.read();
    Ok(match txn.meta(key)? {
        None => -2,
        Some(m) if m.expire_at == 0 => -1,
        Some(m) => (m.expire_at - txn.now_ms) as i64,
    })
}

fn ttl(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let ms = remaining_ms(ex, &args[1])?;
    Ok(Reply::Int(if ms < 0 { ms } else { (ms + 500) / 1000 }))
}

fn pttl(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    Ok(Reply::Int(remaining_ms(ex, &args[1])?))
}

fn absolute_expiry(ex: &Exec, key: &[u8]) -> CmdResult<i64> {
    Ok(match ex.read().meta(key)? {
        None => -2,
        Some(m) if m.expire_at == 0 => -1,
        Some(m) => m.expire_at as i64,
    })
}

fn expiretime(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let at = absolute_expiry(ex, &args[1])?;
    Ok(Reply::Int(if at < 0 { at } else { at / 1000 }))
}

fn pexpiretime(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    Ok(Reply::Int(absolute_expiry(ex, &args[1])?))
}

fn expire(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    set_expiry(ex, args, 1000, false, "expire")
}

fn pexpire(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    set_expiry(ex, args, 1, false, "pexpire")
}

fn expireat(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    set_expiry(ex, args, 1000, true, "expireat")
}

fn pexpireat(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    set_expiry(ex, args, 1, true, "pexpireat")
}

/// EXPIRE and friends, with Redis 7's NX/XX/GT/LT conditions. A time in the past deletes the key.
fn set_expiry(ex: &Exec, args: &[Bytes], unit_ms: i64, absolute: bool, name: &str) -> CmdResult<Reply> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &args[3..] {
        match args::upper(opt).as_str() {
            "NX" => nx = true,
            "XX" => xx = true,
            "GT" => gt = true,
            "LT" => lt = true,
            other => return Err(CmdError::err(format!("Unsupported option {other}"))),
        }
    }
    if nx && (xx || gt || lt) {
        return Err(CmdError::err("NX and XX, GT or LT options at the same time are not compatible"));
    }
    if gt && lt {
        return Err(CmdError::err("GT and LT options at the same time are not compatible"));
    }
    let mut txn = ex.write()?;
    let at = args::expire_at(&args[2], unit_ms, absolute, txn.now_ms, name)?;
    let Some(mut meta) = txn.meta_for_write(&args[1])? else { return Ok(Reply::Int(0)) };
    // A persistent key counts as an infinite TTL for GT/LT.
    let current = if meta.expire_at == 0 { i64::MAX } else { meta.expire_at as i64 };
    let refused =
        (nx && meta.expire_at != 0) || (xx && meta.expire_at == 0) || (gt && at <= current) || (lt && at >= current);
    if refused {
        return Ok(Reply::Int(0));
    }
    if at <= txn.now_ms as i64 {
        txn.delete_key(&args[1], &meta)?;
    } else {
        let old = meta.expire_at;
        meta.expire_at = at as u64;
        txn.put_meta(&args[1], &meta, old);
    }
    txn.commit()?;
    Ok(Reply::Int(1))
}

fn persist(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let mut txn = ex.write()?;
    match txn.meta_for_write(&args[1])? {
        Some(mut meta) if meta.expire_at != 0 => {
            let old = meta.expire_at;
            meta.expire_at = 0;
            txn.put_meta(&args[1], &meta, old);
            txn.commit()?;
            Ok(Reply::Int(1))
        }
        _ => Ok(Reply::Int(0)),
    }
}

/// OBJECT ENCODING|REFCOUNT|IDLETIME|FREQ|HELP. Encodings are reported as Redis would name the
/// equivalent in-memory structure, so tools that branch on them keep working.
fn object(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let sub = args::upper(&args[1]);
    if sub == "HELP" {
        return Ok(Reply::bulks([
            "OBJECT <subcommand> [<arg> ...]",
            "ENCODING <key>",
            "FREQ <key>",
            "IDLETIME <key>",
            "REFCOUNT <key>",
        ]));
    }
    if args.len() != 3 {
        return Err(CmdError::err(format!(
            "unknown subcommand or wrong number of arguments for '{}'. Try OBJECT HELP.",
            String::from_utf8_lossy(&args[1])
        )));
    }
    let Some(meta) = ex.read().meta(&args[2])? else { return Ok(Reply::Nil) };
    match sub.as_str() {
        "ENCODING" => Ok(Reply::bulk(encoding_name(&meta))),
        "REFCOUNT" => Ok(Reply::Int(1)),
        "IDLETIME" | "FREQ" => Ok(Reply::Int(0)),
        _ => {
            Err(CmdError::err(format!("unknown subcommand '{}'. Try OBJECT HELP.", String::from_utf8_lossy(&args[1]))))
        }
    }
}

fn encoding_name(meta: &Meta) -> &'static str {
    match (&meta.kind, &meta.body) {
        (Kind::String, MetaBody::Value(v)) if common::resp::parse_i64(v).is_some() => "int",
        (Kind::String, MetaBody::Value(v)) if v.len() <= 44 => "embstr",
        (Kind::String, _) => "raw",
        (Kind::List, _) => "quicklist",
        (Kind::Hash, _) => "hashtable",
        (Kind::Set, _) => "hashtable",
        (Kind::ZSet, _) => "skiplist",
    }
}

fn rename(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    move_key(ex, &args[1], &args[2], false).map(|_| Reply::Ok)
}

fn renamenx(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    move_key(ex, &args[1], &args[2], true).map(Reply::bool)
}

/// RENAME/RENAMENX within one slot: the value (and every element) moves under the new name,
/// keeping its TTL. Returns whether the move happened.
fn move_key(ex: &Exec, from: &[u8], to: &[u8], only_if_absent: bool) -> CmdResult<bool> {
    let mut txn = ex.write()?;
    let meta = txn.meta_for_write(from)?.ok_or(CmdError::NoSuchKey)?;
    if from == to {
        return Ok(!only_if_absent);
    }
    if only_if_absent && txn.meta_for_write(to)?.is_some() {
        return Ok(false);
    }
    delete(&mut txn, to)?;
    let elements: Vec<(Vec<u8>, Vec<u8>)> = txn.elements(from, &[], &[], false).collect();
    for (suffix, value) in elements {
        txn.put_elem(to, &suffix, value);
    }
    txn.delete_key(from, &meta)?;
    txn.put_meta(to, &meta, 0);
    txn.commit()?;
    Ok(true)
}

// ---- keyspace commands (the connection's table; classic mode, or sharding where allowed) ----

fn keys(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    let pattern = &args[1];
    let mut out = Vec::new();
    ctx.server.scan_table(ctx.session.table, &[], usize::MAX, |_, key, _| {
        if crate::glob::glob_match(pattern, key) {
            out.push(key.to_vec());
        }
    })?;
    Ok(Reply::bulks(out))
}

/// SCAN cursor [MATCH pattern] [COUNT n] [TYPE type] over the connection's table.
fn scan(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    let cursor = super::scan::parse_cursor(&args[1])?;
    let options = super::scan::parse_options(args, 2, true)?;
    let start = if cursor == 0 { Vec::new() } else { ctx.server.cursors.resume(cursor).unwrap_or_default() };
    let mut keys = Vec::new();
    let mut next_key = None;
    let mut seen = 0usize;
    ctx.server.scan_table(ctx.session.table, &start, options.count + 1, |raw, key, meta| {
        seen += 1;
        if seen > options.count {
            next_key = Some(raw.to_vec());
        } else if options.kind.as_deref().is_none_or(|k| k == meta.kind.name()) && options.matches(key) {
            keys.push(Reply::bulk(key));
        }
    })?;
    let next = next_key.map_or(0, |key| ctx.server.cursors.store(key));
    Ok(super::scan::reply(next, keys))
}

fn randomkey(ctx: &mut ConnCtx, _args: &[Bytes]) -> CmdResult<Reply> {
    // Reservoir sampling over a bounded prefix of the keyspace keeps this O(sample).
    use rand::Rng;
    let mut rng = rand::rng();
    let mut chosen: Option<Vec<u8>> = None;
    let mut n = 0u64;
    ctx.server.scan_table(ctx.session.table, &[], 1000, |_, key, _| {
        n += 1;
        if rng.random_range(0..n) == 0 {
            chosen = Some(key.to_vec());
        }
    })?;
    Ok(Reply::opt_bulk(chosen))
}

fn dbsize(ctx: &mut ConnCtx, _args: &[Bytes]) -> CmdResult<Reply> {
    let mut n = 0i64;
    ctx.server.scan_table(ctx.session.table, &[], usize::MAX, |_, _, _| n += 1)?;
    Ok(Reply::Int(n))
}
