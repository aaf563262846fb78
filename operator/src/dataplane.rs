//! What the operator does to a running cluster's nodes, whatever runs them (local processes or
//! StatefulSet pods): observe slot ownership, bootstrap a new cluster, repair what a stopped
//! cutover left, attach replicas, build the proxies' routes, fail a group over. The callers
//! (`local`, `k8s`) only say where the members are.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::admin::{Admin, AdminError};
use crate::cutover::{self, CutoverError, GroupNodes, Routes};
use crate::planner;
use common::slotset::format_slots;

/// Slots per group, by group index.
pub type Ownership = BTreeMap<u32, Vec<u32>>;

/// Where a cluster's groups are, as the caller observed them.
#[derive(Debug, Clone)]
pub struct Topology {
    /// `default-slot-num` of the cluster.
    pub slots: u32,
    pub groups: BTreeMap<u32, GroupNodes>,
}

/// Every slot of a `count`-slot cluster, in range syntax (what `pkcluster info slot` is asked for
/// to see everything a node holds).
pub fn all_slots(count: u32) -> String {
    format!("0-{}", count.saturating_sub(1))
}

impl Topology {
    pub fn all_slots(&self) -> String {
        all_slots(self.slots)
    }

    /// Slots each group's master accepts writes for (groups owning none are left out).
    pub async fn ownership(&self, admin: &Admin) -> Result<Ownership, AdminError> {
        let mut owned = BTreeMap::new();
        for (&g, nodes) in &self.groups {
            let slots = admin.writable(&nodes.master).await?;
            if !slots.is_empty() {
                owned.insert(g, slots);
            }
        }
        Ok(owned)
    }

    /// Whether any master holds any slot, writable or fenced (false: a new cluster).
    pub async fn any_slot_owned(&self, admin: &Admin) -> Result<bool, AdminError> {
        for nodes in self.groups.values() {
            if !admin.slot_info(&nodes.master, &self.all_slots()).await?.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A new cluster: contiguous shares over groups `0..groups`, added on every member.
    pub async fn bootstrap(&self, admin: &Admin, groups: u32) -> Result<Ownership, AdminError> {
        let mut owned = BTreeMap::new();
        for (g, slots) in planner::initial_split(self.slots, groups).into_iter().enumerate() {
            let g = g as u32;
            let Some(nodes) = self.groups.get(&g) else { continue };
            let ranges = format_slots(&slots);
            for node in nodes.all() {
                admin.add_slots(node, &ranges).await?;
            }
            owned.insert(g, slots);
        }
        Ok(owned)
    }

    /// Settles slots a stopped cutover (or a restarted, hence fenced, master) left refusing
    /// writes. A slot a group's master owns as master but does not accept writes for is either
    /// writable in another group (the move got past promotion: finish its cleanup here) or
    /// nowhere (unfence it here; a move starts over from its idempotent first steps).
    /// Slots in `busy` (a migration in flight owns them) are left alone.
    pub async fn repair(&self, admin: &Admin, owned: &Ownership, busy: &BTreeSet<u32>) -> Result<(), CutoverError> {
        let writable: BTreeSet<u32> = owned.values().flatten().copied().collect();
        for (&g, nodes) in &self.groups {
            let mine = owned.get(&g).cloned().unwrap_or_default();
            let info = admin.slot_info(&nodes.master, &self.all_slots()).await?;
            let stuck: Vec<u32> = info
                .iter()
                .filter(|s| s.slave.is_none() && !mine.contains(&s.slot) && !busy.contains(&s.slot))
                .map(|s| s.slot)
                .collect();
            let (moved, unmoved): (Vec<u32>, Vec<u32>) = stuck.into_iter().partition(|s| writable.contains(s));
            if !unmoved.is_empty() {
                let ranges = format_slots(&unmoved);
                tracing::warn!(group = g, slots = %ranges, "unfencing slots nobody else serves");
                admin.unfence(&nodes.master, &ranges).await?;
            }
            if !moved.is_empty() {
                let ranges = format_slots(&moved);
                tracing::warn!(group = g, slots = %ranges, "finishing the cleanup of a stopped cutover");
                cutover::clean_up_source(admin, nodes, &ranges, Duration::from_secs(60)).await?;
            }
        }
        Ok(())
    }

    /// Replicas of every group follow their master for every slot it owns. A replica that
    /// does not answer is skipped (it is attached when it is back) and returned.
    pub async fn attach_replicas(&self, admin: &Admin, owned: &Ownership) -> Result<Vec<String>, AdminError> {
        let mut unreachable = Vec::new();
        for (g, slots) in owned {
            let Some(nodes) = self.groups.get(g) else { continue };
            let ranges = format_slots(slots);
            for r in &nodes.replicas {
                let attached = async {
                    admin.add_slots(r, &ranges).await?;
                    admin.follow(r, &nodes.master, &ranges).await
                };
                match attached.await {
                    Err(AdminError::Unreachable { .. }) => unreachable.push(r.clone()),
                    other => other?,
                }
            }
        }
        Ok(unreachable)
    }

    /// Routes for the proxies: every group that owns slots, by its master.
    pub fn routes(&self, owned: &Ownership) -> Routes {
        owned
            .iter()
            .filter_map(|(g, slots)| Some((format!("g{g}"), self.groups.get(g)?.master.clone(), format_slots(slots))))
            .collect()
    }
}

/// Ownership after `batch` moved from `from` to `to`.
pub fn after_move(owned: &Ownership, from: u32, to: u32, batch: &[u32]) -> Ownership {
    let mut after = owned.clone();
    if let Some(s) = after.get_mut(&from) {
        s.retain(|s| !batch.contains(s));
    }
    let target = after.entry(to).or_default();
    target.extend_from_slice(batch);
    target.sort_unstable();
    target.dedup();
    after.retain(|_, s| !s.is_empty());
    after
}

/// The member that is a group's master when nobody recorded it: the one accepting writes, else
/// the one holding slots as master (a restarted master starts fenced), else the first.
pub async fn find_master(admin: &Admin, members: &[String], slot_count: u32) -> usize {
    for (i, m) in members.iter().enumerate() {
        if admin.writable(m).await.is_ok_and(|s| !s.is_empty()) {
            return i;
        }
    }
    let all = all_slots(slot_count);
    for (i, m) in members.iter().enumerate() {
        if let Ok(info) = admin.slot_info(m, &all).await {
            if info.iter().any(|s| s.slave.is_none()) {
                return i;
            }
        }
    }
    0
}

/// The replica of a failed master's group to promote, by the planner's rule (most acknowledged,
/// never one in a full sync, never an empty one). `members` are (index, address) of the
/// survivors; unreachable ones are not candidates.
pub async fn choose_successor(admin: &Admin, members: &[(usize, String)], slot_count: u32) -> Option<usize> {
    let all = all_slots(slot_count);
    let mut candidates = Vec::new();
    for (i, node) in members {
        let Ok(info) = admin.slot_info(node, &all).await else { continue };
        let full_sync = info
            .iter()
            .any(|s| s.slave.as_ref().is_some_and(|r| matches!(r.state.as_str(), "kTryDBSync" | "kWaitDBSync")));
        let acked = info.iter().map(|s| s.binlog_offset.0 * (100 << 20) + s.binlog_offset.1).sum();
        candidates.push(planner::Candidate {
            name: i.to_string(),
            reachable: true,
            full_sync,
            empty: info.is_empty(),
            acked,
        });
    }
    planner::choose_new_master(&candidates).map(|c| c.name.parse().expect("an index"))
}

/// Makes `new` the master of `slots` (promote, accept writes) and the group's other
/// `followers` replicate it.
pub async fn take_over(admin: &Admin, new: &str, followers: &[String], slots: &str) -> Result<(), AdminError> {
    if slots.is_empty() {
        return Ok(());
    }
    // Only the slots the successor holds: a stale record of the group's slots must not make the
    // whole take-over fail (and leave the group with no master at all).
    let held: Vec<u32> = admin.slot_info(new, slots).await?.iter().map(|s| s.slot).collect();
    let slots = format_slots(&held);
    if slots.is_empty() {
        return Ok(());
    }
    admin.promote(new, &slots).await?;
    admin.unfence(new, &slots).await?;
    for f in followers {
        admin.follow(f, new, &slots).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_move_transfers_the_batch_and_drops_emptied_groups() {
        let owned: Ownership = BTreeMap::from([(0, vec![0, 1, 2]), (1, vec![3])]);
        let after = after_move(&owned, 0, 1, &[1, 2]);
        assert_eq!(after, BTreeMap::from([(0, vec![0]), (1, vec![1, 2, 3])]));
        let drained = after_move(&after, 0, 2, &[0]);
        assert_eq!(drained, BTreeMap::from([(1, vec![1, 2, 3]), (2, vec![0])]));
    }
}
