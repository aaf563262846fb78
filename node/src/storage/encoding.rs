//! How user data is laid out in RocksDB's keys and values. Pure functions, no I/O.
//!
//! Every stored key starts with an 8-byte slot prefix (table id, slot id; both big-endian), so
//! all of a slot's data is one contiguous key range: a slot is scanned, counted, snapshotted and
//! dropped (DeleteRange) as a range. After the prefix a tag byte separates three spaces:
//!
//! | tag | key after the tag | value |
//! |-----|-------------------|-------|
//! | `k` | user key | [`Meta`]: type, expiry, and a string's value or a collection's header |
//! | `d` | u32 key length, user key, element suffix | element value (hash field value, zset score, list item) |
//! | `e` | u64 expiry (ms), user key | empty: the index the background expirer walks in time order |
//!
//! Element suffixes: hash field; set member; list index (u64); zset `m` + member (value: score) and
//! `s` + sortable score + member (value empty), the second ordering members by (score, member).

pub const TAG_META: u8 = b'k';
pub const TAG_DATA: u8 = b'd';
pub const TAG_EXPIRE: u8 = b'e';

/// Table id and slot id, the first 8 bytes of every key of that slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotPrefix([u8; 8]);

impl SlotPrefix {
    pub fn new(table: u32, slot: u32) -> Self {
        let mut p = [0u8; 8];
        p[..4].copy_from_slice(&table.to_be_bytes());
        p[4..].copy_from_slice(&slot.to_be_bytes());
        SlotPrefix(p)
    }

    pub fn table(&self) -> u32 {
        u32::from_be_bytes(self.0[..4].try_into().unwrap())
    }

    pub fn slot(&self) -> u32 {
        u32::from_be_bytes(self.0[4..].try_into().unwrap())
    }

    pub fn bytes(&self) -> &[u8; 8] {
        &self.0
    }

    /// `[start, end)` covering everything stored for this slot.
    pub fn range(&self) -> (Vec<u8>, Vec<u8>) {
        (self.0.to_vec(), successor(&self.0))
    }

    /// A key of this slot from its part after the prefix (as the change log stores keys).
    pub fn absolute(&self, relative: &[u8]) -> Vec<u8> {
        [self.0.as_slice(), relative].concat()
    }

    /// `[start, end)` covering one of the tag spaces of this slot.
    pub fn tag_range(&self, tag: u8) -> (Vec<u8>, Vec<u8>) {
        let mut start = self.0.to_vec();
        start.push(tag);
        let end = successor(&start);
        (start, end)
    }

    pub fn meta_key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(9 + key.len());
        k.extend_from_slice(&self.0);
        k.push(TAG_META);
        k.extend_from_slice(key);
        k
    }

    /// The prefix shared by all elements of one collection.
    pub fn data_prefix(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(13 + key.len() + 16);
        k.extend_from_slice(&self.0);
        k.push(TAG_DATA);
        k.extend_from_slice(&(key.len() as u32).to_be_bytes());
        k.extend_from_slice(key);
        k
    }

    pub fn data_key(&self, key: &[u8], suffix: &[u8]) -> Vec<u8> {
        let mut k = self.data_prefix(key);
        k.extend_from_slice(suffix);
        k
    }

    pub fn expire_key(&self, at_ms: u64, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(17 + key.len());
        k.extend_from_slice(&self.0);
        k.push(TAG_EXPIRE);
        k.extend_from_slice(&at_ms.to_be_bytes());
        k.extend_from_slice(key);
        k
    }
}

/// The smallest byte string greater than every string starting with `prefix`.
pub fn successor(prefix: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last != 0xff {
            out.push(last + 1);
            return out;
        }
    }
    // All 0xff: no finite successor; an empty upper bound means "to the end".
    Vec::new()
}

/// Whether two `[start, end)` key ranges share a key (an empty end means unbounded).
pub fn ranges_overlap((a_start, a_end): (&[u8], &[u8]), (b_start, b_end): (&[u8], &[u8])) -> bool {
    let ends_before = |end: &[u8], start: &[u8]| !end.is_empty() && end <= start;
    !ends_before(a_end, b_start) && !ends_before(b_end, a_start)
}

/// Splits an expiry-index key (after the slot prefix and tag) into (expiry ms, user key).
pub fn decode_expire_key(full: &[u8]) -> Option<(u64, &[u8])> {
    let rest = full.get(9..)?;
    let at = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    Some((at, &rest[8..]))
}

/// The user key of a meta key.
pub fn decode_meta_key(full: &[u8]) -> Option<&[u8]> {
    (full.len() >= 9 && full[8] == TAG_META).then(|| &full[9..])
}

/// The value type of a key, as TYPE reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Hash,
    List,
    Set,
    ZSet,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::ZSet => "zset",
        }
    }

    fn tag(self) -> u8 {
        match self {
            Kind::String => b's',
            Kind::Hash => b'h',
            Kind::List => b'l',
            Kind::Set => b'S',
            Kind::ZSet => b'z',
        }
    }

    fn from_tag(tag: u8) -> Option<Kind> {
        Some(match tag {
            b's' => Kind::String,
            b'h' => Kind::Hash,
            b'l' => Kind::List,
            b'S' => Kind::Set,
            b'z' => Kind::ZSet,
            _ => return None,
        })
    }
}

/// First index of a new list; pushes on either side move away from it.
pub const LIST_ORIGIN: u64 = 1 << 63;

/// The record stored under a meta key.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub kind: Kind,
    /// Unix milliseconds; 0 means no expiry.
    pub expire_at: u64,
    pub body: MetaBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetaBody {
    /// A string's value, inline: a GET is one RocksDB read.
    Value(Vec<u8>),
    /// A hash, set or zset: its element count.
    Count(u64),
    /// A list: element count and the index range `[head, tail)` of its items.
    List { count: u64, head: u64, tail: u64 },
}

impl Meta {
    pub fn string(value: Vec<u8>, expire_at: u64) -> Self {
        Meta { kind: Kind::String, expire_at, body: MetaBody::Value(value) }
    }

    pub fn collection(kind: Kind, count: u64) -> Self {
        let body = match kind {
            Kind::List => MetaBody::List { count, head: LIST_ORIGIN, tail: LIST_ORIGIN },
            _ => MetaBody::Count(count),
        };
        Meta { kind, expire_at: 0, body }
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at != 0 && self.expire_at <= now_ms
    }

    /// Element count of a collection (1 for a string).
    pub fn count(&self) -> u64 {
        match self.body {
            MetaBody::Value(_) => 1,
            MetaBody::Count(n) | MetaBody::List { count: n, .. } => n,
        }
    }

    pub fn set_count(&mut self, n: u64) {
        match &mut self.body {
            MetaBody::Count(c) | MetaBody::List { count: c, .. } => *c = n,
            MetaBody::Value(_) => {}
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + 24);
        out.push(self.kind.tag());
        out.extend_from_slice(&self.expire_at.to_le_bytes());
        match &self.body {
            MetaBody::Value(v) => {
                out.reserve(v.len());
                out.extend_from_slice(v);
            }
            MetaBody::Count(n) => out.extend_from_slice(&n.to_le_bytes()),
            MetaBody::List { count, head, tail } => {
                for n in [count, head, tail] {
                    out.extend_from_slice(&n.to_le_bytes());
                }
            }
        }
        out
    }

    /// Only the type and expiry, without copying a string's value.
    pub fn peek(raw: &[u8]) -> Option<(Kind, u64)> {
        let kind = Kind::from_tag(*raw.first()?)?;
        let expire_at = u64::from_le_bytes(raw.get(1..9)?.try_into().ok()?);
        Some((kind, expire_at))
    }

    pub fn decode(raw: &[u8]) -> Option<Meta> {
        let (kind, expire_at) = Self::peek(raw)?;
        let rest = &raw[9..];
        let u64_at =
            |i: usize| -> Option<u64> { Some(u64::from_le_bytes(rest.get(i * 8..i * 8 + 8)?.try_into().ok()?)) };
        let body = match kind {
            Kind::String => MetaBody::Value(rest.to_vec()),
            Kind::List => MetaBody::List { count: u64_at(0)?, head: u64_at(1)?, tail: u64_at(2)? },
            _ => MetaBody::Count(u64_at(0)?),
        };
        Some(Meta { kind, expire_at, body })
    }
}

/// Maps an f64 to bytes that sort like the numbers (`-inf` first, `+inf` last).
pub fn encode_score(score: f64) -> [u8; 8] {
    let score = if score == 0.0 { 0.0 } else { score }; // -0 and +0 sort as one
    let bits = score.to_bits();
    let key = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
    key.to_be_bytes()
}

/// The score in an index entry. Reads take no lock, so one racing a command that replaced the
/// key with another type may see that type's element here: short bytes decode as garbage, not
/// a panic (the read's answer is then as stale as any other racing read).
pub fn decode_score(bytes: &[u8]) -> f64 {
    let mut raw = [0u8; 8];
    let n = bytes.len().min(8);
    raw[..n].copy_from_slice(&bytes[..n]);
    let key = u64::from_be_bytes(raw);
    let bits = if key >> 63 == 1 { key & !(1 << 63) } else { !key };
    f64::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slot_ranges_are_disjoint_and_ordered() {
        let a = SlotPrefix::new(0, 5);
        let b = SlotPrefix::new(0, 6);
        let (start, end) = a.range();
        let key = a.data_key(b"\xff\xff", b"\xff");
        assert!(start.as_slice() <= key.as_slice() && key.as_slice() < end.as_slice());
        assert!(end.as_slice() <= b.range().0.as_slice());
        assert_eq!(a.table(), 0);
        assert_eq!(a.slot(), 5);
    }

    #[test]
    fn data_prefixes_of_different_keys_do_not_nest() {
        // "ab" must not see elements of "abc": the length prefix separates them.
        let p = SlotPrefix::new(1, 1);
        assert!(!p.data_key(b"abc", b"x").starts_with(&p.data_prefix(b"ab")));
    }

    #[test]
    fn meta_round_trips() {
        for meta in [
            Meta::string(b"hello".to_vec(), 123),
            Meta::collection(Kind::Hash, 7),
            Meta { kind: Kind::List, expire_at: 0, body: MetaBody::List { count: 2, head: 5, tail: 7 } },
        ] {
            assert_eq!(Meta::decode(&meta.encode()), Some(meta));
        }
        assert_eq!(Meta::decode(b"?"), None);
    }

    #[test]
    fn range_overlap() {
        let meta: (&[u8], &[u8]) = (b"k", b"l");
        assert!(ranges_overlap((b"", b""), meta), "the whole slot");
        assert!(ranges_overlap((b"kab", b"kac"), meta));
        assert!(!ranges_overlap((b"d\0\0\0\x01a", b"d\0\0\0\x01b"), meta), "a collection's elements");
        assert!(!ranges_overlap((b"a", b"k"), meta), "ends are exclusive");
        assert!(ranges_overlap((b"a", b"k\0"), meta));
        assert!(!ranges_overlap((b"l", b""), meta));
    }

    #[test]
    fn successor_handles_carry() {
        assert_eq!(successor(b"a\xff"), b"b");
        assert_eq!(successor(b"\xff\xff"), b"");
    }

    proptest! {
        #[test]
        fn score_encoding_preserves_order(a in any::<f64>(), b in any::<f64>()) {
            prop_assume!(!a.is_nan() && !b.is_nan());
            let (ea, eb) = (encode_score(a), encode_score(b));
            prop_assert_eq!(a.partial_cmp(&b).unwrap(), if a == b { std::cmp::Ordering::Equal } else { ea.cmp(&eb) });
            prop_assert_eq!(decode_score(&ea), if a == 0.0 { 0.0 } else { a });
        }
    }
}
