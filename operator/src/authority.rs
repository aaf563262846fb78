//! Whether this operator instance may still act on the data plane. Only the instance holding the
//! leader Lease acts; one that lost it (an API server it cannot reach, a process paused past its
//! Lease) must stop before another instance may take the Lease over, or the two would run the
//! same cutover in opposite directions (one rolling a move back while the other promotes it).
//!
//! The instance's authority is a deadline on its own monotonic clock: each successful renewal
//! extends it to `renew_deadline` after the renewal *began*, which is before the renew time the
//! Lease records, so the deadline passes before `lease_duration` after that record, when a
//! standby may take the Lease (as long as `renew_deadline < lease_duration` and the clocks do not
//! drift apart by the difference). Every [`crate::admin::DataPlane`] implementation checks it right before it
//! sends a request: a process stopped past its deadline finds it out when it runs again, before
//! it sends what it was about to send.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct Authority {
    /// None: no Lease (the local runtime, one process by construction).
    until: Option<Mutex<Option<Instant>>>,
    renew_deadline: Duration,
}

impl Authority {
    /// No Lease to lose.
    pub fn unlimited() -> Authority {
        Authority { until: None, renew_deadline: Duration::ZERO }
    }

    /// Granted by a Lease: none until the first renewal.
    pub fn leased(renew_deadline: Duration) -> Authority {
        Authority { until: Some(Mutex::new(None)), renew_deadline }
    }

    /// The Lease was renewed by a request that began at `began`.
    pub fn renewed(&self, began: Instant) {
        if let Some(until) = &self.until {
            *until.lock().expect("authority") = Some(began + self.renew_deadline);
        }
    }

    /// The Lease was lost: nothing more is sent.
    pub fn revoke(&self) {
        if let Some(until) = &self.until {
            *until.lock().expect("authority") = None;
        }
    }

    /// Whether a request may be sent now.
    pub fn valid(&self) -> bool {
        match &self.until {
            None => true,
            Some(until) => until.lock().expect("authority").is_some_and(|u| Instant::now() < u),
        }
    }

    /// The error text of a request not sent.
    pub const LAPSED: &'static str = "not sent: this operator instance's leadership lapsed (Lease not renewed in time)";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn authority_runs_out_a_renew_deadline_after_the_renewal_began() {
        let a = Authority::leased(Duration::from_secs(10));
        assert!(!a.valid(), "nothing before the first renewal");
        let began = Instant::now();
        tokio::time::advance(Duration::from_secs(2)).await;
        a.renewed(began);
        tokio::time::advance(Duration::from_millis(7_900)).await;
        assert!(a.valid());
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(!a.valid(), "10 s after the renewal began, not after it ended");
        a.renewed(Instant::now());
        a.revoke();
        assert!(!a.valid());
        assert!(Authority::unlimited().valid());
    }
}
