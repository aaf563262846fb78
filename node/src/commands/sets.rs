//! Set commands: SADD/SREM and membership tests, SMEMBERS, random picks (SPOP, SRANDMEMBER),
//! SMOVE, the algebra SUNION/SINTER/SDIFF (with their STORE forms and SINTERCARD), and SSCAN.
//!
//! Storage: one element per member, its suffix the member itself and its value empty; the meta
//! holds the member count. Members therefore come back in byte order, which is the order our
//! SMEMBERS and SSCAN use (Redis's hash order is unspecified, so clients cannot rely on it).
//!
//! The random-pick and scan helpers here are shared with the sorted sets.

use std::collections::BTreeSet;

use bytes::Bytes;
use rand::seq::SliceRandom;
use rand::Rng;

use super::args::{self, is};
use super::{Exec, Keys, Spec, ALL_KEYS, KEY1, WRITE};
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

/// Keys of a `numkeys key...` command whose count is argument 1 (SINTERCARD, ZUNION, ...). A
/// bad count yields what can be read; the handler reports the error.
pub fn numkeys_keys(args: &[Bytes]) -> Vec<Bytes> {
    keys_after_count(args, 1)
}

/// The `n` keys following the count at `at`, `n` clamped to the arguments present.
pub fn keys_after_count(args: &[Bytes], at: usize) -> Vec<Bytes> {
    let n = args.get(at).and_then(|a| common::resp::parse_i64(a)).unwrap_or(0).max(0) as usize;
    let first = at + 1;
    let last = (first + n).min(args.len());
    args.get(first..last).map_or_else(Vec::new, |keys| keys.to_vec())
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

/// Writes a collection's count after removing `removed` of its elements (already deleted in
/// `txn`); a collection left empty is deleted, as Redis deletes empty collections.
pub fn set_count_after_removal(txn: &mut Txn, key: &[u8], mut meta: Meta, removed: u64) -> CmdResult<()> {
    if removed == 0 {
        return Ok(());
    }
    let left = meta.count().saturating_sub(removed);
    if left == 0 {
        return txn.delete_key(key, &meta);
    }
    let old_expire = meta.expire_at;
    meta.set_count(left);
    txn.put_meta(key, &meta, old_expire);
    Ok(())
}

fn scard(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let meta = ex.read().typed_meta(&args[1], Kind::Set)?;
    Ok(Reply::Int(meta.map_or(0, |m| m.count()) as i64))
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

/// The optional count of SPOP/ZPOPMIN/ZPOPMAX: a non-negative integer, with Redis's one error
/// text for anything else.
pub fn positive_count(arg: &[u8]) -> CmdResult<u64> {
    args::int(arg)
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| CmdError::err("value is out of range, must be positive"))
}

/// The optional count of SRANDMEMBER/ZRANDMEMBER, within Redis's range.
pub fn signed_count(arg: &[u8]) -> CmdResult<i64> {
    match args::int(arg)? {
        i64::MIN => {
            Err(CmdError::err("value is out of range, value must between -9223372036854775807 and 9223372036854775807"))
        }
        n => Ok(n),
    }
}

/// Most members a negative-count random pick may draw. Redis streams such a reply without
/// bound; we build replies in memory, so an absurd count is refused instead.
const MAX_DRAWS: u64 = 1 << 24;

/// `amount` distinct positions in `0..len`, in increasing order.
pub fn distinct_positions(len: u64, amount: u64) -> Vec<u64> {
    let amount = amount.min(len) as usize;
    let mut picked: Vec<u64> =
        rand::seq::index::sample(&mut rand::rng(), len as usize, amount).into_iter().map(|i| i as u64).collect();
    picked.sort_unstable();
    picked
}

/// Positions for a random pick of `count` among `len` entries: distinct and in random order for
/// a positive count, drawn with replacement for a negative one.
pub fn random_draws(len: u64, count: i64) -> CmdResult<Vec<u64>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if count >= 0 {
        let mut picked = distinct_positions(len, count as u64);
        picked.shuffle(&mut rand::rng());
        return Ok(picked);
    }
    let amount = count.unsigned_abs();
    if amount > MAX_DRAWS {
        return Err(CmdError::err("value is out of range"));
    }
    let mut rng = rand::rng();
    Ok((0..amount).map(|_| rng.random_range(0..len)).collect())
}

/// The `(suffix, value)` entries at `positions` (sorted, distinct) among the `len` entries of
/// `key` whose suffix is in `[from, to)`. There is no index by position, so each position is
/// reached by walking from the nearer end of the range.
pub fn entries_at(
    txn: &Txn,
    key: &[u8],
    from: &[u8],
    to: &[u8],
    len: u64,
    positions: &[u64],
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let split = positions.partition_point(|&p| p < len / 2);
    let (low, high) = positions.split_at(split);
    let mut out = Vec::with_capacity(positions.len());
    if let Some(&last) = low.last() {
        let mut wanted = low.iter().peekable();
        for (i, entry) in txn.elements(key, from, to, false).enumerate().take(last as usize + 1) {
            if wanted.peek() == Some(&&(i as u64)) {
                wanted.next();
                out.push(entry);
            }
        }
    }
    if let Some(&first) = high.first() {
        let mut wanted = high.iter().rev().peekable();
        let mut tail = Vec::with_capacity(high.len());
        for (i, entry) in txn.elements(key, from, to, true).enumerate().take((len - first) as usize) {
            if wanted.peek() == Some(&&(len - 1 - i as u64)) {
                wanted.next();
                tail.push(entry);
            }
        }
        tail.reverse();
        out.extend(tail);
    }
    out
}

/// Members for a drawn list of positions (possibly repeated, any order), each read once.
pub fn entries_for_draws(
    txn: &Txn,
    key: &[u8],
    from: &[u8],
    to: &[u8],
    len: u64,
    draws: &[u64],
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut distinct = draws.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let entries = entries_at(txn, key, from, to, len, &distinct);
    draws.iter().map(|d| entries[distinct.binary_search(d).expect("drawn position")].clone()).collect()
}

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
    let mut members = entries_for_draws(&txn, key, &[], &[], meta.count(), &draws).into_iter().map(|(m, _)| m);
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

/// A SCAN-family cursor: 0 starts over, anything else names a stored resume point.
pub fn parse_cursor(arg: &[u8]) -> CmdResult<u64> {
    std::str::from_utf8(arg).ok().and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| CmdError::err("invalid cursor"))
}

/// `[MATCH pattern] [COUNT n]` of SSCAN/ZSCAN/HSCAN, from argument `from` on.
pub fn scan_options(args: &[Bytes], from: usize) -> CmdResult<(Option<&[u8]>, usize)> {
    let mut pattern = None;
    let mut count = 10usize;
    let mut i = from;
    while i < args.len() {
        if i + 1 >= args.len() {
            return Err(CmdError::Syntax);
        }
        if is(&args[i], "MATCH") {
            pattern = Some(&args[i + 1][..]);
        } else if is(&args[i], "COUNT") {
            count = usize::try_from(args::int(&args[i + 1])?).ok().filter(|&n| n >= 1).ok_or(CmdError::Syntax)?;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    Ok((pattern, count))
}

/// What a collection-scan cursor id stands for: the key and the element suffix to resume at.
/// The key is kept so a cursor of another key (or of SCAN) starts over instead of skipping.
fn encode_resume(key: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + key.len() + suffix.len());
    out.push(b'C');
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(suffix);
    out
}

fn decode_resume<'r>(stored: &'r [u8], key: &[u8]) -> Option<&'r [u8]> {
    let rest = stored.strip_prefix(b"C")?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let (stored_key, suffix) = (rest.get(4..4 + len)?, &rest[4 + len..]);
    (stored_key == key).then_some(suffix)
}

/// One page of a collection scan over the suffix range `[from, to)`: up to `count` entries from
/// the cursor's resume point, and the next cursor (0 when the range is exhausted).
pub fn scan_page(
    ex: &Exec,
    txn: &Txn,
    key: &[u8],
    cursor: u64,
    from: &[u8],
    to: &[u8],
    count: usize,
) -> (u64, Vec<(Vec<u8>, Vec<u8>)>) {
    let stored = if cursor == 0 { None } else { ex.server.cursors.resume(cursor) };
    // A forgotten or foreign cursor starts over, which SCAN's guarantees allow.
    let start = stored.as_deref().and_then(|s| decode_resume(s, key)).filter(|s| *s >= from).unwrap_or(from);
    let mut page: Vec<(Vec<u8>, Vec<u8>)> = txn.elements(key, start, to, false).take(count + 1).collect();
    let next = match page.len() > count {
        true => ex.server.cursors.store(encode_resume(key, &page.pop().expect("extra entry").0)),
        false => 0,
    };
    (next, page)
}

/// SSCAN key cursor [MATCH pattern] [COUNT count]
fn sscan(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let cursor = parse_cursor(&args[2])?;
    let txn = ex.read();
    if txn.typed_meta(&args[1], Kind::Set)?.is_none() {
        return Ok(Reply::Array(vec![Reply::bulk("0"), Reply::Array(Vec::new())]));
    }
    let (pattern, count) = scan_options(args, 3)?;
    let (next, page) = scan_page(ex, &txn, &args[1], cursor, &[], &[], count);
    let members = page.into_iter().map(|(m, _)| m).filter(|m| pattern.is_none_or(|p| crate::glob::glob_match(p, m)));
    Ok(Reply::Array(vec![Reply::bulk(next.to_string()), Reply::bulks(members)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_points_belong_to_their_key() {
        let stored = encode_resume(b"s1", b"member");
        assert_eq!(decode_resume(&stored, b"s1"), Some(&b"member"[..]));
        assert_eq!(decode_resume(&stored, b"s2"), None);
        assert_eq!(decode_resume(b"raw scan key", b"s1"), None);
    }

    #[test]
    fn numkeys_are_clamped_to_the_arguments() {
        let args: Vec<Bytes> = ["zunion", "2", "a", "b", "WEIGHTS"].iter().map(|s| Bytes::from(*s)).collect();
        assert_eq!(numkeys_keys(&args), vec![Bytes::from("a"), Bytes::from("b")]);
        let args: Vec<Bytes> = ["sintercard", "9", "a"].iter().map(|s| Bytes::from(*s)).collect();
        assert_eq!(numkeys_keys(&args), vec![Bytes::from("a")]);
        let args: Vec<Bytes> = ["sintercard", "x", "a"].iter().map(|s| Bytes::from(*s)).collect();
        assert!(numkeys_keys(&args).is_empty());
    }

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
