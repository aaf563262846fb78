//! pika-node's options: their names, whether `CONFIG SET` can change them on a running node,
//! the syntax of their values and their defaults. One table for the node (which applies them)
//! and the operator (which checks a cluster's `spec.config`, sets the live ones with
//! `CONFIG SET` and restarts the nodes for the others).

/// The syntax of an option's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// A password: from the file or the environment (`auth::env_name`), never from a command
    /// line or a cluster manifest; CONFIG GET shows it redacted.
    Secret,
    /// An integer, within the bounds (the node clamps some further).
    Int {
        min: i64,
        max: i64,
    },
    /// A byte count: `1024`, `64kb`, `128mb`, `1gb`.
    Size,
    /// `yes`/`no` (`true`/`false`, `1`/`0`).
    Flag,
    Port,
    /// One of Pika's options that mean nothing here: accepted and ignored, so Pika files load.
    Ignored,
}

/// One option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opt {
    pub name: &'static str,
    /// `CONFIG SET` changes it on a running node; the others take effect at the next start.
    pub live: bool,
    pub kind: Kind,
    /// The value a node has when its file does not set it.
    pub default: &'static str,
}

const ANY: Kind = Kind::Int { min: i64::MIN, max: i64::MAX };

const fn opt(name: &'static str, live: bool, kind: Kind, default: &'static str) -> Opt {
    Opt { name, live, kind, default }
}

const fn ignored(name: &'static str) -> Opt {
    Opt { name, live: false, kind: Kind::Ignored, default: "" }
}

/// Every option a pika.conf may hold.
pub const OPTIONS: &[Opt] = &[
    // The admin password (Pika's meaning): every command (common/src/auth.rs).
    opt("requirepass", true, Kind::Secret, ""),
    // Also accepted by AUTH while a password rotation runs (empty: none).
    opt("requirepass-previous", true, Kind::Secret, ""),
    // The user password (Pika's meaning): data commands only, none of `userblacklist`.
    opt("userpass", true, Kind::Secret, ""),
    opt("userpass-previous", true, Kind::Secret, ""),
    // Commands the user (not admin) may not run, comma-separated (Pika's syntax).
    opt("userblacklist", true, Kind::Text, ""),
    // What this node sends its masters: their `requirepass` (replication is admin).
    opt("masterauth", true, Kind::Secret, ""),
    opt("timeout", true, ANY, "0"),
    opt("maxclients", true, ANY, "20000"),
    // Largest request (all its arguments) a connection may send; larger: refused and closed.
    // Redis's name and default. New connections take a change.
    opt("client-query-buffer-limit", true, Kind::Size, "1gb"),
    opt("slowlog-log-slower-than", true, ANY, "10000"),
    opt("slowlog-max-len", true, ANY, "128"),
    opt("slot-log-size", true, Kind::Size, "4mb"),
    opt("slot-log-max", true, Kind::Size, "64mb"),
    opt("cache-maxmemory", true, Kind::Size, "128mb"),
    // Replicated acknowledgement: a write to a master slot is answered once this many of the
    // slot's replicas have it durable (0: asynchronous replication).
    opt("min-replica-acks", true, Kind::Int { min: 0, max: 16 }, "0"),
    opt("replica-ack-timeout-ms", true, Kind::Int { min: 1, max: 600_000 }, "2000"),
    opt("port", false, Kind::Port, "9221"),
    opt("bind", false, Kind::Text, "0.0.0.0"),
    opt("http-port", false, Kind::Port, "0"),
    // A second client port speaking TLS (0: none), beside the plain `port`, which a cluster
    // moving to TLS keeps until its clients have moved (common/src/tls.rs).
    opt("tls-port", false, Kind::Port, "0"),
    // PEM files, as cert-manager writes them: the certificate (and chain), its key, the CA.
    // Reloaded when they change on disk.
    opt("tls-cert-file", false, Kind::Text, ""),
    opt("tls-key-file", false, Kind::Text, ""),
    opt("tls-ca-cert-file", false, Kind::Text, ""),
    // Client certificates on the TLS port: no, optional, yes (Redis's name; its default is yes,
    // ours no: passwords authenticate, certificates are opt-in).
    opt("tls-auth-clients", false, Kind::Text, "no"),
    // Replicas connect to their masters' TLS port (the port `slotsslaveof` names).
    opt("tls-replication", false, Kind::Flag, "no"),
    opt("instance-mode", false, Kind::Text, "classic"),
    opt("default-slot-num", false, Kind::Int { min: 1, max: 1 << 16 }, "1024"),
    opt("databases", false, Kind::Int { min: 1, max: 8 }, "1"),
    opt("db-path", false, Kind::Text, "./db/"),
    opt("log-path", false, Kind::Text, "./log/"),
    opt("block-cache", false, Kind::Size, "128mb"),
    opt("write-buffer-size", false, Kind::Size, "8mb"),
    opt("max-write-buffer-num", false, ANY, "4"),
    opt("max-background-jobs", false, ANY, "2"),
    // Bytes per second RocksDB's flushes and compactions may write (0: unlimited).
    opt("rate-limiter-bandwidth", false, Kind::Size, "0"),
    opt("sync-writes", false, Kind::Flag, "no"),
    opt("start-fenced", false, Kind::Flag, "no"),
    ignored("daemonize"),
    ignored("pidfile"),
    ignored("thread-num"),
    ignored("thread-pool-size"),
    ignored("sync-thread-num"),
    ignored("dump-path"),
    ignored("dump-prefix"),
    ignored("dump-expire"),
    ignored("db-sync-path"),
    ignored("db-sync-speed"),
    ignored("binlog-file-size"),
    ignored("expire-logs-nums"),
    ignored("expire-logs-days"),
    ignored("root-connection-num"),
    ignored("slowlog-write-errorlog"),
    ignored("server-id"),
    ignored("write-binlog"),
    ignored("identify-binlog-type"),
    ignored("compression"),
    ignored("max-cache-statistic-keys"),
    ignored("small-compaction-threshold"),
    ignored("target-file-size-base"),
    ignored("max-bytes-for-level-base"),
    ignored("disable_auto_compactions"),
    ignored("max-subcompactions"),
    ignored("max-cache-files"),
    ignored("block-size"),
    ignored("share-block-cache"),
    ignored("cache-index-and-filter-blocks"),
    ignored("optimize-filters-for-hits"),
    ignored("level-compaction-dynamic-level-bytes"),
    ignored("sync-window-size"),
    ignored("max-conn-rbuf-size"),
    ignored("replication-num"),
    ignored("consensus-level"),
    ignored("slave-priority"),
    ignored("compact-cron"),
    ignored("compact-interval"),
    ignored("max-write-buffer-size"),
    ignored("bgsave-path"),
    ignored("loglevel"),
    ignored("slave-read-only"),
    ignored("slaveof"),
    ignored("max-background-flushes"),
    ignored("max-background-compactions"),
];

/// A value that parsed, by its option's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Text(String),
    Int(i64),
    Size(u64),
    Flag(bool),
    Port(u16),
    Ignored,
}

impl Parsed {
    // The accessors below are only called for options of their kind (`Config::set` and the
    // table agree; a node test sets every option of the table).
    pub fn text(self) -> String {
        match self {
            Parsed::Text(t) => t,
            other => panic!("not a text: {other:?}"),
        }
    }

    pub fn int(self) -> i64 {
        match self {
            Parsed::Int(n) => n,
            other => panic!("not an integer: {other:?}"),
        }
    }

    pub fn size(self) -> u64 {
        match self {
            Parsed::Size(n) => n,
            other => panic!("not a size: {other:?}"),
        }
    }

    pub fn flag(self) -> bool {
        match self {
            Parsed::Flag(b) => b,
            other => panic!("not a flag: {other:?}"),
        }
    }

    pub fn port(self) -> u16 {
        match self {
            Parsed::Port(p) => p,
            other => panic!("not a port: {other:?}"),
        }
    }
}

/// Shown by CONFIG GET for a secret that is set (an empty one shows empty: whether a password
/// is set is not a secret).
pub const REDACTED: &str = "<redacted>";

/// The option named `name` (case-insensitive).
pub fn find(name: &str) -> Option<&'static Opt> {
    OPTIONS.iter().find(|o| o.name.eq_ignore_ascii_case(name))
}

/// Parses `value` for option `name`; the error says why in a few words.
pub fn parse(name: &str, value: &str) -> Result<(&'static Opt, Parsed), String> {
    let opt = find(name).ok_or_else(|| "unknown option".to_string())?;
    let parsed = match opt.kind {
        Kind::Text | Kind::Secret => Parsed::Text(value.to_string()),
        Kind::Int { min, max } => {
            let n: i64 = value.trim().parse().map_err(|_| "not an integer".to_string())?;
            if !(min..=max).contains(&n) {
                return Err(format!("must be between {min} and {max}"));
            }
            Parsed::Int(n)
        }
        Kind::Size => Parsed::Size(parse_size(value).ok_or_else(|| "not a size (e.g. 128mb)".to_string())?),
        Kind::Flag => Parsed::Flag(match value.trim().to_ascii_lowercase().as_str() {
            "yes" | "true" | "1" => true,
            "no" | "false" | "0" => false,
            _ => return Err("expected yes or no".into()),
        }),
        Kind::Port => Parsed::Port(value.trim().parse().map_err(|_| "not a port".to_string())?),
        Kind::Ignored => Parsed::Ignored,
    };
    Ok((opt, parsed))
}

/// `1024`, `64kb`, `128mb`, `1gb` (case-insensitive; `k`/`m`/`g` also accepted).
pub fn parse_size(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let (digits, unit) = match lower.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let n: u64 = digits.parse().ok()?;
    let mult = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_parses_and_bad_values_say_why() {
        for o in OPTIONS {
            assert!(parse(o.name, o.default).is_ok(), "{}'s default {:?}", o.name, o.default);
        }
        assert_eq!(parse("Slot-Log-Size", "8mb").unwrap().1, Parsed::Size(8 << 20));
        assert_eq!(parse("nope", "1").unwrap_err(), "unknown option");
        assert_eq!(parse("default-slot-num", "0").unwrap_err(), "must be between 1 and 65536");
        assert_eq!(parse("sync-writes", "maybe").unwrap_err(), "expected yes or no");
        assert_eq!(parse("block-cache", "lots").unwrap_err(), "not a size (e.g. 128mb)");
        assert!(!find("block-cache").unwrap().live && find("slowlog-max-len").unwrap().live);
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("99999999999999999g"), None);
    }
}
