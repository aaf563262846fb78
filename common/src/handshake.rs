//! The handshake client libraries send when they connect: `HELLO`, `AUTH`, `CLIENT SETNAME`,
//! `CLIENT SETINFO`... Parsed here once so that the node and the proxy answer it alike (a library
//! that starts against a node must start against the proxy too).
//!
//! What clients rely on: `HELLO 3` answered with `NOPROTO` (redis-py and others then fall back to
//! RESP2 by themselves), `HELLO 2` with the server's fields, `AUTH [user] <password>` (the
//! Redis 6 form; the users: [`crate::auth`]), `CLIENT SETINFO` accepted (libraries send it on
//! every connect and ignore errors, but log them).

use bytes::Bytes;

/// The RESP versions served. RESP3 is not (yet): `HELLO 3` gets [`HandshakeError::NoProto`].
pub const PROTOCOL: i64 = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("NOPROTO unsupported protocol version")]
    NoProto,
    #[error("ERR Protocol version is not an integer or out of range")]
    BadProtocol,
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR Client names cannot contain spaces, newlines or special characters.")]
    BadName,
    #[error("ERR Unknown subcommand or wrong number of arguments for '{0}'. Try CLIENT HELP.")]
    UnknownClientSubcommand(String),
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`, version already checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    /// `AUTH user pass`.
    pub auth: Option<Auth>,
    pub name: Option<Bytes>,
}

/// Parses HELLO's arguments (`args[0]` is the command name). The version is checked first, as
/// Redis does: a client asking for RESP3 gets NOPROTO before anything else is looked at.
pub fn parse_hello(args: &[Bytes]) -> Result<Hello, HandshakeError> {
    let mut hello = Hello::default();
    let Some(version) = args.get(1) else { return Ok(hello) };
    match crate::resp::parse_i64(version) {
        Some(PROTOCOL) => {}
        Some(_) => return Err(HandshakeError::NoProto),
        None => return Err(HandshakeError::BadProtocol),
    }
    let mut i = 2;
    while i < args.len() {
        if args[i].eq_ignore_ascii_case(b"AUTH") && i + 2 < args.len() {
            hello.auth = Some(parse_auth(&args[i + 1..i + 3])?);
            i += 3;
        } else if args[i].eq_ignore_ascii_case(b"SETNAME") && i + 1 < args.len() {
            check_client_name(&args[i + 1])?;
            hello.name = Some(args[i + 1].clone());
            i += 2;
        } else {
            return Err(HandshakeError::Syntax);
        }
    }
    Ok(hello)
}

/// `AUTH`'s arguments: `<password>` or `<user> <password>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    pub user: Option<Bytes>,
    pub password: Bytes,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Auth({:?}, <redacted>)", self.user)
    }
}

/// Parses `AUTH`'s arguments (without the command name).
pub fn parse_auth(args: &[Bytes]) -> Result<Auth, HandshakeError> {
    match args {
        [password] => Ok(Auth { user: None, password: password.clone() }),
        [user, password] => Ok(Auth { user: Some(user.clone()), password: password.clone() }),
        _ => Err(HandshakeError::Syntax),
    }
}

/// Redis's rule for connection names: printable ASCII without spaces.
pub fn check_client_name(name: &[u8]) -> Result<(), HandshakeError> {
    if name.iter().any(|b| *b <= b' ' || *b > b'~') {
        return Err(HandshakeError::BadName);
    }
    Ok(())
}

/// The `CLIENT` sub-commands, by name and arity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    Id,
    GetName,
    SetName(Bytes),
    /// `SETINFO LIB-NAME|LIB-VER <value>`: accepted, as libraries send it on every connect.
    SetInfo,
    /// `NO-EVICT` / `NO-TOUCH on|off`: nothing to change here (no eviction, no LRU clock).
    NoEvictOrTouch,
    Info,
    List,
    /// `KILL` with its filters (the arguments after `KILL`).
    Kill(Vec<Bytes>),
}

/// Parses `CLIENT <sub> ...` (`args[0]` is `CLIENT`).
pub fn parse_client(args: &[Bytes]) -> Result<ClientCommand, HandshakeError> {
    let sub = args.get(1).map(|s| String::from_utf8_lossy(s).to_ascii_uppercase()).unwrap_or_default();
    Ok(match (sub.as_str(), args.len()) {
        ("ID", 2) => ClientCommand::Id,
        ("GETNAME", 2) => ClientCommand::GetName,
        ("SETNAME", 3) => {
            check_client_name(&args[2])?;
            ClientCommand::SetName(args[2].clone())
        }
        ("SETINFO", 4) => ClientCommand::SetInfo,
        ("NO-EVICT" | "NO-TOUCH", 3) => ClientCommand::NoEvictOrTouch,
        ("INFO", 2) => ClientCommand::Info,
        ("LIST", _) => ClientCommand::List,
        ("KILL", n) if n > 2 => ClientCommand::Kill(args[2..].to_vec()),
        _ => {
            let name = args.get(1).map(|s| String::from_utf8_lossy(s).into_owned()).unwrap_or_default();
            return Err(HandshakeError::UnknownClientSubcommand(name));
        }
    })
}

/// A value of HELLO's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloValue {
    Text(String),
    Int(i64),
    /// `modules`: none.
    EmptyList,
}

/// HELLO's reply as Redis lays it out: `server`, `version`, `proto`, `id`, `mode`, `role`,
/// `modules`, in that order.
pub fn hello_reply(server: &str, version: &str, id: u64, mode: &str) -> Vec<(&'static str, HelloValue)> {
    use HelloValue::*;
    vec![
        ("server", Text(server.into())),
        ("version", Text(version.into())),
        ("proto", Int(PROTOCOL)),
        ("id", Int(id as i64)),
        ("mode", Text(mode.into())),
        ("role", Text("master".into())),
        ("modules", EmptyList),
    ]
}

/// Encodes HELLO's reply as a RESP2 array (field, value, field, value...).
pub fn encode_hello_reply(out: &mut bytes::BytesMut, fields: &[(&'static str, HelloValue)]) {
    use crate::resp;
    resp::write_array_len(out, fields.len() * 2);
    for (field, value) in fields {
        resp::write_bulk(out, field.as_bytes());
        match value {
            HelloValue::Text(text) => resp::write_bulk(out, text.as_bytes()),
            HelloValue::Int(n) => resp::write_integer(out, *n),
            HelloValue::EmptyList => resp::write_array_len(out, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<Bytes> {
        text.split(' ').map(|s| Bytes::copy_from_slice(s.as_bytes())).collect()
    }

    #[test]
    fn hello_versions() {
        assert_eq!(parse_hello(&args("HELLO")), Ok(Hello::default()));
        assert_eq!(parse_hello(&args("HELLO 2")), Ok(Hello::default()));
        assert_eq!(parse_hello(&args("HELLO 3")), Err(HandshakeError::NoProto));
        // The version is checked before the rest: RESP3 with AUTH is still NOPROTO.
        assert_eq!(parse_hello(&args("HELLO 3 AUTH default pw")), Err(HandshakeError::NoProto));
        assert_eq!(parse_hello(&args("HELLO x")), Err(HandshakeError::BadProtocol));
        assert!(HandshakeError::NoProto.to_string().starts_with("NOPROTO "), "what clients match to fall back");
    }

    #[test]
    fn hello_options() {
        let hello = parse_hello(&args("HELLO 2 auth default pw SETNAME app")).unwrap();
        let auth = hello.auth.unwrap();
        assert_eq!((auth.user.as_deref(), auth.password.as_ref()), (Some(&b"default"[..]), &b"pw"[..]));
        assert_eq!(hello.name.as_deref(), Some(&b"app"[..]));
        assert_eq!(parse_hello(&args("HELLO 2 AUTH pw")), Err(HandshakeError::Syntax));
        assert_eq!(parse_hello(&args("HELLO 2 SETNAME")), Err(HandshakeError::Syntax));
        assert_eq!(parse_hello(&args("HELLO 2 SETNAME a\nb")), Err(HandshakeError::BadName));
    }

    #[test]
    fn client_subcommands() {
        assert_eq!(parse_client(&args("CLIENT setinfo LIB-NAME redis-py")), Ok(ClientCommand::SetInfo));
        assert_eq!(parse_client(&args("CLIENT SETNAME app")), Ok(ClientCommand::SetName(Bytes::from("app"))));
        assert_eq!(parse_client(&args("CLIENT SETNAME a\tb")), Err(HandshakeError::BadName));
        assert_eq!(parse_client(&args("CLIENT id")), Ok(ClientCommand::Id));
        assert_eq!(parse_client(&args("CLIENT KILL 1.2.3.4:5")), Ok(ClientCommand::Kill(args("1.2.3.4:5"))));
        assert_eq!(parse_client(&args("CLIENT ID extra")), Err(HandshakeError::UnknownClientSubcommand("ID".into())));
        assert_eq!(parse_client(&args("CLIENT")), Err(HandshakeError::UnknownClientSubcommand(String::new())));
    }

    #[test]
    fn hello_reply_layout() {
        let mut out = bytes::BytesMut::new();
        encode_hello_reply(&mut out, &hello_reply("pika-proxy", "0.1.0", 7, "standalone"));
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.starts_with("*14\r\n$6\r\nserver\r\n$10\r\npika-proxy\r\n"), "{text}");
        assert!(text.contains("$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:7\r\n"), "{text}");
        assert!(text.ends_with("$7\r\nmodules\r\n*0\r\n"), "{text}");
    }
}
