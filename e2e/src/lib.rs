//! End-to-end tests live in `tests/`: `local` (the operator's local runtime), `kube_apiserver`
//! (the chart and controllers on a real control plane), `kube_dataplane` (the controllers
//! driving real nodes). `kube/` builds the control plane's binaries. [`chaos`] is the fault
//! checker behind the `pika-chaos` binary.

pub mod chaos;

/// Path of a workspace binary next to the test executables (`target/<profile>/<name>`).
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let path = dir.join(name);
    assert!(path.exists(), "{} missing: build the workspace first (cargo build --workspace)", path.display());
    path
}

/// Ports for a local cluster (`pika-operator local`: group g, member m on base + 10*g + m): a
/// base with the 40 ports after it free (the nodes) and the next one for the proxy, all below
/// the kernel's ephemeral range. A node or proxy killed by a test must be able to listen on its
/// port again, and a port of that range may meanwhile be the source port of some outgoing
/// connection (pika-chaos's long runs met exactly that).
pub fn free_ports() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10000u16, ephemeral_low.saturating_sub(41).max(10001));
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    for i in 0..500u32 {
        let base = low + ((seed ^ std::process::id()).wrapping_add(i * 7919) % u32::from(high - low)) as u16;
        if (0..=40).all(|p| std::net::TcpListener::bind(("127.0.0.1", base + p)).is_ok()) {
            return (base, base + 40);
        }
    }
    panic!("no free range of 41 ports on loopback below {ephemeral_low}");
}

/// The admin password the tests give the local runtime (`PIKA_ADMIN_PASSWORD`): they ask the
/// nodes directly, as an operations team would, and that takes the admin user.
pub const ADMIN_PASSWORD: &str = "e2e-admin-password";

/// A `redis://` URL of `addr` (`host:port`) as the admin user.
pub fn admin_url(addr: &str) -> String {
    format!("redis://admin:{ADMIN_PASSWORD}@{addr}/")
}

/// Full syncs the node at `addr` (`host:port`) has served so far (`INFO stats`, `sync_full`).
pub fn full_syncs_served(addr: &str) -> u64 {
    let mut c = redis::Client::open(admin_url(addr)).unwrap().get_connection().unwrap();
    full_syncs_served_on(&mut c).expect("INFO stats has sync_full")
}

/// [`full_syncs_served`] on an open connection (None: no answer, or no such field).
pub fn full_syncs_served_on(c: &mut redis::Connection) -> Option<u64> {
    let info: String = redis::cmd("INFO").arg("stats").query(c).ok()?;
    info.lines().find_map(|l| l.strip_prefix("sync_full:"))?.trim().parse().ok()
}
