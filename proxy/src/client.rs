//! One client connection: parse every request in the buffer, start them all (so pipelines reach
//! the nodes as pipelines), then answer in request order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use common::auth::{self, Role};
use common::handshake::{self, ClientCommand};
use common::resp;
use common::tls::Stream;
use tokio::io::AsyncWriteExt;

use crate::commands::{self, Kind, Local};
use crate::proxy::{error, resolve, Pending, Proxy};
use crate::route::RouteUpdate;

static CLIENT_IDS: AtomicU64 = AtomicU64::new(1);

struct Session {
    id: u64,
    peer: String,
    /// CLIENT SETNAME / HELLO SETNAME.
    name: Option<Bytes>,
    table: u32,
    /// What the connection may run (common/src/auth.rs).
    role: Role,
    quit: bool,
}

/// A connection counted in the `connections` gauge (which `maxclients` reads) from its accept
/// until this is dropped: at the end of `serve`, or when a panic unwinds its task.
pub struct Counted(Arc<Proxy>);

impl Counted {
    pub fn new(proxy: &Arc<Proxy>) -> Counted {
        proxy.metrics.connections.inc();
        Counted(proxy.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.metrics.connections.dec();
    }
}

/// Serves one client connection, counted by the caller from its accept.
pub async fn serve(proxy: Arc<Proxy>, mut stream: Stream, _counted: Counted) {
    let _ = stream.tcp().set_nodelay(true);
    let mut session = Session {
        id: CLIENT_IDS.fetch_add(1, Ordering::Relaxed),
        peer: stream.tcp().peer_addr().map(|a| a.to_string()).unwrap_or_default(),
        name: None,
        table: 0,
        role: proxy.auth.load().initial_role(),
        quit: false,
    };
    if let Err(e) = run(&proxy, &mut stream, &mut session).await {
        tracing::debug!(error = %e, "client connection closed");
    }
    common::tls::close(stream).await;
}

/// Requests of one client sent on before their replies are written: a pipeline longer than
/// this goes in rounds. It bounds what a client that does not read its replies makes the proxy
/// hold: this many replies (and a round's output, flushed every [`FLUSH_AT`] bytes).
const MAX_IN_FLIGHT: usize = 128;
/// Replies are written once this much is buffered, and at the end of each round.
const FLUSH_AT: usize = 64 * 1024;

async fn run(proxy: &Arc<Proxy>, stream: &mut Stream, session: &mut Session) -> std::io::Result<()> {
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    let mut decoder = resp::RequestDecoder::with_limit(proxy.config.client_query_buffer_limit);
    let mut pending: Vec<(Instant, Pending)> = Vec::new();
    let mut draining = proxy.draining.subscribe();
    loop {
        let mut broken = None;
        // Whether requests may be left in `input` (a full round): then no read before the next.
        let mut full_round = false;
        loop {
            if pending.len() >= MAX_IN_FLIGHT {
                full_round = true;
                break;
            }
            match decoder.decode(&mut input) {
                Ok(Some(args)) if args.is_empty() => {}
                Ok(Some(args)) => {
                    pending.push((Instant::now(), handle(proxy, session, args).await));
                    if session.quit {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        for (started, p) in pending.drain(..) {
            output.extend_from_slice(&resolve(p).await);
            proxy.metrics.requests.inc();
            proxy.metrics.latency.observe(started.elapsed().as_secs_f64());
            // A client that does not read stops the proxy here (the socket is full), before
            // more of its requests are sent on.
            if output.len() >= FLUSH_AT {
                send(stream, &mut output).await?;
            }
        }
        if let Some(e) = broken {
            resp::write_error(&mut output, &format!("ERR {e}"));
            session.quit = true;
        }
        if !output.is_empty() {
            send(stream, &mut output).await?;
        }
        // Draining: every request read is answered; close before reading another.
        if session.quit || (*draining.borrow() && input.is_empty() && !full_round) {
            return Ok(());
        }
        if full_round {
            continue;
        }
        // Wait for input (on a plain connection without holding a buffer: ten thousand idle
        // clients cost no more than their sockets and tasks).
        if input.is_empty() {
            input = BytesMut::new();
        }
        if output.capacity() > FLUSH_AT {
            output = BytesMut::new();
        }
        let read = async {
            match proxy.config.timeout {
                Some(idle) => tokio::time::timeout(idle, stream.read_more(&mut input)).await.ok(),
                None => Some(stream.read_more(&mut input).await),
            }
        };
        tokio::select! {
            read = read => match read {
                None => return Ok(()), // idle past `timeout`
                Some(read) => {
                    if read? == 0 {
                        return Ok(());
                    }
                }
            },
            _ = draining.changed() => {}
            _ = proxy.shutdown.notified() => return Ok(()),
        }
    }
}

/// Writes the replies buffered in `output` (a TLS connection holds what it encrypts until
/// flushed).
async fn send(stream: &mut Stream, output: &mut BytesMut) -> std::io::Result<()> {
    stream.write_all(output).await?;
    if stream.is_tls() {
        stream.flush().await?;
    }
    output.clear();
    Ok(())
}

fn ok() -> Pending {
    Pending::Ready(Bytes::from_static(b"+OK\r\n"))
}

fn bulk(data: &[u8]) -> Pending {
    let mut out = BytesMut::new();
    resp::write_bulk(&mut out, data);
    Pending::Ready(out.freeze())
}

fn err(text: &str) -> Pending {
    Pending::Ready(error(text))
}

async fn handle(proxy: &Arc<Proxy>, session: &mut Session, args: Vec<Bytes>) -> Pending {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let kind = commands::classify(&name);
    let before_auth = matches!(kind, Some(Kind::Local(Local::Auth | Local::Quit | Local::Hello)));
    if session.role == Role::None && !before_auth {
        return err(auth::NOAUTH);
    }
    if session.role != Role::Admin && kind.is_some_and(Kind::admin_only) {
        return err(&auth::no_permission(&name));
    }
    match kind {
        Some(Kind::Local(local)) => handle_local(proxy, session, local, &args),
        Some(Kind::Admin) => handle_admin(proxy, &name, &args).await,
        _ => proxy.dispatch(session.table, session.id, args),
    }
}

fn handle_local(proxy: &Arc<Proxy>, session: &mut Session, local: Local, args: &[Bytes]) -> Pending {
    match local {
        Local::Ping => match args.len() {
            1 => Pending::Ready(Bytes::from_static(b"+PONG\r\n")),
            2 => bulk(&args[1]),
            _ => err("ERR wrong number of arguments for 'ping' command"),
        },
        Local::Echo if args.len() == 2 => bulk(&args[1]),
        Local::Echo => err("ERR wrong number of arguments for 'echo' command"),
        Local::Quit => {
            session.quit = true;
            ok()
        }
        Local::Auth => match handshake::parse_auth(&args[1..]) {
            _ if args.len() < 2 => err("ERR wrong number of arguments for 'auth' command"),
            Ok(given) => authenticate(proxy, session, &given).unwrap_or_else(|e| e),
            Err(e) => err(&e.to_string()),
        },
        Local::Hello => hello(proxy, session, args).unwrap_or_else(|e| e),
        Local::Client if args.len() < 2 => err("ERR wrong number of arguments for 'client' command"),
        Local::Client => client(session, args),
        Local::Select => {
            let id = args.get(1).and_then(|a| std::str::from_utf8(a).ok()).and_then(|s| s.parse::<u32>().ok());
            match id {
                None => err("ERR invalid DB index for 'select'"),
                // Table 0 always exists; libraries that select it on connect must not depend
                // on the proxy having its routes yet.
                Some(0) => {
                    session.table = 0;
                    ok()
                }
                Some(id) if proxy.routes().table(id).is_none() => err("ERR invalid Table for 'select'"),
                Some(id) => {
                    session.table = id;
                    ok()
                }
            }
        }
        Local::Info => bulk(info(proxy).as_bytes()),
        // redis-cli asks for the command table on start; an empty one is enough.
        Local::Command => Pending::Ready(Bytes::from_static(b"*0\r\n")),
    }
}

/// AUTH's check, also HELLO's `AUTH` option (the policy: common/src/auth.rs).
fn authenticate(proxy: &Proxy, session: &mut Session, given: &handshake::Auth) -> Result<Pending, Pending> {
    let passwords = proxy.auth.load();
    match passwords.authenticate(given.user.as_deref(), &given.password) {
        Ok(role) => {
            session.role = role;
            Ok(ok())
        }
        Err(e) => {
            session.role = passwords.after_failed_auth(session.role, given.user.as_deref());
            Err(err(&e.to_string()))
        }
    }
}

/// HELLO as the node answers it (protocol 2; NOPROTO for 3, which clients fall back from).
fn hello(proxy: &Proxy, session: &mut Session, args: &[Bytes]) -> Result<Pending, Pending> {
    let hello = handshake::parse_hello(args).map_err(|e| err(&e.to_string()))?;
    if let Some(given) = &hello.auth {
        authenticate(proxy, session, given)?;
    }
    if let Some(name) = hello.name {
        session.name = Some(name);
    }
    if session.role == Role::None {
        return Err(err(auth::NOAUTH));
    }
    // "standalone": to a client the proxy is one server (it routes; the client does not).
    let fields = handshake::hello_reply("pika-proxy", env!("CARGO_PKG_VERSION"), session.id, "standalone");
    let mut out = BytesMut::new();
    handshake::encode_hello_reply(&mut out, &fields);
    Ok(Pending::Ready(out.freeze()))
}

/// CLIENT ID/GETNAME/SETNAME/SETINFO/INFO about this connection to the proxy; LIST and KILL are
/// about a node's connections and belong to the node.
fn client(session: &mut Session, args: &[Bytes]) -> Pending {
    match handshake::parse_client(args) {
        Ok(ClientCommand::Id) => Pending::Ready(integer(session.id as i64)),
        Ok(ClientCommand::GetName) => match &session.name {
            Some(name) => bulk(name),
            None => Pending::Ready(Bytes::from_static(b"$-1\r\n")),
        },
        Ok(ClientCommand::SetName(name)) => {
            // An empty name clears it, as in Redis.
            session.name = (!name.is_empty()).then_some(name);
            ok()
        }
        Ok(ClientCommand::SetInfo | ClientCommand::NoEvictOrTouch) => ok(),
        Ok(ClientCommand::Info) => {
            let name = session.name.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            bulk(format!("id={} addr={} name={} db={}\n", session.id, session.peer, name, session.table).as_bytes())
        }
        Ok(ClientCommand::List | ClientCommand::Kill(_)) => err(commands::NOT_THROUGH_PROXY),
        Err(e) => err(&e.to_string()),
    }
}

fn integer(n: i64) -> Bytes {
    let mut out = BytesMut::new();
    resp::write_integer(&mut out, n);
    out.freeze()
}

/// The proxy's own INFO: routing epoch, groups, holds.
fn info(proxy: &Proxy) -> String {
    let routes = proxy.routes();
    let m = &proxy.metrics;
    let mut out = format!(
        "# Proxy\r\nversion:{}\r\nprocess_id:{}\r\nroute_epoch:{}\r\nconnected_clients:{}\r\nheld_slots:{}\r\nheld_requests:{}\r\n\
         total_requests:{}\r\nbackend_errors:{}\r\nretries:{}\r\nroute_refreshes:{}\r\n\r\n# Routes\r\n",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        routes.epoch,
        m.connections.get(),
        m.held_slots.get(),
        m.held_requests.get(),
        m.requests.get(),
        m.backend_errors.get(),
        m.retries.get(),
        m.refreshes.get(),
    );
    for line in routes.describe().lines().skip(1) {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// `PXROUTE SET ...` / `PXROUTE GET`, `PXHOLD <table> <slots>`, `PXRELEASE <table> <slots|all>`,
/// `PXREFRESH`, `PXPASSWORD <password> [<previous>]` (a rotation of the data password),
/// `SHUTDOWN` (stops the proxy, as Redis's does the server). The admin user's only.
async fn handle_admin(proxy: &Arc<Proxy>, name: &str, args: &[Bytes]) -> Pending {
    let arg = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).into_owned());
    let table_and_slots = || -> Result<(u32, Option<Vec<u32>>), String> {
        let table = arg(1).and_then(|t| t.parse().ok()).ok_or("ERR expected <table> <slots>")?;
        match arg(2).as_deref() {
            Some("all") if name == "pxrelease" => Ok((table, None)),
            Some(s) => common::slotset::parse_slots(s).map(|v| (table, Some(v))).map_err(|e| format!("ERR {e}")),
            None => Err("ERR expected <table> <slots>".into()),
        }
    };
    match name {
        "pxroute" => match arg(1).map(|s| s.to_ascii_lowercase()).as_deref() {
            Some("get") => bulk(proxy.routes().describe().as_bytes()),
            Some("set") => {
                let rest: Vec<&[u8]> = args[2..].iter().map(|a| &a[..]).collect();
                match RouteUpdate::parse(&rest).and_then(|u| proxy.set_route(u)) {
                    Ok(()) => ok(),
                    Err(e) => err(&e.to_string()),
                }
            }
            _ => err("ERR usage: PXROUTE SET <epoch> <table> <slot-count> [<group> <addr> <slots>]... | PXROUTE GET"),
        },
        "pxhold" | "pxrelease" if args.len() != 3 => {
            err(&format!("ERR wrong number of arguments for '{name}' command"))
        }
        "pxhold" => match table_and_slots() {
            Ok((table, Some(slots))) => {
                proxy.hold(table, &slots);
                tracing::info!(table, slots = %common::slotset::format_slots(&slots), "hold");
                ok()
            }
            Ok((_, None)) => err("ERR expected <table> <slots>"),
            Err(e) => err(&e),
        },
        "pxrelease" => match table_and_slots() {
            Ok((table, slots)) => {
                proxy.release(table, slots.as_deref());
                tracing::info!(table, "release");
                ok()
            }
            Err(e) => err(&e),
        },
        "pxpassword" => match args.len() {
            2 | 3 => {
                let (password, previous) = (arg(1).unwrap_or_default(), arg(2).unwrap_or_default());
                if password.is_empty() {
                    return err("ERR the password cannot be empty");
                }
                if !proxy.auth.load().admin.is_set() {
                    return err("ERR a data password needs an admin password (admin-password) first");
                }
                tracing::info!(previous = !previous.is_empty(), "data passwords changed");
                proxy.set_passwords(password, previous);
                ok()
            }
            _ => err("ERR usage: PXPASSWORD <password> [<previous password>]"),
        },
        "shutdown" => {
            tracing::info!("SHUTDOWN requested by a client");
            proxy.stop.notify_one();
            ok()
        }
        _ => match proxy.refresh().await {
            Ok(()) => ok(),
            Err(e) => err(&format!("ERR refresh failed: {e}")),
        },
    }
}
