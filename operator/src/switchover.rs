//! A planned switchover: a group's master hands its slots to one of its replicas, for
//! maintenance or before it restarts, without losing a write and without failing a client
//! request. The cutover's own steps, inside one group:
//!
//! 1. the successor (a replica streaming every slot of the group, not in a full sync) catches up
//!    to under the lag threshold;
//! 2. the proxies hold the slots, the master fences them, the successor reaches lag 0 (on
//!    timeout: unfence and release, nothing changed; a later pass tries again);
//! 3. the new master is recorded (before it is promoted, as a failover is: a restarted operator
//!    finishes it, never takes the old master back);
//! 4. the successor is leased, promoted and unfenced; the proxies get the new routes, which
//!    releases the held requests to it;
//! 5. the old master and the other replicas follow it. The old master stopped exactly where
//!    the successor took over, so it continues incrementally (no full sync).

use std::collections::BTreeSet;

use crate::admin::{AdminError, DataPlane};
use crate::control::{self, Cluster, Journal, Record};
use crate::crd::{SwitchoverPhase, SwitchoverStatus};
use crate::cutover::{self, CutoverError, GroupNodes, Limits};
use crate::dataplane;
use common::slotset::format_slots;

/// A request to move group `group`'s master to member `to` (None: the most caught-up replica).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub group: u32,
    pub to: Option<String>,
}

impl std::str::FromStr for Request {
    type Err = String;

    /// `g0` or `0`, optionally `=<member>` (`g1=pika-g1-2`); anything after `#` is ignored.
    fn from_str(text: &str) -> Result<Request, String> {
        let text = text.split_once('#').map_or(text, |(request, _)| request);
        let (group, to) = match text.trim().split_once('=') {
            Some((g, m)) => (g, Some(m.trim().to_string()).filter(|m| !m.is_empty())),
            None => (text.trim(), None),
        };
        let index = group.trim();
        let index = index.strip_prefix('g').unwrap_or(index);
        let group = index.parse().map_err(|_| format!("{text:?}: expected a group such as g0, or g0=<member>"))?;
        Ok(Request { group, to })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SwitchoverError {
    /// Never possible as asked (no such group or member): nothing was done.
    #[error("{0}")]
    Invalid(String),
    /// Not possible now (a migration in flight, a replica not caught up or not running):
    /// nothing was done; ask again later.
    #[error("{0}")]
    NotNow(String),
    #[error(transparent)]
    Cutover(#[from] CutoverError),
    #[error("recording the new master: {0}")]
    Journal(String),
}

impl From<AdminError> for SwitchoverError {
    fn from(e: AdminError) -> Self {
        SwitchoverError::Cutover(CutoverError::Admin(e))
    }
}

/// The member to become group `req.group`'s master: the one asked for, if it can (a running
/// replica streaming every slot of the group, not in a full sync, not a former master still to
/// re-sync), else the most caught-up one that can. Returns the current master when it already
/// is the one asked for.
pub async fn choose(
    dp: &impl DataPlane,
    cluster: &Cluster,
    record: &Record,
    req: &Request,
) -> Result<String, SwitchoverError> {
    let not_now = |why: String| Err(SwitchoverError::NotNow(why));
    let g = req.group;
    let Some(members) = cluster.members.get(&g) else {
        return Err(SwitchoverError::Invalid(format!("group {g} does not exist")));
    };
    if let Some(to) = req.to.as_ref().filter(|to| !members.iter().any(|m| &&m.name == to)) {
        return Err(SwitchoverError::Invalid(format!("{to} is not a member of group {g}")));
    }
    let Some(master) = record.groups.get(&g).and_then(|r| r.master.clone()) else {
        return not_now(format!("group {g} has no known master"));
    };
    if req.to.as_ref() == Some(&master) {
        return Ok(master);
    }
    let Some(master_addr) = members.iter().find(|m| m.name == master).and_then(|m| m.addr.clone()) else {
        return not_now(format!("master {master} is not running"));
    };
    // A former master not yet re-synced after a failover is no candidate: it lacks what its
    // successor acknowledged since (simulation, seed 842 with every fault).
    let demoted = &record.groups[&g].demoted;
    let candidates: Vec<(usize, String)> = members
        .iter()
        .enumerate()
        .filter(|(_, m)| m.name != master && !demoted.contains(&m.name))
        .filter(|(_, m)| req.to.as_ref().is_none_or(|to| &m.name == to))
        .filter_map(|(i, m)| Some((i, m.addr.clone()?)))
        .collect();
    if candidates.is_empty() {
        return not_now(match &req.to {
            Some(to) => format!("{to} is not running, or not re-synced since it was failed over"),
            None => format!("group {g} has no running replica"),
        });
    }
    let slots = dataplane::held_as_master(dp, &master_addr, cluster.slots).await?;
    if slots.is_empty() {
        // Nothing to hand over (a new group before its first move): any member will do (the
        // rolling update waited for a new group's empty master: simulation, seed 32).
        return Ok(members[candidates[0].0].name.clone());
    }
    // A planned switchover drains the master (lag 0) before it promotes: the replica that
    // streams best will have everything, in either durability mode.
    let acks = dataplane::Acks { min_acks: 0, ackers: candidates.len() };
    match dataplane::choose_successor(dp, &candidates, &slots, cluster.slots, acks).await {
        Ok(i) => Ok(members[i].name.clone()),
        Err(_) => {
            not_now(format!("no replica of group {g} streams every slot of it yet (full sync, or missing slots)"))
        }
    }
}

/// Moves group `g`'s master to member `to` (see the module's steps). Returns the old master's
/// name (`to` itself when it already is the master). `epoch` is a route epoch newer than every
/// earlier one. Call it after a pass that found the cluster healthy.
#[allow(clippy::too_many_arguments)]
pub async fn switchover(
    dp: &impl DataPlane,
    cluster: &Cluster,
    record: &mut Record,
    journal: &mut impl Journal,
    g: u32,
    to: &str,
    epoch: u64,
    limits: Limits,
) -> Result<String, SwitchoverError> {
    // Checks that `to` can take over (and returns it), or that it already did.
    choose(dp, cluster, record, &Request { group: g, to: Some(to.into()) }).await?;
    let master = record.groups[&g].master.clone().expect("choose found it");
    if master == to {
        return Ok(master);
    }
    if !cluster.in_flight.is_empty() {
        return Err(SwitchoverError::NotNow("a migration is in flight; switchovers wait until it is done".into()));
    }
    let members = &cluster.members[&g];
    let addr_of = |name: &str| members.iter().find(|m| m.name == name).and_then(|m| m.addr.clone());
    let (Some(master_addr), Some(new_addr)) = (addr_of(&master), addr_of(to)) else {
        return Err(SwitchoverError::NotNow("a member stopped running".into()));
    };
    let slots = dataplane::held_as_master(dp, &master_addr, cluster.slots).await?;
    let ranges = format_slots(&slots);
    let from = GroupNodes { master: master_addr.clone(), replicas: vec![new_addr.clone()], size: members.len() };
    if !slots.is_empty() {
        cutover::wait_lag(dp, &from, &new_addr, &ranges, slots.len(), limits.lag_threshold, limits.sync_timeout)
            .await?;
        let fenced_and_drained = async {
            for p in &cluster.proxies {
                dp.hold(p, &ranges).await?;
            }
            dp.fence(&master_addr, &ranges).await?;
            cutover::wait_lag(dp, &from, &new_addr, &ranges, slots.len(), 0, limits.cutover_timeout).await
        };
        if let Err(e) = fenced_and_drained.await {
            cutover::roll_back(dp, &from, &cluster.proxies, &ranges).await;
            return Err(e.into());
        }
    }
    record.groups.get_mut(&g).expect("recorded").master = Some(to.to_string());
    if let Err(e) = journal.save(&record.groups).await {
        record.groups.get_mut(&g).expect("recorded").master = Some(master.clone());
        cutover::roll_back(dp, &from, &cluster.proxies, &ranges).await;
        return Err(SwitchoverError::Journal(e));
    }
    // From here on the switchover only goes forward: a pass finishes what a crash leaves (the
    // new master still following the old one is an interrupted failover to it).
    dataplane::take_over(dp, &new_addr, &ranges, control::lease_for(cluster.failover_after), &[]).await?;
    let topology = control::topology(cluster, &record.masters())
        .ok_or_else(|| SwitchoverError::NotNow("a master has no address".into()))?;
    let routes = topology.routes(&topology.ownership(dp).await?);
    for p in &cluster.proxies {
        dp.set_route(p, epoch, cluster.slots, &routes).await?;
    }
    record.routes = Some((epoch, routes));
    if !slots.is_empty() {
        let others: BTreeSet<String> = members.iter().filter(|m| m.name != to).filter_map(|m| m.addr.clone()).collect();
        for node in &others {
            dp.follow(node, &new_addr, &ranges).await?;
        }
    }
    Ok(master)
}

/// What to do about the switchover annotation, given what the status says of the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Nothing,
    /// A new request: choose the member, record it, then switch over.
    Start(Request),
    /// A request whose member was chosen (an operator restarted midway): switch over to it.
    Continue {
        group: u32,
        to: String,
    },
    /// A value that is no request.
    Invalid(String),
}

pub fn next(annotation: Option<&str>, last: Option<&SwitchoverStatus>) -> Next {
    let Some(value) = annotation else { return Next::Nothing };
    if let Some(last) = last.filter(|l| l.request == value) {
        match (last.phase, &last.to) {
            (SwitchoverPhase::Running, Some(to)) => {
                if let Ok(req) = value.parse::<Request>() {
                    return Next::Continue { group: req.group, to: to.clone() };
                }
            }
            (SwitchoverPhase::Running, None) => {}
            _ => return Next::Nothing,
        }
    }
    match value.parse() {
        Ok(req) => Next::Start(req),
        Err(why) => Next::Invalid(why),
    }
}

/// Whether the annotation asks for a switchover that is not done yet (the rolling update waits
/// for it).
pub fn pending(annotation: Option<&str>, last: Option<&SwitchoverStatus>) -> bool {
    next(annotation, last) != Next::Nothing
}

/// Where a runtime keeps the switchover's status (the Kubernetes runtime: the PikaCluster's
/// status, with the resourceVersion its journal uses).
pub trait Progress {
    fn save(&mut self, status: &SwitchoverStatus) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

/// What [`drive`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driven {
    /// Nothing asked, or already done.
    Idle,
    Done {
        group: u32,
        from: String,
        to: String,
    },
    Failed {
        request: String,
        why: String,
    },
    /// Not now; tried again on a later pass.
    Waiting(String),
}

/// Acts on the switchover annotation `annotation` (after a pass that found the cluster
/// healthy), recording its progress in `progress`: the same for every runtime.
#[allow(clippy::too_many_arguments)]
pub async fn drive<J: Journal + Progress>(
    dp: &impl DataPlane,
    cluster: &Cluster,
    record: &mut Record,
    journal: &mut J,
    annotation: Option<&str>,
    last: Option<&SwitchoverStatus>,
    epoch: u64,
    limits: Limits,
) -> Driven {
    let request = annotation.unwrap_or_default().to_string();
    let status = |to: Option<String>, phase, message: Option<String>| SwitchoverStatus {
        request: request.clone(),
        to,
        phase,
        message,
    };
    let (group, to) = match next(annotation, last) {
        Next::Nothing => return Driven::Idle,
        Next::Invalid(why) => {
            if let Err(e) = Progress::save(journal, &status(None, SwitchoverPhase::Failed, Some(why.clone()))).await {
                return Driven::Waiting(e);
            }
            return Driven::Failed { request, why };
        }
        Next::Continue { group, to } => (group, to),
        Next::Start(req) => match choose(dp, cluster, record, &req).await {
            Ok(to) => {
                if let Err(e) = Progress::save(journal, &status(Some(to.clone()), SwitchoverPhase::Running, None)).await
                {
                    return Driven::Waiting(e);
                }
                (req.group, to)
            }
            Err(SwitchoverError::Invalid(why)) => {
                let failed = status(None, SwitchoverPhase::Failed, Some(why.clone()));
                if let Err(e) = Progress::save(journal, &failed).await {
                    return Driven::Waiting(e);
                }
                return Driven::Failed { request, why };
            }
            Err(e) => return Driven::Waiting(e.to_string()),
        },
    };
    match switchover(dp, cluster, record, journal, group, &to, epoch, limits).await {
        Ok(from) => {
            let done = status(Some(to.clone()), SwitchoverPhase::Succeeded, Some(format!("{from} -> {to}")));
            if let Err(e) = Progress::save(journal, &done).await {
                return Driven::Waiting(e);
            }
            Driven::Done { group, from, to }
        }
        Err(SwitchoverError::Invalid(why)) => {
            let _ = Progress::save(journal, &status(Some(to), SwitchoverPhase::Failed, Some(why.clone()))).await;
            Driven::Failed { request, why }
        }
        Err(e) => Driven::Waiting(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_a_group_and_maybe_a_member() {
        assert_eq!("g0".parse(), Ok(Request { group: 0, to: None }));
        assert_eq!(" 2 ".parse(), Ok(Request { group: 2, to: None }));
        assert_eq!("g1=pika-g1-2".parse(), Ok(Request { group: 1, to: Some("pika-g1-2".into()) }));
        assert!("gx".parse::<Request>().is_err());
        assert!("gg0".parse::<Request>().is_err());
        assert!("".parse::<Request>().is_err());
        assert_eq!("g0#2".parse(), Ok(Request { group: 0, to: None }));
    }

    #[test]
    fn each_value_is_done_once_and_a_chosen_member_is_kept() {
        let last = |to: Option<&str>, phase| SwitchoverStatus {
            request: "g1".into(),
            to: to.map(Into::into),
            phase,
            message: None,
        };
        assert_eq!(next(None, None), Next::Nothing);
        assert_eq!(next(Some("g1"), None), Next::Start(Request { group: 1, to: None }));
        assert_eq!(next(Some("g1"), Some(&last(Some("m2"), SwitchoverPhase::Succeeded))), Next::Nothing);
        assert_eq!(next(Some("g1"), Some(&last(None, SwitchoverPhase::Failed))), Next::Nothing);
        assert_eq!(
            next(Some("g1"), Some(&last(Some("m2"), SwitchoverPhase::Running))),
            Next::Continue { group: 1, to: "m2".into() }
        );
        assert_eq!(
            next(Some("g1#again"), Some(&last(Some("m2"), SwitchoverPhase::Succeeded))),
            Next::Start(Request { group: 1, to: None })
        );
        assert!(matches!(next(Some("nonsense"), None), Next::Invalid(_)));
    }
}
