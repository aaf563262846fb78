//! Hash commands: field writes (HSET/HMSET/HSETNX), reads (HGET, HMGET, HGETALL, HKEYS, HVALS,
//! HLEN, HEXISTS, HSTRLEN), HDEL, the counters HINCRBY/HINCRBYFLOAT, HRANDFIELD and HSCAN.
//!
//! A hash is a meta record holding its field count plus one element per field (suffix: the
//! field, value: the field's value), so fields iterate in byte order.

use std::collections::HashSet;

use bytes::Bytes;

use super::args::{self, is};
use super::{collection, scan, Exec, Spec, KEY1, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;
use crate::storage::{Kind, Meta, Txn};

pub fn specs() -> Vec<Spec> {
    vec![
        Spec::slot("hset", -4, WRITE, KEY1, hset),
        Spec::slot("hmset", -4, WRITE, KEY1, hmset),
        Spec::slot("hsetnx", 4, WRITE, KEY1, hsetnx),
        Spec::slot("hget", 3, 0, KEY1, hget),
        Spec::slot("hmget", -3, 0, KEY1, hmget),
        Spec::slot("hdel", -3, WRITE, KEY1, hdel),
        Spec::slot("hlen", 2, 0, KEY1, hlen),
        Spec::slot("hexists", 3, 0, KEY1, hexists),
        Spec::slot("hgetall", 2, 0, KEY1, hgetall),
        Spec::slot("hkeys", 2, 0, KEY1, hkeys),
        Spec::slot("hvals", 2, 0, KEY1, hvals),
        Spec::slot("hstrlen", 3, 0, KEY1, hstrlen),
        Spec::slot("hincrby", 4, WRITE, KEY1, hincrby),
        Spec::slot("hincrbyfloat", 4, WRITE, KEY1, hincrbyfloat),
        Spec::slot("hrandfield", -2, 0, KEY1, hrandfield),
        Spec::slot("hscan", -3, 0, KEY1, hscan),
    ]
}

// ---- writing helpers ----

/// A hash being modified by one command: its meta (a new one if the key did not exist) and
/// whether it is new. Fields of a new hash are never read from storage: an expired predecessor
/// purged in this transaction may still be visible there until commit.
struct Writing {
    meta: Meta,
    stored_expire: u64,
    fresh: bool,
    /// Fields written so far when `fresh`, to count repeated fields once.
    written: HashSet<Vec<u8>>,
}

impl Writing {
    fn open(txn: &mut Txn, key: &[u8]) -> CmdResult<Writing> {
        Ok(match txn.typed_meta_for_write(key, Kind::Hash)? {
            Some(meta) => Writing { stored_expire: meta.expire_at, meta, fresh: false, written: HashSet::new() },
            None => Writing {
                meta: Meta::collection(Kind::Hash, 0),
                stored_expire: 0,
                fresh: true,
                written: HashSet::new(),
            },
        })
    }

    /// The current value of `field`, including this command's earlier writes.
    fn get(&self, txn: &Txn, key: &[u8], field: &[u8]) -> CmdResult<Option<Vec<u8>>> {
        if self.fresh && !self.written.contains(field) {
            return Ok(None);
        }
        txn.elem(key, field)
    }

    /// Sets `field`; whether it is a new field.
    fn set(&mut self, txn: &mut Txn, key: &[u8], field: &[u8], value: Vec<u8>) -> CmdResult<bool> {
        let added = self.get(txn, key, field)?.is_none();
        txn.put_elem(key, field, value);
        if self.fresh {
            self.written.insert(field.to_vec());
        }
        if added {
            self.meta.set_count(self.meta.count() + 1);
        }
        Ok(added)
    }

    /// Stores the meta (the TTL of an existing hash is kept).
    fn finish(self, txn: &mut Txn, key: &[u8]) {
        txn.put_meta(key, &self.meta, self.stored_expire);
    }
}

fn check_pairs(args: &[Bytes], name: &str) -> CmdResult<()> {
    if !(args.len() - 2).is_multiple_of(2) {
        return Err(CmdError::Arity(name.into()));
    }
    Ok(())
}

/// Sets every field/value pair of `args[2..]`; the number of new fields.
fn set_pairs(ex: &Exec, args: &[Bytes]) -> CmdResult<i64> {
    let key = &args[1];
    let mut txn = ex.write()?;
    let mut hash = Writing::open(&mut txn, key)?;
    let mut added = 0;
    for pair in args[2..].chunks(2) {
        added += hash.set(&mut txn, key, &pair[0], pair[1].to_vec())? as i64;
    }
    hash.finish(&mut txn, key);
    txn.commit()?;
    Ok(added)
}

/// HSET key field value [field value ...]: the number of fields added.
fn hset(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    check_pairs(args, "hset")?;
    Ok(Reply::Int(set_pairs(ex, args)?))
}

fn hmset(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    check_pairs(args, "hmset")?;
    set_pairs(ex, args)?;
    Ok(Reply::Ok)
}

fn hsetnx(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let key = &args[1];
    let mut txn = ex.write()?;
    let mut hash = Writing::open(&mut txn, key)?;
    if hash.get(&txn, key, &args[2])?.is_some() {
        return Ok(Reply::Int(0));
    }
    hash.set(&mut txn, key, &args[2], args[3].to_vec())?;
    hash.finish(&mut txn, key);
    txn.commit()?;
    Ok(Reply::Int(1))
}

/// HDEL key field [field ...]: the number of fields removed; an emptied hash is deleted.
fn hdel(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let key = &args[1];
    let mut txn = ex.write()?;
    let Some(mut meta) = txn.typed_meta_for_write(key, Kind::Hash)? else { return Ok(Reply::Int(0)) };
    let mut removed = 0u64;
    for field in &args[2..] {
        // Point reads see this command's own deletes, so a repeated field counts once.
        if txn.elem(key, field)?.is_some() {
            txn.delete_elem(key, field);
            removed += 1;
        }
    }
    if removed == 0 {
        return Ok(Reply::Int(0));
    }
    meta.set_count(meta.count() - removed);
    if meta.count() == 0 {
        txn.delete_key(key, &meta)?;
    } else {
        let expire = meta.expire_at;
        txn.put_meta(key, &meta, expire);
    }
    txn.commit()?;
    Ok(Reply::Int(removed as i64))
}

// ---- reads ----

fn hget(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let txn = ex.read();
    if txn.typed_meta(&args[1], Kind::Hash)?.is_none() {
        return Ok(Reply::Nil);
    }
    Ok(Reply::opt_bulk(txn.elem(&args[1], &args[2])?))
}

fn hmget(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let txn = ex.read();
    let exists = txn.typed_meta(&args[1], Kind::Hash)?.is_some();
    let mut out = Vec::with_capacity(args.len() - 2);
    for field in &args[2..] {
        let value = if exists { txn.elem(&args[1], field)? } else { None };
        out.push(Reply::opt_bulk(value));
    }
    Ok(Reply::Array(out))
}

fn hlen(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    collection::len(ex, &args[1], Kind::Hash)
}

fn hexists(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let txn = ex.read();
    let found = txn.typed_meta(&args[1], Kind::Hash)?.is_some() && txn.elem(&args[1], &args[2])?.is_some();
    Ok(Reply::bool(found))
}

fn hstrlen(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let txn = ex.read();
    if txn.typed_meta(&args[1], Kind::Hash)?.is_none() {
        return Ok(Reply::Int(0));
    }
    Ok(Reply::Int(txn.elem(&args[1], &args[2])?.map_or(0, |v| v.len()) as i64))
}

/// Every (field, value) of the hash at `key`, in field order (empty if missing).
fn all_fields(txn: &Txn, key: &[u8]) -> CmdResult<Vec<(Vec<u8>, Vec<u8>)>> {
    if txn.typed_meta(key, Kind::Hash)?.is_none() {
        return Ok(Vec::new());
    }
    Ok(txn.elements(key, &[], &[], false).collect())
}

fn hgetall(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let fields = all_fields(&ex.read(), &args[1])?;
    Ok(Reply::bulks(fields.into_iter().flat_map(|(f, v)| [f, v])))
}

fn hkeys(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let fields = all_fields(&ex.read(), &args[1])?;
    Ok(Reply::bulks(fields.into_iter().map(|(f, _)| f)))
}

fn hvals(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let fields = all_fields(&ex.read(), &args[1])?;
    Ok(Reply::bulks(fields.into_iter().map(|(_, v)| v)))
}

// ---- counters ----

/// HINCRBY key field increment: a missing field counts as 0.
fn hincrby(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let delta = args::int(&args[3])?;
    let (key, field) = (&args[1], &args[2]);
    let mut txn = ex.write()?;
    let mut hash = Writing::open(&mut txn, key)?;
    let current = match hash.get(&txn, key, field)? {
        Some(v) => common::resp::parse_i64(&v).ok_or_else(|| CmdError::err("hash value is not an integer"))?,
        None => 0,
    };
    let next = current.checked_add(delta).ok_or(CmdError::Overflow)?;
    hash.set(&mut txn, key, field, itoa::Buffer::new().format(next).as_bytes().to_vec())?;
    hash.finish(&mut txn, key);
    txn.commit()?;
    Ok(Reply::Int(next))
}

/// HINCRBYFLOAT key field increment: the new value as text, formatted as Redis does.
fn hincrbyfloat(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let delta = args::float(&args[3])?;
    if delta.is_infinite() {
        return Err(CmdError::err("value is NaN or Infinity"));
    }
    let (key, field) = (&args[1], &args[2]);
    let mut txn = ex.write()?;
    let mut hash = Writing::open(&mut txn, key)?;
    let current = match hash.get(&txn, key, field)? {
        Some(v) => args::parse_float(&v).ok_or_else(|| CmdError::err("hash value is not a float"))?,
        None => 0.0,
    };
    let next = current + delta;
    if !next.is_finite() {
        return Err(CmdError::err("increment would produce NaN or Infinity"));
    }
    let text = crate::reply::human_double(next);
    hash.set(&mut txn, key, field, text.clone().into_bytes())?;
    hash.finish(&mut txn, key);
    txn.commit()?;
    Ok(Reply::bulk(text))
}

// ---- random fields and scanning ----

/// HRANDFIELD key [count [WITHVALUES]]. Without a count: one random field or nil. A positive
/// count gives distinct fields (the whole hash when it has no more than `count`); a negative
/// one gives `|count|` independent picks, so fields may repeat.
fn hrandfield(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    use rand::Rng;
    let key = &args[1];
    if args.len() == 2 {
        let txn = ex.read();
        let Some(meta) = txn.typed_meta(key, Kind::Hash)? else { return Ok(Reply::Nil) };
        let pick = rand::rng().random_range(0..meta.count().max(1)) as usize;
        return Ok(Reply::opt_bulk(txn.elements(key, &[], &[], false).nth(pick).map(|(f, _)| f)));
    }
    let count = args::int(&args[2])?;
    if count == i64::MIN {
        return Err(CmdError::err(
            "value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    let with_values = match args.get(3) {
        None => false,
        Some(arg) if args.len() == 4 && is(arg, "WITHVALUES") => true,
        Some(_) => return Err(CmdError::Syntax),
    };
    if with_values && count < -(i64::MAX / 2) {
        return Err(CmdError::err("value is out of range"));
    }
    if count < 0 && count.unsigned_abs() > collection::MAX_DRAWS {
        return Err(CmdError::err("value is out of range"));
    }
    let txn = ex.read();
    if count == 0 || txn.typed_meta(key, Kind::Hash)?.is_none() {
        return Ok(Reply::Array(Vec::new()));
    }
    let fields: Vec<(Vec<u8>, Vec<u8>)> = txn.elements(key, &[], &[], false).collect();
    if fields.is_empty() {
        // Emptied since its type was read (reads take no lock): nothing to pick from.
        return Ok(Reply::Array(Vec::new()));
    }
    let chosen: Vec<usize> = if count < 0 {
        let mut rng = rand::rng();
        (0..count.unsigned_abs()).map(|_| rng.random_range(0..fields.len())).collect()
    } else if count as usize >= fields.len() {
        (0..fields.len()).collect()
    } else {
        let mut picks = rand::seq::index::sample(&mut rand::rng(), fields.len(), count as usize).into_vec();
        picks.sort_unstable();
        picks
    };
    collection::check_drawn_bytes(
        chosen.iter().map(|&i| fields[i].0.len() + if with_values { fields[i].1.len() } else { 0 }),
    )?;
    let mut out = Vec::with_capacity(chosen.len() * if with_values { 2 } else { 1 });
    for i in chosen {
        let (field, value) = &fields[i];
        out.push(Reply::Bulk(field.clone()));
        if with_values {
            out.push(Reply::Bulk(value.clone()));
        }
    }
    Ok(Reply::Array(out))
}

/// HSCAN key cursor [MATCH pattern] [COUNT count]: fields and values, in field order.
fn hscan(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    scan::scan_collection(ex, args, Kind::Hash, (&[], &[]), |(field, value)| {
        (field.clone(), vec![Reply::Bulk(field), Reply::Bulk(value)])
    })
}
