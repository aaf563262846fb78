//! One client connection: read, parse every complete request in the buffer, execute in order,
//! write all replies at once (pipelining costs one write per batch, not per command).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::resp;
use common::tls::Stream;
use std::os::fd::AsRawFd;
use tokio::io::AsyncWriteExt;

use crate::dispatch;
use crate::durability::Awaiting;
use crate::server::{ClientInfo, Server, Session};

/// Flush replies early once this much is buffered, so a long pipeline does not hold them all.
const FLUSH_AT: usize = 64 * 1024;

pub async fn serve(server: Arc<Server>, mut stream: Stream, addr: SocketAddr) {
    let _ = stream.tcp().set_nodelay(true);
    let local = stream.tcp().local_addr().unwrap_or(addr);
    let default_table = server.slots.snapshot().default_table;
    let registered = Registered::new(&server, addr, local, default_table);
    let info = registered.info.clone();
    let role = server.config.read().passwords().initial_role();
    let mut session = Session {
        id: info.id,
        table: default_table,
        role,
        info: info.clone(),
        quit: false,
        resp3: false,
        writes: Default::default(),
        socket: Some(stream.tcp().as_raw_fd()),
    };
    let result = run(&server, &mut stream, &mut session).await;
    if let Err(err) = result {
        tracing::debug!(client = %addr, error = %err, "connection closed");
    }
    common::tls::close(stream).await;
}

/// A connection's entry in the client list and the connection gauge, removed when dropped: also
/// when a command panics and tokio unwinds the connection's task, which would otherwise leave it
/// listed (and counted against `maxclients`) for good.
struct Registered {
    server: Arc<Server>,
    info: Arc<ClientInfo>,
}

impl Registered {
    fn new(server: &Arc<Server>, addr: SocketAddr, local: SocketAddr, table: u32) -> Registered {
        let info = server.clients.register(addr, local, table);
        server.metrics.connections.inc();
        Registered { server: server.clone(), info }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.server.metrics.connections.dec();
        self.server.clients.unregister(self.info.id);
    }
}

async fn run(server: &Arc<Server>, stream: &mut Stream, session: &mut Session) -> std::io::Result<()> {
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    // Replicated acknowledgement: replies from the first write on wait here, in order, until
    // the replicas confirm (see `durability`).
    let mut awaiting = Awaiting::default();
    let decoder_limit = server.config.read().client_query_buffer_limit;
    let mut decoder = resp::RequestDecoder::with_limit(decoder_limit);
    loop {
        // Execute everything already buffered.
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(args)) if args.is_empty() => continue,
                // A replica's replication stream: the connection changes protocol for good. A
                // copy of every key: admin only.
                Ok(Some(args)) if args[0].eq_ignore_ascii_case(b"pkrepl") => {
                    if let Err(refused) = dispatch::check_role(session.role, "pkrepl", crate::commands::ADMIN) {
                        resp::write_error(&mut output, &refused.to_string());
                        continue;
                    }
                    write_out(server, stream, &mut output, &mut awaiting).await?;
                    let rest = std::mem::take(&mut input);
                    crate::replication::master::serve(server, stream, rest, &args).await;
                    return Ok(());
                }
                Ok(Some(args)) => {
                    let reply = if dispatch::may_block(&args) {
                        // A blocking pop: while it waits, the connection is still read (into
                        // the buffer, up to the query limit), so a client that goes away or is
                        // killed ends the wait instead of leaving it registered for good. (Its
                        // waits hold nothing popped: dropping it there loses no write.)
                        let info = session.info.clone();
                        let exec = dispatch::execute(server, session, &args);
                        tokio::pin!(exec);
                        loop {
                            tokio::select! {
                                reply = &mut exec => break reply,
                                _ = info.kill_notify.notified() => return Ok(()),
                                // (Past the query limit, the client is not read until the
                                // wait ends.)
                                read = async {
                                    if input.len() >= decoder_limit {
                                        std::future::pending::<()>().await;
                                    }
                                    stream.read_more(&mut input).await
                                } => if closed(server, &info, read?) { return Ok(()) },
                            }
                        }
                    } else {
                        dispatch::execute(server, session, &args).await
                    };
                    if session.writes.fresh.is_empty() && awaiting.is_empty() {
                        reply.encode(&mut output);
                    } else {
                        awaiting.push(reply, std::mem::take(&mut session.writes.fresh));
                    }
                    if session.quit || server.is_shutting_down() || session.info.killed.load(Ordering::Acquire) {
                        write_out(server, stream, &mut output, &mut awaiting).await?;
                        return Ok(());
                    }
                    if output.len() >= FLUSH_AT || awaiting.len() >= Awaiting::MAX {
                        write_out(server, stream, &mut output, &mut awaiting).await?;
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    // The stream cannot be framed any more: answer and close, as Redis does.
                    awaiting.push(crate::reply::Reply::Error(format!("ERR {err}")), Vec::new());
                    write_out(server, stream, &mut output, &mut awaiting).await?;
                    return Ok(());
                }
            }
        }
        if !output.is_empty() || !awaiting.is_empty() {
            // Let every other connection with input run its commands before this one writes:
            // replies then leave in a burst, as from Redis's event loop, and the client is
            // woken while busy rather than from idle (on loopback the wake-up of an idle peer
            // is the dominant cost of a reply: pipelined GET went from 330k to 465k/s).
            tokio::task::yield_now().await;
            write_out(server, stream, &mut output, &mut awaiting).await?;
        }
        // Wait for more input (a plain connection without holding a buffer: idle connections
        // stay cheap).
        let idle = server.config.read().timeout;
        let read = async {
            if idle > 0 {
                tokio::time::timeout(Duration::from_secs(idle), stream.read_more(&mut input)).await.ok()
            } else {
                Some(stream.read_more(&mut input).await)
            }
        };
        tokio::select! {
            read = read => match read {
                None => return Ok(()), // idle timeout
                Some(read) => if closed(server, &session.info, read?) { return Ok(()) },
            },
            _ = session.info.kill_notify.notified() => return Ok(()),
            _ = server.shutdown_notify.notified() => return Ok(()),
        }
    }
}

/// Counts `n` bytes read from a client; whether it closed the connection instead (0).
fn closed(server: &Server, info: &ClientInfo, n: usize) -> bool {
    if n == 0 {
        return true;
    }
    server.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
    // Once per read, not per command: CLIENT LIST's idle time needs no finer clock.
    info.last_active_ms.store(crate::storage::now_ms(), Ordering::Relaxed);
    false
}

/// Sends the buffered replies, after the writes they acknowledge are durable (group commit)
/// and, in replicated mode, confirmed by the replicas.
async fn write_out(
    server: &Server,
    stream: &mut Stream,
    output: &mut BytesMut,
    awaiting: &mut Awaiting,
) -> std::io::Result<()> {
    if server.store.wal_pending() {
        server.store.commit_wal().await.map_err(std::io::Error::other)?;
    }
    if !awaiting.is_empty() {
        awaiting.settle(output).await;
    }
    server.stats.net_output_bytes.fetch_add(output.len() as u64, Ordering::Relaxed);
    stream.write_all(output).await?;
    if stream.is_tls() {
        // (TLS buffers what it encrypts until flushed.)
        stream.flush().await?;
    }
    output.clear();
    Ok(())
}
