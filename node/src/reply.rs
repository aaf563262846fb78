//! What a command answers, before it is encoded as RESP.

use bytes::{Bytes, BytesMut};
use common::resp;

use crate::error::CmdError;

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Ok,
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Shared(Bytes),
    /// A floating-point number as a bulk string, formatted as Redis does.
    Double(f64),
    Nil,
    NilArray,
    Array(Vec<Reply>),
}

impl Reply {
    pub fn simple(text: &str) -> Reply {
        Reply::Simple(text.to_string())
    }

    pub fn bulk(data: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(data.into())
    }

    pub fn opt_bulk(data: Option<Vec<u8>>) -> Reply {
        data.map_or(Reply::Nil, Reply::Bulk)
    }

    pub fn bulks<I, B>(items: I) -> Reply
    where
        I: IntoIterator<Item = B>,
        B: Into<Vec<u8>>,
    {
        Reply::Array(items.into_iter().map(|b| Reply::Bulk(b.into())).collect())
    }

    pub fn bool(flag: bool) -> Reply {
        Reply::Int(flag as i64)
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Reply::Ok => out.extend_from_slice(b"+OK\r\n"),
            Reply::Simple(s) => resp::write_simple(out, s),
            Reply::Error(e) => resp::write_error(out, e),
            Reply::Int(n) => resp::write_integer(out, *n),
            Reply::Bulk(b) => resp::write_bulk(out, b),
            Reply::Shared(b) => resp::write_bulk(out, b),
            Reply::Double(d) => resp::write_bulk(out, format_double(*d).as_bytes()),
            Reply::Nil => resp::write_null(out),
            Reply::NilArray => resp::write_null_array(out),
            Reply::Array(items) => {
                resp::write_array_len(out, items.len());
                for item in items {
                    item.encode(out);
                }
            }
        }
    }
}

impl From<CmdError> for Reply {
    fn from(err: CmdError) -> Reply {
        Reply::Error(err.to_string())
    }
}

/// Formats a double the way Redis 7 replies with scores: `inf`/`-inf`, integers without a
/// fraction, otherwise the shortest text that reads back as the same number.
pub fn format_double(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if d == d.trunc() && d.abs() < 1e17 {
        return format!("{}", d as i64);
    }
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(d);
    // ryu writes 1e20 as "1e20"; Redis writes "1e+20".
    match text.split_once('e') {
        Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
        _ => text.to_string(),
    }
}

/// Formats the result of INCRBYFLOAT/HINCRBYFLOAT as Redis stores it: plain decimal notation,
/// never an exponent, at most 17 decimals, no trailing zeros.
pub fn human_double(d: f64) -> String {
    let mut text = format!("{d}");
    if text.split_once('.').is_some_and(|(_, decimals)| decimals.len() > 17) {
        text = format!("{d:.17}").trim_end_matches('0').trim_end_matches('.').to_string();
    }
    if text == "-0" {
        text = "0".into();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_format_like_redis() {
        assert_eq!(format_double(1.5), "1.5");
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(-0.0), "0");
        assert_eq!(format_double(0.1), "0.1");
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_double(1e20), "1e+20");
        assert_eq!(format_double(1.5e-7), "1.5e-7");
    }

    #[test]
    fn incrbyfloat_results_never_use_exponents() {
        assert_eq!(human_double(1e20), "100000000000000000000");
        assert_eq!(human_double(10.6), "10.6");
        assert_eq!(human_double(-0.0), "0");
        assert_eq!(human_double(3.0), "3");
        assert_eq!(human_double(1.5e-7), "0.00000015");
        assert_eq!(human_double(-2.5), "-2.5");
        assert_eq!(human_double(1.2345e-15), "0.00000000000000123");
        assert_eq!(human_double(1e-20), "0");
        assert_eq!(human_double(-1e-20), "0");
    }
}
