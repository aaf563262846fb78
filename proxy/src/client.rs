//! One client connection: parse every request in the buffer, start them all (so pipelines reach
//! the nodes as pipelines), then answer in request order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use common::resp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::commands::{self, Kind, Local};
use crate::proxy::{error, resolve, Pending, Proxy};
use crate::route::RouteUpdate;

static CLIENT_IDS: AtomicU64 = AtomicU64::new(1);

struct Session {
    id: u64,
    table: u32,
    authed: bool,
    quit: bool,
}

pub async fn serve(proxy: Arc<Proxy>, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    proxy.metrics.connections.inc();
    let mut session = Session {
        id: CLIENT_IDS.fetch_add(1, Ordering::Relaxed),
        table: 0,
        authed: proxy.config.password.is_none(),
        quit: false,
    };
    if let Err(e) = run(&proxy, &mut stream, &mut session).await {
        tracing::debug!(error = %e, "client connection closed");
    }
    proxy.metrics.connections.dec();
}

async fn run(proxy: &Arc<Proxy>, stream: &mut TcpStream, session: &mut Session) -> std::io::Result<()> {
    let mut input = BytesMut::with_capacity(16 << 10);
    let mut output = BytesMut::new();
    let mut decoder = resp::RequestDecoder::default();
    let mut pending: Vec<(Instant, Pending)> = Vec::new();
    loop {
        let mut broken = None;
        loop {
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
        }
        if let Some(e) = broken {
            resp::write_error(&mut output, &format!("ERR {e}"));
            session.quit = true;
        }
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
        if session.quit {
            return Ok(());
        }
        tokio::select! {
            read = stream.read_buf(&mut input) => {
                if read? == 0 {
                    return Ok(());
                }
            }
            _ = proxy.shutdown.notified() => return Ok(()),
        }
    }
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
    if !session.authed && !matches!(kind, Some(Kind::Local(Local::Auth | Local::Quit))) {
        return err("ERR NOAUTH Authentication required.");
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
        Local::Auth => match (&proxy.config.password, args.len()) {
            (_, n) if n != 2 => err("ERR wrong number of arguments for 'auth' command"),
            (None, _) => err("ERR Client sent AUTH, but no password is set"),
            (Some(pw), _) if pw.as_bytes() == &args[1][..] => {
                session.authed = true;
                ok()
            }
            _ => {
                session.authed = false;
                err("ERR invalid password")
            }
        },
        Local::Select => {
            let id = args.get(1).and_then(|a| std::str::from_utf8(a).ok()).and_then(|s| s.parse::<u32>().ok());
            match id {
                None => err("ERR invalid DB index for 'select'"),
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

/// The proxy's own INFO: routing epoch, groups, holds.
fn info(proxy: &Proxy) -> String {
    let routes = proxy.routes();
    let m = &proxy.metrics;
    let mut out = format!(
        "# Proxy\r\nversion:{}\r\nroute_epoch:{}\r\nconnected_clients:{}\r\nheld_slots:{}\r\nheld_requests:{}\r\n\
         total_requests:{}\r\nbackend_errors:{}\r\nretries:{}\r\nroute_refreshes:{}\r\n\r\n# Routes\r\n",
        env!("CARGO_PKG_VERSION"),
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
/// `PXREFRESH`, `SHUTDOWN` (stops the proxy, as Redis's does the server).
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
