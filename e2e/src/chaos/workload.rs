//! The clients: each a thread with its own connection to the proxy, sending one write at a time
//! (SETs of new keys, RPUSHes of new elements onto shared lists, INCRs of shared counters) and
//! recording every one. A failed request is recorded as unknown and the connection replaced;
//! nothing is retried, so a value appears at most once unless the system applied it twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::history::{error_kind, in_doubt, keys, Entry, Op, Outcome};

/// How long a client waits for one reply before it counts the write as unknown. Longer than a
/// failover (the proxy holds requests for a slot without a master meanwhile).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Between two writes of one client: bounds the load (and the read-back) on a 2-core machine.
const THINK: Duration = Duration::from_millis(2);

pub struct Workload {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Entry>>>,
    /// Acknowledged writes so far, for progress lines.
    pub acked: Arc<std::sync::atomic::AtomicU64>,
    /// The longest wait for a reply so far, in milliseconds.
    pub max_wait_ms: Arc<Mutex<u64>>,
}

impl Workload {
    pub fn start(proxy: &str, clients: u32, seed: u64) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let max_wait_ms = Arc::new(Mutex::new(0));
        let threads = (0..clients)
            .map(|client| {
                let (stop, acked, max_wait_ms) = (stop.clone(), acked.clone(), max_wait_ms.clone());
                let url = format!("redis://{proxy}/");
                let rng = StdRng::seed_from_u64(seed ^ (u64::from(client) << 32));
                std::thread::spawn(move || run(client, &url, rng, &stop, &acked, &max_wait_ms))
            })
            .collect();
        Workload { stop, threads, acked, max_wait_ms }
    }

    /// Stops the clients and returns everything they did.
    pub fn finish(self) -> Vec<Entry> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads.into_iter().flat_map(|t| t.join().expect("client thread")).collect()
    }
}

fn connect(url: &str) -> Option<redis::Connection> {
    let client = redis::Client::open(url).ok()?;
    let conn = client.get_connection_with_timeout(Duration::from_secs(2)).ok()?;
    conn.set_read_timeout(Some(REPLY_TIMEOUT)).ok()?;
    conn.set_write_timeout(Some(REPLY_TIMEOUT)).ok()?;
    Some(conn)
}

fn next_op(client: u32, seq: u64, rng: &mut StdRng) -> Op {
    let value = keys::value(client, seq);
    match rng.random_range(0..100) {
        0..60 => Op::Set { key: keys::string(client, seq), value },
        60..85 => Op::Push { list: keys::list(rng.random_range(0..keys::LISTS)), element: value },
        _ => Op::Incr { counter: keys::counter(rng.random_range(0..keys::COUNTERS)) },
    }
}

/// Sends `op`; Acked only on the reply that command gives when it worked (else why not, and
/// whether it may have been applied).
fn send(conn: &mut redis::Connection, op: &Op) -> Result<(), (String, bool)> {
    let reply = match op {
        Op::Set { key, value } => redis::cmd("SET").arg(key).arg(value).query::<redis::Value>(conn),
        Op::Push { list, element } => redis::cmd("RPUSH").arg(list).arg(element).query(conn),
        Op::Incr { counter } => redis::cmd("INCR").arg(counter).query(conn),
    };
    match (op, reply) {
        (Op::Set { .. }, Ok(redis::Value::Okay)) => Ok(()),
        (Op::Push { .. } | Op::Incr { .. }, Ok(redis::Value::Int(_))) => Ok(()),
        (_, Ok(other)) => Err((format!("unexpected reply {other:?}"), true)),
        (_, Err(e)) => Err((error_kind(&e), in_doubt(&e))),
    }
}

fn run(
    client: u32,
    url: &str,
    mut rng: StdRng,
    stop: &AtomicBool,
    acked: &std::sync::atomic::AtomicU64,
    max_wait_ms: &Mutex<u64>,
) -> Vec<Entry> {
    let mut history = Vec::new();
    let mut conn = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        if conn.is_none() {
            conn = connect(url);
            if conn.is_none() {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        let op = next_op(client, seq, &mut rng);
        seq += 1;
        let sent = Instant::now();
        let result = send(conn.as_mut().expect("connected"), &op);
        let outcome = if result.is_ok() { Outcome::Acked } else { Outcome::Unknown };
        let replied = Instant::now();
        let waited = replied.duration_since(sent).as_millis() as u64;
        let mut max = max_wait_ms.lock().expect("max wait");
        *max = (*max).max(waited);
        drop(max);
        if outcome == Outcome::Acked {
            acked.fetch_add(1, Ordering::Relaxed);
        } else {
            conn = None;
        }
        let (error, in_doubt) = match result {
            Ok(()) => (None, false),
            Err((why, in_doubt)) => (Some(why), in_doubt),
        };
        history.push(Entry { op, outcome, error, in_doubt, sent, replied });
        std::thread::sleep(THINK);
    }
    history
}
