//! Pika's slot-group syntax (docs/compatibility.md, "Slot range syntax"): `N` or `A-B` items
//! separated by commas.

use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Why a slot group did not parse. Pika answers every case with `Corruption: syntax error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Corruption: syntax error")]
pub struct SlotSyntaxError;

/// Parses `0-3,7,,9-9,` into a sorted, deduplicated list of slots.
///
/// Empty items are skipped (so a trailing comma is fine, as Codis sends one); a `-` at the start or
/// end of an item, a non-numeric value, or `A > B` is an error. Leading zeros are accepted.
pub fn parse_slots(text: &str) -> Result<Vec<u32>, SlotSyntaxError> {
    let mut set = BTreeSet::new();
    for item in text.split(',').filter(|item| !item.is_empty()) {
        match item.split_once('-') {
            None => {
                set.insert(parse_number(item)?);
            }
            Some((lo, hi)) => {
                let (lo, hi) = (parse_number(lo)?, parse_number(hi)?);
                if lo > hi {
                    return Err(SlotSyntaxError);
                }
                set.extend(lo..=hi);
            }
        }
    }
    Ok(set.into_iter().collect())
}

/// One more than the largest slot number accepted: no table has more slots (`default-slot-num`
/// is at most 65536). It bounds what a hostile argument can cost: many wide ranges add up to at
/// most this many slots, whatever their count.
pub const MAX_SLOTS: u32 = 1 << 16;

fn parse_number(text: &str) -> Result<u32, SlotSyntaxError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SlotSyntaxError);
    }
    text.parse().ok().filter(|n| *n < MAX_SLOTS).ok_or(SlotSyntaxError)
}

/// Formats sorted slots compactly: `[0,1,2,3,7]` -> `0-3,7`. The inverse of [`parse_slots`].
pub fn format_slots(slots: &[u32]) -> String {
    let mut out = String::new();
    for (lo, hi) in ranges(slots) {
        if !out.is_empty() {
            out.push(',');
        }
        if lo == hi {
            let _ = write!(out, "{lo}");
        } else {
            let _ = write!(out, "{lo}-{hi}");
        }
    }
    out
}

/// Maximal runs of consecutive values in a sorted list, as inclusive `(first, last)` pairs.
pub fn ranges(slots: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &slot in slots {
        match out.last_mut() {
            Some((_, hi)) if hi.checked_add(1) == Some(slot) => *hi = slot,
            Some((_, hi)) if *hi == slot => {}
            _ => out.push((slot, slot)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_pika_forms() {
        assert_eq!(parse_slots("0-3,7").unwrap(), vec![0, 1, 2, 3, 7]);
        assert_eq!(parse_slots("5,1,5,").unwrap(), vec![1, 5]);
        assert_eq!(parse_slots("007").unwrap(), vec![7]);
        assert_eq!(parse_slots(",,").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_slots("3-3").unwrap(), vec![3]);
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in ["-1", "1-", "a", "3-1", "1-2-3", "1 ,2", "0-99999999", "+1", "4294967296", "65536", "0-65536"] {
            assert_eq!(parse_slots(bad), Err(SlotSyntaxError), "{bad}");
        }
    }

    #[test]
    fn many_wide_ranges_add_up_to_at_most_every_slot() {
        // (100 are enough to show it: the set never grows past the slot space.)
        let text = vec!["0-65535"; 100].join(",");
        assert_eq!(parse_slots(&text).unwrap().len(), 65536);
    }

    #[test]
    fn formats_ranges() {
        assert_eq!(format_slots(&[0, 1, 2, 3, 7, 9, 10]), "0-3,7,9-10");
        assert_eq!(format_slots(&[]), "");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(mut slots in proptest::collection::vec(0u32..2048, 0..200)) {
            slots.sort_unstable();
            slots.dedup();
            prop_assert_eq!(parse_slots(&format_slots(&slots)).unwrap(), slots);
        }
    }
}
