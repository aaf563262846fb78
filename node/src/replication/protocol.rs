//! The replication stream's frames, after the RESP handshake on the client port. Pure codec.
//!
//! A replica opens a connection to the master's client port, authenticates like any client, and
//! sends `PKREPL <table> <slot> <its client port> <history> <seq> <offset> <force 0|1>`. The master
//! answers one line, `+CONTINUE <history> <prev_history> <prev_until>` or
//! `+FULLSYNC <history> <prev_history> <prev_until> <seq> <offset>` (or `-ERR ...` and closes), and
//! from then on both directions carry frames: a tag byte, a big-endian u32 payload length, and the
//! payload.
//!
//! | tag | direction | payload |
//! |-----|-----------|---------|
//! | `S` | master -> replica | full-sync chunk: `(u32 len, key, u32 len, value)*`, keys relative to the slot |
//! | `F` | master -> replica | full sync done: u64 records sent |
//! | `L` | master -> replica | log entry: u64 seq, u64 offset after it, the entry's operations |
//! | `K` | master -> replica | keepalive: u64 seq, u64 offset of the master's log head |
//! | `A` | replica -> master | ack: u64 seq, u64 offset applied and durable on the replica |

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::storage::changelog::take_u64;
use crate::storage::LogPos;

/// Frames carry at most this much: an entry holding a 512 MiB value plus its key and overhead.
pub const MAX_FRAME: usize = 1100 << 20;
const HEADER: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Chunk(Bytes),
    SnapshotDone { records: u64 },
    Entry { pos: LogPos, entry: Bytes },
    Keepalive(LogPos),
    Ack(LogPos),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    #[error("unknown frame tag {0:#04x}")]
    UnknownTag(u8),
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("malformed {0} frame")]
    Malformed(&'static str),
}

fn pos_payload(pos: LogPos) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&pos.seq.to_be_bytes());
    p[8..].copy_from_slice(&pos.offset.to_be_bytes());
    p
}

fn parse_pos(mut payload: &[u8], what: &'static str) -> Result<LogPos, ProtocolError> {
    let bad = |_| ProtocolError::Malformed(what);
    let pos = LogPos { seq: take_u64(&mut payload).map_err(bad)?, offset: take_u64(&mut payload).map_err(bad)? };
    Ok(pos)
}

impl Frame {
    pub fn encode(&self, out: &mut BytesMut) {
        let (tag, len) = match self {
            Frame::Chunk(b) => (b'S', b.len()),
            Frame::SnapshotDone { .. } => (b'F', 8),
            Frame::Entry { entry, .. } => (b'L', 16 + entry.len()),
            Frame::Keepalive(_) => (b'K', 16),
            Frame::Ack(_) => (b'A', 16),
        };
        out.reserve(HEADER + len);
        out.put_u8(tag);
        out.put_u32(len as u32);
        match self {
            Frame::Chunk(b) => out.put_slice(b),
            Frame::SnapshotDone { records } => out.put_u64(*records),
            Frame::Entry { pos, entry } => {
                out.put_slice(&pos_payload(*pos));
                out.put_slice(entry);
            }
            Frame::Keepalive(pos) | Frame::Ack(pos) => out.put_slice(&pos_payload(*pos)),
        }
    }

    /// Takes one whole frame off the front of `buf`; `Ok(None)` until one has fully arrived.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        if buf.len() < HEADER {
            return Ok(None);
        }
        let tag = buf[0];
        if !matches!(tag, b'S' | b'F' | b'L' | b'K' | b'A') {
            return Err(ProtocolError::UnknownTag(tag));
        }
        let len = u32::from_be_bytes(buf[1..5].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(ProtocolError::TooLarge(len));
        }
        if buf.len() < HEADER + len {
            buf.reserve(HEADER + len - buf.len());
            return Ok(None);
        }
        buf.advance(HEADER);
        let payload = buf.split_to(len).freeze();
        let frame = match tag {
            b'S' => Frame::Chunk(payload),
            b'F' => {
                let mut p: &[u8] = &payload;
                let records = take_u64(&mut p).map_err(|_| ProtocolError::Malformed("snapshot-done"))?;
                Frame::SnapshotDone { records }
            }
            b'L' => {
                if payload.len() < 16 {
                    return Err(ProtocolError::Malformed("entry"));
                }
                Frame::Entry { pos: parse_pos(&payload[..16], "entry")?, entry: payload.slice(16..) }
            }
            b'K' => Frame::Keepalive(parse_pos(&payload, "keepalive")?),
            _ => Frame::Ack(parse_pos(&payload, "ack")?),
        };
        Ok(Some(frame))
    }
}

/// The handshake a replica sends, as parsed by the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub table: u32,
    pub slot: u32,
    pub port: u16,
    pub history: u64,
    pub pos: LogPos,
    pub force: bool,
    /// Its acknowledgements count for replicated acknowledgement; sent as a trailing `noack`
    /// when they do not (a migration's target).
    pub counted: bool,
}

impl Handshake {
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "PKREPL".into(),
            self.table.to_string(),
            self.slot.to_string(),
            self.port.to_string(),
            self.history.to_string(),
            self.pos.seq.to_string(),
            self.pos.offset.to_string(),
            u8::from(self.force).to_string(),
        ];
        if !self.counted {
            args.push("noack".into());
        }
        args
    }

    pub fn parse(args: &[Bytes]) -> Result<Handshake, String> {
        let counted = match args.len() {
            8 => true,
            9 if args[8].eq_ignore_ascii_case(b"noack") => false,
            _ => return Err("ERR wrong number of arguments for 'pkrepl' command".into()),
        };
        fn num<T: std::str::FromStr>(arg: &[u8]) -> Result<T, String> {
            std::str::from_utf8(arg)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| "ERR value is not an integer or out of range".to_string())
        }
        let force: u8 = num(&args[7])?;
        Ok(Handshake {
            table: num(&args[1])?,
            slot: num(&args[2])?,
            port: num(&args[3])?,
            history: num(&args[4])?,
            pos: LogPos { seq: num(&args[5])?, offset: num(&args[6])? },
            force: force != 0,
            counted,
        })
    }
}

/// The master's answer to a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The replica's position is in the master's log: entries follow from it.
    Continue { history: u64, prev_history: u64, prev_until: u64 },
    /// A snapshot at `pos` follows, then entries after it.
    FullSync { history: u64, prev_history: u64, prev_until: u64, pos: LogPos },
}

impl Start {
    pub fn line(&self) -> String {
        match *self {
            Start::Continue { history, prev_history, prev_until } => {
                format!("+CONTINUE {history} {prev_history} {prev_until}\r\n")
            }
            Start::FullSync { history, prev_history, prev_until, pos } => {
                format!("+FULLSYNC {history} {prev_history} {prev_until} {} {}\r\n", pos.seq, pos.offset)
            }
        }
    }

    /// Parses the master's status line (without CRLF); an error line comes back as `Err(text)`.
    pub fn parse(line: &str) -> Result<Start, String> {
        if let Some(err) = line.strip_prefix('-') {
            return Err(err.to_string());
        }
        let bad = || format!("unexpected handshake reply {line:?}");
        let mut words = line.strip_prefix('+').ok_or_else(bad)?.split(' ');
        let kind = words.next().ok_or_else(bad)?;
        let nums: Vec<u64> = words.map(|w| w.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
        match (kind, nums.as_slice()) {
            ("CONTINUE", &[history, prev_history, prev_until]) => {
                Ok(Start::Continue { history, prev_history, prev_until })
            }
            ("FULLSYNC", &[history, prev_history, prev_until, seq, offset]) => {
                Ok(Start::FullSync { history, prev_history, prev_until, pos: LogPos { seq, offset } })
            }
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(frame: Frame) {
        let mut buf = BytesMut::new();
        frame.encode(&mut buf);
        let whole = buf.clone();
        // Every strict prefix is "not yet".
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            assert_eq!(Frame::decode(&mut part), Ok(None), "cut at {cut}");
        }
        assert_eq!(Frame::decode(&mut buf), Ok(Some(frame)));
        assert!(buf.is_empty());
    }

    #[test]
    fn frames_round_trip() {
        let pos = LogPos { seq: 7, offset: 1 << 40 };
        round_trip(Frame::Chunk(Bytes::from_static(b"\0\0\0\x01k\0\0\0\x01v")));
        round_trip(Frame::SnapshotDone { records: 12 });
        round_trip(Frame::Entry { pos, entry: Bytes::from_static(b"P...") });
        round_trip(Frame::Keepalive(pos));
        round_trip(Frame::Ack(pos));
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(Frame::decode(&mut BytesMut::from(&b"Zxxxxxx"[..])), Err(ProtocolError::UnknownTag(b'Z')));
        assert!(matches!(
            Frame::decode(&mut BytesMut::from(&b"S\xff\xff\xff\xff"[..])),
            Err(ProtocolError::TooLarge(_))
        ));
        assert_eq!(Frame::decode(&mut BytesMut::from(&b"A\0\0\0\x03abc"[..])), Err(ProtocolError::Malformed("ack")));
    }

    #[test]
    fn handshake_and_start_lines_round_trip() {
        let pos = LogPos { seq: 3, offset: 99 };
        let h = Handshake { table: 0, slot: 5, port: 9221, history: 42, pos, force: true, counted: true };
        let args: Vec<Bytes> = h.to_args().into_iter().map(Bytes::from).collect();
        assert_eq!(args.len(), 8, "a group replica's handshake is the one older masters know");
        assert_eq!(Handshake::parse(&args), Ok(h.clone()));
        assert!(Handshake::parse(&args[..7]).is_err());
        let target = Handshake { counted: false, ..h };
        let args: Vec<Bytes> = target.to_args().into_iter().map(Bytes::from).collect();
        assert_eq!(Handshake::parse(&args), Ok(target));
        let mut junk = args.clone();
        junk[8] = Bytes::from_static(b"other");
        assert!(Handshake::parse(&junk).is_err());
        let start = Start::FullSync { history: 1, prev_history: 2, prev_until: 3, pos: LogPos { seq: 4, offset: 5 } };
        assert_eq!(Start::parse(start.line().trim_end()), Ok(start));
        let start = Start::Continue { history: 1, prev_history: 0, prev_until: 0 };
        assert_eq!(Start::parse(start.line().trim_end()), Ok(start));
        assert_eq!(Start::parse("-ERR Partition not found"), Err("ERR Partition not found".into()));
        assert!(Start::parse("+FULLSYNC 1 2").is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = Frame::decode(&mut buf) {}
        }
    }
}
