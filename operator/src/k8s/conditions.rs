//! Status conditions (Ready, Progressing, Degraded, ReconciliationPaused, Applied, ConfigValid, Monitoring): pure helpers that
//! keep `lastTransitionTime` when a condition's status did not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const PAUSED: &str = "ReconciliationPaused";
/// Whether every object of the cluster (StatefulSets, volume sizes, Services...) could be
/// brought to what the spec says.
pub const APPLIED: &str = "Applied";
/// Whether every entry of `spec.config` is a valid option the nodes take (the others are left
/// out of pika.conf and named in the message).
pub const CONFIG_VALID: &str = "ConfigValid";
/// Only while `spec.monitoring` asks for a PodMonitor: whether it could be applied.
pub const MONITORING: &str = "Monitoring";

/// Sets condition `type_` in `conditions`. `now` is used only when the status changes.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Time,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let transition = match conditions.iter().find(|c| c.type_ == type_) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => now,
    };
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: transition,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let mut c = Vec::new();
        set(&mut c, READY, false, "Creating", "waiting for pods", Some(1), at(10));
        set(&mut c, READY, false, "Creating", "2 of 4 pods", Some(2), at(20));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, at(10));
        assert_eq!((c[0].message.as_str(), c[0].observed_generation), ("2 of 4 pods", Some(2)));
        set(&mut c, READY, true, "Running", "all slots served", Some(2), at(30));
        assert_eq!(c[0].last_transition_time, at(30));
        set(&mut c, PAUSED, true, "Paused", "spec.paused", Some(2), at(40));
        assert!(is_true(&c, READY) && is_true(&c, PAUSED) && !is_true(&c, DEGRADED));
        assert_eq!(c.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(), vec![READY, PAUSED], "sorted by type");
    }
}
