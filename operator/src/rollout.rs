//! Rolling update: every member restarted on its group's new spec (a new image, an option that
//! needs a restart) without a failed client request and without a full sync. The same for
//! both runtimes: a runtime says which members run an older spec ([`Member::outdated`]) and
//! restarts the one [`drive`] names (Kubernetes: deletes the pod, which the StatefulSet, on
//! `OnDelete`, recreates from the new template; the local runtime: stops and starts the process).
//!
//! One disruption per cluster at a time, one group at a time:
//! 1. nothing is restarted while a member of the cluster is down, or a replica is not caught
//!    up (streaming every slot of its group incrementally, lag under the threshold): the member
//!    restarted last is back, and has caught up, before the next one goes;
//! 2. in the first group with an outdated member, its outdated replicas restart one by one;
//! 3. then its master hands its slots to an updated replica (a planned switchover: hold,
//!    fence, lag 0, promote, route, release);
//! 4. then the old master, a replica now, restarts.
//!
//! Nothing is recorded: each pass derives the next step from the members' revisions and roles,
//! so an operator restarted midway goes on from where the cluster is (the switchover itself
//! records the new master before it promotes it, as every switchover does).

use std::collections::BTreeSet;

use crate::admin::{AdminError, DataPlane};
use crate::control::{Cluster, Journal, Member, Outcome, Record};
use crate::cutover::Limits;
use crate::switchover::{self, SwitchoverError};
use common::protocol::SyncStatus;
use common::slotset::format_slots;

/// What the rolling update does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Every member runs its group's spec.
    Done,
    /// Not now (a member down or catching up): why.
    Wait(String),
    /// Restart `member` of `group`: a replica, or the master of a group that has no replica.
    Restart { group: u32, member: String, master: bool },
    /// Hand group `group`'s master over to `to`, an updated replica, before it restarts.
    Switchover { group: u32, to: String },
}

/// How far the update is: members on their group's spec, of all members.
pub fn progress(cluster: &Cluster) -> (u32, u32) {
    let members = cluster.members.values().flatten();
    let total = members.clone().count() as u32;
    (total - members.filter(|m| m.outdated).count() as u32, total)
}

/// The first group with an outdated member.
pub fn current_group(cluster: &Cluster) -> Option<u32> {
    cluster.members.iter().find(|(_, ms)| ms.iter().any(|m| m.outdated)).map(|(&g, _)| g)
}

/// Whether the rolling update may take a step after `pass` (None: the pass failed): every
/// group had its master and nothing was waited for, no migration is in flight and no
/// switchover asked for is unfinished (`switching`). The same rule in every runtime.
pub fn may_step(pass: Option<&Outcome>, cluster: &Cluster, switching: bool) -> bool {
    pass.is_some_and(|out| out.degraded.is_none() && out.waiting.is_none())
        && cluster.in_flight.is_empty()
        && !switching
}

/// The next step, given the members not caught up with their master (`behind`, by name). Pure.
pub fn plan(cluster: &Cluster, record: &Record, behind: &BTreeSet<String>) -> Step {
    let Some(g) = current_group(cluster) else { return Step::Done };
    let everyone = || cluster.members.values().flatten();
    if let Some(down) = everyone().find(|m| m.addr.is_none()) {
        return Step::Wait(format!("{} is not running", down.name));
    }
    if let Some(late) = everyone().find(|m| behind.contains(&m.name)) {
        return Step::Wait(format!("{} is catching up with its master", late.name));
    }
    let Some(master) = record.groups.get(&g).and_then(|r| r.master.clone()) else {
        return Step::Wait(format!("group {g} has no known master"));
    };
    let members = &cluster.members[&g];
    let demoted = &record.groups[&g].demoted;
    if let Some(r) = members.iter().find(|m| m.outdated && m.name != master) {
        return Step::Restart { group: g, member: r.name.clone(), master: false };
    }
    let replicas: Vec<&Member> = members.iter().filter(|m| m.name != master).collect();
    if replicas.is_empty() {
        return Step::Restart { group: g, member: master, master: true };
    }
    match replicas.iter().find(|m| !m.outdated && !demoted.contains(&m.name)) {
        Some(to) => Step::Switchover { group: g, to: to.name.clone() },
        None => Step::Wait(format!("group {g} has no updated replica to take over from {master}")),
    }
}

/// Members that are not caught up: every running replica of every group must stream each slot
/// its master holds incrementally (not in a full sync) with lag at most `threshold`. A former
/// master still to re-sync counts as behind.
pub async fn behind(
    dp: &impl DataPlane,
    cluster: &Cluster,
    record: &Record,
    threshold: u64,
) -> Result<BTreeSet<String>, AdminError> {
    let mut behind = BTreeSet::new();
    for (g, members) in &cluster.members {
        let Some(rec) = record.groups.get(g) else { continue };
        behind.extend(rec.demoted.iter().cloned());
        let Some(master) = rec.master.as_ref() else { continue };
        let Some(master_addr) = members.iter().find(|m| &m.name == master).and_then(|m| m.addr.clone()) else {
            continue;
        };
        let slots = dp.writable(&master_addr).await?;
        if slots.is_empty() {
            continue;
        }
        let info = dp.slot_info(&master_addr, &format_slots(&slots)).await?;
        for m in members.iter().filter(|m| &m.name != master) {
            let Some(addr) = &m.addr else { continue };
            let streams = |s: &common::pkinfo::SlotInfo| {
                s.master.as_ref().is_some_and(|ms| {
                    ms.replicas.iter().any(|r| {
                        &r.addr == addr && r.status == SyncStatus::BinlogSync && r.lag.unwrap_or(0) <= threshold
                    })
                })
            };
            if info.len() < slots.len() || !info.iter().all(streams) {
                behind.insert(m.name.clone());
            }
        }
    }
    Ok(behind)
}

/// What [`drive`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rolled {
    /// Every member is on its group's spec.
    Done,
    Waiting(String),
    /// The runtime restarts this member now.
    Restart {
        group: u32,
        member: String,
        master: bool,
    },
    SwitchedOver {
        group: u32,
        from: String,
        to: String,
    },
}

/// The rolling update's next step, acted on where it is the data plane's (the switchover);
/// a restart is the runtime's to do. Call it when [`may_step`] says so.
pub async fn drive(
    dp: &impl DataPlane,
    cluster: &Cluster,
    record: &mut Record,
    journal: &mut impl Journal,
    epoch: u64,
    limits: Limits,
) -> Rolled {
    if current_group(cluster).is_none() {
        return Rolled::Done;
    }
    let behind = match behind(dp, cluster, record, limits.lag_threshold).await {
        Ok(b) => b,
        Err(e) => return Rolled::Waiting(e.to_string()),
    };
    match plan(cluster, record, &behind) {
        Step::Done => Rolled::Done,
        Step::Wait(why) => Rolled::Waiting(why),
        Step::Restart { group, member, master } => Rolled::Restart { group, member, master },
        Step::Switchover { group, to } => {
            match switchover::switchover(dp, cluster, record, journal, group, &to, epoch, limits).await {
                Ok(from) => Rolled::SwitchedOver { group, from, to },
                Err(e @ (SwitchoverError::Invalid(_) | SwitchoverError::NotNow(_))) => Rolled::Waiting(e.to_string()),
                Err(e) => Rolled::Waiting(format!("switchover to {to}: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::GroupRecord;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn member(name: &str, outdated: bool) -> Member {
        Member { name: name.into(), addr: Some(format!("{name}:9221")), outdated }
    }

    fn cluster(groups: Vec<Vec<Member>>) -> Cluster {
        Cluster {
            slots: 16,
            groups: groups.len() as u32,
            failover_after: Duration::from_secs(3),
            min_replica_acks: 0,
            members: groups.into_iter().enumerate().map(|(g, ms)| (g as u32, ms)).collect(),
            proxies: vec![],
            in_flight: vec![],
        }
    }

    fn record(masters: &[&str]) -> Record {
        let groups: BTreeMap<u32, GroupRecord> = masters
            .iter()
            .enumerate()
            .map(|(g, m)| (g as u32, GroupRecord { master: Some(m.to_string()), ..GroupRecord::default() }))
            .collect();
        Record { groups, ..Record::default() }
    }

    #[test]
    fn replicas_go_first_then_a_switchover_then_the_old_master() {
        let none = BTreeSet::new();
        let rec = record(&["a0", "b0"]);
        let all_old = cluster(vec![
            vec![member("a0", true), member("a1", true), member("a2", true)],
            vec![member("b0", true), member("b1", true)],
        ]);
        assert_eq!(progress(&all_old), (0, 5));
        assert_eq!(plan(&all_old, &rec, &none), Step::Restart { group: 0, member: "a1".into(), master: false });
        let replicas_new = cluster(vec![
            vec![member("a0", true), member("a1", false), member("a2", false)],
            vec![member("b0", true), member("b1", true)],
        ]);
        assert_eq!(plan(&replicas_new, &rec, &none), Step::Switchover { group: 0, to: "a1".into() });
        // After the switchover a1 is master; a0, a replica now, restarts.
        let switched = record(&["a1", "b0"]);
        assert_eq!(
            plan(&replicas_new, &switched, &none),
            Step::Restart { group: 0, member: "a0".into(), master: false }
        );
        // Group 0 done: group 1 next, but only once a0 has caught up.
        let g0_done = cluster(vec![
            vec![member("a0", false), member("a1", false), member("a2", false)],
            vec![member("b0", true), member("b1", true)],
        ]);
        let a0_behind = BTreeSet::from(["a0".to_string()]);
        assert!(matches!(plan(&g0_done, &switched, &a0_behind), Step::Wait(w) if w.contains("a0")));
        assert_eq!(plan(&g0_done, &switched, &none), Step::Restart { group: 1, member: "b1".into(), master: false });
        let all_new = cluster(vec![vec![member("a0", false)], vec![member("b0", false)]]);
        assert_eq!(plan(&all_new, &switched, &none), Step::Done);
        assert_eq!(progress(&all_new), (2, 2));
    }

    #[test]
    fn one_disruption_at_a_time_and_never_to_a_demoted_member() {
        let none = BTreeSet::new();
        let mut down = cluster(vec![vec![member("a0", true), member("a1", false)], vec![member("b0", false)]]);
        down.members.get_mut(&1).unwrap()[0].addr = None;
        assert!(matches!(plan(&down, &record(&["a0", "b0"]), &none), Step::Wait(w) if w.contains("b0")));
        let c = cluster(vec![vec![member("a0", true), member("a1", false)]]);
        let mut rec = record(&["a0"]);
        rec.groups.get_mut(&0).unwrap().demoted = vec!["a1".into()];
        assert!(matches!(plan(&c, &rec, &none), Step::Wait(_)));
        // A group without replicas restarts its master (nothing can take over).
        let single = cluster(vec![vec![member("a0", true)]]);
        assert_eq!(
            plan(&single, &record(&["a0"]), &none),
            Step::Restart { group: 0, member: "a0".into(), master: true }
        );
    }
}
