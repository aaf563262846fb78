//! List commands: pushes and pops at both ends (with Redis 6.2 counts), indexed reads and writes,
//! LINSERT/LREM/LTRIM/LPOS, the two-key moves RPOPLPUSH/LMOVE, and their blocking forms.
//!
//! A list's items live at the contiguous indexes `[head, tail)` recorded in its meta (element
//! suffix: the index as big-endian u64, so iteration order is list order). Pushes move `head`
//! down or `tail` up; an edit in the middle shifts whichever side of the edit point is shorter,
//! so indexes stay contiguous and a positional read is one point lookup.
//!
//! Blocking commands make a single non-blocking attempt and answer nil when there is nothing to
//! pop; the dispatcher waits for a push (signalled with [`Exec::signal_key`]) and retries.

use bytes::Bytes;

use super::args::{self, is};
use super::{Exec, Keys, Spec, BLOCKING, KEY1, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;
use crate::storage::{Kind, Meta, MetaBody, Txn};

pub fn specs() -> Vec<Spec> {
    let two_keys = Keys::Range(1, 2, 1);
    let blocking_keys = Keys::Range(1, -2, 1);
    vec![
        Spec::slot("lpush", -3, WRITE, KEY1, lpush),
        Spec::slot("rpush", -3, WRITE, KEY1, rpush),
        Spec::slot("lpushx", -3, WRITE, KEY1, lpushx),
        Spec::slot("rpushx", -3, WRITE, KEY1, rpushx),
        Spec::slot("lpop", -2, WRITE, KEY1, lpop),
        Spec::slot("rpop", -2, WRITE, KEY1, rpop),
        Spec::slot("llen", 2, 0, KEY1, llen),
        Spec::slot("lindex", 3, 0, KEY1, lindex),
        Spec::slot("lrange", 4, 0, KEY1, lrange),
        Spec::slot("lset", 4, WRITE, KEY1, lset),
        Spec::slot("linsert", 5, WRITE, KEY1, linsert),
        Spec::slot("lrem", 4, WRITE, KEY1, lrem),
        Spec::slot("ltrim", 4, WRITE, KEY1, ltrim),
        Spec::slot("lpos", -3, 0, KEY1, lpos),
        Spec::slot("rpoplpush", 3, WRITE, two_keys, rpoplpush),
        Spec::slot("lmove", 5, WRITE, two_keys, lmove),
        Spec::slot("blpop", -3, WRITE | BLOCKING, blocking_keys, blpop),
        Spec::slot("brpop", -3, WRITE | BLOCKING, blocking_keys, brpop),
        Spec::slot("brpoplpush", 4, WRITE | BLOCKING, two_keys, brpoplpush),
        Spec::slot("blmove", 6, WRITE | BLOCKING, two_keys, blmove),
    ]
}

// ---- list layout helpers ----

/// Which end of a list.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Left,
    Right,
}

impl End {
    fn parse(arg: &[u8]) -> CmdResult<End> {
        if is(arg, "LEFT") {
            Ok(End::Left)
        } else if is(arg, "RIGHT") {
            Ok(End::Right)
        } else {
            Err(CmdError::Syntax)
        }
    }
}

/// Element suffix of the item stored at absolute index `index`.
fn at(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The `[head, tail)` index range of a list's meta.
fn bounds(meta: &Meta) -> (u64, u64) {
    match meta.body {
        MetaBody::List { head, tail, .. } => (head, tail),
        _ => (0, 0),
    }
}

/// Records a new index range (and with it the count, which is always `tail - head`).
fn set_bounds(meta: &mut Meta, head: u64, tail: u64) {
    meta.body = MetaBody::List { count: tail - head, head, tail };
}

/// Resolves a Redis index (negative counts from the end) to a position in `[0, len)`.
fn position(index: i64, len: u64) -> Option<u64> {
    let pos = if index < 0 { len as i64 + index } else { index };
    (0..len as i64).contains(&pos).then_some(pos as u64)
}

/// Items at positions `[from, to)` (relative to the head), from stored state.
fn read_positions(txn: &Txn, key: &[u8], meta: &Meta, from: u64, to: u64) -> Vec<Vec<u8>> {
    let (head, _) = bounds(meta);
    if from >= to {
        return Vec::new();
    }
    txn.elements(key, &at(head + from), &at(head + to), false).map(|(_, v)| v).collect()
}

/// Writes a list's meta after a change: deletes the key when the list became empty (its items
/// were already removed one by one), otherwise stores the meta with its expiry unchanged.
/// `stored_expire` is the expiry of the record currently stored (0 for a new key).
fn store_list(txn: &mut Txn, key: &[u8], meta: &Meta, stored_expire: u64) -> CmdResult<()> {
    if meta.count() == 0 {
        return txn.delete_key(key, meta);
    }
    txn.put_meta(key, meta, stored_expire);
    Ok(())
}

/// Pushes `items` one by one at `end` of the list in `meta` (in memory; the caller stores it).
fn push_items<'b>(txn: &mut Txn, key: &[u8], meta: &mut Meta, end: End, items: impl IntoIterator<Item = &'b [u8]>) {
    let (mut head, mut tail) = bounds(meta);
    for item in items {
        match end {
            End::Left => {
                head -= 1;
                txn.put_elem(key, &at(head), item.to_vec());
            }
            End::Right => {
                txn.put_elem(key, &at(tail), item.to_vec());
                tail += 1;
            }
        }
    }
    set_bounds(meta, head, tail);
}

/// Removes and returns the item at `end` of a non-empty list (point operations only, so it sees
/// this transaction's earlier pushes and pops).
fn pop_item(txn: &mut Txn, key: &[u8], meta: &mut Meta, end: End) -> CmdResult<Vec<u8>> {
    let (mut head, mut tail) = bounds(meta);
    let index = match end {
        End::Left => {
            head += 1;
            head - 1
        }
        End::Right => {
            tail -= 1;
            tail
        }
    };
    let value = txn.elem(key, &at(index))?.ok_or_else(|| CmdError::err("corrupt list: missing item"))?;
    txn.delete_elem(key, &at(index));
    set_bounds(meta, head, tail);
    Ok(value)
}

// ---- pushes ----

/// LPUSH/RPUSH (create the key if needed) and LPUSHX/RPUSHX (only onto an existing list).
fn push(ex: &Exec, args: &[Bytes], end: End, only_existing: bool) -> CmdResult<Reply> {
    let key = &args[1];
    let mut txn = ex.write()?;
    let (mut meta, stored_expire) = match txn.typed_meta_for_write(key, Kind::List)? {
        Some(meta) => {
            let expire = meta.expire_at;
            (meta, expire)
        }
        None if only_existing => return Ok(Reply::Int(0)),
        None => (Meta::collection(Kind::List, 0), 0),
    };
    push_items(&mut txn, key, &mut meta, end, args[2..].iter().map(|a| a.as_ref()));
    txn.put_meta(key, &meta, stored_expire);
    txn.commit()?;
    ex.signal_key(key);
    Ok(Reply::Int(meta.count() as i64))
}

fn lpush(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    push(ex, args, End::Left, false)
}

fn rpush(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    push(ex, args, End::Right, false)
}

fn lpushx(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    push(ex, args, End::Left, true)
}

fn rpushx(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    push(ex, args, End::Right, true)
}

// ---- pops ----

/// LPOP/RPOP key [count]. Without a count: the item or nil. With one: an array of up to `count`
/// items, nil (array) for a missing key, an empty array for a count of 0.
fn pop(ex: &Exec, args: &[Bytes], end: End) -> CmdResult<Reply> {
    let count = match args.len() {
        2 => None,
        3 => Some(args::count(&args[2]).map_err(|_| CmdError::err("value is out of range, must be positive"))?),
        _ => return Err(CmdError::Arity(String::from_utf8_lossy(&args[0]).to_ascii_lowercase())),
    };
    let key = &args[1];
    let mut txn = ex.write()?;
    let Some(mut meta) = txn.typed_meta_for_write(key, Kind::List)? else {
        return Ok(if count.is_some() { Reply::NilArray } else { Reply::Nil });
    };
    let stored_expire = meta.expire_at;
    let n = count.unwrap_or(1).min(meta.count() as usize);
    if n == 0 {
        return Ok(Reply::Array(Vec::new()));
    }
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        items.push(pop_item(&mut txn, key, &mut meta, end)?);
    }
    store_list(&mut txn, key, &meta, stored_expire)?;
    txn.commit()?;
    Ok(match count {
        None => Reply::opt_bulk(items.pop()),
        Some(_) => Reply::bulks(items),
    })
}

fn lpop(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    pop(ex, args, End::Left)
}

fn rpop(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    pop(ex, args, End::Right)
}

// ---- reads ----

fn llen(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let meta = ex.read().typed_meta(&args[1], Kind::List)?;
    Ok(Reply::Int(meta.map_or(0, |m| m.count()) as i64))
}

fn lindex(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let txn = ex.read();
    let Some(meta) = txn.typed_meta(&args[1], Kind::List)? else { return Ok(Reply::Nil) };
    let index = args::int(&args[2])?;
    let Some(pos) = position(index, meta.count()) else { return Ok(Reply::Nil) };
    Ok(Reply::opt_bulk(txn.elem(&args[1], &at(bounds(&meta).0 + pos))?))
}

fn lrange(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let (start, stop) = (args::int(&args[2])?, args::int(&args[3])?);
    let txn = ex.read();
    let Some(meta) = txn.typed_meta(&args[1], Kind::List)? else { return Ok(Reply::Array(Vec::new())) };
    match args::clamp_range(start, stop, meta.count() as i64) {
        Some((a, b)) => Ok(Reply::bulks(read_positions(&txn, &args[1], &meta, a, b + 1))),
        None => Ok(Reply::Array(Vec::new())),
    }
}

/// LPOS key element [RANK r] [COUNT n] [MAXLEN m]: positions of matching items. A negative rank
/// searches from the tail; COUNT 0 means all matches; MAXLEN bounds the items compared.
fn lpos(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let mut rank: i64 = 1;
    let mut count: Option<u64> = None;
    let mut maxlen: u64 = 0;
    let mut i = 3;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else { return Err(CmdError::Syntax) };
        if is(&args[i], "RANK") {
            rank = args::int(value)?;
            if rank == 0 {
                return Err(CmdError::err(
                    "RANK can't be zero: use 1 to start from the first match, 2 from the second ... \
                     or use negative to start from the end of the list",
                ));
            }
        } else if is(&args[i], "COUNT") {
            let n = args::int(value)?;
            count = Some(u64::try_from(n).map_err(|_| CmdError::err("COUNT can't be negative"))?);
        } else if is(&args[i], "MAXLEN") {
            let n = args::int(value)?;
            maxlen = u64::try_from(n).map_err(|_| CmdError::err("MAXLEN can't be negative"))?;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    let txn = ex.read();
    let Some(meta) = txn.typed_meta(&args[1], Kind::List)? else {
        return Ok(if count.is_some() { Reply::Array(Vec::new()) } else { Reply::Nil });
    };
    let (head, tail) = bounds(&meta);
    let reverse = rank < 0;
    let mut skip = rank.unsigned_abs() - 1;
    let wanted = match count {
        Some(0) => u64::MAX,
        Some(n) => n,
        None => 1,
    };
    let limit = if maxlen == 0 { u64::MAX } else { maxlen };
    let mut found = Vec::new();
    let items = txn.elements(&args[1], &at(head), &at(tail), reverse);
    for (suffix, value) in items.take(limit.min(usize::MAX as u64) as usize) {
        if value != args[2].as_ref() {
            continue;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        // (Another type's element, read in a race with the key's replacement, is skipped.)
        let Some(index) = suffix.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes) else { continue };
        found.push(Reply::Int(index.wrapping_sub(head) as i64));
        if found.len() as u64 >= wanted {
            break;
        }
    }
    Ok(match count {
        Some(_) => Reply::Array(found),
        None => found.pop().unwrap_or(Reply::Nil),
    })
}

// ---- edits ----

fn lset(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let key = &args[1];
    let mut txn = ex.write()?;
    let meta = txn.typed_meta_for_write(key, Kind::List)?.ok_or(CmdError::NoSuchKey)?;
    let index = args::int(&args[2])?;
    let pos = position(index, meta.count()).ok_or(CmdError::IndexOutOfRange)?;
    txn.put_elem(key, &at(bounds(&meta).0 + pos), args[3].to_vec());
    txn.commit()?;
    Ok(Reply::Ok)
}

/// LINSERT key BEFORE|AFTER pivot element: the new length, -1 without the pivot, 0 without
/// the key.
fn linsert(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let after = if is(&args[2], "AFTER") {
        true
    } else if is(&args[2], "BEFORE") {
        false
    } else {
        return Err(CmdError::Syntax);
    };
    let key = &args[1];
    let mut txn = ex.write()?;
    let Some(mut meta) = txn.typed_meta_for_write(key, Kind::List)? else { return Ok(Reply::Int(0)) };
    let (head, tail) = bounds(&meta);
    // Scan for the pivot, keeping the items before it: they are what moves if the left side is
    // the shorter one.
    let mut before = Vec::new();
    let mut pivot = None;
    for (_, value) in txn.elements(key, &at(head), &at(tail), false) {
        if value == args[3].as_ref() {
            pivot = Some(before.len() as u64);
            before.push(value);
            break;
        }
        before.push(value);
    }
    let Some(pivot) = pivot else { return Ok(Reply::Int(-1)) };
    let insert_at = if after { pivot + 1 } else { pivot };
    before.truncate(insert_at as usize);
    insert_item(&mut txn, key, &mut meta, insert_at, before, args[4].to_vec());
    let expire = meta.expire_at;
    txn.put_meta(key, &meta, expire);
    txn.commit()?;
    ex.signal_key(key);
    Ok(Reply::Int(meta.count() as i64))
}

/// Inserts `value` so that it ends up at position `pos`, shifting the shorter side by one.
/// `left_items` are the items at positions `[0, pos)`, already read.
fn insert_item(txn: &mut Txn, key: &[u8], meta: &mut Meta, pos: u64, left_items: Vec<Vec<u8>>, value: Vec<u8>) {
    let (head, tail) = bounds(meta);
    let len = tail - head;
    if pos <= len - pos {
        // Move the left part one step towards the head.
        for (i, item) in left_items.into_iter().enumerate() {
            txn.put_elem(key, &at(head - 1 + i as u64), item);
        }
        txn.put_elem(key, &at(head - 1 + pos), value);
        set_bounds(meta, head - 1, tail);
    } else {
        // Move the right part one step towards the tail.
        let right_items = read_positions(txn, key, meta, pos, len);
        for (i, item) in right_items.into_iter().enumerate() {
            txn.put_elem(key, &at(head + pos + 1 + i as u64), item);
        }
        txn.put_elem(key, &at(head + pos), value);
        set_bounds(meta, head, tail + 1);
    }
}

/// LREM key count element: removes the first `count` matches from the head (count > 0), from
/// the tail (count < 0), or all of them (0); answers how many were removed.
fn lrem(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let count = args::int(&args[2])?;
    let key = &args[1];
    let mut txn = ex.write()?;
    let Some(mut meta) = txn.typed_meta_for_write(key, Kind::List)? else { return Ok(Reply::Int(0)) };
    let items = read_positions(&txn, key, &meta, 0, meta.count());
    let limit = if count == 0 { usize::MAX } else { count.unsigned_abs().min(usize::MAX as u64) as usize };
    let matches = |i: &usize| items[*i] == args[3].as_ref();
    let mut removed: Vec<usize> = if count < 0 {
        (0..items.len()).rev().filter(matches).take(limit).collect()
    } else {
        (0..items.len()).filter(matches).take(limit).collect()
    };
    if removed.is_empty() {
        return Ok(Reply::Int(0));
    }
    removed.sort_unstable();
    let stored_expire = meta.expire_at;
    remove_positions(&mut txn, key, &mut meta, items, &removed);
    store_list(&mut txn, key, &meta, stored_expire)?;
    txn.commit()?;
    Ok(Reply::Int(removed.len() as i64))
}

/// Removes the items at the sorted positions `removed` from a list whose items are `items`,
/// closing the gaps by shifting whichever side rewrites fewer items.
fn remove_positions(txn: &mut Txn, key: &[u8], meta: &mut Meta, mut items: Vec<Vec<u8>>, removed: &[usize]) {
    let (head, tail) = bounds(meta);
    let k = removed.len() as u64;
    let (first, last) = (removed[0], removed[removed.len() - 1]);
    // Kept items before the last removed one vs. kept items after the first removed one.
    let left_cost = last + 1 - removed.len();
    let right_cost = items.len() - first - removed.len();
    if left_cost <= right_cost {
        // Keep the tail where it is; pack the items before `last` towards it.
        let mut write = head + last as u64;
        let mut gone = removed.iter().rev().copied().peekable();
        for i in (0..=last).rev() {
            if gone.peek() == Some(&i) {
                gone.next();
                continue;
            }
            txn.put_elem(key, &at(write), std::mem::take(&mut items[i]));
            write -= 1;
        }
        for index in head..head + k {
            txn.delete_elem(key, &at(index));
        }
        set_bounds(meta, head + k, tail);
    } else {
        // Keep the head where it is; pack the items after `first` towards it.
        let mut write = head + first as u64;
        let mut gone = removed.iter().copied().peekable();
        for (i, item) in items.into_iter().enumerate().skip(first) {
            if gone.peek() == Some(&i) {
                gone.next();
                continue;
            }
            txn.put_elem(key, &at(write), item);
            write += 1;
        }
        for index in tail - k..tail {
            txn.delete_elem(key, &at(index));
        }
        set_bounds(meta, head, tail - k);
    }
}

/// LTRIM key start stop: keeps only the given inclusive range; an empty range deletes the key.
fn ltrim(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let (start, stop) = (args::int(&args[2])?, args::int(&args[3])?);
    let key = &args[1];
    let mut txn = ex.write()?;
    let Some(mut meta) = txn.typed_meta_for_write(key, Kind::List)? else { return Ok(Reply::Ok) };
    let (head, tail) = bounds(&meta);
    let Some((a, b)) = args::clamp_range(start, stop, meta.count() as i64) else {
        txn.delete_key(key, &meta)?;
        txn.commit()?;
        return Ok(Reply::Ok);
    };
    let (new_head, new_tail) = (head + a, head + b + 1);
    for index in (head..new_head).chain(new_tail..tail) {
        txn.delete_elem(key, &at(index));
    }
    set_bounds(&mut meta, new_head, new_tail);
    let expire = meta.expire_at;
    txn.put_meta(key, &meta, expire);
    txn.commit()?;
    Ok(Reply::Ok)
}

// ---- moves between lists ----

/// Pops from `from` of `src` and pushes onto `to` of `dst` (the same key rotates the list).
/// Answers the moved item, or nil when `src` is missing.
fn move_item(ex: &Exec, src: &[u8], dst: &[u8], from: End, to: End) -> CmdResult<Reply> {
    let mut txn = ex.write()?;
    let Some(mut src_meta) = txn.typed_meta_for_write(src, Kind::List)? else { return Ok(Reply::Nil) };
    let src_expire = src_meta.expire_at;
    if src == dst {
        let item = pop_item(&mut txn, src, &mut src_meta, from)?;
        push_items(&mut txn, src, &mut src_meta, to, [item.as_slice()]);
        txn.put_meta(src, &src_meta, src_expire);
        txn.commit()?;
        ex.signal_key(src);
        return Ok(Reply::Bulk(item));
    }
    // The destination's type is checked before anything changes.
    let dst_meta = txn.typed_meta_for_write(dst, Kind::List)?;
    let item = pop_item(&mut txn, src, &mut src_meta, from)?;
    store_list(&mut txn, src, &src_meta, src_expire)?;
    let (mut dst_meta, dst_expire) = match dst_meta {
        Some(meta) => {
            let expire = meta.expire_at;
            (meta, expire)
        }
        None => (Meta::collection(Kind::List, 0), 0),
    };
    push_items(&mut txn, dst, &mut dst_meta, to, [item.as_slice()]);
    txn.put_meta(dst, &dst_meta, dst_expire);
    txn.commit()?;
    ex.signal_key(dst);
    Ok(Reply::Bulk(item))
}

fn rpoplpush(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    move_item(ex, &args[1], &args[2], End::Right, End::Left)
}

/// LMOVE source destination LEFT|RIGHT LEFT|RIGHT
fn lmove(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let (from, to) = (End::parse(&args[3])?, End::parse(&args[4])?);
    move_item(ex, &args[1], &args[2], from, to)
}

// ---- blocking forms: one attempt each; nil means "nothing yet" to the dispatcher ----

/// BLPOP/BRPOP key [key ...] timeout: pops from the first non-empty list, answering
/// `[key, item]`.
fn blocking_pop(ex: &Exec, args: &[Bytes], end: End) -> CmdResult<Reply> {
    let keys = &args[1..args.len() - 1];
    let mut txn = ex.write()?;
    for key in keys {
        let Some(mut meta) = txn.typed_meta_for_write(key, Kind::List)? else { continue };
        let stored_expire = meta.expire_at;
        let item = pop_item(&mut txn, key, &mut meta, end)?;
        store_list(&mut txn, key, &meta, stored_expire)?;
        txn.commit()?;
        return Ok(Reply::Array(vec![Reply::Bulk(key.to_vec()), Reply::Bulk(item)]));
    }
    Ok(Reply::NilArray)
}

fn blpop(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    blocking_pop(ex, args, End::Left)
}

fn brpop(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    blocking_pop(ex, args, End::Right)
}

/// BRPOPLPUSH source destination timeout
fn brpoplpush(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    move_item(ex, &args[1], &args[2], End::Right, End::Left)
}

/// BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout
fn blmove(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let (from, to) = (End::parse(&args[3])?, End::parse(&args[4])?);
    move_item(ex, &args[1], &args[2], from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_resolve_like_lindex() {
        assert_eq!(position(0, 3), Some(0));
        assert_eq!(position(-1, 3), Some(2));
        assert_eq!(position(-3, 3), Some(0));
        assert_eq!(position(-4, 3), None);
        assert_eq!(position(3, 3), None);
        assert_eq!(position(0, 0), None);
    }

    #[test]
    fn index_suffixes_sort_in_list_order() {
        let origin = crate::storage::encoding::LIST_ORIGIN;
        assert!(at(origin - 1) < at(origin));
        assert!(at(origin) < at(origin + 1));
    }
}
