//! Running work that may block on the disk without holding up an async worker.
//!
//! A RocksDB write can wait for seconds in a write stall (memtables or level-0 files piling up
//! faster than flushes and compactions clear them, as on a slow or saturated disk), and an fsync
//! as long. Run on an async worker, such a wait blocks every connection that worker serves;
//! with all workers caught in it, not even PING is answered and the operator fails over a
//! master that is only slow. [`off_worker`] hands the worker's other tasks to another thread
//! for the duration (Tokio's `block_in_place`), so only the caller waits.
//!
//! The hand-off costs a thread wake-up, too much for every write of a busy node: writes try
//! first without waiting ([`Store::write`](super::Store::write) asks RocksDB to fail instead of
//! stall) and only a write that would wait comes here.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work` where it may block: on a multi-threaded runtime's worker, after handing that
/// worker's tasks to another thread; anywhere else (a blocking-pool thread, a plain thread, a
/// current-thread runtime in a unit test) directly.
pub fn off_worker<R>(work: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
    }
}
