//! Set commands: SADD/SREM and membership tests, SMEMBERS, random picks (SPOP, SRANDMEMBER),
//! SMOVE, the algebra SUNION/SINTER/SDIFF (with their STORE forms and SINTERCARD), and SSCAN.
//!
//! Storage: one element per member, its suffix the member itself and its value empty; the meta
//! holds the member count. Members therefore come back in byte order, which is the order our
//! SMEMBERS and SSCAN use (Redis's hash order is unspecified, so clients cannot rely on it).

use std::collections::BTreeSet;

use bytes::Bytes;
use rand::seq::SliceRandom;

use super::args::{self, is};
use super::collection::{
    self, distinct_positions, entries_at, entries_for_draws, numkeys_keys, positive_count, random_draws,
    set_count_after_removal, signed_count,
};
use super::{scan, Exec, Keys, Spec, ALL_KEYS, KEY1, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;
use crate::storage::{Kind, Meta, Txn};

pub fn specs() -> Vec<Spec> {
    vec![
        Spec::slot("sadd", -3, WRITE, KEY1, sadd),
        Spec::slot("srem", -3, WRITE, KEY1, srem),
        Spec::slot("scard", 2, 0, KEY1, scard),
        Spec::slot("sismember", 3, 0, KEY1, sismember),
        Spec::slot("smismember", -3, 0, KEY1, smismember),
        Spec::slot("smembers", 2, 0, KEY1, smembers),
        Spec::slot("spop", -2, WRITE, KEY1, spop),
        Spec::slot("srandmember", -2, 0, KEY1, srandmember),
        Spec::slot("smove", 4, WRITE, Keys::Range(1, 2, 1), smove),
        Spec::slot("sunion", -2, 0, ALL_KEYS, sunion),
        Spec::slot("sinter", -2, 0, ALL_KEYS, sinter),
        Spec::slot("sdiff", -2, 0, ALL_KEYS, sdiff),
        Spec::slot("sunionstore", -3, WRITE, ALL_KEYS, sunionstore),
        Spec::slot("sinterstore", -3, WRITE, ALL_KEYS, sinterstore),
        Spec::slot("sdiffstore", -3, WRITE, ALL_KEYS, sdiffstore),
        Spec::slot("sintercard", -3, 0, Keys::Custom(numkeys_keys), sintercard),
        Spec::slot("sscan", -3, 0, KEY1, sscan),
    ]
}

// ---- single-key commands ----

fn sadd(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let key = &args[1];
    let mut txn = ex.write()?;
    let meta = txn.typed_meta_for_write(key, Kind::Set)?;
    let mut meta = meta.unwrap_or_else(|| Meta::collection(Kind::Set, 0));
    let mut added = 0;
    for member in &args[2..] {
        // A point read sees this command's own writes, so a repeated member counts once.
        if txn.elem(key, member)?.is_none() {
            txn.put_elem(key, member, Vec::new());
            added += 1;
        }
    }
    if added > 0 {
        let old_expire = meta.expire_at;
        meta.set_count(meta.count() + added);
        txn.put_meta(key, &meta, old_expire);
    }
    txn.commit()?;
    Ok(Reply::Int(added as i64))
}

fn srem(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let key = &args[1];
    let mut txn = ex.write()?;
    let Some(meta) = txn.typed_meta_for_write(key, Kind::Set)? else { return Ok(Reply::Int(0)) };
    let mut removed = 0;
    for member in &args[2..] {
        if txn.elem(key, member)?.is_some() {
            txn.delete_elem(key, member);
            removed += 1;
        }
    }
    set_count_after_removal(&mut txn, key, meta, removed)?;
    txn.commit()?;
    Ok(Reply::Int(removed as i64))
}

fn scard(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    collection::len(ex, &args[1], Kind::Set)
}

fn sismember(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let txn = ex.read();
    if txn.typed_meta(&args[1], Kind::Set)?.is_none() {
        return Ok(Reply::Int(0));
    }
    Ok(Reply::bool(txn.elem(&args[1], &args[2])?.is_some()))
}

fn smismember(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let txn = ex.read();
    let exists = txn.typed_meta(&args[1], Kind::Set)?.is_some();
    let mut out = Vec::with_capacity(args.len() - 2);
    for member in &args[2..] {
        out.push(Reply::bool(exists && txn.elem(&args[1], member)?.is_some()));
    }
    Ok(Reply::Array(out))
}

fn smembers(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let txn = ex.read();
    if txn.typed_meta(&args[1], Kind::Set)?.is_none() {
        return Ok(Reply::Array(Vec::new()));
    }
    Ok(Reply::bulks(txn.elements(&args[1], &[], &[], false).map(|(member, _)| member)))
}

// ---- random picks ----

/// SPOP key [count]
fn spop(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    if args.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let count = args.get(2).map(|a| positive_count(a)).transpose()?;
    let key = &args[1];
    let mut txn = ex.write()?;
    let Some(meta) = txn.typed_meta_for_write(key, Kind::Set)? else {
        return Ok(if count.is_some() { Reply::Array(Vec::new()) } else { Reply::Nil });
    };
    let positions = distinct_positions(meta.count(), count.unwrap_or(1));
    let mut members: Vec<Vec<u8>> =
        entries_at(&txn, key, &[], &[], meta.count(), &positions).into_iter().map(|(m, _)| m).collect();
    for member in &members {
        txn.delete_elem(key, member);
    }
    set_count_after_removal(&mut txn, key, meta, members.len() as u64)?;
    txn.commit()?;
    match count {
        None => Ok(Reply::opt_bulk(members.pop())),
        Some(_) => {
            // Positions come back sorted; a pop's order should not reveal the storage order.
            members.shuffle(&mut rand::rng());
            Ok(Reply::bulks(members))
        }
    }
}

/// SRANDMEMBER key [count]: a positive count gives distinct members, a negative one may repeat.
fn srandmember(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    if args.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let count = args.get(2).map(|a| signed_count(a)).transpose()?;
    let key = &args[1];
    let txn = ex.read();
    let Some(meta) = txn.typed_meta(key, Kind::Set)? else {
        return Ok(if count.is_some() { Reply::Array(Vec::new()) } else { Reply::Nil });
    };
    let draws = random_draws(meta.count(), count.unwrap_or(1))?;
    let mut members = entries_for_draws(&txn, key, &[], &[], meta.count(), &draws)?.into_iter().map(|(m, _)| m);
    match count {
        None => Ok(Reply::opt_bulk(members.next())),
        Some(_) => Ok(Reply::bulks(members)),
    }
}

/// SMOVE source destination member
fn smove(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let (src, dst, member) = (&args[1], &args[2], &args[3]);
    let mut txn = ex.write()?;
    // As in Redis: a missing source answers 0 before the destination's type is looked at.
    let Some(src_meta) = txn.typed_meta_for_write(src, Kind::Set)? else { return Ok(Reply::Int(0)) };
    let dst_meta = txn.typed_meta_for_write(dst, Kind::Set)?;
    let present = txn.elem(src, member)?.is_some();
    if src == dst || !present {
        return Ok(Reply::bool(present));
    }
    txn.delete_elem(src, member);
    set_count_after_removal(&mut txn, src, src_meta, 1)?;
    if txn.elem(dst, member)?.is_none() {
        let mut meta = dst_meta.unwrap_or_else(|| Meta::collection(Kind::Set, 0));
        let old_expire = meta.expire_at;
        meta.set_count(meta.count() + 1);
        txn.put_elem(dst, member, Vec::new());
        txn.put_meta(dst, &meta, old_expire);
    }
    txn.commit()?;
    Ok(Reply::Int(1))
}

// ---- set algebra ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

/// The metas of `keys`, all checked for type before any computing (a WRONGTYPE anywhere fails
/// the command, even after a missing key).
fn input_metas(txn: &Txn, keys: &[Bytes]) -> CmdResult<Vec<Option<Meta>>> {
    keys.iter().map(|k| txn.typed_meta(k, Kind::Set)).collect()
}

fn members_of<'a>(txn: &Txn<'a>, key: &[u8]) -> impl Iterator<Item = Vec<u8>> + 'a {
    txn.elements(key, &[], &[], false).map(|(member, _)| member)
}

/// Computes `op` over `keys` (stored state), in member order. `limit` (0 = none) stops an
/// intersection early, for SINTERCARD.
fn combine(txn: &Txn, keys: &[Bytes], op: SetOp, limit: usize) -> CmdResult<Vec<Vec<u8>>> {
    let metas = input_metas(txn, keys)?;
    match op {
        SetOp::Union => {
            let mut all = BTreeSet::new();
            for (key, meta) in keys.iter().zip(&metas) {
                if meta.is_some() {
                    all.extend(members_of(txn, key));
                }
            }
            Ok(all.into_iter().collect())
        }
        SetOp::Inter => {
            let Some(sizes) = metas.iter().map(|m| m.as_ref().map(Meta::count)).collect::<Option<Vec<u64>>>() else {
                return Ok(Vec::new()); // an empty input empties the intersection
            };
            // Walk the smallest set, probe the others.
            let smallest = (0..keys.len()).min_by_key(|&i| sizes[i]).expect("at least one key");
            let mut out = Vec::new();
            for member in members_of(txn, &keys[smallest]) {
                if in_all_others(txn, keys, smallest, &member)? {
                    out.push(member);
                    if out.len() == limit {
                        break;
                    }
                }
            }
            Ok(out)
        }
        SetOp::Diff => {
            if metas[0].is_none() {
                return Ok(Vec::new());
            }
            let mut out = Vec::new();
            for member in members_of(txn, &keys[0]) {
                if !in_any_other(txn, keys, &metas, &member)? {
                    out.push(member);
                }
            }
            Ok(out)
        }
    }
}

fn in_all_others(txn: &Txn, keys: &[Bytes], skip: usize, member: &[u8]) -> CmdResult<bool> {
    for (i, key) in keys.iter().enumerate() {
        if i != skip && txn.elem(key, member)?.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn in_any_other(txn: &Txn, keys: &[Bytes], metas: &[Option<Meta>], member: &[u8]) -> CmdResult<bool> {
    for (key, meta) in keys.iter().zip(metas).skip(1) {
        if meta.is_some() && txn.elem(key, member)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn combine_reply(ex: &Exec, keys: &[Bytes], op: SetOp) -> CmdResult<Reply> {
    Ok(Reply::bulks(combine(&ex.read(), keys, op, 0)?))
}

fn sunion(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    combine_reply(ex, &args[1..], SetOp::Union)
}

fn sinter(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    combine_reply(ex, &args[1..], SetOp::Inter)
}

fn sdiff(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    combine_reply(ex, &args[1..], SetOp::Diff)
}

/// The STORE forms: the result replaces whatever `destination` held (any type, its TTL too);
/// an empty result deletes it.
fn combine_store(ex: &Exec, args: &[Bytes], op: SetOp) -> CmdResult<Reply> {
    let dst = &args[1];
    let mut txn = ex.write()?;
    // All inputs are read before anything is written: the destination may be one of them.
    let members = combine(&txn, &args[2..], op, 0)?;
    if let Some(old) = txn.meta_for_write(dst)? {
        txn.delete_key(dst, &old)?;
    }
    if !members.is_empty() {
        for member in &members {
            txn.put_elem(dst, member, Vec::new());
        }
        txn.put_meta(dst, &Meta::collection(Kind::Set, members.len() as u64), 0);
    }
    txn.commit()?;
    Ok(Reply::Int(members.len() as i64))
}

fn sunionstore(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    combine_store(ex, args, SetOp::Union)
}

fn sinterstore(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    combine_store(ex, args, SetOp::Inter)
}

fn sdiffstore(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    combine_store(ex, args, SetOp::Diff)
}

/// SINTERCARD numkeys key [key ...] [LIMIT limit]
fn sintercard(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let numkeys =
        args::int(&args[1]).ok().filter(|&n| n > 0).ok_or_else(|| CmdError::err("numkeys should be greater than 0"))?;
    if numkeys > (args.len() - 2) as i64 {
        return Err(CmdError::err("Number of keys can't be greater than number of args"));
    }
    let keys = &args[2..2 + numkeys as usize];
    let mut limit = 0usize;
    let mut i = 2 + numkeys as usize;
    while i < args.len() {
        if is(&args[i], "LIMIT") && i + 1 < args.len() {
            limit = args::count(&args[i + 1]).map_err(|_| CmdError::err("LIMIT can't be negative"))?;
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    Ok(Reply::Int(combine(&ex.read(), keys, SetOp::Inter, limit)?.len() as i64))
}

// ---- scanning ----

/// SSCAN key cursor [MATCH pattern] [COUNT count]
fn sscan(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    scan::scan_collection(ex, args, Kind::Set, (&[], &[]), |(member, _)| (member.clone(), vec![Reply::Bulk(member)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_draws_respect_the_count_sign() {
        let mut distinct = random_draws(10, 20).unwrap();
        distinct.sort_unstable();
        assert_eq!(distinct, (0..10).collect::<Vec<u64>>(), "a positive count never repeats");
        let repeated = random_draws(2, -50).unwrap();
        assert_eq!(repeated.len(), 50);
        assert!(repeated.iter().all(|&p| p < 2));
        assert!(random_draws(1, -(1 << 40)).is_err());
    }
}
