//! A seeded fuzzer over TCP: random, truncated, oversized and malformed requests sent to a
//! running node or proxy, one connection at a time. A server passes when it answers or closes
//! every connection (never hangs on a whole request), keeps answering a control connection,
//! sends only well-formed replies, and lets go of every connection it was sent (the caller also
//! checks its memory and log). The same seed gives the same requests: a failure prints its
//! seed and the session's bytes, and `TCP_FUZZ_SEED=<seed>` replays it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

/// What the fuzzer connects to.
pub struct Target {
    pub port: u16,
    /// Sent as `AUTH admin <password>` first in most sessions, so admin commands run too.
    pub admin_password: Option<String>,
    /// Sent as `AUTH default <password>` first in some others: the data user's refusals.
    pub user_password: Option<String>,
    /// Commands to draw from, with their arity as COMMAND gives it (n: exactly n words with the
    /// name, -n: at least n; 0 when unknown).
    pub names: Vec<(String, i64)>,
}

/// What a run did, for the test's output.
#[derive(Debug, Default)]
pub struct Stats {
    pub sessions: u64,
    pub requests: u64,
    pub replies: u64,
    /// Sessions the server ended by closing (a protocol error, QUIT, a limit).
    pub closed_by_server: u64,
    /// Error replies by their first words: what the run mostly met.
    pub errors: std::collections::HashMap<String, u64>,
}

impl Stats {
    /// Error replies in all.
    pub fn error_replies(&self) -> u64 {
        self.errors.values().sum()
    }

    /// One line for the test's output: the seed, the counts, the memory, the commonest errors.
    pub fn summary(&self, seed: u64, server: &str, rss_before: u64, rss_peak: u64) -> String {
        format!(
            "seed {seed}: {} sessions, {} requests, {} replies ({} errors), {} closed by the {server}; \
             resident {} MB before, {} MB at most; most frequent errors: {:?}",
            self.sessions,
            self.requests,
            self.replies,
            self.error_replies(),
            self.closed_by_server,
            rss_before >> 20,
            rss_peak >> 20,
            self.common_errors(12)
        )
    }

    /// The most frequent error replies, for the test's output.
    pub fn common_errors(&self, n: usize) -> Vec<(&str, u64)> {
        let mut all: Vec<(&str, u64)> = self.errors.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.1));
        all.truncate(n);
        all
    }
}

/// The commands a server lists in its COMMAND reply, with their arities.
pub fn command_table(c: &mut redis::Connection) -> Vec<(String, i64)> {
    let table: redis::Value = redis::cmd("COMMAND").query(c).expect("COMMAND");
    let redis::Value::Array(entries) = table else { panic!("COMMAND: {table:?}") };
    entries
        .iter()
        .filter_map(|e| match e {
            redis::Value::Array(fields) => match (fields.first(), fields.get(1)) {
                (Some(redis::Value::BulkString(name)), Some(redis::Value::Int(arity))) => {
                    Some((String::from_utf8_lossy(name).into_owned(), *arity))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The check between sessions: a new connection logs in as admin and gets PONG; the error says
/// which step failed. The connection is returned for the caller's own repairs.
pub fn control(url: &str, admin_password: &str) -> Result<redis::Connection, String> {
    let mut c = redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(10)))
        .map_err(|e| format!("no longer accepts connections: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let _: () = redis::cmd("AUTH").arg("admin").arg(admin_password).query(&mut c).map_err(|e| format!("AUTH: {e}"))?;
    let pong: String = redis::cmd("PING").query(&mut c).map_err(|e| format!("PING: {e}"))?;
    (pong == "PONG").then_some(c).ok_or(format!("PING: {pong}"))
}

/// The seed of this run: `TCP_FUZZ_SEED`, or a new one.
pub fn seed() -> u64 {
    std::env::var("TCP_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random)
}

/// Commands (and subcommands) never sent. They stop the server, make it connect to addresses
/// taken from the arguments (a test sends traffic to loopback only; a random word would even
/// be looked up in DNS), or change its passwords, port or limits, after which the rest of the
/// run would test nothing.
fn excluded(args: &[Vec<u8>]) -> bool {
    let word = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).to_ascii_lowercase()).unwrap_or_default();
    let name = word(0);
    matches!(
        name.as_str(),
        "shutdown" | "slaveof" | "replicaof" | "migrate" | "debug" | "pxpassword" | "sync" | "psync"
    ) || name.starts_with("slotsmgrt")
        || (name == "config" && !matches!(word(1).as_str(), "get" | "resetstat" | "help"))
        || (name == "pkcluster" && word(1) == "slotsslaveof")
        || (name == "client" && word(1) == "pause")
        || (name == "pxroute" && word(1) == "set")
}

/// Commands whose reply may wait (a blocking pop, WAIT) or never come as one reply per
/// request (MONITOR, a replication stream): a session sending them expects no count.
fn open_ended(name: &[u8]) -> bool {
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    matches!(
        name.as_str(),
        "blpop"
            | "brpop"
            | "brpoplpush"
            | "blmove"
            | "bzpopmin"
            | "bzpopmax"
            | "blmpop"
            | "bzmpop"
            | "wait"
            | "monitor"
            | "pkrepl"
            | "subscribe"
            | "psubscribe"
    )
}

const KEYWORDS: &[&str] = &[
    "EX",
    "PX",
    "EXAT",
    "PXAT",
    "NX",
    "XX",
    "KEEPTTL",
    "GET",
    "SET",
    "WITHSCORES",
    "LIMIT",
    "COUNT",
    "MATCH",
    "TYPE",
    "BY",
    "ASC",
    "DESC",
    "ALPHA",
    "STORE",
    "REV",
    "BYSCORE",
    "BYLEX",
    "LEFT",
    "RIGHT",
    "BEFORE",
    "AFTER",
    "INCR",
    "CH",
    "GT",
    "LT",
    "WEIGHTS",
    "AGGREGATE",
    "SUM",
    "MIN",
    "MAX",
    "RANK",
    "MAXLEN",
    "LEN",
    "IDX",
    "WITHVALUES",
    "INFO",
    "LIST",
    "KILL",
    "SETNAME",
    "GETNAME",
    "ID",
    "RESETSTAT",
    "HELP",
    "ADDSLOTS",
    "DELSLOTS",
    "WRITABLE",
    "LEASE",
    "FENCE",
    "UNFENCE",
    "SLOTS",
    "ENCODING",
    "FREQ",
    "IDLETIME",
    "admin",
    "default",
    "AUTH",
    "SETINFO",
    "NOACK",
    "string",
    "list",
    "hash",
    "set",
    "zset",
    "BIT",
    "BYTE",
    "AND",
    "OR",
    "XOR",
    "NOT",
];

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "-1",
    "-2",
    "10",
    "100",
    "-100",
    "1000",
    "65535",
    "65536",
    "1000000",
    "-1000000",
    "4294967296",
    "8589934592",
    "2147483648",
    "-2147483649",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551616",
    "-0",
    "+1",
    "01",
    "1e3",
    "0x10",
    " 1",
    "1 ",
    "3.5",
    "-3.5",
    "1e308",
    "-1e308",
    "1e309",
    "1e-320",
    "inf",
    "-inf",
    "+inf",
    "nan",
    "(1",
    "(1.5",
    "[a",
    "(a",
    "-",
    "+",
    "0-3",
    "0-65535",
    "65535-0",
    "1,2,3",
    "0-1048575",
    "99999999999",
];

/// Who a session authenticates as, first thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum User {
    Admin,
    Data,
    Nobody,
}

/// Draws requests and sessions from one seed.
pub struct Gen {
    rng: StdRng,
    names: Vec<(String, i64)>,
}

/// One session: the bytes written (in pieces, with pauses between them when `fragmented`), and
/// the replies to expect: `Some(n)` for n whole requests, `None` when any answer will do.
pub struct Session {
    pub kind: &'static str,
    pub user: User,
    pub pieces: Vec<Vec<u8>>,
    pub expect: Option<usize>,
    pub requests: usize,
}

impl Gen {
    pub fn new(seed: u64, names: &[(String, i64)]) -> Gen {
        Gen { rng: StdRng::seed_from_u64(seed), names: names.to_vec() }
    }

    fn pick<'a>(&mut self, from: &'a [&'a str]) -> &'a str {
        from.choose(&mut self.rng).expect("non-empty")
    }

    fn key(&mut self) -> Vec<u8> {
        let n = self.rng.random_range(0..12);
        // Half share a hashtag, so multi-key commands in sharding mode reach their data.
        if self.rng.random_bool(0.5) { format!("{{t}}k{n}") } else { format!("k{n}") }.into_bytes()
    }

    /// One argument, of a shape commands parse: keys, numbers at and past every limit, floats,
    /// ranges, keywords, binary, empty and long strings.
    pub fn arg(&mut self) -> Vec<u8> {
        match self.rng.random_range(0..100) {
            0..=29 => self.key(),
            30..=54 => self.pick(NUMBERS).as_bytes().to_vec(),
            55..=69 => self.pick(KEYWORDS).as_bytes().to_vec(),
            70..=74 => Vec::new(),
            75..=84 => {
                let len = self.rng.random_range(0..24);
                (0..len).map(|_| self.rng.random()).collect()
            }
            85..=92 => ["*", "k*", "[a-", "\\", "?", "*[", "{t}", "{", "}", "\r\n", "\"", "'"]
                .choose(&mut self.rng)
                .expect("patterns")
                .as_bytes()
                .to_vec(),
            93..=98 => vec![b'v'; self.rng.random_range(100..64 * 1024)],
            _ => vec![b'w'; self.rng.random_range(256 * 1024..2 << 20)],
        }
    }

    /// A command: a known name (in random case; sometimes a junk one), then its arguments.
    pub fn command(&mut self) -> Vec<Vec<u8>> {
        loop {
            let mut args = Vec::new();
            let (name, arity) = if self.rng.random_bool(0.03) {
                (self.arg(), 0)
            } else {
                let (name, arity) = self.names.choose(&mut self.rng).expect("command names").clone();
                let name = name
                    .chars()
                    .map(|c| if self.rng.random_bool(0.3) { c.to_ascii_uppercase() } else { c })
                    .collect::<String>();
                (name.into_bytes(), arity)
            };
            args.push(name);
            // Most requests have an arity the command accepts, so they reach its argument
            // parsing and its data; the rest test the arity checks.
            let fitting = match arity {
                n if n > 0 => Some((n - 1) as usize),
                n if n < 0 => Some((-n - 1) as usize + self.rng.random_range(0..4)),
                _ => None,
            };
            let count = match (fitting, self.rng.random_range(0..100)) {
                (Some(n), 0..=69) => n,
                (_, 0..=9) => 0,
                (_, 10..=89) => self.rng.random_range(1..5),
                (_, 90..=98) => self.rng.random_range(5..16),
                _ => self.rng.random_range(16..200),
            };
            for i in 0..count {
                // Subcommands and keys come first: a keyword or a key more often than chance.
                let arg = match (i, self.rng.random_range(0..10)) {
                    (0, 0..=2) => self.pick(KEYWORDS).as_bytes().to_vec(),
                    (0, 3..=7) => self.key(),
                    _ => self.arg(),
                };
                args.push(arg);
            }
            if !excluded(&args) {
                return args;
            }
        }
    }

    pub fn session(&mut self) -> Session {
        let user = match self.rng.random_range(0..100) {
            0..=59 => User::Admin,
            60..=84 => User::Data,
            _ => User::Nobody,
        };
        let (kind, pieces, expect, requests) = match self.rng.random_range(0..100) {
            // Whole requests, pipelined, sometimes written a few bytes at a time.
            0..=59 => {
                let n = if self.rng.random_bool(0.05) {
                    self.rng.random_range(20..300)
                } else {
                    self.rng.random_range(1..6)
                };
                let commands: Vec<Vec<Vec<u8>>> = (0..n).map(|_| self.command()).collect();
                let blocking = commands.iter().any(|c| open_ended(&c[0]));
                let mut bytes = Vec::new();
                for c in &commands {
                    encode(&mut bytes, c);
                }
                let pieces = if self.rng.random_bool(0.15) { self.fragments(bytes) } else { vec![bytes] };
                ("commands", pieces, (!blocking).then_some(n), n)
            }
            // Inline commands: words separated by spaces, quotes and all.
            60..=67 => {
                let mut line = Vec::new();
                for (i, word) in self.command().into_iter().enumerate() {
                    if i > 0 {
                        line.push(b' ');
                    }
                    line.extend(word.into_iter().filter(|b| *b != b'\n' && *b != b'\r'));
                }
                line.extend_from_slice(b"\r\n");
                ("inline", vec![line], None, 1)
            }
            // A request with a few bytes changed: lengths, types, terminators.
            68..=79 => {
                let mut bytes = Vec::new();
                encode(&mut bytes, &self.command());
                for _ in 0..self.rng.random_range(1..4) {
                    let at = self.rng.random_range(0..bytes.len());
                    match self.rng.random_range(0..4) {
                        0 => bytes[at] = self.rng.random(),
                        1 => {
                            bytes.remove(at);
                        }
                        2 => bytes.insert(at, *b"\r\n*$:-+9".choose(&mut self.rng).expect("bytes")),
                        _ => bytes.truncate(at.max(1)),
                    }
                }
                ("mutated", vec![bytes], None, 1)
            }
            // Lengths far past any limit, announced and then not (or barely) sent.
            80..=89 => {
                let big = *[1u64 << 20, 1 << 30, (1 << 31) - 1, 1 << 31, 1 << 32, 1 << 40, 1 << 62, u64::MAX]
                    .choose(&mut self.rng)
                    .expect("sizes");
                let header = match self.rng.random_range(0..3) {
                    0 => format!("*2\r\n$3\r\nGET\r\n${big}\r\n"),
                    1 => format!("*{big}\r\n$3\r\nSET\r\n"),
                    _ => format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${big}\r\n"),
                };
                let mut bytes = header.into_bytes();
                bytes.extend(std::iter::repeat_n(b'z', self.rng.random_range(0..100_000)));
                ("oversized", vec![bytes], None, 1)
            }
            // A request cut short, then the client goes away.
            _ => {
                let mut bytes = Vec::new();
                encode(&mut bytes, &self.command());
                let keep = self.rng.random_range(0..bytes.len());
                bytes.truncate(keep);
                ("truncated", vec![bytes], None, 1)
            }
        };
        Session { kind, user, pieces, expect, requests }
    }

    fn fragments(&mut self, bytes: Vec<u8>) -> Vec<Vec<u8>> {
        let mut pieces = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = self.rng.random_range(1..=rest.len().min(7));
            pieces.push(rest[..n].to_vec());
            rest = &rest[n..];
            if pieces.len() > 40 {
                pieces.push(rest.to_vec());
                break;
            }
        }
        pieces
    }
}

/// Encodes a request as clients do: an array of bulk strings.
pub fn encode(out: &mut Vec<u8>, args: &[Vec<u8>]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// The length of the whole RESP2 or RESP3 reply at the front of `buf`: `Ok(None)` while it is
/// incomplete, an error for bytes no reply may hold.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, String> {
    fn line(buf: &[u8], at: usize) -> Option<(usize, &[u8])> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((end + 2, &buf[at + 1..end]))
    }
    fn number(text: &[u8]) -> Result<i64, String> {
        std::str::from_utf8(text).ok().and_then(|t| t.parse().ok()).ok_or_else(|| format!("bad length {text:?}"))
    }
    fn frame(buf: &[u8], at: usize, depth: usize) -> Result<Option<usize>, String> {
        if at >= buf.len() {
            return Ok(None);
        }
        if depth > 32 {
            return Err("a reply nested past 32 levels".into());
        }
        let Some((next, text)) = line(buf, at) else { return Ok(None) };
        match buf[at] {
            b'+' | b'-' | b':' | b',' | b'_' | b'#' | b'(' => Ok(Some(next)),
            b'$' | b'=' | b'!' => match number(text)? {
                n if n < 0 => Ok(Some(next)),
                n => {
                    let end = next + n as usize + 2;
                    if buf.len() < end {
                        return Ok(None);
                    }
                    if &buf[end - 2..end] != b"\r\n" {
                        return Err("a bulk reply not ended by CRLF".into());
                    }
                    Ok(Some(end))
                }
            },
            kind @ (b'*' | b'~' | b'>' | b'%' | b'|') => {
                let n = number(text)?.max(0) as usize * if matches!(kind, b'%' | b'|') { 2 } else { 1 };
                let mut pos = next;
                for _ in 0..n {
                    match frame(buf, pos, depth + 1)? {
                        Some(end) => pos = end,
                        None => return Ok(None),
                    }
                }
                Ok(Some(pos))
            }
            other => Err(format!("a reply starting with byte {other:#04x}")),
        }
    }
    frame(buf, 0, 0)
}

/// How a session ended.
struct Outcome {
    replies: usize,
    errors: Vec<String>,
    closed: bool,
}

/// Writes the session and reads its replies until it has what it expects, the server closes,
/// or `wait` passes. A reply that is not valid RESP is an error.
fn play(target: &Target, session: &Session, wait: Duration) -> Result<Outcome, String> {
    let port = target.port;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).ok();
    let mut out = Outcome { replies: 0, errors: Vec::new(), closed: false };
    let mut skip = 0;
    let login = match session.user {
        User::Admin => target.admin_password.as_deref().map(|pw| ("admin", pw)),
        User::Data => target.user_password.as_deref().map(|pw| ("default", pw)),
        User::Nobody => None,
    };
    if let Some((user, pw)) = login {
        let mut auth = Vec::new();
        encode(&mut auth, &[b"AUTH".to_vec(), user.as_bytes().to_vec(), pw.as_bytes().to_vec()]);
        stream.write_all(&auth).map_err(|e| format!("write AUTH: {e}"))?;
        skip = 1;
    }
    for (i, piece) in session.pieces.iter().enumerate() {
        if stream.write_all(piece).is_err() {
            // The server closed on an earlier piece (a protocol error): what it sent is read below.
            break;
        }
        if i + 1 < session.pieces.len() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let want = session.expect.map(|n| n + skip);
    let deadline = Instant::now() + wait;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Count whole replies; keep only the unparsed tail.
        loop {
            let parsed = reply_len(&buf).map_err(|e| {
                let shown = String::from_utf8_lossy(&buf[..buf.len().min(300)]).into_owned();
                format!("reply {} (counting AUTH's) is not RESP: {e}; it starts {shown:?}", out.replies)
            })?;
            match parsed {
                Some(len) => {
                    if buf[0] == b'-' {
                        let text = String::from_utf8_lossy(&buf[1..len.min(40)]);
                        out.errors.push(text.split(['\r', '\'']).next().unwrap_or_default().to_string());
                    }
                    out.replies += 1;
                    buf.drain(..len);
                }
                None => break,
            }
        }
        if want.is_some_and(|n| out.replies >= n) {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left)).ok();
        match stream.read(&mut chunk) {
            Ok(0) => {
                out.closed = true;
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
            Err(_) => {
                out.closed = true; // reset: the server closed with our bytes unread
                break;
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    if let Some(n) = want {
        if out.replies < n && !out.closed {
            return Err(format!(
                "{} replies of {n} within {wait:?}, and the connection is still open ({} bytes of a reply pending)",
                out.replies,
                buf.len()
            ));
        }
    }
    out.replies = out.replies.saturating_sub(skip);
    Ok(out)
}

/// Runs sessions for `duration`, calling `alive` every few sessions (a check the server still
/// serves others); stops at the first failure, whose message holds the seed and the session.
pub fn run(
    target: &Target,
    seed: u64,
    duration: Duration,
    mut alive: impl FnMut() -> Result<(), String>,
) -> Result<Stats, String> {
    let mut gen = Gen::new(seed, &target.names);
    let mut stats = Stats::default();
    let started = Instant::now();
    while started.elapsed() < duration {
        let session = gen.session();
        let wait = if session.expect.is_some() { Duration::from_secs(20) } else { Duration::from_millis(150) };
        let outcome = play(target, &session, wait).map_err(|e| {
            let bytes: Vec<u8> = session.pieces.concat();
            let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(600)]).into_owned();
            format!(
                "seed {seed} (replay with TCP_FUZZ_SEED={seed}), session {} ({}, as {:?}): {e}; sent {} bytes: {shown:?}",
                stats.sessions, session.kind, session.user, bytes.len()
            )
        })?;
        stats.sessions += 1;
        stats.requests += session.requests as u64;
        stats.replies += outcome.replies as u64;
        for e in outcome.errors {
            *stats.errors.entry(e).or_default() += 1;
        }
        stats.closed_by_server += outcome.closed as u64;
        if stats.sessions % 25 == 0 {
            alive().map_err(|e| format!("seed {seed}, after session {}: {e}", stats.sessions))?;
        }
    }
    alive().map_err(|e| format!("seed {seed}, at the end: {e}"))?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_reader_knows_whole_replies() {
        assert_eq!(reply_len(b"+OK\r\n"), Ok(Some(5)));
        assert_eq!(reply_len(b"$3\r\nabc\r\n+x"), Ok(Some(9)));
        assert_eq!(reply_len(b"*2\r\n:1\r\n$-1\r\n"), Ok(Some(13)));
        assert_eq!(reply_len(b"%1\r\n+a\r\n:1\r\n"), Ok(Some(12)));
        assert_eq!(reply_len(b"*2\r\n:1\r\n"), Ok(None));
        assert!(reply_len(b"?\r\n").is_err());
        assert!(reply_len(b"$3\r\nabcd\r\n").is_err());
    }

    #[test]
    fn one_seed_one_sequence_and_no_excluded_command() {
        let names: Vec<(String, i64)> =
            [("get", 2), ("config", -2), ("shutdown", -1), ("pkcluster", -2)].map(|(n, a)| (n.to_string(), a)).to_vec();
        let (mut a, mut b) = (Gen::new(7, &names), Gen::new(7, &names));
        for _ in 0..500 {
            let (x, y) = (a.session(), b.session());
            assert_eq!(x.pieces, y.pieces);
        }
        let mut g = Gen::new(8, &names);
        for _ in 0..2000 {
            assert!(!excluded(&g.command()));
        }
    }
}
