//! What the proxy does with each command: route by its keys, split by group, answer itself, fan
//! out to every group, or refuse. Pure classification; no I/O.

/// Where a command's keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// Redis's (first, last, step); negative `last` counts from the end (-1 = last argument).
    Range(i32, i32, i32),
    /// `numkeys` at this index, the keys after it; plus the destination at 1 if `dest`.
    NumKeys { at: usize, dest: bool },
}

/// How a command spanning several groups is split and merged (docs/compatibility.md, "Multi-key
/// commands").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Integer replies summed (DEL, EXISTS, UNLINK, TOUCH).
    Sum,
    /// One reply per key, back in key order (MGET).
    PerKey,
    /// Key/value pairs; `+OK` when every part is OK (MSET).
    Pairs,
}

/// Commands the proxy answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Ping,
    Echo,
    Select,
    Auth,
    Quit,
    Info,
    Command,
    /// HELLO and CLIENT: the handshake client libraries send on connect.
    Hello,
    Client,
}

/// Commands sent to every group's master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanOut {
    /// Integer replies summed (DBSIZE).
    Sum,
    /// `+OK` when every group answers OK (FLUSHDB, FLUSHALL: admin commands).
    AllOk,
    /// Any one group's answer (TIME).
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Routed by its keys; all of them must live in one group.
    Keyed(Keys),
    /// Split by group and merged.
    Split(Merge),
    Local(Local),
    FanOut(FanOut),
    /// PXROUTE, PXHOLD, PXRELEASE, PXREFRESH, SHUTDOWN (of the proxy).
    Admin,
    /// Refused with this error text.
    Refused(&'static str),
}

impl Kind {
    /// Commands only the admin user runs (common/src/auth.rs): the proxy's own admin commands,
    /// and FLUSHDB/FLUSHALL, admin on the nodes too.
    pub fn admin_only(self) -> bool {
        matches!(self, Kind::Admin | Kind::FanOut(FanOut::AllOk))
    }
}

pub const NOT_THROUGH_PROXY: &str = "ERR this command is not supported through pika-proxy; send it to a node";

/// The command's kind, by lower-cased name; `None` for a command the proxy does not know.
pub fn classify(name: &str) -> Option<Kind> {
    use Kind::*;
    const ONE: Keys = Keys::Range(1, 1, 1);
    Some(match name {
        "get" | "set" | "setnx" | "setex" | "psetex" | "getset" | "getdel" | "getex" | "append" | "strlen" | "incr"
        | "decr" | "incrby" | "decrby" | "incrbyfloat" | "getrange" | "substr" | "setrange" | "getbit" | "setbit"
        | "bitcount" | "bitpos" | "type" | "ttl" | "pttl" | "expiretime" | "pexpiretime" | "expire" | "pexpire"
        | "expireat" | "pexpireat" | "persist" | "hset" | "hmset" | "hsetnx" | "hget" | "hmget" | "hdel" | "hlen"
        | "hexists" | "hgetall" | "hkeys" | "hvals" | "hstrlen" | "hincrby" | "hincrbyfloat" | "hrandfield"
        | "hscan" | "lpush" | "rpush" | "lpushx" | "rpushx" | "lpop" | "rpop" | "llen" | "lindex" | "lrange"
        | "lset" | "linsert" | "lrem" | "ltrim" | "lpos" | "sadd" | "srem" | "scard" | "sismember" | "smismember"
        | "smembers" | "spop" | "srandmember" | "sscan" | "zadd" | "zincrby" | "zcard" | "zscore" | "zmscore"
        | "zcount" | "zlexcount" | "zrank" | "zrevrank" | "zrange" | "zrangebyscore" | "zrevrangebyscore"
        | "zrangebylex" | "zrevrangebylex" | "zrevrange" | "zrem" | "zremrangebyrank" | "zremrangebyscore"
        | "zremrangebylex" | "zpopmin" | "zpopmax" | "zrandmember" | "zscan" => Keyed(ONE),
        "object" => Keyed(Keys::Range(2, 2, 1)),
        "rpoplpush" | "lmove" | "smove" | "rename" | "renamenx" | "brpoplpush" | "blmove" | "zrangestore" => {
            Keyed(Keys::Range(1, 2, 1))
        }
        "blpop" | "brpop" => Keyed(Keys::Range(1, -2, 1)),
        "sunion" | "sinter" | "sdiff" | "sunionstore" | "sinterstore" | "sdiffstore" => Keyed(Keys::Range(1, -1, 1)),
        "zunionstore" | "zinterstore" | "zdiffstore" => Keyed(Keys::NumKeys { at: 2, dest: true }),
        "zunion" | "zinter" | "zdiff" | "zintercard" | "sintercard" => Keyed(Keys::NumKeys { at: 1, dest: false }),
        "del" | "unlink" | "exists" | "touch" => Split(Merge::Sum),
        "mget" => Split(Merge::PerKey),
        "mset" => Split(Merge::Pairs),
        // As Pika in sharding mode (docs/compatibility.md, "Commands refused in sharding mode"):
        // no atomicity across slots to offer.
        "msetnx" => Refused("ERR This command is not supported in current configuration"),
        "ping" => Local(self::Local::Ping),
        "echo" => Local(self::Local::Echo),
        "select" => Local(self::Local::Select),
        "auth" => Local(self::Local::Auth),
        "quit" => Local(self::Local::Quit),
        "info" => Local(self::Local::Info),
        "command" => Local(self::Local::Command),
        "hello" => Local(self::Local::Hello),
        "client" => Local(self::Local::Client),
        "dbsize" => FanOut(self::FanOut::Sum),
        "flushdb" | "flushall" => FanOut(self::FanOut::AllOk),
        "time" => FanOut(self::FanOut::Any),
        "pxroute" | "pxhold" | "pxrelease" | "pxrefresh" | "pxpassword" | "shutdown" => Admin,
        "keys" | "scan" | "randomkey" | "multi" | "exec" | "discard" | "watch" | "unwatch" | "eval" | "evalsha"
        | "script" | "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe" | "publish" | "monitor" | "config"
        | "slowlog" | "pkcluster" | "slotsinfo" | "slotshashkey" | "slotsscan" | "slotsdel" | "bgsave" | "save"
        | "lastsave" | "move" | "swapdb" | "wait" => Refused(NOT_THROUGH_PROXY),
        _ => return None,
    })
}

/// Blocking pops: they may wait on the node, so they get a connection of their own.
pub fn blocks(name: &str) -> bool {
    matches!(name, "blpop" | "brpop" | "brpoplpush" | "blmove")
}

/// Indices of the key arguments of `args` (name included at 0), or `None` when the command has
/// too few arguments for its key layout (the node will answer the arity error).
pub fn key_indices(keys: Keys, argc: usize, numkeys: impl Fn(usize) -> Option<usize>) -> Option<Vec<usize>> {
    match keys {
        Keys::Range(first, last, step) => {
            let last = if last < 0 { argc as i32 + last } else { last };
            if first as usize >= argc || last < first || last as usize >= argc {
                return None;
            }
            Some((first as usize..=last as usize).step_by(step as usize).collect())
        }
        Keys::NumKeys { at, dest } => {
            let n = numkeys(at)?;
            if n == 0 || at.checked_add(n)? >= argc {
                return None;
            }
            let mut out: Vec<usize> = if dest { vec![1] } else { Vec::new() };
            out.extend(at + 1..=at + n);
            Some(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(name: &str, argc: usize, numkeys: Option<usize>) -> Option<Vec<usize>> {
        match classify(name)? {
            Kind::Keyed(keys) => key_indices(keys, argc, |_| numkeys),
            _ => None,
        }
    }

    #[test]
    fn key_layouts() {
        assert_eq!(idx("get", 2, None), Some(vec![1]));
        assert_eq!(idx("get", 1, None), None, "arity left to the node");
        assert_eq!(idx("blpop", 4, None), Some(vec![1, 2]));
        assert_eq!(idx("lmove", 5, None), Some(vec![1, 2]));
        assert_eq!(idx("object", 3, None), Some(vec![2]));
        assert_eq!(idx("zunionstore", 6, Some(2)), Some(vec![1, 3, 4]));
        assert_eq!(idx("zunionstore", 4, Some(2)), None, "numkeys beyond the arguments");
        assert_eq!(idx("sintercard", 4, Some(2)), Some(vec![2, 3]));
        assert_eq!(idx("sunionstore", 4, None), Some(vec![1, 2, 3]));
    }

    #[test]
    fn kinds() {
        assert_eq!(classify("mget"), Some(Kind::Split(Merge::PerKey)));
        assert_eq!(classify("dbsize"), Some(Kind::FanOut(FanOut::Sum)));
        assert!(matches!(classify("msetnx"), Some(Kind::Refused(_))));
        assert!(matches!(classify("keys"), Some(Kind::Refused(_))));
        assert_eq!(classify("nosuchcommand"), None);
        let admin: Vec<&str> = ["pxroute", "flushall", "get", "shutdown", "dbsize"]
            .into_iter()
            .filter(|n| classify(n).unwrap().admin_only())
            .collect();
        assert_eq!(admin, ["pxroute", "flushall", "shutdown"]);
    }
}
