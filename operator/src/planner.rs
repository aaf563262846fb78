//! Pure decisions of the operator: how a new cluster's slots are split, which slots move when the
//! group count changes, and which replica replaces a failed master. No I/O: the controllers
//! observe, call these, and act.

use std::collections::BTreeMap;

/// Group `g`'s share of a new cluster: contiguous ranges, sizes differing by at most one.
pub fn initial_split(slots: u32, groups: u32) -> Vec<Vec<u32>> {
    let (n, g) = (slots as u64, groups.max(1) as u64);
    (0..g).map(|i| ((i * n / g) as u32..((i + 1) * n / g) as u32).collect()).collect()
}

/// Slots moving from one group to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub from: u32,
    pub to: u32,
    pub slots: Vec<u32>,
}

/// How many slots each group should own: `total / groups`, one more for the `total % groups`
/// groups that own the most now (so as few slots as possible move), ties to lower indices.
fn targets(owned: &BTreeMap<u32, Vec<u32>>, total: usize, groups: u32) -> BTreeMap<u32, usize> {
    let g = groups.max(1) as usize;
    let (base, extra) = (total / g, total % g);
    let mut order: Vec<u32> = (0..groups.max(1)).collect();
    order.sort_by_key(|i| (std::cmp::Reverse(owned.get(i).map_or(0, Vec::len)), *i));
    order.iter().enumerate().map(|(rank, &i)| (i, base + usize::from(rank < extra))).collect()
}

/// The moves that leave groups `0..groups` owning `total/groups` slots each (max - min <= 1) and
/// groups `>= groups` owning none, moving the fewest slots: a group keeps what it may keep, and
/// gives its highest slots (so the ranges stay contiguous where they were).
pub fn rebalance(owned: &BTreeMap<u32, Vec<u32>>, groups: u32) -> Vec<Move> {
    let total: usize = owned.values().map(Vec::len).sum();
    let target = targets(owned, total, groups);
    let mut surplus: Vec<(u32, Vec<u32>)> = Vec::new();
    for (&g, slots) in owned {
        let keep = target.get(&g).copied().unwrap_or(0);
        if slots.len() > keep {
            let mut sorted = slots.clone();
            sorted.sort_unstable();
            surplus.push((g, sorted.split_off(keep)));
        }
    }
    let mut moves: Vec<Move> = Vec::new();
    for (&g, &want) in &target {
        let have = owned.get(&g).map_or(0, Vec::len);
        let mut need = want.saturating_sub(have);
        while need > 0 {
            let Some((from, pool)) = surplus.iter_mut().find(|(_, pool)| !pool.is_empty()) else { break };
            let take = need.min(pool.len());
            let slots: Vec<u32> = pool.drain(..take).collect();
            need -= take;
            match moves.iter_mut().find(|m| m.from == *from && m.to == g) {
                Some(m) => m.slots.extend(slots),
                None => moves.push(Move { from: *from, to: g, slots }),
            }
        }
    }
    moves
}

/// A replica that could replace a failed master, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub reachable: bool,
    /// Any of its slots still in a full sync (its data is partial).
    pub full_sync: bool,
    /// Lacks some of the group's slots (a fresh replica holds none).
    pub empty: bool,
    /// Bytes acknowledged to the master, summed over the group's slots.
    pub acked: u64,
    /// Each of the group's slots it holds as a replica, and its position there.
    pub positions: BTreeMap<u32, u64>,
}

/// The replica to promote: reachable, not in a full sync, holding every slot, and the one that
/// acknowledged the most (ties: the first by name). None: no safe choice; wait.
pub fn choose_new_master(candidates: &[Candidate]) -> Option<&Candidate> {
    candidates
        .iter()
        .filter(|c| c.reachable && !c.full_sync && !c.empty)
        .max_by(|a, b| a.acked.cmp(&b.acked).then_with(|| b.name.cmp(&a.name)))
}

/// The replica to promote in replicated mode (`min_acks` > 0), or why none can be: every
/// acknowledged write of a slot is on `min_acks` of the group's `ackers` replicas, so any
/// `ackers - min_acks + 1` of them include one that has it, and the highest position among that
/// many holds every acknowledged write. A replica in a full sync counts as not answering (its
/// data was wiped). The successor must be the highest on every slot; otherwise the group waits
/// (unavailable, not wrong).
pub fn choose_complete(candidates: &[Candidate], ackers: usize, min_acks: usize) -> Result<&Candidate, String> {
    let answering: Vec<&Candidate> = candidates.iter().filter(|c| c.reachable && !c.full_sync).collect();
    let needed = (ackers + 1).saturating_sub(min_acks).max(1);
    if answering.len() < needed {
        return Err(format!(
            "{} of its {ackers} replicas answer with whole data; {needed} are needed to know every acknowledged write",
            answering.len()
        ));
    }
    let mut highest: BTreeMap<u32, u64> = BTreeMap::new();
    for c in &answering {
        for (&slot, &pos) in &c.positions {
            let h = highest.entry(slot).or_insert(pos);
            *h = (*h).max(pos);
        }
    }
    let complete = |c: &&Candidate| !c.empty && highest.iter().all(|(s, h)| c.positions.get(s) == Some(h));
    answering.iter().copied().filter(complete).max_by(|a, b| b.name.cmp(&a.name)).ok_or_else(|| {
        let behind: Vec<String> = answering
            .iter()
            .map(|c| {
                let short = highest.iter().filter(|(s, h)| c.positions.get(s) != Some(h)).count();
                format!("{} behind on {short} slots", c.name)
            })
            .collect();
        format!("no replica holds every acknowledged write ({})", behind.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn candidate(name: &str, positions: &[(u32, u64)]) -> Candidate {
        Candidate {
            name: name.into(),
            reachable: true,
            full_sync: false,
            empty: false,
            acked: positions.iter().map(|p| p.1).sum(),
            positions: positions.iter().copied().collect(),
        }
    }

    #[test]
    fn replicated_mode_promotes_only_a_replica_shown_complete() {
        let a = candidate("a", &[(0, 10), (1, 20)]);
        let b = candidate("b", &[(0, 12), (1, 20)]);
        // Both answer: b is highest on every slot.
        assert_eq!(choose_complete(&[a.clone(), b.clone()], 2, 1).unwrap().name, "b");
        // One of two answers with one ack per write: the other may hold what it lacks.
        let err = choose_complete(std::slice::from_ref(&a), 2, 1).unwrap_err();
        assert!(err.contains("1 of its 2 replicas") && err.contains("2 are needed"), "{err}");
        // Every replica acknowledges every write: any one that answers will do.
        assert_eq!(choose_complete(std::slice::from_ref(&a), 2, 2).unwrap().name, "a");
        // Each is ahead on a different slot: nobody is complete.
        let c = candidate("c", &[(0, 9), (1, 25)]);
        let err = choose_complete(&[b.clone(), c], 2, 1).unwrap_err();
        assert!(err.contains("no replica holds every acknowledged write"), "{err}");
        // A replica in a full sync counts as not answering.
        let syncing = Candidate { full_sync: true, ..b.clone() };
        assert!(choose_complete(&[a.clone(), syncing], 2, 1).is_err());
        // One lacking a slot cannot be promoted, but its position still counts.
        let lacking = Candidate { empty: true, positions: [(0, 30)].into(), ..b.clone() };
        assert!(choose_complete(&[a, lacking], 2, 1).is_err());
    }

    fn counts(owned: &BTreeMap<u32, Vec<u32>>) -> BTreeMap<u32, usize> {
        owned.iter().map(|(g, s)| (*g, s.len())).collect()
    }

    fn apply(owned: &mut BTreeMap<u32, Vec<u32>>, moves: &[Move]) {
        for m in moves {
            let from = owned.get_mut(&m.from).unwrap();
            for s in &m.slots {
                let at = from.iter().position(|x| x == s).expect("moved slot owned by its source");
                from.remove(at);
            }
            owned.entry(m.to).or_default().extend(&m.slots);
        }
        owned.retain(|_, s| !s.is_empty());
    }

    /// The fewest slots any balanced layout needs to move: tries every choice of which groups
    /// get the extra slot.
    fn brute_force_minimum(owned: &BTreeMap<u32, Vec<u32>>, groups: u32) -> usize {
        let total: usize = owned.values().map(Vec::len).sum();
        let (base, extra) = (total / groups as usize, total % groups as usize);
        let mut best = usize::MAX;
        for mask in 0u32..(1 << groups) {
            if mask.count_ones() as usize != extra {
                continue;
            }
            let moved: usize = owned
                .iter()
                .map(|(&g, s)| {
                    let t = if g < groups { base + usize::from(mask & (1 << g) != 0) } else { 0 };
                    s.len().saturating_sub(t)
                })
                .sum();
            best = best.min(moved);
        }
        best
    }

    #[test]
    fn initial_split_is_contiguous_and_even() {
        let split = initial_split(1024, 3);
        assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), vec![341, 341, 342]);
        assert_eq!(split[0][0], 0);
        assert_eq!(*split[2].last().unwrap(), 1023);
        assert_eq!(initial_split(4, 2), vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn growing_from_two_to_three_groups_moves_a_third() {
        let owned: BTreeMap<u32, Vec<u32>> =
            initial_split(1024, 2).into_iter().enumerate().map(|(g, s)| (g as u32, s)).collect();
        let moves = rebalance(&owned, 3);
        let moved: usize = moves.iter().map(|m| m.slots.len()).sum();
        assert_eq!(moved, 341);
        assert!(moves.iter().all(|m| m.to == 2));
    }

    #[test]
    fn failover_picks_the_most_caught_up_safe_replica() {
        let c = |name: &str, acked, full_sync, empty, reachable| Candidate {
            name: name.into(),
            reachable,
            full_sync,
            empty,
            acked,
            positions: BTreeMap::new(),
        };
        let list = vec![
            c("r0", 100, false, false, true),
            c("r1", 900, true, false, true),   // most acked, but mid full sync
            c("r2", 950, false, false, false), // unreachable
            c("r3", 0, false, true, true),     // empty
            c("r4", 300, false, false, true),
        ];
        assert_eq!(choose_new_master(&list).unwrap().name, "r4");
        assert_eq!(choose_new_master(&list[1..4]), None, "no safe choice: wait");
    }

    fn layout() -> impl Strategy<Value = BTreeMap<u32, Vec<u32>>> {
        (1u32..64, 1u32..7).prop_flat_map(|(slots, groups)| {
            proptest::collection::vec(0..groups, slots as usize).prop_map(|owners| {
                let mut owned: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
                for (slot, g) in owners.into_iter().enumerate() {
                    owned.entry(g).or_default().push(slot as u32);
                }
                owned
            })
        })
    }

    proptest! {
        #[test]
        fn rebalancing_evens_out_with_the_fewest_moves(owned in layout(), groups in 1u32..7) {
            let total: usize = owned.values().map(Vec::len).sum();
            let moves = rebalance(&owned, groups);
            let mut after = owned.clone();
            apply(&mut after, &moves);
            // Every slot still has exactly one owner, and only staying groups own slots.
            let mut all: Vec<u32> = after.values().flatten().copied().collect();
            all.sort_unstable();
            prop_assert_eq!(all, (0..total as u32).collect::<Vec<_>>());
            prop_assert!(after.keys().all(|&g| g < groups));
            // Balanced: max - min <= 1 over the staying groups (a group with none counts as 0).
            let c = counts(&after);
            let sizes: Vec<usize> = (0..groups).map(|g| c.get(&g).copied().unwrap_or(0)).collect();
            prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{:?}", sizes);
            // Minimal.
            let moved: usize = moves.iter().map(|m| m.slots.len()).sum();
            prop_assert_eq!(moved, brute_force_minimum(&owned, groups));
            // Idempotent: a balanced layout needs no move.
            prop_assert!(rebalance(&after, groups).is_empty());
        }
    }
}
