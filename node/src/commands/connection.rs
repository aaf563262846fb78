//! Connection commands: AUTH, PING, ECHO, SELECT, QUIT, HELLO, CLIENT, WAIT.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::auth::Role;
use common::handshake::{self, ClientCommand, HandshakeError, HelloValue};

use super::args::{self, is};
use super::{ConnCtx, Spec, NO_AUTH};
use crate::config::InstanceMode;
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;

pub fn specs() -> Vec<Spec> {
    vec![
        Spec::conn("auth", -2, NO_AUTH, auth),
        Spec::conn("ping", -1, 0, ping),
        Spec::conn("echo", 2, 0, echo),
        Spec::conn("select", 2, 0, select),
        Spec::conn("quit", -1, NO_AUTH, quit),
        Spec::conn("hello", -1, NO_AUTH, hello),
        Spec::conn("client", -2, 0, client),
        Spec::wait("wait", 3, 0, crate::durability::wait),
    ]
}

fn auth(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    let auth = handshake::parse_auth(&args[1..]).map_err(handshake_error)?;
    authenticate(ctx, &auth)
}

/// AUTH's check, also HELLO's `AUTH` option (the policy: common/src/auth.rs).
fn authenticate(ctx: &mut ConnCtx, auth: &handshake::Auth) -> CmdResult<Reply> {
    let passwords = ctx.server.config.read().passwords();
    match passwords.authenticate(auth.user.as_deref(), &auth.password) {
        Ok(role) => {
            ctx.session.role = role;
            Ok(Reply::Ok)
        }
        Err(e) => {
            ctx.session.role = passwords.after_failed_auth(ctx.session.role, auth.user.as_deref());
            Err(CmdError::msg(e.to_string()))
        }
    }
}

fn handshake_error(e: HandshakeError) -> CmdError {
    CmdError::msg(e.to_string())
}

fn ping(_ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    match args.len() {
        1 => Ok(Reply::simple("PONG")),
        2 => Ok(Reply::Bulk(args[1].to_vec())),
        _ => Err(CmdError::Arity("ping".into())),
    }
}

fn echo(_ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    Ok(Reply::Bulk(args[1].to_vec()))
}

/// SELECT n: switch to table `db<n>` (docs/compatibility.md, "Tables (SELECT)").
fn select(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    let id = common::resp::parse_i64(&args[1])
        .filter(|n| (0..=u32::MAX as i64).contains(n))
        .ok_or_else(|| CmdError::err("invalid DB index for 'select'"))? as u32;
    if ctx.server.slots.snapshot().table(id).is_none() {
        return Err(CmdError::err("invalid Table for 'select'"));
    }
    ctx.session.table = id;
    ctx.session.info.table.store(id, Ordering::Relaxed);
    Ok(Reply::Ok)
}

fn quit(ctx: &mut ConnCtx, _args: &[Bytes]) -> CmdResult<Reply> {
    ctx.session.quit = true;
    Ok(Reply::Ok)
}

/// HELLO [2 [AUTH user pass] [SETNAME name]]: RESP2 only; RESP3 gets NOPROTO, as Redis answers an
/// unknown version, so clients fall back.
fn hello(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    let hello = handshake::parse_hello(args).map_err(handshake_error)?;
    if let Some(auth) = &hello.auth {
        authenticate(ctx, auth)?;
    }
    if let Some(name) = hello.name {
        *ctx.session.info.name.lock() = String::from_utf8_lossy(&name).into_owned();
    }
    if ctx.session.role == Role::None {
        return Err(CmdError::msg(common::auth::NOAUTH));
    }
    let mode = match ctx.server.slots.mode {
        InstanceMode::Classic => "standalone",
        InstanceMode::Sharding => "cluster",
    };
    let fields = handshake::hello_reply("pika", crate::VERSION, ctx.session.id, mode);
    let mut out = Vec::with_capacity(fields.len() * 2);
    for (field, value) in fields {
        out.push(Reply::bulk(field));
        out.push(match value {
            HelloValue::Text(text) => Reply::bulk(text),
            HelloValue::Int(n) => Reply::Int(n),
            HelloValue::EmptyList => Reply::Array(vec![]),
        });
    }
    Ok(Reply::Array(out))
}

fn client(ctx: &mut ConnCtx, args: &[Bytes]) -> CmdResult<Reply> {
    let command = handshake::parse_client(args).map_err(handshake_error)?;
    // Other clients' addresses, and ending their connections: admin's.
    if matches!(command, ClientCommand::List | ClientCommand::Kill(_)) {
        crate::dispatch::check_role(ctx.session.role, "client", super::ADMIN)?;
    }
    match command {
        ClientCommand::List => Ok(Reply::bulk(client_list(ctx))),
        ClientCommand::Info => {
            let me = ctx.session.info.id;
            let line = client_list(ctx).lines().find(|l| l.starts_with(&format!("id={me} "))).unwrap_or("").to_string();
            Ok(Reply::bulk(line + "\n"))
        }
        ClientCommand::Id => Ok(Reply::Int(ctx.session.id as i64)),
        ClientCommand::GetName => {
            let name = ctx.session.info.name.lock().clone();
            Ok(if name.is_empty() { Reply::Nil } else { Reply::bulk(name) })
        }
        ClientCommand::SetName(name) => {
            *ctx.session.info.name.lock() = String::from_utf8_lossy(&name).into_owned();
            Ok(Reply::Ok)
        }
        ClientCommand::Kill(filters) => client_kill(ctx, &filters),
        ClientCommand::SetInfo | ClientCommand::NoEvictOrTouch => Ok(Reply::Ok),
    }
}

fn client_list(ctx: &ConnCtx) -> String {
    let now = crate::storage::now_ms();
    let mut out = String::new();
    for c in ctx.server.clients.list() {
        let idle = now.saturating_sub(c.last_active_ms.load(Ordering::Relaxed)) / 1000;
        out.push_str(&format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags=N db={} cmd={}\n",
            c.id,
            c.addr,
            c.local,
            c.name.lock(),
            c.created.elapsed().as_secs(),
            idle,
            c.table.load(Ordering::Relaxed),
            c.last_cmd.lock(),
        ));
    }
    out
}

/// CLIENT KILL addr | CLIENT KILL [ID id] [ADDR addr] ...
fn client_kill(ctx: &mut ConnCtx, filters: &[Bytes]) -> CmdResult<Reply> {
    let mut by_id = None;
    let mut by_addr = None;
    match filters.len() {
        1 => by_addr = Some(String::from_utf8_lossy(&filters[0]).into_owned()),
        n if n % 2 == 0 && n > 0 => {
            for pair in filters.chunks(2) {
                if is(&pair[0], "ID") {
                    by_id = Some(args::int(&pair[1])? as u64);
                } else if is(&pair[0], "ADDR") {
                    by_addr = Some(String::from_utf8_lossy(&pair[1]).into_owned());
                } else if !is(&pair[0], "SKIPME") && !is(&pair[0], "TYPE") {
                    return Err(CmdError::Syntax);
                }
            }
        }
        _ => return Err(CmdError::Syntax),
    }
    let legacy = filters.len() == 1;
    let mut killed = 0;
    for c in ctx.server.clients.list() {
        let id_ok = by_id.is_none_or(|id| id == c.id);
        let addr_ok = by_addr.as_ref().is_none_or(|a| *a == c.addr.to_string());
        if id_ok && addr_ok {
            c.kill();
            killed += 1;
        }
    }
    match (legacy, killed) {
        (true, 0) => Err(CmdError::err("No such client")),
        (true, _) => Ok(Reply::Ok),
        (false, n) => Ok(Reply::Int(n)),
    }
}
