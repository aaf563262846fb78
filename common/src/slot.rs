//! Key -> slot mapping, as Pika 3.3.6 and Codis compute it (docs/compatibility.md, "Key to slot").

/// The bytes that decide a key's slot: the text between the first `{` and the first `}` after it,
/// even when that text is empty; the whole key when there is no such pair.
///
/// This is the Codis/Pika rule. It differs from twemproxy's (which ignores an empty tag) and from
/// Redis Cluster's (same as twemproxy's).
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = memchr::memchr(b'{', key) {
        if let Some(len) = memchr::memchr(b'}', &key[open + 1..]) {
            return &key[open + 1..open + 1 + len];
        }
    }
    key
}

/// CRC-32/IEEE (zlib, twemproxy `crc32a`) of the key's hash tag.
pub fn key_crc(key: &[u8]) -> u32 {
    crc32fast::hash(hash_tag(key))
}

/// The slot of `key` in a table of `slot_count` slots.
///
/// # Panics
/// When `slot_count` is 0; tables always have at least one slot.
pub fn key_slot(key: &[u8], slot_count: u32) -> u32 {
    key_crc(key) % slot_count
}

/// The pre-3.3.6 mapping (whole key, `crc & (N - 1)`), for data written by older nodes.
pub fn legacy_key_slot(key: &[u8], slot_count: u32) -> u32 {
    crc32fast::hash(key) & (slot_count - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of docs/compatibility.md, "Key to slot".
    #[test]
    fn compat_vectors() {
        let cases: &[(&[u8], u32, u32)] = &[
            (b"123456789", 0xCBF4_3926, 294),
            (b"foo", 0x8C73_6521, 289),
            (b"bar", 0x76FF_8CAA, 170),
            (b"a", 0xE8B7_BE43, 579),
            (b"user:1000", 0x9F74_17E3, 995),
        ];
        for (key, crc, slot) in cases {
            assert_eq!(key_crc(key), *crc, "crc of {:?}", String::from_utf8_lossy(key));
            assert_eq!(key_slot(key, 1024), *slot);
        }
        assert_eq!(key_slot(b"{user1000}.following", 1024), 870);
        assert_eq!(key_slot(b"{user1000}.followers", 1024), 870);
        assert_eq!(key_slot(b"{}abc", 1024), 0);
        assert_eq!(key_slot(b"", 1024), 0);
        assert_eq!(key_slot(b"foo", 1000), 769);
    }

    #[test]
    fn legacy_vectors() {
        assert_eq!(legacy_key_slot(b"foo", 1000), 289);
        assert_eq!(legacy_key_slot(b"{user1000}.following", 1024), 1007);
        assert_eq!(legacy_key_slot(b"{user1000}.followers", 1024), 939);
        assert_eq!(legacy_key_slot(b"{}abc", 1024), 594);
    }

    #[test]
    fn hashtag_rule() {
        assert_eq!(hash_tag(b"foo{}{bar}"), b"");
        assert_eq!(hash_tag(b"foo{bar"), b"foo{bar");
        assert_eq!(hash_tag(b"foo}bar{x}"), b"x");
        assert_eq!(hash_tag(b"{a}{b}"), b"a");
        assert_eq!(hash_tag(b"plain"), b"plain");
    }
}
