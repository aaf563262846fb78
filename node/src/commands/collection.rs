//! Helpers shared by the hash, set and sorted-set commands: `numkeys` key lists, element
//! counts, random picks by position, and the count bookkeeping after removals.

use bytes::Bytes;
use rand::seq::SliceRandom;
use rand::Rng;

use super::args;
use super::Exec;
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;
use crate::storage::{Kind, Meta, Txn};

/// HLEN, SCARD, ZCARD: the element count of a collection of `kind` (0 when absent).
pub fn len(ex: &Exec, key: &[u8], kind: Kind) -> CmdResult<Reply> {
    let meta = ex.read().typed_meta(key, kind)?;
    Ok(Reply::Int(meta.map_or(0, |m| m.count()) as i64))
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
pub const MAX_DRAWS: u64 = 1 << 22;

/// Most bytes a random pick with repetition may reply with (members, and values or scores when
/// asked). Its reply repeats members, so it can be far larger than the collection: Redis streams
/// it, ours is built in memory first, so a pick past this is refused instead of held.
pub const MAX_DRAWN_BYTES: u64 = 256 << 20;

/// Refuses a pick whose reply would hold more than [`MAX_DRAWN_BYTES`]: `sizes` are the bytes of
/// each drawn entry.
pub fn check_drawn_bytes(sizes: impl Iterator<Item = usize>) -> CmdResult<()> {
    // What each pick costs beyond its bytes: its position, its copy's allocation, its reply.
    const PER_PICK: u64 = 96;
    let mut total = 0u64;
    for size in sizes {
        total += size as u64 + PER_PICK;
        if total > MAX_DRAWN_BYTES {
            return Err(CmdError::err(format!(
                "reply too large: these picks repeat members past {} MiB; ask for fewer",
                MAX_DRAWN_BYTES >> 20
            )));
        }
    }
    Ok(())
}

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

/// Members for a drawn list of positions (possibly repeated, any order), each read once. Reads
/// take no lock: a removal between the count and the walk can leave fewer entries than drawn
/// positions; the draws are then matched to the entries found (other members than drawn, and
/// fewer of them: still a random pick of what is there), never indexed past them.
pub fn entries_for_draws(
    txn: &Txn,
    key: &[u8],
    from: &[u8],
    to: &[u8],
    len: u64,
    draws: &[u64],
) -> CmdResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut distinct = draws.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let entries = entries_at(txn, key, from, to, len, &distinct);
    let drawn = || draws.iter().filter_map(|d| distinct.binary_search(d).ok().and_then(|i| entries.get(i)));
    check_drawn_bytes(drawn().map(|(suffix, value)| suffix.len() + value.len()))?;
    Ok(drawn().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numkeys_are_clamped_to_the_arguments() {
        let args: Vec<Bytes> = ["zunion", "2", "a", "b", "WEIGHTS"].iter().map(|s| Bytes::from(*s)).collect();
        assert_eq!(numkeys_keys(&args), vec![Bytes::from("a"), Bytes::from("b")]);
        let args: Vec<Bytes> = ["sintercard", "9", "a"].iter().map(|s| Bytes::from(*s)).collect();
        assert_eq!(numkeys_keys(&args), vec![Bytes::from("a")]);
        let args: Vec<Bytes> = ["sintercard", "x", "a"].iter().map(|s| Bytes::from(*s)).collect();
        assert!(numkeys_keys(&args).is_empty());
    }
}
