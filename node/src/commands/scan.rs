//! The cursor machinery of SCAN, SLOTSSCAN, HSCAN, SSCAN and ZSCAN.
//!
//! RocksDB iterates in key order, not by hash bucket, so a cursor is a number the server maps to
//! the position to resume at (`Server::cursors`, bounded; a forgotten cursor starts over, which
//! SCAN's guarantees allow).

use bytes::Bytes;

use super::args::{self, is};
use super::Exec;
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;
use crate::storage::{Entry, Kind, Txn};

/// Options of a scan: `[MATCH pattern] [COUNT n]`, and `[TYPE t]` where allowed (SCAN).
pub struct ScanOptions<'a> {
    pub pattern: Option<&'a [u8]>,
    pub count: usize,
    pub kind: Option<String>,
}

impl ScanOptions<'_> {
    pub fn matches(&self, item: &[u8]) -> bool {
        self.pattern.is_none_or(|p| crate::glob::glob_match(p, item))
    }
}

/// Parses the options from argument `from` on; `TYPE` only when `allow_type`.
pub fn parse_options(args: &[Bytes], from: usize, allow_type: bool) -> CmdResult<ScanOptions<'_>> {
    let mut options = ScanOptions { pattern: None, count: 10, kind: None };
    let mut i = from;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else { return Err(CmdError::Syntax) };
        if is(&args[i], "MATCH") {
            options.pattern = Some(value);
        } else if is(&args[i], "COUNT") {
            options.count = usize::try_from(args::int(value)?).ok().filter(|&n| n >= 1).ok_or(CmdError::Syntax)?;
        } else if allow_type && is(&args[i], "TYPE") {
            options.kind = Some(String::from_utf8_lossy(value).to_ascii_lowercase());
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    Ok(options)
}

/// The `[cursor, [items...]]` reply of every scan.
pub fn reply(next: u64, items: Vec<Reply>) -> Reply {
    Reply::Array(vec![Reply::bulk(next.to_string()), Reply::Array(items)])
}

/// A SCAN-family cursor: 0 starts over, anything else names a stored resume point.
pub fn parse_cursor(arg: &[u8]) -> CmdResult<u64> {
    std::str::from_utf8(arg).ok().and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| CmdError::err("invalid cursor"))
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
) -> (u64, Vec<Entry>) {
    let stored = if cursor == 0 { None } else { ex.server.cursors.resume(cursor) };
    // A forgotten or foreign cursor starts over, which SCAN's guarantees allow.
    let start = stored.as_deref().and_then(|s| decode_resume(s, key)).filter(|s| *s >= from).unwrap_or(from);
    let mut page: Vec<Entry> = txn.elements(key, start, to, false).take(count + 1).collect();
    let next = match page.len() > count {
        true => ex.server.cursors.store(encode_resume(key, &page.pop().expect("extra entry").0)),
        false => 0,
    };
    (next, page)
}

/// HSCAN, SSCAN and ZSCAN: `key cursor [MATCH pattern] [COUNT n]` over the entries of a
/// collection of `kind` whose suffix is in `[from, to)`. `render` turns an entry into the name
/// MATCH tests and the reply items it contributes. As in Redis, a missing key answers an empty
/// scan before the options are looked at.
pub fn scan_collection(
    ex: &Exec,
    args: &[Bytes],
    kind: Kind,
    (from, to): (&[u8], &[u8]),
    render: impl Fn(Entry) -> (Vec<u8>, Vec<Reply>),
) -> CmdResult<Reply> {
    let cursor = parse_cursor(&args[2])?;
    let txn = ex.read();
    if txn.typed_meta(&args[1], kind)?.is_none() {
        return Ok(reply(0, Vec::new()));
    }
    let options = parse_options(args, 3, false)?;
    let (next, page) = scan_page(ex, &txn, &args[1], cursor, from, to, options.count);
    let items = page.into_iter().map(render).filter(|(name, _)| options.matches(name)).flat_map(|(_, items)| items);
    Ok(reply(next, items.collect()))
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
}
