//! A model of a cluster driven by the planner and the cutover/failover step order: for any
//! sequence of scale-out, scale-in, master failure and return events, no slot ever has two
//! writable masters, and after every event each slot has exactly one (every group keeps at
//! least one live member able to take over), with the slots evened out.

use std::collections::BTreeMap;

use pika_operator::planner::{self, Candidate};
use proptest::prelude::*;

const SLOTS: u32 = 24;
const REPLICAS: usize = 1;

#[derive(Debug, Clone)]
struct Member {
    alive: bool,
    /// Per slot: (owned, master role, fenced).
    slots: BTreeMap<u32, (bool, bool)>,
}

#[derive(Debug, Clone)]
struct Group {
    members: Vec<Member>,
    master: usize,
}

#[derive(Debug, Clone, Default)]
struct Cluster {
    groups: BTreeMap<u32, Group>,
}

#[derive(Debug, Clone)]
enum Event {
    Scale(u32),
    FailMaster(u32),
    Return(u32),
}

impl Cluster {
    fn new_group(&mut self, g: u32) {
        let members = (0..=REPLICAS).map(|_| Member { alive: true, slots: BTreeMap::new() }).collect();
        self.groups.insert(g, Group { members, master: 0 });
    }

    /// Writable copies of `slot`: a live member holding it as an unfenced master.
    fn writable(&self, slot: u32) -> usize {
        self.groups
            .values()
            .flat_map(|g| &g.members)
            .filter(|m| m.alive && m.slots.get(&slot).is_some_and(|&(master, fenced)| master && !fenced))
            .count()
    }

    fn check_at_most_one(&self) -> Result<(), TestCaseError> {
        for s in 0..SLOTS {
            prop_assert!(self.writable(s) <= 1, "slot {} has {} writable masters: {:?}", s, self.writable(s), self);
        }
        Ok(())
    }

    /// Group -> slots its master serves (what the operator observes).
    fn owned(&self) -> BTreeMap<u32, Vec<u32>> {
        let mut out: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (&g, group) in &self.groups {
            let m = &group.members[group.master];
            for (&s, &(master, fenced)) in &m.slots {
                if master && !fenced {
                    out.entry(g).or_default().push(s);
                }
            }
        }
        out
    }

    fn set(&mut self, g: u32, member: usize, slots: &[u32], value: Option<(bool, bool)>) {
        let m = &mut self.groups.get_mut(&g).unwrap().members[member];
        for s in slots {
            match value {
                Some(v) => {
                    m.slots.insert(*s, v);
                }
                None => {
                    m.slots.remove(s);
                }
            }
        }
    }

    /// The seven cutover steps, checking the invariant after each.
    fn cutover(&mut self, from: u32, to: u32, slots: &[u32]) -> Result<(), TestCaseError> {
        let to_members = self.groups[&to].members.len();
        for m in 0..to_members {
            self.set(to, m, slots, Some((false, false))); // 1-3: owned as replicas
        }
        self.check_at_most_one()?;
        let fm = self.groups[&from].master;
        self.set(from, fm, slots, Some((true, true))); // 5: fence
        self.check_at_most_one()?;
        let tm = self.groups[&to].master;
        self.set(to, tm, slots, Some((true, false))); // 6: promote
        self.check_at_most_one()?;
        let from_members = self.groups[&from].members.len();
        for m in 0..from_members {
            self.set(from, m, slots, None); // 7: delete everywhere in the source
            self.check_at_most_one()?;
        }
        Ok(())
    }

    fn apply(&mut self, event: &Event) -> Result<(), TestCaseError> {
        match *event {
            Event::Scale(n) => {
                for g in 0..n {
                    if !self.groups.contains_key(&g) {
                        self.new_group(g);
                    }
                }
                if self.owned().is_empty() {
                    for (g, slots) in planner::initial_split(SLOTS, n).into_iter().enumerate() {
                        let g = g as u32;
                        for m in 0..self.groups[&g].members.len() {
                            let master = m == self.groups[&g].master;
                            self.set(g, m, &slots, Some((master, false)));
                        }
                    }
                }
                for mv in planner::rebalance(&self.owned(), n) {
                    self.cutover(mv.from, mv.to, &mv.slots)?;
                }
                let retired: Vec<u32> = self.groups.keys().copied().filter(|&g| g >= n).collect();
                for g in retired {
                    prop_assert!(!self.owned().contains_key(&g), "a group is removed only when it owns no slot");
                    self.groups.remove(&g);
                }
                let c: Vec<usize> = (0..n).map(|g| self.owned().get(&g).map_or(0, Vec::len)).collect();
                prop_assert!(c.iter().max().unwrap() - c.iter().min().unwrap() <= 1, "{:?}", c);
            }
            Event::FailMaster(g) => {
                let Some(group) = self.groups.get_mut(&g) else { return Ok(()) };
                let old = group.master;
                if !group.members[old].alive {
                    return Ok(());
                }
                group.members[old].alive = false;
                self.check_at_most_one()?;
                // Failover: the planner picks among live replicas; only what the old master
                // served is promoted.
                let group = &self.groups[&g];
                let served: Vec<u32> =
                    group.members[old].slots.iter().filter(|(_, &(m, f))| m && !f).map(|(s, _)| *s).collect();
                let candidates: Vec<Candidate> = group
                    .members
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != old)
                    .map(|(i, m)| Candidate {
                        name: i.to_string(),
                        reachable: m.alive,
                        full_sync: false,
                        empty: m.slots.is_empty(),
                        acked: 0,
                        positions: Default::default(),
                    })
                    .collect();
                let Some(chosen) = planner::choose_new_master(&candidates) else { return Ok(()) };
                let new: usize = chosen.name.parse().unwrap();
                self.set(g, new, &served, Some((true, false)));
                self.groups.get_mut(&g).unwrap().master = new;
            }
            Event::Return(g) => {
                let Some(group) = self.groups.get_mut(&g) else { return Ok(()) };
                let master = group.master;
                // A returning old master comes back fenced, then becomes a replica.
                for (i, m) in group.members.iter_mut().enumerate() {
                    if !m.alive && i != master {
                        for v in m.slots.values_mut() {
                            v.1 = true;
                        }
                        m.alive = true;
                        for v in m.slots.values_mut() {
                            *v = (false, false);
                        }
                    }
                }
            }
        }
        self.check_at_most_one()?;
        // Every slot has exactly one writable master after every event.
        for s in 0..SLOTS {
            prop_assert_eq!(self.writable(s), 1, "slot {} after {:?}: {:?}", s, event, self);
        }
        Ok(())
    }
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (1u32..6).prop_map(Event::Scale),
        (0u32..6).prop_map(Event::FailMaster),
        (0u32..6).prop_map(Event::Return),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn every_slot_keeps_exactly_one_writable_master(start in 1u32..5, events in proptest::collection::vec(event(), 1..25)) {
        let mut c = Cluster::default();
        c.apply(&Event::Scale(start))?;
        for e in &events {
            // One failure per group at a time: a group whose master is down gets its old one
            // back before it can fail again (the operator waits as well).
            if let Event::FailMaster(g) = e {
                if c.groups.get(g).is_some_and(|gr| gr.members.iter().any(|m| !m.alive)) {
                    continue;
                }
            }
            c.apply(e)?;
        }
    }
}
