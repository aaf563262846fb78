//! The master lease (docs/node.md, "Admin commands"): the operator grants this node the right to
//! accept writes as a master for a while (`pkcluster lease <ms>`), and renews it on every pass.
//! Once a lease has been granted, master slots refuse writes when it runs out, so a master the
//! operator can no longer reach (cut off, or stopped and resumed) stops acknowledging writes
//! before the operator promotes a replica in its place. A node never granted one (Pika's own
//! use, a node not run by the operator) has no such limit; a node started with `start-fenced`
//! (as the operator starts every node) needs one before its first write as a master. One lease per process: it is the
//! node's authority as a master, whatever its slots.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

static GRANTED: AtomicBool = AtomicBool::new(false);
/// Milliseconds since [`origin`] until which master slots accept writes.
static UNTIL_MS: AtomicU64 = AtomicU64::new(0);

/// The monotonic clock's origin for this process.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    origin().elapsed().as_millis() as u64
}

/// Grants (or renews) the lease for `ms` from now; 0 revokes it at once.
pub fn grant(ms: u64) {
    UNTIL_MS.store(now_ms().saturating_add(ms), Ordering::Release);
    GRANTED.store(true, Ordering::Release);
}

/// Master slots take no write until a lease is granted (a node started by the operator).
pub fn require() {
    UNTIL_MS.store(0, Ordering::Release);
    GRANTED.store(true, Ordering::Release);
}

/// Whether a lease was granted (or required) and has run out. Checked on every write to a master slot, with
/// the monotonic clock: a process stopped (SIGSTOP) past its lease finds it expired the moment
/// it runs again, before it serves the requests queued meanwhile.
pub fn expired() -> bool {
    GRANTED.load(Ordering::Acquire) && now_ms() >= UNTIL_MS.load(Ordering::Acquire)
}

/// How long ago the kernel received the last bytes of a connection's input: a grant counts
/// from there, not from when this process read it. A renewal that waited in the socket buffer
/// while the process was stopped (SIGSTOP, a frozen VM) would otherwise extend the lease from
/// the moment it resumes, long after the operator gave up on it and promoted a replica. None
/// where the kernel does not say (not Linux, not TCP).
pub fn input_age_ms(fd: std::os::fd::RawFd) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `info` and `len` are valid for writes of the sizes given; a bad descriptor
        // only makes the call fail.
        let rc = unsafe {
            libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, (&mut info as *mut libc::tcp_info).cast(), &mut len)
        };
        (rc == 0).then_some(info.tcpi_last_data_recv as u64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        None
    }
}

/// Milliseconds left (None: never granted), for INFO.
pub fn remaining_ms() -> Option<u64> {
    GRANTED.load(Ordering::Acquire).then(|| UNTIL_MS.load(Ordering::Acquire).saturating_sub(now_ms()))
}
