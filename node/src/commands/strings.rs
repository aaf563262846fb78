//! String commands: GET/SET with every Redis 6.2 option, the INCR family, APPEND, ranges, bits,
//! and the multi-key MGET/MSET/MSETNX.

use bytes::Bytes;

use super::args::{self, is};
use super::{Exec, Spec, Split, KEY1, WRITE};
use crate::commands::Keys;
use crate::error::{CmdError, CmdResult};
use crate::reply::{human_double, Reply};
use crate::storage::{Kind, Meta, MetaBody, Txn};

/// Largest string a command may build (Redis's `proto-max-bulk-len`).
const MAX_STRING: usize = common::resp::MAX_BULK_LEN;

pub fn specs() -> Vec<Spec> {
    let pairs = Keys::Range(1, -1, 2);
    vec![
        Spec::slot("get", 2, 0, KEY1, get),
        Spec::slot("set", -3, WRITE, KEY1, set),
        Spec::slot("setnx", 3, WRITE, KEY1, setnx),
        Spec::slot("setex", 4, WRITE, KEY1, setex),
        Spec::slot("psetex", 4, WRITE, KEY1, psetex),
        Spec::slot("getset", 3, WRITE, KEY1, getset),
        Spec::slot("getdel", 2, WRITE, KEY1, getdel),
        Spec::slot("getex", -2, WRITE, KEY1, getex),
        Spec::slot("mget", -2, 0, Keys::Range(1, -1, 1), mget).split(Split::PerKey),
        Spec::slot("mset", -3, WRITE, pairs, mset).split(Split::Pairs),
        Spec::slot("msetnx", -3, WRITE, pairs, msetnx),
        Spec::slot("append", 3, WRITE, KEY1, append),
        Spec::slot("strlen", 2, 0, KEY1, strlen),
        Spec::slot("incr", 2, WRITE, KEY1, incr),
        Spec::slot("decr", 2, WRITE, KEY1, decr),
        Spec::slot("incrby", 3, WRITE, KEY1, incrby),
        Spec::slot("decrby", 3, WRITE, KEY1, decrby),
        Spec::slot("incrbyfloat", 3, WRITE, KEY1, incrbyfloat),
        Spec::slot("getrange", 4, 0, KEY1, getrange),
        Spec::slot("substr", 4, 0, KEY1, getrange),
        Spec::slot("setrange", 4, WRITE, KEY1, setrange),
        Spec::slot("getbit", 3, 0, KEY1, getbit),
        Spec::slot("setbit", 4, WRITE, KEY1, setbit),
        Spec::slot("bitcount", -2, 0, KEY1, bitcount),
        Spec::slot("bitpos", -3, 0, KEY1, bitpos),
    ]
}

/// The string stored at `key` (None if absent; WRONGTYPE if another type).
pub fn read_string(txn: &Txn, key: &[u8]) -> CmdResult<Option<Vec<u8>>> {
    match txn.typed_meta(key, Kind::String)? {
        Some(Meta { body: MetaBody::Value(v), .. }) => Ok(Some(v)),
        _ => Ok(None),
    }
}

/// Replaces whatever `key` holds with a string. `old` is the key's live meta, already read.
/// `expire_at`: `Some(0)` clears the TTL, `Some(t)` sets it, `None` keeps the current one.
pub fn write_string(
    txn: &mut Txn,
    key: &[u8],
    value: Vec<u8>,
    expire_at: Option<u64>,
    old: Option<&Meta>,
) -> CmdResult<()> {
    let mut old_expire = 0;
    if let Some(old) = old {
        if old.kind == Kind::String {
            old_expire = old.expire_at;
        } else {
            txn.delete_key(key, old)?;
        }
    }
    let keep = old.filter(|m| m.kind == Kind::String).map_or(0, |m| m.expire_at);
    let meta = Meta::string(value, expire_at.unwrap_or(keep));
    txn.put_meta(key, &meta, old_expire);
    Ok(())
}

fn get(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    Ok(Reply::opt_bulk(read_string(&ex.read(), &args[1])?))
}

/// SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]
fn set(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    #[derive(PartialEq)]
    enum Cond {
        Any,
        Nx,
        Xx,
    }
    let mut cond = Cond::Any;
    let mut want_old = false;
    let mut keep_ttl = false;
    let mut expiry: Option<(&Bytes, i64, bool)> = None;
    let mut i = 3;
    while i < args.len() {
        let opt = args::upper(&args[i]);
        let has_next = i + 1 < args.len();
        match opt.as_str() {
            "NX" if cond == Cond::Any => cond = Cond::Nx,
            "XX" if cond == Cond::Any => cond = Cond::Xx,
            "GET" => want_old = true,
            "KEEPTTL" if expiry.is_none() => keep_ttl = true,
            "EX" | "PX" | "EXAT" | "PXAT" if has_next && expiry.is_none() && !keep_ttl => {
                let unit = if opt.starts_with('E') { 1000 } else { 1 };
                expiry = Some((&args[i + 1], unit, opt.ends_with("AT")));
                i += 1;
            }
            _ => return Err(CmdError::Syntax),
        }
        i += 1;
    }
    let mut txn = ex.write()?;
    let expire_at = match expiry {
        None => None,
        Some((arg, unit, absolute)) => {
            let raw = args::int(arg)?;
            if raw <= 0 {
                return Err(CmdError::err("invalid expire time in 'set' command"));
            }
            Some(args::expire_at(arg, unit, absolute, txn.now_ms, "set")?)
        }
    };
    let old = txn.meta_for_write(&args[1])?;
    let old_value = match (&old, want_old) {
        (Some(m), true) if m.kind != Kind::String => return Err(CmdError::WrongType),
        (Some(Meta { body: MetaBody::Value(v), .. }), true) => Some(v.clone()),
        _ => None,
    };
    let proceed = match cond {
        Cond::Any => true,
        Cond::Nx => old.is_none(),
        Cond::Xx => old.is_some(),
    };
    let reply_skipped = if want_old { Reply::opt_bulk(old_value.clone()) } else { Reply::Nil };
    if !proceed {
        return Ok(reply_skipped);
    }
    if let Some(at) = expire_at {
        if at <= txn.now_ms as i64 {
            // An absolute time already past: the key ends up deleted, as in Redis.
            if let Some(m) = &old {
                txn.delete_key(&args[1], m)?;
            }
            txn.commit()?;
            return Ok(if want_old { Reply::opt_bulk(old_value) } else { Reply::Ok });
        }
    }
    let ttl = match expire_at {
        Some(at) => Some(at as u64),
        None if keep_ttl => None,
        None => Some(0),
    };
    write_string(&mut txn, &args[1], args[2].to_vec(), ttl, old.as_ref())?;
    txn.commit()?;
    Ok(if want_old { Reply::opt_bulk(old_value) } else { Reply::Ok })
}

fn setnx(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let mut txn = ex.write()?;
    if txn.meta_for_write(&args[1])?.is_some() {
        return Ok(Reply::Int(0));
    }
    write_string(&mut txn, &args[1], args[2].to_vec(), Some(0), None)?;
    txn.commit()?;
    Ok(Reply::Int(1))
}

fn setex_with_unit(ex: &Exec, args: &[Bytes], unit: i64, name: &str) -> CmdResult<Reply> {
    let n = args::int(&args[2])?;
    if n <= 0 {
        return Err(CmdError::err(format!("invalid expire time in '{name}' command")));
    }
    let mut txn = ex.write()?;
    let at = args::expire_at(&args[2], unit, false, txn.now_ms, name)?;
    let old = txn.meta_for_write(&args[1])?;
    write_string(&mut txn, &args[1], args[3].to_vec(), Some(at as u64), old.as_ref())?;
    txn.commit()?;
    Ok(Reply::Ok)
}

fn setex(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    setex_with_unit(ex, args, 1000, "setex")
}

fn psetex(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    setex_with_unit(ex, args, 1, "psetex")
}

fn getset(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let mut txn = ex.write()?;
    let old = txn.meta_for_write(&args[1])?;
    let value = match &old {
        Some(Meta { body: MetaBody::Value(v), .. }) => Some(v.clone()),
        Some(_) => return Err(CmdError::WrongType),
        None => None,
    };
    write_string(&mut txn, &args[1], args[2].to_vec(), Some(0), old.as_ref())?;
    txn.commit()?;
    Ok(Reply::opt_bulk(value))
}

fn getdel(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let mut txn = ex.write()?;
    let Some(meta) = txn.typed_meta_for_write(&args[1], Kind::String)? else { return Ok(Reply::Nil) };
    txn.delete_key(&args[1], &meta)?;
    txn.commit()?;
    match meta.body {
        MetaBody::Value(v) => Ok(Reply::Bulk(v)),
        _ => Ok(Reply::Nil),
    }
}

/// GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]
fn getex(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let mut txn = ex.write()?;
    let mut new_expiry: Option<i64> = None; // Some(0) = persist
    let mut i = 2;
    while i < args.len() {
        let opt = args::upper(&args[i]);
        match opt.as_str() {
            "PERSIST" if new_expiry.is_none() => new_expiry = Some(0),
            "EX" | "PX" | "EXAT" | "PXAT" if i + 1 < args.len() && new_expiry.is_none() => {
                let raw = args::int(&args[i + 1])?;
                if raw <= 0 {
                    return Err(CmdError::err("invalid expire time in 'getex' command"));
                }
                let unit = if opt.starts_with('E') { 1000 } else { 1 };
                new_expiry = Some(args::expire_at(&args[i + 1], unit, opt.ends_with("AT"), txn.now_ms, "getex")?);
                i += 1;
            }
            _ => return Err(CmdError::Syntax),
        }
        i += 1;
    }
    let Some(mut meta) = txn.typed_meta_for_write(&args[1], Kind::String)? else { return Ok(Reply::Nil) };
    let value = match &meta.body {
        MetaBody::Value(v) => v.clone(),
        _ => return Ok(Reply::Nil),
    };
    match new_expiry {
        None => {}
        Some(at) if at != 0 && at <= txn.now_ms as i64 => txn.delete_key(&args[1], &meta)?,
        Some(at) => {
            let old = meta.expire_at;
            meta.expire_at = at as u64;
            txn.put_meta(&args[1], &meta, old);
        }
    }
    txn.commit()?;
    Ok(Reply::Bulk(value))
}

fn mget(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let txn = ex.read();
    let mut out = Vec::with_capacity(args.len() - 1);
    for key in &args[1..] {
        // MGET answers nil, not WRONGTYPE, for keys of another type.
        let value = match txn.meta(key)? {
            Some(Meta { body: MetaBody::Value(v), .. }) => Reply::Bulk(v),
            _ => Reply::Nil,
        };
        out.push(value);
    }
    Ok(Reply::Array(out))
}

fn check_pairs(args: &[Bytes], name: &str) -> CmdResult<()> {
    if !(args.len() - 1).is_multiple_of(2) {
        return Err(CmdError::Arity(name.into()));
    }
    Ok(())
}

fn mset(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    check_pairs(args, "mset")?;
    let mut txn = ex.write()?;
    for pair in args[1..].chunks(2) {
        let old = txn.meta_for_write(&pair[0])?;
        write_string(&mut txn, &pair[0], pair[1].to_vec(), Some(0), old.as_ref())?;
    }
    txn.commit()?;
    Ok(Reply::Ok)
}

fn msetnx(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    check_pairs(args, "msetnx")?;
    let mut txn = ex.write()?;
    for pair in args[1..].chunks(2) {
        if txn.meta_for_write(&pair[0])?.is_some() {
            return Ok(Reply::Int(0));
        }
    }
    for pair in args[1..].chunks(2) {
        write_string(&mut txn, &pair[0], pair[1].to_vec(), Some(0), None)?;
    }
    txn.commit()?;
    Ok(Reply::Int(1))
}

/// Reads the string for a read-modify-write, returning it with its meta.
fn string_for_write(txn: &mut Txn, key: &[u8]) -> CmdResult<(Option<Meta>, Vec<u8>)> {
    let meta = txn.typed_meta_for_write(key, Kind::String)?;
    let value = match &meta {
        Some(Meta { body: MetaBody::Value(v), .. }) => v.clone(),
        _ => Vec::new(),
    };
    Ok((meta, value))
}

fn too_big() -> CmdError {
    CmdError::err("string exceeds maximum allowed size (proto-max-bulk-len)")
}

fn append(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let mut txn = ex.write()?;
    let (meta, mut value) = string_for_write(&mut txn, &args[1])?;
    if value.len() + args[2].len() > MAX_STRING {
        return Err(too_big());
    }
    value.extend_from_slice(&args[2]);
    let len = value.len();
    write_string(&mut txn, &args[1], value, None, meta.as_ref())?;
    txn.commit()?;
    Ok(Reply::Int(len as i64))
}

fn strlen(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    Ok(Reply::Int(read_string(&ex.read(), &args[1])?.map_or(0, |v| v.len()) as i64))
}

fn incr_by(ex: &Exec, key: &[u8], delta: i64) -> CmdResult<Reply> {
    let mut txn = ex.write()?;
    let (meta, value) = string_for_write(&mut txn, key)?;
    let current = if meta.is_none() { 0 } else { common::resp::parse_i64(&value).ok_or(CmdError::NotInteger)? };
    let next = current.checked_add(delta).ok_or(CmdError::Overflow)?;
    write_string(&mut txn, key, itoa::Buffer::new().format(next).as_bytes().to_vec(), None, meta.as_ref())?;
    txn.commit()?;
    Ok(Reply::Int(next))
}

fn incr(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    incr_by(ex, &args[1], 1)
}

fn decr(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    incr_by(ex, &args[1], -1)
}

fn incrby(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    incr_by(ex, &args[1], args::int(&args[2])?)
}

fn decrby(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let delta = args::int(&args[2])?;
    incr_by(ex, &args[1], delta.checked_neg().ok_or(CmdError::Overflow)?)
}

fn incrbyfloat(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let delta = args::float(&args[2])?;
    let mut txn = ex.write()?;
    let (meta, value) = string_for_write(&mut txn, &args[1])?;
    let current = if meta.is_none() { 0.0 } else { args::parse_float(&value).ok_or(CmdError::NotFloat)? };
    let next = current + delta;
    if !next.is_finite() {
        return Err(CmdError::err("increment would produce NaN or Infinity"));
    }
    let text = human_double(next);
    write_string(&mut txn, &args[1], text.clone().into_bytes(), None, meta.as_ref())?;
    txn.commit()?;
    Ok(Reply::bulk(text))
}

fn getrange(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let (start, end) = (args::int(&args[2])?, args::int(&args[3])?);
    let value = read_string(&ex.read(), &args[1])?.unwrap_or_default();
    match args::clamp_range(start, end, value.len() as i64) {
        Some((a, b)) => Ok(Reply::bulk(&value[a as usize..=b as usize])),
        None => Ok(Reply::bulk("")),
    }
}

fn setrange(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let offset = args::int(&args[2])?;
    if offset < 0 {
        return Err(CmdError::err("offset is out of range"));
    }
    let offset = offset as usize;
    let mut txn = ex.write()?;
    let (meta, mut value) = string_for_write(&mut txn, &args[1])?;
    if args[3].is_empty() {
        // Nothing to write: Redis neither creates nor pads the key.
        return Ok(Reply::Int(value.len() as i64));
    }
    if offset + args[3].len() > MAX_STRING {
        return Err(too_big());
    }
    if value.len() < offset + args[3].len() {
        value.resize(offset + args[3].len(), 0);
    }
    value[offset..offset + args[3].len()].copy_from_slice(&args[3]);
    let len = value.len();
    write_string(&mut txn, &args[1], value, None, meta.as_ref())?;
    txn.commit()?;
    Ok(Reply::Int(len as i64))
}

fn bit_offset(arg: &[u8]) -> CmdResult<usize> {
    let n = args::int(arg).map_err(|_| CmdError::err("bit offset is not an integer or out of range"))?;
    if !(0..(MAX_STRING as i64) * 8).contains(&n) {
        return Err(CmdError::err("bit offset is not an integer or out of range"));
    }
    Ok(n as usize)
}

fn getbit(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let offset = bit_offset(&args[2])?;
    let value = read_string(&ex.read(), &args[1])?.unwrap_or_default();
    let bit = value.get(offset / 8).map_or(0, |byte| (byte >> (7 - offset % 8)) & 1);
    Ok(Reply::Int(bit as i64))
}

fn setbit(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let offset = bit_offset(&args[2])?;
    let on = match args[3].as_ref() {
        b"1" => true,
        b"0" => false,
        _ => return Err(CmdError::err("bit is not an integer or out of range")),
    };
    let mut txn = ex.write()?;
    let (meta, mut value) = string_for_write(&mut txn, &args[1])?;
    if value.len() <= offset / 8 {
        value.resize(offset / 8 + 1, 0);
    }
    let mask = 1u8 << (7 - offset % 8);
    let old = (value[offset / 8] & mask != 0) as i64;
    if on {
        value[offset / 8] |= mask;
    } else {
        value[offset / 8] &= !mask;
    }
    write_string(&mut txn, &args[1], value, None, meta.as_ref())?;
    txn.commit()?;
    Ok(Reply::Int(old))
}

/// Parses `[start end [BYTE|BIT]]` into an inclusive bit range over `len` bytes.
fn bit_range(args: &[Bytes], len: usize) -> CmdResult<Option<(usize, usize)>> {
    let bits_total = len as i64 * 8;
    let (mut start, mut end, unit_bits) = match args.len() {
        0 => return Ok((len > 0).then(|| (0, len * 8 - 1))),
        2 | 3 => {
            let unit_bits = match args.get(2) {
                None => false,
                Some(u) if is(u, "BYTE") => false,
                Some(u) if is(u, "BIT") => true,
                Some(_) => return Err(CmdError::Syntax),
            };
            (args::int(&args[0])?, args::int(&args[1])?, unit_bits)
        }
        _ => return Err(CmdError::Syntax),
    };
    let total = if unit_bits { bits_total } else { len as i64 };
    if start < 0 {
        start = (total + start).max(0);
    }
    if end < 0 {
        end = (total + end).max(-1);
    }
    end = end.min(total - 1);
    if start > end || total == 0 {
        return Ok(None);
    }
    Ok(Some(if unit_bits { (start as usize, end as usize) } else { (start as usize * 8, end as usize * 8 + 7) }))
}

fn bit_at(value: &[u8], bit: usize) -> bool {
    value[bit / 8] & (1 << (7 - bit % 8)) != 0
}

fn bitcount(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    if args.len() == 3 {
        return Err(CmdError::Syntax);
    }
    let value = read_string(&ex.read(), &args[1])?.unwrap_or_default();
    let Some((from, to)) = bit_range(&args[2..], value.len())? else { return Ok(Reply::Int(0)) };
    let count = (from..=to).filter(|&b| bit_at(&value, b)).count();
    Ok(Reply::Int(count as i64))
}

fn bitpos(ex: &Exec, args: &[Bytes]) -> CmdResult<Reply> {
    let want = match args[2].as_ref() {
        b"1" => true,
        b"0" => false,
        _ => return Err(CmdError::err("The bit argument must be 1 or 0.")),
    };
    let Some(value) = read_string(&ex.read(), &args[1])? else {
        return Ok(Reply::Int(if want { -1 } else { 0 }));
    };
    let explicit_end = args.len() >= 5;
    let range_args: Vec<Bytes> = match args.len() {
        3 => Vec::new(),
        4 => vec![args[3].clone(), Bytes::from_static(b"-1")],
        _ => args[3..].to_vec(),
    };
    let Some((from, to)) = bit_range(&range_args, value.len())? else { return Ok(Reply::Int(-1)) };
    if let Some(pos) = (from..=to).find(|&b| bit_at(&value, b) == want) {
        return Ok(Reply::Int(pos as i64));
    }
    // Looking for a 0 with no end given: the string is treated as padded with zeros on the right.
    Ok(Reply::Int(if !want && !explicit_end { (to + 1) as i64 } else { -1 }))
}
