//! Pooled, pipelined connections to the nodes. A call is one encoded request; its answer is the
//! node's raw reply frame, forwarded unchanged. Each connection has a writer task (requests go
//! out in batches, in call order) and a reader task (replies matched to calls in order), so a
//! long pipeline never deadlocks on full socket buffers. A client always uses the same
//! connection to a node, which keeps its requests to that node in order.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use common::auth::{Credential, Passwords};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError {
    pub addr: String,
    pub why: String,
    /// Whether the request may have reached the node (its outcome is then unknown); false
    /// when it was never written (no connection): safe to send again, elsewhere too.
    pub sent: bool,
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "backend {} unavailable: {}", self.addr, self.why)?;
        if self.sent {
            f.write_str(" (the request was sent: it may have been executed)")?;
        }
        Ok(())
    }
}

impl std::error::Error for BackendError {}

pub type BackendReply = Result<Bytes, BackendError>;

struct Call {
    request: Bytes,
    reply: oneshot::Sender<BackendReply>,
}

struct Conn {
    tx: mpsc::UnboundedSender<Call>,
    alive: Arc<AtomicBool>,
}

/// Connections per (node address, table).
pub struct Pool {
    conns: Mutex<HashMap<(String, u32), Vec<Conn>>>,
    size: usize,
    /// The proxy's passwords: new connections authenticate with the current one (open ones
    /// stay authenticated when it changes: a password rotation).
    auth: Arc<ArcSwap<Passwords>>,
}

impl Pool {
    pub fn new(size: usize, auth: Arc<ArcSwap<Passwords>>) -> Pool {
        Pool { conns: Mutex::new(HashMap::new()), size: size.max(1), auth }
    }

    /// Sends `request` to `addr` for `table` on the connection `client` always uses; the reply
    /// arrives on the returned channel. Never blocks.
    pub fn send(&self, addr: &str, table: u32, client: u64, request: Bytes) -> oneshot::Receiver<BackendReply> {
        let (reply, rx) = oneshot::channel();
        let mut conns = self.conns.lock();
        let list = conns.entry((addr.to_string(), table)).or_default();
        let i = (client as usize) % self.size;
        while list.len() <= i {
            list.push(self.open(addr, table));
        }
        if !list[i].alive.load(Ordering::Acquire) {
            list[i] = self.open(addr, table);
        }
        if let Err(mpsc::error::SendError(call)) = list[i].tx.send(Call { request, reply }) {
            let _ =
                call.reply.send(Err(BackendError { addr: addr.into(), why: "connection closed".into(), sent: false }));
        }
        rx
    }

    fn open(&self, addr: &str, table: u32) -> Conn {
        let (tx, rx) = mpsc::unbounded_channel();
        let alive = Arc::new(AtomicBool::new(true));
        let credential = crate::proxy::data_credential(&self.auth.load());
        tokio::spawn(run(addr.to_string(), table, credential, rx, alive.clone()));
        Conn { tx, alive }
    }
}

/// Runs one connection until it fails (then every waiting call gets the error and the pool opens
/// a new connection for the next call).
async fn run(
    addr: String,
    table: u32,
    credential: Option<Credential>,
    mut rx: mpsc::UnboundedReceiver<Call>,
    alive: Arc<AtomicBool>,
) {
    let inflight: Arc<Mutex<VecDeque<oneshot::Sender<BackendReply>>>> = Default::default();
    let why = match common::client::connect(&addr, table, credential.as_ref()).await {
        Err(why) => why,
        Ok(stream) => {
            let (mut rd, mut wr) = stream.into_split();
            let writer = async {
                let mut out = BytesMut::new();
                while let Some(call) = rx.recv().await {
                    // Queue the reply slot before the bytes leave, then batch what else waits.
                    out.extend_from_slice(&call.request);
                    inflight.lock().push_back(call.reply);
                    while out.len() < 256 << 10 {
                        let Ok(call) = rx.try_recv() else { break };
                        out.extend_from_slice(&call.request);
                        inflight.lock().push_back(call.reply);
                    }
                    if let Err(e) = wr.write_all(&out).await {
                        return e.to_string();
                    }
                    out.clear();
                }
                "proxy shutting down".to_string()
            };
            let reader = async {
                let mut buf = BytesMut::with_capacity(64 << 10);
                loop {
                    match rd.read_buf(&mut buf).await {
                        Ok(0) => return "connection closed by the node".to_string(),
                        Ok(_) => {}
                        Err(e) => return e.to_string(),
                    }
                    loop {
                        match common::resp::take_frame(&mut buf) {
                            Ok(Some(frame)) => match inflight.lock().pop_front() {
                                Some(reply) => {
                                    let _ = reply.send(Ok(frame));
                                }
                                None => return "reply without a request".to_string(),
                            },
                            Ok(None) => break,
                            Err(e) => return format!("bad reply: {e}"),
                        }
                    }
                }
            };
            tokio::select! {
                why = writer => why,
                why = reader => why,
            }
        }
    };
    alive.store(false, Ordering::Release);
    tracing::debug!(%addr, %why, "backend connection ended");
    let err = BackendError { addr: addr.clone(), why, sent: true };
    for reply in inflight.lock().drain(..) {
        let _ = reply.send(Err(err.clone()));
    }
    rx.close();
    let unsent = BackendError { sent: false, ..err };
    while let Ok(call) = rx.try_recv() {
        let _ = call.reply.send(Err(unsent.clone()));
    }
}
