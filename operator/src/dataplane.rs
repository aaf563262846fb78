//! What the operator does to a running cluster's nodes, whatever runs them (local processes or
//! StatefulSet pods): observe slot ownership, bootstrap a new cluster, repair what a stopped
//! cutover left, attach replicas, build the proxies' routes, fail a group over. The callers
//! (`local`, `k8s`) only say where the members are.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::admin::{AdminError, DataPlane};
use crate::cutover::{self, CutoverError, GroupNodes, Routes};
use crate::planner;
use common::pkinfo::SlotInfo;
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

/// The slots `node` holds as a master, writable or fenced (a master whose lease has not been
/// renewed lists none as writable, yet takes writes for them again once it is).
pub async fn held_as_master(admin: &impl DataPlane, node: &str, slot_count: u32) -> Result<Vec<u32>, AdminError> {
    let info = admin.slot_info(node, &all_slots(slot_count)).await?;
    Ok(info.iter().filter(|s| s.slave.is_none()).map(|s| s.slot).collect())
}

impl Topology {
    pub fn all_slots(&self) -> String {
        all_slots(self.slots)
    }

    /// Slots each group's master accepts writes for (groups owning none are left out).
    pub async fn ownership(&self, admin: &impl DataPlane) -> Result<Ownership, AdminError> {
        let mut owned = BTreeMap::new();
        for (&g, nodes) in &self.groups {
            let slots = admin.writable(&nodes.master).await?;
            if !slots.is_empty() {
                owned.insert(g, slots);
            }
        }
        Ok(owned)
    }

    /// The group each slot belongs to for a migration: the one whose master accepts writes for
    /// it, else, among the groups whose master holds it as master, fenced (a master restarted
    /// fenced still owns its slots: a migration moves them as they are), the copy the repair
    /// would keep (the highest position). Taking any holder made a move promote the empty
    /// copies an abandoned move had left next to the real master (the simulation, seed 339);
    /// taking none left such slots to a repair that leaves a migration's slots alone.
    pub async fn held(&self, admin: &impl DataPlane) -> Result<Ownership, AdminError> {
        let mut held = self.ownership(admin).await?;
        let served: BTreeSet<u32> = held.values().flatten().copied().collect();
        let mut best: BTreeMap<u32, (u64, std::cmp::Reverse<u32>)> = BTreeMap::new();
        for (&g, nodes) in &self.groups {
            let info = admin.slot_info(&nodes.master, &self.all_slots()).await?;
            for s in info.iter().filter(|s| s.slave.is_none() && !served.contains(&s.slot)) {
                let candidate = (s.position(), std::cmp::Reverse(g));
                let entry = best.entry(s.slot).or_insert(candidate);
                *entry = (*entry).max(candidate);
            }
        }
        for (slot, (_, std::cmp::Reverse(g))) in best {
            held.entry(g).or_default().push(slot);
        }
        for slots in held.values_mut() {
            slots.sort_unstable();
        }
        Ok(held)
    }

    /// Creates the slots no member of any group holds: all of them for a new cluster, or those
    /// an interrupted bootstrap did not get to. Each goes to the group the initial split gives
    /// it (contiguous shares over groups `0..groups`), added on every member (fenced, as every
    /// slot `addslots` creates on a `start-fenced` node), then unfenced on the master (its
    /// replicas follow it in `attach_replicas`). Call it only when every member answers: a slot
    /// held only by a member that is down is not missing. Returns the slots created.
    pub async fn create_missing(&self, admin: &impl DataPlane, groups: u32) -> Result<Vec<u32>, AdminError> {
        let mut held = BTreeSet::new();
        for nodes in self.groups.values() {
            for node in nodes.all() {
                match admin.slot_info(node, &self.all_slots()).await {
                    Ok(info) => held.extend(info.iter().map(|s| s.slot)),
                    // What it holds is unknown: nothing is missing for sure.
                    Err(AdminError::Unreachable { .. }) => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                }
            }
        }
        let mut created = Vec::new();
        for (g, share) in planner::initial_split(self.slots, groups).into_iter().enumerate() {
            let Some(nodes) = self.groups.get(&(g as u32)) else { continue };
            let missing: Vec<u32> = share.into_iter().filter(|s| !held.contains(s)).collect();
            if missing.is_empty() {
                continue;
            }
            let ranges = format_slots(&missing);
            for node in nodes.all() {
                admin.add_slots(node, &ranges).await?;
            }
            admin.unfence(&nodes.master, &ranges).await?;
            created.extend(missing);
        }
        Ok(created)
    }

    /// Settles slots a stopped cutover (or a restarted, hence fenced, master) left refusing
    /// writes. A slot a group's master owns as master but does not accept writes for is either
    /// writable in another group (the move got past promotion: finish its cleanup here), or held
    /// the same way by several groups (a cutover abandoned around its fence, or a target
    /// restarted after promotion): the copy with the highest position is unfenced, the others
    /// cleaned up; or by this group only (unfence it). When no migration is in flight
    /// (`settled`), a group master still replicating slots from another group is the target of
    /// an abandoned cutover: it stops (fenced, promoted) and is settled the same way. Slots in
    /// `busy` (a cutover in flight owns them) are left alone.
    pub async fn repair(
        &self,
        admin: &impl DataPlane,
        owned: &Ownership,
        busy: &BTreeSet<u32>,
        settled: bool,
    ) -> Result<(), CutoverError> {
        let mut stuck: BTreeMap<u32, Vec<(u64, std::cmp::Reverse<u32>)>> = BTreeMap::new();
        for (&g, nodes) in &self.groups {
            let mine = owned.get(&g).cloned().unwrap_or_default();
            let mut info = admin.slot_info(&nodes.master, &self.all_slots()).await?;
            let orphans: Vec<u32> =
                info.iter().filter(|s| s.slave.is_some() && !busy.contains(&s.slot)).map(|s| s.slot).collect();
            if settled && !orphans.is_empty() {
                let ranges = format_slots(&orphans);
                tracing::warn!(group = g, slots = %ranges, "stopping the target side of an abandoned cutover");
                admin.fence(&nodes.master, &ranges).await?;
                // A slot still waiting for its full sync holds part of the data only, and its
                // source may be gone for good (a retired group): deleted, not promoted (the
                // node refuses to promote it, and a later pass would meet it again forever:
                // the simulation, seed 645 with master kills). The others are promoted.
                let (partial, live): (Vec<&SlotInfo>, Vec<&SlotInfo>) = info
                    .iter()
                    .filter(|s| orphans.contains(&s.slot))
                    .partition(|s| s.slave.as_ref().is_some_and(|r| r.state.in_full_sync()));
                let (partial, live): (Vec<u32>, Vec<u32>) =
                    (partial.iter().map(|s| s.slot).collect(), live.iter().map(|s| s.slot).collect());
                if !live.is_empty() {
                    if let Err(e) = admin.promote(&nodes.master, &format_slots(&live)).await {
                        tracing::warn!(group = g, error = %e, "not stopped yet");
                    }
                }
                if !partial.is_empty() {
                    if let Err(e) = admin.del_slots(&nodes.master, &format_slots(&partial)).await {
                        tracing::warn!(group = g, error = %e, "partial copies not deleted yet");
                    }
                }
                info = admin.slot_info(&nodes.master, &self.all_slots()).await?;
            }
            for s in info.iter().filter(|s| s.slave.is_none() && !mine.contains(&s.slot) && !busy.contains(&s.slot)) {
                stuck.entry(s.slot).or_default().push((s.position(), std::cmp::Reverse(g)));
            }
        }
        let owner: BTreeMap<u32, u32> =
            owned.iter().flat_map(|(&g, slots)| slots.iter().map(move |&s| (s, g))).collect();
        let mut unfence: Ownership = Default::default();
        // (group holding copies, group serving the slots) -> slots
        let mut clean: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
        for (slot, mut holders) in stuck {
            holders.sort_unstable();
            let serving = match owner.get(&slot) {
                Some(&g) => g,
                None => {
                    let (_, std::cmp::Reverse(winner)) = holders.pop().expect("a holder");
                    unfence.entry(winner).or_default().push(slot);
                    winner
                }
            };
            for (_, std::cmp::Reverse(g)) in holders {
                clean.entry((g, serving)).or_default().push(slot);
            }
        }
        for (g, slots) in unfence {
            let ranges = format_slots(&slots);
            tracing::warn!(group = g, slots = %ranges, "unfencing slots nobody else serves");
            admin.unfence(&self.groups[&g].master, &ranges).await?;
        }
        for ((g, serving), slots) in clean {
            let ranges = format_slots(&slots);
            let serving_nodes = &self.groups[&serving];
            if let Some(short) = cutover::short_of_copies(admin, serving_nodes, &ranges).await? {
                tracing::warn!(group = g, serving, slots = %ranges, %short, "old copies kept until the serving group has its replicas");
                continue;
            }
            tracing::warn!(group = g, slots = %ranges, "cleaning up copies another group serves");
            // Briefly, and not fatal: the pass also renews the masters' leases, and a cleanup
            // waiting a minute for a replica to let go (one cut off from the operator but not
            // from its master) let every lease run out, stopping writes everywhere
            // (simulation, seed 467 with every fault). Fenced copies wait for the next pass.
            let cleaned = cutover::drop_copies(admin, &self.groups[&g], &ranges, Duration::from_secs(3)).await;
            if let Err(e) = cleaned {
                tracing::warn!(group = g, slots = %ranges, error = %e, "old copies not cleaned up yet");
            }
        }
        Ok(())
    }

    /// Replicas of every group follow their master for every slot it owns, and let go of slots
    /// their master does not hold at all (a replica that was down while its group's slots moved
    /// away missed the cleanup). A replica that does not answer is skipped (it is attached when
    /// it is back) and returned. Slots in `busy` (a cutover in flight) are left alone.
    pub async fn attach_replicas(
        &self,
        admin: &impl DataPlane,
        owned: &Ownership,
        busy: &BTreeSet<u32>,
    ) -> Result<Vec<String>, AdminError> {
        let mut unreachable = Vec::new();
        for nodes in self.groups.values() {
            let held: BTreeSet<u32> =
                admin.slot_info(&nodes.master, &self.all_slots()).await?.iter().map(|s| s.slot).collect();
            for r in &nodes.replicas {
                let Ok(info) = admin.slot_info(r, &self.all_slots()).await else { continue };
                let stray: Vec<u32> =
                    info.iter().map(|s| s.slot).filter(|s| !held.contains(s) && !busy.contains(s)).collect();
                if stray.is_empty() {
                    continue;
                }
                let ranges = format_slots(&stray);
                tracing::warn!(replica = %r, slots = %ranges, "deleting slots the group no longer owns");
                // Not fatal: garbage that is retried on the next pass.
                if let Err(e) = cutover::let_go(admin, [r].into_iter(), &ranges, Duration::from_secs(5)).await {
                    tracing::warn!(replica = %r, error = %e, "stray slots not deleted yet");
                }
            }
        }
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
/// the one holding the most data in slots it holds as master (a restarted master starts fenced;
/// right after a bootstrap every member holds the new, empty slots as masters, and the first
/// wins). None while a member does not answer: it may be the master, still taking writes.
pub async fn find_master(admin: &impl DataPlane, members: &[String], slot_count: u32) -> Option<usize> {
    let all = all_slots(slot_count);
    let mut infos = Vec::new();
    for m in members {
        infos.push(admin.slot_info(m, &all).await.ok()?);
    }
    for (i, m) in members.iter().enumerate() {
        if !admin.writable(m).await.ok()?.is_empty() {
            return Some(i);
        }
    }
    let position = |info: &Vec<SlotInfo>| -> Option<u64> {
        let masters: Vec<&SlotInfo> = info.iter().filter(|s| s.slave.is_none()).collect();
        (!masters.is_empty()).then(|| masters.iter().map(|s| s.position()).sum())
    };
    let best = infos
        .iter()
        .enumerate()
        .filter_map(|(i, info)| Some((position(info)?, std::cmp::Reverse(i))))
        .max()
        .map(|(_, std::cmp::Reverse(i))| i);
    Some(best.unwrap_or(0))
}

/// The replica of a failed master's group to promote for `slots` (the group's), by the
/// planner's rule: most acknowledged, never one in a full sync, never one lacking any of the
/// slots as a replica (promoting it would leave those without a master or with an empty copy,
/// and the old master's copy would be wiped when it re-syncs). `members` are (index, address) of the survivors; unreachable ones
/// are not candidates.
pub async fn choose_successor(
    admin: &impl DataPlane,
    members: &[(usize, String)],
    slots: &[u32],
    slot_count: u32,
    acks: Acks,
) -> Result<usize, String> {
    let all = all_slots(slot_count);
    let mut candidates = Vec::new();
    for (i, node) in members {
        let Ok(info) = admin.slot_info(node, &all).await else { continue };
        let full_sync = info.iter().any(|s| s.slave.as_ref().is_some_and(|r| r.state.in_full_sync()));
        // Held as a replica: a copy it holds as a (fenced) master was never synced from anyone.
        let mine: Vec<_> = info.iter().filter(|s| slots.contains(&s.slot) && s.slave.is_some()).collect();
        candidates.push(planner::Candidate {
            name: i.to_string(),
            reachable: true,
            full_sync,
            empty: info.is_empty() || mine.len() < slots.len(),
            acked: mine.iter().map(|s| s.position()).sum(),
            positions: mine.iter().map(|s| (s.slot, s.position())).collect(),
        });
    }
    let chosen = match acks.min_acks {
        0 => planner::choose_new_master(&candidates).ok_or_else(|| "no replica can safely replace it".to_string()),
        n => planner::choose_complete(&candidates, acks.ackers, n as usize),
    };
    chosen.map(|c| c.name.parse().expect("an index"))
}

/// What a failover needs to know of replicated acknowledgement: each write was acknowledged by
/// `min_acks` (0: asynchronous replication) of the group's `ackers` replicas.
#[derive(Debug, Clone, Copy)]
pub struct Acks {
    pub min_acks: u32,
    pub ackers: usize,
}

/// Makes `new` the master of `slots` (promote, accept writes). The group's other members follow
/// it in the same pass's `attach_replicas` (after the new master is recorded: a follower that
/// fails must not make the failover run again). Slots in `keep_fenced` (a batch a migration is
/// moving out of the group, not promoted at its target yet) are fenced first and stay fenced:
/// the migration may have fenced them at the old master to promote them elsewhere, and
/// unfencing them here made them writable in two groups (simulation, seed 3053 with every
/// fault); the migration rolls back (unfencing them) or finishes.
pub async fn take_over(
    admin: &impl DataPlane,
    new: &str,
    slots: &str,
    lease: Duration,
    keep_fenced: &[u32],
) -> Result<(), AdminError> {
    if slots.is_empty() {
        return Ok(());
    }
    // Its lease first: as a replica it was granted none, or an old one that ran out.
    admin.lease(new, lease.as_millis() as u64).await?;
    // Only the slots the successor holds: a stale record of the group's slots must not make the
    // whole take-over fail (and leave the group with no master at all).
    let held: Vec<u32> = admin.slot_info(new, slots).await?.iter().map(|s| s.slot).collect();
    if held.is_empty() {
        return Ok(());
    }
    let (fenced, open): (Vec<u32>, Vec<u32>) = held.iter().partition(|s| keep_fenced.contains(s));
    if !fenced.is_empty() {
        admin.fence(new, &format_slots(&fenced)).await?;
    }
    admin.promote(new, &format_slots(&held)).await?;
    if open.is_empty() {
        return Ok(());
    }
    admin.unfence(new, &format_slots(&open)).await
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
