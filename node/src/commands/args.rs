//! Argument parsing shared by all command families, with Redis's error texts.

use bytes::Bytes;

use crate::error::{CmdError, CmdResult};

/// A canonical decimal i64 (`ERR value is not an integer or out of range` otherwise).
pub fn int(arg: &[u8]) -> CmdResult<i64> {
    common::resp::parse_i64(arg).ok_or(CmdError::NotInteger)
}

/// A non-negative integer that fits a usize.
pub fn count(arg: &[u8]) -> CmdResult<usize> {
    let n = int(arg)?;
    usize::try_from(n).map_err(|_| CmdError::NotInteger)
}

/// A double as Redis reads one: decimal or exponent forms, `inf`/`+inf`/`-inf`; no NaN, no spaces.
pub fn float(arg: &[u8]) -> CmdResult<f64> {
    parse_float(arg).ok_or(CmdError::NotFloat)
}

pub fn parse_float(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    if text.is_empty() || text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
        return None;
    }
    let value = match text.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        lower if lower.contains("inf") || lower.contains("nan") => return None,
        _ => text.parse::<f64>().ok()?,
    };
    (!value.is_nan()).then_some(value)
}

/// Case-insensitive keyword comparison.
pub fn is(arg: &[u8], keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}

pub fn upper(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_uppercase()
}

pub fn to_vec(args: &[Bytes]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.to_vec()).collect()
}

/// Resolves Redis's inclusive `start`/`stop` indexes (negative = from the end) against a length;
/// `None` when the range is empty.
pub fn clamp_range(start: i64, stop: i64, len: i64) -> Option<(u64, u64)> {
    let start = if start < 0 { (len + start).max(0) } else { start };
    let stop = if stop < 0 { len + stop } else { stop.min(len - 1) };
    (start <= stop && start < len && stop >= 0).then_some((start as u64, stop as u64))
}

/// An expiry given as a relative or absolute time, converted to absolute Unix milliseconds.
/// `unit_ms` is 1000 for seconds, 1 for milliseconds; `absolute` for EXAT/PXAT/EXPIREAT.
/// `command` names the command in the error text.
pub fn expire_at(arg: &[u8], unit_ms: i64, absolute: bool, now_ms: u64, command: &str) -> CmdResult<i64> {
    let n = int(arg)?;
    let invalid = || CmdError::err(format!("invalid expire time in '{command}' command"));
    let ms = n.checked_mul(unit_ms).ok_or_else(invalid)?;
    if absolute {
        Ok(ms)
    } else {
        ms.checked_add(now_ms as i64).ok_or_else(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_redis() {
        assert_eq!(parse_float(b"1.5"), Some(1.5));
        assert_eq!(parse_float(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_float(b"1e3"), Some(1000.0));
        for bad in [&b"nan"[..], b"", b" 1", b"1 ", b"abc", b"1.2.3"] {
            assert_eq!(parse_float(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn ranges_like_lrange() {
        assert_eq!(clamp_range(0, -1, 3), Some((0, 2)));
        assert_eq!(clamp_range(-100, 100, 3), Some((0, 2)));
        assert_eq!(clamp_range(2, 1, 3), None);
        assert_eq!(clamp_range(5, 10, 3), None);
        assert_eq!(clamp_range(0, -1, 0), None);
        assert_eq!(clamp_range(-1, -1, 3), Some((2, 2)));
    }
}
