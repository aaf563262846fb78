//! Sorted-set commands: ZADD (NX/XX/GT/LT/CH/INCR) and ZINCRBY, lookups (ZCARD, ZSCORE,
//! ZMSCORE, ZRANK, ZREVRANK), counting (ZCOUNT, ZLEXCOUNT), the ZRANGE family by rank, score and
//! lex (with ZRANGESTORE), removals (ZREM, ZREMRANGEBY*, ZPOPMIN/ZPOPMAX), ZRANDMEMBER, ZSCAN,
//! and the algebra ZUNION/ZINTER/ZDIFF (with their STORE forms and ZINTERCARD).
//!
//! Storage: two elements per member. `m` + member holds the score (the 8 sortable bytes of
//! [`encode_score`]), for point lookups; `s` + sortable score + member (empty value) orders the
//! members by (score, member), which is exactly Redis's order, so every range is a walk over
//! the `s` entries between two seek bounds. The meta holds the member count.

use std::cmp::Ordering;
use std::collections::HashMap;

use bytes::Bytes;

use super::args::{self, is};
use super::collection::{self, keys_after_count, numkeys_keys};
use super::{scan, Exec, Keys, Spec, KEY1, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;
use crate::storage::encoding::{decode_score, encode_score, successor};
use crate::storage::{Kind, Meta, Txn};

pub fn specs() -> Vec<Spec> {
    let two_keys = Keys::Range(1, 2, 1);
    vec![
        Spec::slot("zadd", -4, WRITE, KEY1, zadd),
        Spec::slot("zincrby", 4, WRITE, KEY1, zincrby),
        Spec::slot("zcard", 2, 0, KEY1, zcard),
        Spec::slot("zscore", 3, 0, KEY1, zscore),
        Spec::slot("zmscore", -3, 0, KEY1, zmscore),
        Spec::slot("zcount", 4, 0, KEY1, zcount),
        Spec::slot("zlexcount", 4, 0, KEY1, zlexcount),
        Spec::slot("zrank", -3, 0, KEY1, zrank),
        Spec::slot("zrevrank", -3, 0, KEY1, zrevrank),
        Spec::slot("zrange", -4, 0, KEY1, zrange),
        Spec::slot("zrangebyscore", -4, 0, KEY1, zrangebyscore),
        Spec::slot("zrevrangebyscore", -4, 0, KEY1, zrevrangebyscore),
        Spec::slot("zrangebylex", -4, 0, KEY1, zrangebylex),
        Spec::slot("zrevrangebylex", -4, 0, KEY1, zrevrangebylex),
        Spec::slot("zrevrange", -4, 0, KEY1, zrevrange),
        Spec::slot("zrangestore", -5, WRITE, two_keys, zrangestore),
        Spec::slot("zrem", -3, WRITE, KEY1, zrem),
        Spec::slot("zremrangebyrank", 4, WRITE, KEY1, zremrangebyrank),
        Spec::slot("zremrangebyscore", 4, WRITE, KEY1, zremrangebyscore),
        Spec::slot("zremrangebylex", 4, WRITE, KEY1, zremrangebylex),
        Spec::slot("zpopmin", -2, WRITE, KEY1, zpopmin),
        Spec::slot("zpopmax", -2, WRITE, KEY1, zpopmax),
        Spec::slot("zrandmember", -2, 0, KEY1, zrandmember),
        Spec::slot("zscan", -3, 0, KEY1, zscan),
        Spec::slot("zunionstore", -4, WRITE, Keys::Custom(store_keys), zunionstore),
        Spec::slot("zinterstore", -4, WRITE, Keys::Custom(store_keys), zinterstore),
        Spec::slot("zdiffstore", -4, WRITE, Keys::Custom(store_keys), zdiffstore),
        Spec::slot("zunion", -3, 0, Keys::Custom(numkeys_keys), zunion),
        Spec::slot("zinter", -3, 0, Keys::Custom(numkeys_keys), zinter),
        Spec::slot("zdiff", -3, 0, Keys::Custom(numkeys_keys), zdiff),
        Spec::slot("zintercard", -3, 0, Keys::Custom(numkeys_keys), zintercard),
    ]
}

/// Keys of `destination numkeys key...`: the destination and the counted inputs.
fn store_keys(args: &[Bytes]) -> Vec<Bytes> {
    let mut keys: Vec<Bytes> = args.get(1).cloned().into_iter().collect();
    keys.extend(keys_after_count(args, 2));
    keys
}

// ---- storage layout ----

/// Suffix bounds of the member index and of the (score, member) index.
const BY_MEMBER: (&[u8], &[u8]) = (b"m", b"n");
const BY_SCORE: (&[u8], &[u8]) = (b"s", b"t");

fn member_suffix(member: &[u8]) -> Vec<u8> {
    let mut suffix = Vec::with_capacity(1 + member.len());
    suffix.push(b'm');
    suffix.extend_from_slice(member);
    suffix
}

/// `s` + sortable score: the common prefix of all entries with that score.
fn score_prefix(score: f64) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(9);
    prefix.push(b's');
    prefix.extend_from_slice(&encode_score(score));
    prefix
}

fn score_suffix(score: f64, member: &[u8]) -> Vec<u8> {
    let mut suffix = score_prefix(score);
    suffix.extend_from_slice(member);
    suffix
}

/// A `(member, score)` pair from an `s` entry's suffix (a shorter one, from a racing change of
/// the key's type, decodes as garbage rather than a panic: see `decode_score`).
fn decode_entry(suffix: &[u8]) -> (Vec<u8>, f64) {
    (suffix.get(9..).unwrap_or_default().to_vec(), decode_score(suffix.get(1..9).unwrap_or_default()))
}

/// The first string after `bytes` in byte order (`bytes` + NUL).
fn just_after(bytes: &[u8]) -> Vec<u8> {
    let mut next = bytes.to_vec();
    next.push(0);
    next
}

fn score_of(txn: &Txn, key: &[u8], member: &[u8]) -> CmdResult<Option<f64>> {
    Ok(txn.elem(key, &member_suffix(member))?.map(|raw| decode_score(&raw)))
}

/// Writes `member` with `score`, replacing its index entry for `old` (its previous score).
fn insert(txn: &mut Txn, key: &[u8], member: &[u8], score: f64, old: Option<f64>) {
    if let Some(old) = old {
        txn.delete_elem(key, &score_suffix(old, member));
    }
    txn.put_elem(key, &member_suffix(member), encode_score(score).to_vec());
    txn.put_elem(key, &score_suffix(score, member), Vec::new());
}

fn remove(txn: &mut Txn, key: &[u8], member: &[u8], score: f64) {
    txn.delete_elem(key, &member_suffix(member));
    txn.delete_elem(key, &score_suffix(score, member));
}

/// Replaces whatever `dst` holds (any type, its TTL too) with a sorted set of `members`
/// (distinct); an empty result deletes it. Returns the new size.
fn store(txn: &mut Txn, dst: &[u8], members: &[(Vec<u8>, f64)]) -> CmdResult<i64> {
    if let Some(old) = txn.meta_for_write(dst)? {
        txn.delete_key(dst, &old)?;
    }
    if !members.is_empty() {
        for (member, score) in members {
            insert(txn, dst, member, *score, None);
        }
        txn.put_meta(dst, &Meta::collection(Kind::ZSet, members.len() as u64), 0);
    }
    Ok(members.len() as i64)
}

/// Scores as Redis replies them, flattened after their members when `withscores`.
fn pairs_reply(items: Vec<(Vec<u8>, f64)>, withscores: bool) -> Reply {
    let mut out = Vec::with_capacity(items.len() * if withscores { 2 } else { 1 });
    for (member, score) in items {
        out.push(Reply::Bulk(member));
        if withscores {
            out.push(Reply::Double(score));
        }
    }
    Reply::Array(out)
}

fn nan_error() -> CmdError {
    CmdError::err("resulting score is not a number (NaN)")
}

// ---- ranges ----

/// One end of a score range: `1.5` is inclusive, `(1.5` exclusive.
#[derive(Clone, Copy)]
struct ScoreBound {
    value: f64,
    exclusive: bool,
}

impl ScoreBound {
    fn parse(arg: &[u8]) -> Option<ScoreBound> {
        let (exclusive, number) = match arg.split_first() {
            Some((b'(', rest)) => (true, rest),
            _ => (false, arg),
        };
        // Redis reads the number with strtod, which takes an empty string as 0.
        let value = if number.is_empty() { 0.0 } else { args::parse_float(number)? };
        Some(ScoreBound { value, exclusive })
    }
}

#[derive(Clone, Copy)]
struct ScoreRange {
    min: ScoreBound,
    max: ScoreBound,
}

impl ScoreRange {
    fn parse(min: &[u8], max: &[u8]) -> CmdResult<ScoreRange> {
        match (ScoreBound::parse(min), ScoreBound::parse(max)) {
            (Some(min), Some(max)) => Ok(ScoreRange { min, max }),
            _ => Err(CmdError::err("min or max is not a float")),
        }
    }

    fn is_empty(&self) -> bool {
        self.min.value > self.max.value
            || (self.min.value == self.max.value && (self.min.exclusive || self.max.exclusive))
    }

    /// The `s`-entry suffixes `[from, to)` holding exactly the scores in range.
    fn seek_bounds(&self) -> (Vec<u8>, Vec<u8>) {
        let low = score_prefix(self.min.value);
        let high = score_prefix(self.max.value);
        let from = if self.min.exclusive { successor(&low) } else { low };
        let to = if self.max.exclusive { high } else { successor(&high) };
        (from, to)
    }
}

/// A point of the lex order: `-` and `+` sit below and above every string.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum LexPoint {
    Bottom,
    Value(Vec<u8>),
    Top,
}

#[derive(Clone)]
struct LexBound {
    point: LexPoint,
    exclusive: bool,
}

impl LexBound {
    fn parse(arg: &[u8]) -> Option<LexBound> {
        let (point, exclusive) = match arg {
            b"-" => (LexPoint::Bottom, true),
            b"+" => (LexPoint::Top, true),
            [b'[', rest @ ..] => (LexPoint::Value(rest.to_vec()), false),
            [b'(', rest @ ..] => (LexPoint::Value(rest.to_vec()), true),
            _ => return None,
        };
        Some(LexBound { point, exclusive })
    }
}

#[derive(Clone)]
struct LexRange {
    min: LexBound,
    max: LexBound,
}

impl LexRange {
    fn parse(min: &[u8], max: &[u8]) -> CmdResult<LexRange> {
        match (LexBound::parse(min), LexBound::parse(max)) {
            (Some(min), Some(max)) => Ok(LexRange { min, max }),
            _ => Err(CmdError::err("min or max not valid string range item")),
        }
    }

    fn is_empty(&self) -> bool {
        match self.min.point.cmp(&self.max.point) {
            Ordering::Greater => true,
            Ordering::Equal => self.min.exclusive || self.max.exclusive,
            Ordering::Less => false,
        }
    }

    fn above_min(&self, member: &[u8]) -> bool {
        match &self.min.point {
            LexPoint::Bottom => true,
            LexPoint::Top => false,
            LexPoint::Value(v) if self.min.exclusive => member > v.as_slice(),
            LexPoint::Value(v) => member >= v.as_slice(),
        }
    }

    fn below_max(&self, member: &[u8]) -> bool {
        match &self.max.point {
            LexPoint::Bottom => false,
            LexPoint::Top => true,
            LexPoint::Value(v) if self.max.exclusive => member < v.as_slice(),
            LexPoint::Value(v) => member <= v.as_slice(),
        }
    }

    /// Seek bounds among the entries sharing the score prefix `prefix` (a non-empty range).
    fn seek_bounds(&self, prefix: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let with = |tail: &[u8]| [prefix, tail].concat();
        let from = match &self.min.point {
            LexPoint::Value(v) if self.min.exclusive => with(&just_after(v)),
            LexPoint::Value(v) => with(v),
            _ => prefix.to_vec(),
        };
        let to = match &self.max.point {
            LexPoint::Value(v) if self.max.exclusive => with(v),
            LexPoint::Value(v) => with(&just_after(v)),
            _ => successor(prefix),
        };
        (from, to)
    }
}

/// What a range command selects.
#[derive(Clone)]
enum Range {
    /// Inclusive ranks, negative counting from the end (in the walk's direction).
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

/// A walk over one sorted set: the range, its direction, and `LIMIT offset count` (a negative
/// count means no limit).
#[derive(Clone)]
struct Walk {
    range: Range,
    rev: bool,
    offset: i64,
    count: i64,
}

impl Walk {
    fn all_of(range: Range) -> Walk {
        Walk { range, rev: false, offset: 0, count: -1 }
    }
}

/// Applies `LIMIT offset count` to a walk, as Redis does (a negative offset selects nothing).
fn limited(items: impl Iterator<Item = (Vec<u8>, f64)>, offset: i64, count: i64) -> Vec<(Vec<u8>, f64)> {
    if offset < 0 {
        return Vec::new();
    }
    let items = items.skip(offset as usize);
    match usize::try_from(count) {
        Ok(n) => items.take(n).collect(),
        Err(_) => items.collect(),
    }
}

/// The `(member, score)` pairs a walk selects from the `len`-member set at `key`, in order.
fn collect(txn: &Txn, key: &[u8], len: u64, walk: &Walk) -> Vec<(Vec<u8>, f64)> {
    match &walk.range {
        Range::Rank(start, stop) => by_rank(txn, key, len, *start, *stop, walk.rev),
        Range::Score(range) if range.is_empty() => Vec::new(),
        Range::Score(range) => {
            let (from, to) = range.seek_bounds();
            let items = txn.elements(key, &from, &to, walk.rev).map(|(s, _)| decode_entry(&s));
            limited(items, walk.offset, walk.count)
        }
        Range::Lex(range) if range.is_empty() => Vec::new(),
        Range::Lex(range) => by_lex(txn, key, range, walk),
    }
}

/// Ranks `start..=stop` (counted in the walk's direction). The walk starts from whichever end
/// of the index is nearer, since there is no index by position.
fn by_rank(txn: &Txn, key: &[u8], len: u64, start: i64, stop: i64, rev: bool) -> Vec<(Vec<u8>, f64)> {
    let Some((first, last)) = args::clamp_range(start, stop, len as i64) else { return Vec::new() };
    // Ascending positions of the selected members.
    let (low, high) = if rev { (len - 1 - last, len - 1 - first) } else { (first, last) };
    let n = (high - low + 1) as usize;
    let from_start = low <= len - 1 - high;
    let skip = (if from_start { low } else { len - 1 - high }) as usize;
    let walk = txn.elements(key, BY_SCORE.0, BY_SCORE.1, !from_start).skip(skip).take(n);
    let mut items: Vec<(Vec<u8>, f64)> = walk.map(|(s, _)| decode_entry(&s)).collect();
    if from_start == rev {
        items.reverse();
    }
    items
}

/// A lex range. When every member has the same score (the case lex ranges are meant for) the
/// bounds are seeks. Otherwise the walk follows Redis's rule over the (score, member) order: the
/// range is empty unless the first member is below its max and the last above its min; then
/// members before the range are skipped and members are taken until one is past it.
fn by_lex(txn: &Txn, key: &[u8], range: &LexRange, walk: &Walk) -> Vec<(Vec<u8>, f64)> {
    let Some((lowest, highest)) = end_entries(txn, key) else { return Vec::new() };
    let (Some(low_score), Some(high_score)) = (lowest.get(..9), highest.get(..9)) else {
        return Vec::new(); // another type's elements, read in a race with its replacement
    };
    if low_score == high_score {
        let (from, to) = range.seek_bounds(low_score);
        if from >= to {
            return Vec::new();
        }
        let items = txn.elements(key, &from, &to, walk.rev).map(|(s, _)| decode_entry(&s));
        return limited(items, walk.offset, walk.count);
    }
    if !range.below_max(&lowest[9..]) || !range.above_min(&highest[9..]) {
        return Vec::new();
    }
    let all = txn.elements(key, BY_SCORE.0, BY_SCORE.1, walk.rev).map(|(s, _)| decode_entry(&s));
    if walk.rev {
        let items = all.skip_while(|(m, _)| !range.below_max(m)).take_while(|(m, _)| range.above_min(m));
        limited(items, walk.offset, walk.count)
    } else {
        let items = all.skip_while(|(m, _)| !range.above_min(m)).take_while(|(m, _)| range.below_max(m));
        limited(items, walk.offset, walk.count)
    }
}

/// The `s` entries of the lowest and the highest member.
fn end_entries(txn: &Txn, key: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let lowest = txn.elements(key, BY_SCORE.0, BY_SCORE.1, false).next()?.0;
    let highest = txn.elements(key, BY_SCORE.0, BY_SCORE.1, true).next()?.0;
    Some((lowest, highest))
}

// ---- ZADD / ZINCRBY ----

#[derive(Default)]
struct AddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

/// What adding one member did.
enum Added {
    New(f64),
    Changed(f64),
    Unchanged(f64),
    /// Skipped by NX/XX/GT/LT.
    Skipped,
}

/// Adds or updates one member under ZADD's rules; a NaN result is an error.
fn add_one(txn: &mut Txn, key: &[u8], member: &[u8], score: f64, flags: &AddFlags) -> CmdResult<Added> {
    let Some(current) = score_of(txn, key, member)? else {
        if flags.xx {
            return Ok(Added::Skipped);
        }
        // GT/LT do not stop new members.
        insert(txn, key, member, score, None);
        return Ok(Added::New(score));
    };
    if flags.nx {
        return Ok(Added::Skipped);
    }
    let score = if flags.incr { current + score } else { score };
    if score.is_nan() {
        return Err(nan_error());
    }
    if (flags.lt && score >= current) || (flags.gt && score <= current) {
        return Ok(Added::Skipped);
    }
    if score == current {
        return Ok(Added::Unchanged(score));
    }
    insert(txn, key, member, score, Some(current));
    Ok(Added::Changed(score))
}

/// ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]
fn zadd(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let mut flags = AddFlags::default();
    let mut i = 2;
    while i < args.len() {
        let flag = match args::upper(&args[i]).as_str() {
            "NX" => &mut flags.nx,
            "XX" => &mut flags.xx,
            "GT" => &mut flags.gt,
            "LT" => &mut flags.lt,
            "CH" => &mut flags.ch,
            "INCR" => &mut flags.incr,
            _ => break,
        };
        *flag = true;
        i += 1;
    }
    let pairs = &args[i..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    if flags.nx && flags.xx {
        return Err(CmdError::err("XX and NX options at the same time are not compatible"));
    }
    if (flags.gt || flags.lt) && (flags.nx || flags.gt == flags.lt) {
        return Err(CmdError::err("GT, LT, and/or NX options at the same time are not compatible"));
    }
    if flags.incr && pairs.len() > 2 {
        return Err(CmdError::err("INCR option supports a single increment-element pair"));
    }
    let scores: Vec<f64> = pairs.chunks(2).map(|p| args::float(&p[0])).collect::<CmdResult<_>>()?;
    let key = &args[1];
    let mut txn = ex.write()?;
    let meta = txn.typed_meta_for_write(key, Kind::ZSet)?;
    let (mut added, mut changed, mut last) = (0u64, 0i64, None);
    if meta.is_some() || !flags.xx {
        for (pair, score) in pairs.chunks(2).zip(scores) {
            match add_one(&mut txn, key, &pair[1], score, &flags)? {
                Added::New(s) => (added, last) = (added + 1, Some(s)),
                Added::Changed(s) => (changed, last) = (changed + 1, Some(s)),
                Added::Unchanged(s) => last = Some(s),
                Added::Skipped => {}
            }
        }
    }
    if added > 0 {
        let mut meta = meta.unwrap_or_else(|| Meta::collection(Kind::ZSet, 0));
        let old_expire = meta.expire_at;
        meta.set_count(meta.count() + added);
        txn.put_meta(key, &meta, old_expire);
    }
    txn.commit()?;
    if flags.incr {
        return Ok(last.map_or(Reply::Nil, Reply::Double));
    }
    Ok(Reply::Int(added as i64 + if flags.ch { changed } else { 0 }))
}

/// ZINCRBY key increment member
fn zincrby(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let increment = args::float(&args[2])?;
    let key = &args[1];
    let mut txn = ex.write()?;
    let meta = txn.typed_meta_for_write(key, Kind::ZSet)?;
    let flags = AddFlags { incr: true, ..AddFlags::default() };
    let score = match add_one(&mut txn, key, &args[3], increment, &flags)? {
        Added::New(s) => {
            let mut meta = meta.unwrap_or_else(|| Meta::collection(Kind::ZSet, 0));
            let old_expire = meta.expire_at;
            meta.set_count(meta.count() + 1);
            txn.put_meta(key, &meta, old_expire);
            s
        }
        Added::Changed(s) | Added::Unchanged(s) => s,
        // Only NX/XX/GT/LT skip, and ZINCRBY has none of them.
        Added::Skipped => return Ok(Reply::Nil),
    };
    txn.commit()?;
    Ok(Reply::Double(score))
}

// ---- lookups and counts ----

fn zcard(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    collection::len(ex, &args[1], Kind::ZSet)
}

fn zscore(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let txn = ex.read();
    if txn.typed_meta(&args[1], Kind::ZSet)?.is_none() {
        return Ok(Reply::Nil);
    }
    Ok(score_of(&txn, &args[1], &args[2])?.map_or(Reply::Nil, Reply::Double))
}

fn zmscore(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let txn = ex.read();
    let exists = txn.typed_meta(&args[1], Kind::ZSet)?.is_some();
    let mut out = Vec::with_capacity(args.len() - 2);
    for member in &args[2..] {
        let score = if exists { score_of(&txn, &args[1], member)? } else { None };
        out.push(score.map_or(Reply::Nil, Reply::Double));
    }
    Ok(Reply::Array(out))
}

/// ZCOUNT key min max
fn zcount(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let range = ScoreRange::parse(&args[2], &args[3])?;
    count_range(ex, &args[1], Range::Score(range))
}

/// ZLEXCOUNT key min max
fn zlexcount(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let range = LexRange::parse(&args[2], &args[3])?;
    count_range(ex, &args[1], Range::Lex(range))
}

fn count_range(ex: &Exec, key: &[u8], range: Range) -> CmdResult<Reply> {
    let txn = ex.read();
    let Some(meta) = txn.typed_meta(key, Kind::ZSet)? else { return Ok(Reply::Int(0)) };
    Ok(Reply::Int(collect(&txn, key, meta.count(), &Walk::all_of(range)).len() as i64))
}

fn zrank(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    rank(ex, args, false)
}

fn zrevrank(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    rank(ex, args, true)
}

/// ZRANK/ZREVRANK key member [WITHSCORE] (the option is Redis 7.2's).
fn rank(ex: &Exec, args: &[Bytes], rev: bool) -> CmdResult<Reply> {
    let withscore = match args.len() {
        3 => false,
        4 if is(&args[3], "WITHSCORE") => true,
        _ => return Err(CmdError::Syntax),
    };
    let missing = if withscore { Reply::NilArray } else { Reply::Nil };
    let (key, member) = (&args[1], &args[2]);
    let txn = ex.read();
    if txn.typed_meta(key, Kind::ZSet)?.is_none() {
        return Ok(missing);
    }
    let Some(score) = score_of(&txn, key, member)? else { return Ok(missing) };
    // The rank is the number of entries on the near side of the member's own entry.
    let entry = score_suffix(score, member);
    let rank = if rev {
        txn.elements(key, &just_after(&entry), BY_SCORE.1, false).count()
    } else {
        txn.elements(key, BY_SCORE.0, &entry, false).count()
    };
    if withscore {
        return Ok(Reply::Array(vec![Reply::Int(rank as i64), Reply::Double(score)]));
    }
    Ok(Reply::Int(rank as i64))
}

// ---- the ZRANGE family ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum By {
    Rank,
    Score,
    Lex,
}

/// A parsed range command.
struct Query {
    walk: Walk,
    withscores: bool,
}

/// Parses `min max [options]` at `at` for the ZRANGE family, Redis 6.2 style. `by` and `rev` are
/// fixed by the legacy commands (ZRANGEBYSCORE, ZREVRANGE, ...) and chosen by options in
/// ZRANGE/ZRANGESTORE; `store` forbids WITHSCORES.
fn parse_query(args: &[Bytes], at: usize, mut by: Option<By>, mut rev: Option<bool>, store: bool) -> CmdResult<Query> {
    let (mut withscores, mut offset, mut count) = (false, 0, -1);
    let mut i = at + 2;
    while i < args.len() {
        let arg = &args[i];
        if !store && is(arg, "WITHSCORES") {
            withscores = true;
        } else if is(arg, "LIMIT") && i + 2 < args.len() {
            offset = args::int(&args[i + 1])?;
            count = args::int(&args[i + 2])?;
            i += 2;
        } else if rev.is_none() && is(arg, "REV") {
            rev = Some(true);
        } else if by.is_none() && is(arg, "BYSCORE") {
            by = Some(By::Score);
        } else if by.is_none() && is(arg, "BYLEX") {
            by = Some(By::Lex);
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    let (by, rev) = (by.unwrap_or(By::Rank), rev.unwrap_or(false));
    // Redis tests the count only: `LIMIT n -1` passes with a rank range (and is ignored).
    if count != -1 && by == By::Rank {
        return Err(CmdError::err("syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"));
    }
    if withscores && by == By::Lex {
        return Err(CmdError::err("syntax error, WITHSCORES not supported in combination with BYLEX"));
    }
    let (mut low, mut high) = (&args[at], &args[at + 1]);
    if rev && by != By::Rank {
        // Reverse score and lex ranges are written max first.
        std::mem::swap(&mut low, &mut high);
    }
    let range = match by {
        By::Rank => Range::Rank(args::int(low)?, args::int(high)?),
        By::Score => Range::Score(ScoreRange::parse(low, high)?),
        By::Lex => Range::Lex(LexRange::parse(low, high)?),
    };
    Ok(Query { walk: Walk { range, rev, offset, count }, withscores })
}

/// Runs a parsed range command on the sorted set at `key` (None: no such key).
/// A member with its score.
type Scored = (Vec<u8>, f64);

fn run_query(txn: &Txn, key: &[u8], query: &Query) -> CmdResult<Option<Vec<Scored>>> {
    let Some(meta) = txn.typed_meta(key, Kind::ZSet)? else { return Ok(None) };
    Ok(Some(collect(txn, key, meta.count(), &query.walk)))
}

fn range_reply(ex: &Exec, args: &[Bytes], by: Option<By>, rev: Option<bool>) -> CmdResult<Reply> {
    let query = parse_query(args, 2, by, rev, false)?;
    let items = run_query(&ex.read(), &args[1], &query)?.unwrap_or_default();
    Ok(pairs_reply(items, query.withscores))
}

/// ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]
fn zrange(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    range_reply(ex, args, None, None)
}

fn zrevrange(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    range_reply(ex, args, Some(By::Rank), Some(true))
}

fn zrangebyscore(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    range_reply(ex, args, Some(By::Score), Some(false))
}

fn zrevrangebyscore(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    range_reply(ex, args, Some(By::Score), Some(true))
}

fn zrangebylex(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    range_reply(ex, args, Some(By::Lex), Some(false))
}

fn zrevrangebylex(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    range_reply(ex, args, Some(By::Lex), Some(true))
}

/// ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]
fn zrangestore(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let query = parse_query(args, 3, None, None, true)?;
    let mut txn = ex.write()?;
    // A missing source still replaces the destination (with nothing: it is deleted).
    let items = run_query(&txn, &args[2], &query)?.unwrap_or_default();
    let n = store(&mut txn, &args[1], &items)?;
    txn.commit()?;
    Ok(Reply::Int(n))
}

// ---- removals ----

fn zrem(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let key = &args[1];
    let mut txn = ex.write()?;
    let Some(meta) = txn.typed_meta_for_write(key, Kind::ZSet)? else { return Ok(Reply::Int(0)) };
    let mut removed = 0;
    for member in &args[2..] {
        // A point read sees the removals already made, so a repeated member counts once.
        if let Some(score) = score_of(&txn, key, member)? {
            remove(&mut txn, key, member, score);
            removed += 1;
        }
    }
    collection::set_count_after_removal(&mut txn, key, meta, removed)?;
    txn.commit()?;
    Ok(Reply::Int(removed as i64))
}

/// Removes what `walk` selects from the sorted set at `key`; returns the removed pairs.
fn remove_walk(txn: &mut Txn, key: &[u8], walk: &Walk) -> CmdResult<Vec<(Vec<u8>, f64)>> {
    let Some(meta) = txn.typed_meta_for_write(key, Kind::ZSet)? else { return Ok(Vec::new()) };
    let items = collect(txn, key, meta.count(), walk);
    for (member, score) in &items {
        remove(txn, key, member, *score);
    }
    collection::set_count_after_removal(txn, key, meta, items.len() as u64)?;
    Ok(items)
}

fn remove_range(ex: &Exec, key: &[u8], range: Range) -> CmdResult<Reply> {
    let mut txn = ex.write()?;
    let removed = remove_walk(&mut txn, key, &Walk::all_of(range))?.len();
    txn.commit()?;
    Ok(Reply::Int(removed as i64))
}

fn zremrangebyrank(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let range = Range::Rank(args::int(&args[2])?, args::int(&args[3])?);
    remove_range(ex, &args[1], range)
}

fn zremrangebyscore(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let range = Range::Score(ScoreRange::parse(&args[2], &args[3])?);
    remove_range(ex, &args[1], range)
}

fn zremrangebylex(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let range = Range::Lex(LexRange::parse(&args[2], &args[3])?);
    remove_range(ex, &args[1], range)
}

fn zpopmin(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    pop(ex, args, false)
}

fn zpopmax(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    pop(ex, args, true)
}

/// ZPOPMIN/ZPOPMAX key [count]: the lowest (highest) members with their scores.
fn pop(ex: &Exec, args: &[Bytes], highest: bool) -> CmdResult<Reply> {
    if args.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let count = args.get(2).map_or(Ok(1), |a| collection::positive_count(a))? as i64;
    if count == 0 {
        return Ok(Reply::Array(Vec::new()));
    }
    let mut txn = ex.write()?;
    let walk = Walk { range: Range::Rank(0, count - 1), rev: highest, offset: 0, count: -1 };
    let items = remove_walk(&mut txn, &args[1], &walk)?;
    txn.commit()?;
    Ok(pairs_reply(items, true))
}

/// ZRANDMEMBER key [count [WITHSCORES]]: a positive count gives distinct members, a negative
/// one may repeat them.
fn zrandmember(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let count = args.get(2).map(|a| collection::signed_count(a)).transpose()?;
    let withscores = match args.len() {
        2 | 3 => false,
        4 if is(&args[3], "WITHSCORES") => true,
        _ => return Err(CmdError::Syntax),
    };
    // Redis's bound, which keeps the flattened reply length in range.
    if withscores && count.is_some_and(|n| n.unsigned_abs() > (i64::MAX / 2) as u64) {
        return Err(CmdError::err("value is out of range"));
    }
    let key = &args[1];
    let txn = ex.read();
    let Some(meta) = txn.typed_meta(key, Kind::ZSet)? else {
        return Ok(if count.is_some() { Reply::Array(Vec::new()) } else { Reply::Nil });
    };
    let draws = collection::random_draws(meta.count(), count.unwrap_or(1))?;
    let entries = collection::entries_for_draws(&txn, key, BY_SCORE.0, BY_SCORE.1, meta.count(), &draws)?;
    let items: Vec<(Vec<u8>, f64)> = entries.iter().map(|(s, _)| decode_entry(s)).collect();
    match count {
        None => Ok(Reply::opt_bulk(items.into_iter().next().map(|(m, _)| m))),
        Some(_) => Ok(pairs_reply(items, withscores)),
    }
}

/// ZSCAN key cursor [MATCH pattern] [COUNT count]: walks the member index.
fn zscan(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    scan::scan_collection(ex, args, Kind::ZSet, BY_MEMBER, |(suffix, value)| {
        let member = suffix[1..].to_vec();
        (member.clone(), vec![Reply::Bulk(member), Reply::Double(decode_score(&value))])
    })
}

// ---- ZUNION / ZINTER / ZDIFF ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    fn apply(self, acc: f64, value: f64) -> f64 {
        match self {
            // inf + -inf is NaN; Redis makes it 0.
            Aggregate::Sum => zero_nan(acc + value),
            Aggregate::Min => acc.min(value),
            Aggregate::Max => acc.max(value),
        }
    }
}

fn zero_nan(value: f64) -> f64 {
    if value.is_nan() {
        0.0
    } else {
        value
    }
}

/// One input of the algebra: a sorted set, or a plain set whose members score 1.
struct Input<'k> {
    key: &'k [u8],
    kind: Option<Kind>,
    len: u64,
    weight: f64,
}

impl Input<'_> {
    /// All `(member, score)` pairs (unweighted).
    fn entries(&self, txn: &Txn) -> Vec<(Vec<u8>, f64)> {
        match self.kind {
            None => Vec::new(),
            Some(Kind::Set) => txn.elements(self.key, &[], &[], false).map(|(m, _)| (m, 1.0)).collect(),
            Some(_) => txn
                .elements(self.key, BY_MEMBER.0, BY_MEMBER.1, false)
                .map(|(s, v)| (s[1..].to_vec(), decode_score(&v)))
                .collect(),
        }
    }

    /// The (unweighted) score of `member`, if present.
    fn score(&self, txn: &Txn, member: &[u8]) -> CmdResult<Option<f64>> {
        match self.kind {
            None => Ok(None),
            Some(Kind::Set) => Ok(txn.elem(self.key, member)?.map(|_| 1.0)),
            Some(_) => score_of(txn, self.key, member),
        }
    }

    fn weighted(&self, score: f64) -> f64 {
        zero_nan(self.weight * score)
    }
}

/// A parsed algebra command.
struct Algebra<'k> {
    inputs: Vec<Input<'k>>,
    aggregate: Aggregate,
    withscores: bool,
}

/// Parses `numkeys key... [WEIGHTS w...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]` with the count
/// at `at`, in Redis's order: the count, the inputs' types, then the options. DIFF takes no
/// WEIGHTS/AGGREGATE, the STORE forms no WITHSCORES.
fn parse_algebra<'k>(
    txn: &Txn,
    args: &'k [Bytes],
    at: usize,
    op: Op,
    store: bool,
    name: &str,
) -> CmdResult<Algebra<'k>> {
    let n = args::int(&args[at])?;
    if n < 1 {
        return Err(CmdError::err(format!("at least 1 input key is needed for '{name}' command")));
    }
    if n > (args.len() - at - 1) as i64 {
        return Err(CmdError::Syntax);
    }
    let keys = &args[at + 1..at + 1 + n as usize];
    let mut inputs = Vec::with_capacity(keys.len());
    for key in keys {
        let meta = txn.meta(key)?;
        if meta.as_ref().is_some_and(|m| m.kind != Kind::ZSet && m.kind != Kind::Set) {
            return Err(CmdError::WrongType);
        }
        let (kind, len) = meta.map_or((None, 0), |m| (Some(m.kind), m.count()));
        inputs.push(Input { key, kind, len, weight: 1.0 });
    }
    let mut algebra = Algebra { inputs, aggregate: Aggregate::Sum, withscores: false };
    let mut i = at + 1 + keys.len();
    while i < args.len() {
        let left = args.len() - i;
        if op != Op::Diff && left > keys.len() && is(&args[i], "WEIGHTS") {
            for (input, arg) in algebra.inputs.iter_mut().zip(&args[i + 1..]) {
                input.weight = args::parse_float(arg).ok_or_else(|| CmdError::err("weight value is not a float"))?;
            }
            i += 1 + keys.len();
        } else if op != Op::Diff && left >= 2 && is(&args[i], "AGGREGATE") {
            algebra.aggregate = match args::upper(&args[i + 1]).as_str() {
                "SUM" => Aggregate::Sum,
                "MIN" => Aggregate::Min,
                "MAX" => Aggregate::Max,
                _ => return Err(CmdError::Syntax),
            };
            i += 2;
        } else if !store && is(&args[i], "WITHSCORES") {
            algebra.withscores = true;
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    Ok(algebra)
}

/// Computes the algebra over the stored inputs, in (score, member) order.
fn compute(txn: &Txn, algebra: &Algebra, op: Op) -> CmdResult<Vec<(Vec<u8>, f64)>> {
    let inputs = &algebra.inputs;
    let mut out: Vec<(Vec<u8>, f64)> = match op {
        Op::Union => {
            let mut acc: HashMap<Vec<u8>, f64> = HashMap::new();
            for input in inputs {
                for (member, score) in input.entries(txn) {
                    let value = input.weighted(score);
                    acc.entry(member).and_modify(|a| *a = algebra.aggregate.apply(*a, value)).or_insert(value);
                }
            }
            acc.into_iter().collect()
        }
        Op::Inter => intersect(txn, algebra, 0)?,
        Op::Diff => {
            let mut kept = Vec::new();
            for (member, score) in inputs[0].entries(txn) {
                if !in_any(txn, &inputs[1..], &member)? {
                    kept.push((member, score));
                }
            }
            kept
        }
    };
    // Scores are never NaN here; -0 and 0 compare equal, as in Redis.
    out.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(Ordering::Equal).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

/// The intersection: walks the smallest input and probes the others; stops after `limit`
/// members (0 = no limit).
fn intersect(txn: &Txn, algebra: &Algebra, limit: usize) -> CmdResult<Vec<(Vec<u8>, f64)>> {
    let inputs = &algebra.inputs;
    if inputs.iter().any(|i| i.kind.is_none()) {
        return Ok(Vec::new());
    }
    let smallest = (0..inputs.len()).min_by_key(|&i| inputs[i].len).expect("at least one input");
    let mut out = Vec::new();
    'members: for (member, score) in inputs[smallest].entries(txn) {
        let mut acc = inputs[smallest].weighted(score);
        for (i, input) in inputs.iter().enumerate() {
            if i == smallest {
                continue;
            }
            match input.score(txn, &member)? {
                Some(s) => acc = algebra.aggregate.apply(acc, input.weighted(s)),
                None => continue 'members,
            }
        }
        out.push((member, acc));
        if out.len() == limit {
            break;
        }
    }
    Ok(out)
}

fn in_any(txn: &Txn, inputs: &[Input], member: &[u8]) -> CmdResult<bool> {
    for input in inputs {
        if input.score(txn, member)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn algebra_reply(ex: &Exec, args: &[Bytes], op: Op, name: &str) -> CmdResult<Reply> {
    let txn = ex.read();
    let algebra = parse_algebra(&txn, args, 1, op, false, name)?;
    Ok(pairs_reply(compute(&txn, &algebra, op)?, algebra.withscores))
}

/// The STORE forms: inputs are all read before the destination (possibly one of them) is
/// replaced.
fn algebra_store(ex: &Exec, args: &[Bytes], op: Op, name: &str) -> CmdResult<Reply> {
    let mut txn = ex.write()?;
    let items = {
        let algebra = parse_algebra(&txn, args, 2, op, true, name)?;
        compute(&txn, &algebra, op)?
    };
    let n = store(&mut txn, &args[1], &items)?;
    txn.commit()?;
    Ok(Reply::Int(n))
}

fn zunion(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    algebra_reply(ex, args, Op::Union, "zunion")
}

fn zinter(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    algebra_reply(ex, args, Op::Inter, "zinter")
}

fn zdiff(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    algebra_reply(ex, args, Op::Diff, "zdiff")
}

fn zunionstore(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    algebra_store(ex, args, Op::Union, "zunionstore")
}

fn zinterstore(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    algebra_store(ex, args, Op::Inter, "zinterstore")
}

fn zdiffstore(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    algebra_store(ex, args, Op::Diff, "zdiffstore")
}

/// ZINTERCARD numkeys key [key ...] [LIMIT limit]
fn zintercard(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let txn = ex.read();
    // Parsed as an intersection without options; LIMIT is this command's own.
    let n = args::int(&args[1])?;
    if n < 1 {
        return Err(CmdError::err("at least 1 input key is needed for 'zintercard' command"));
    }
    if n > (args.len() - 2) as i64 {
        return Err(CmdError::Syntax);
    }
    let options_at = 2 + n as usize;
    let algebra = parse_algebra(&txn, &args[..options_at], 1, Op::Inter, true, "zintercard")?;
    let mut limit = 0usize;
    let mut i = options_at;
    while i < args.len() {
        if is(&args[i], "LIMIT") && i + 1 < args.len() {
            limit = args::count(&args[i + 1]).map_err(|_| CmdError::err("LIMIT can't be negative"))?;
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    Ok(Reply::Int(intersect(&txn, &algebra, limit)?.len() as i64))
}
