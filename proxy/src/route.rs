//! The routing table: per table, slot -> group, and group -> master address, with an epoch.
//! Pure data and parsing; no I/O.
//!
//! The operator sets a table with
//! `PXROUTE SET <epoch> <table> <slot-count> <group> <addr> <slots> [<group> <addr> <slots> ...]`
//! (slots in Pika's range syntax, possibly empty `""`). A smaller epoch than the current one is
//! refused, so a delayed update from an old operator leader cannot undo a newer one; the same
//! epoch is accepted only with the same content (an idempotent retry).

use std::collections::BTreeMap;

use common::slotset::{format_slots, parse_slots};

/// One group's master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub addr: String,
}

/// Routes of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRoute {
    pub slot_count: u32,
    pub groups: Vec<Group>,
    /// Per slot, an index into `groups` (None: no owner known).
    pub owner: Vec<Option<u16>>,
}

impl TableRoute {
    pub fn empty(slot_count: u32) -> TableRoute {
        TableRoute { slot_count, groups: Vec::new(), owner: vec![None; slot_count as usize] }
    }

    /// The master address serving `slot`.
    pub fn addr(&self, slot: u32) -> Option<&str> {
        let g = (*self.owner.get(slot as usize)?)?;
        Some(self.groups[g as usize].addr.as_str())
    }

    /// Every distinct master address, in group order.
    pub fn addrs(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for g in &self.groups {
            if !out.contains(&g.addr) {
                out.push(g.addr.clone());
            }
        }
        out
    }

    /// Slots of each group, for display.
    pub fn group_slots(&self) -> Vec<(&Group, String)> {
        self.groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let slots: Vec<u32> =
                    (0..self.slot_count).filter(|&s| self.owner[s as usize] == Some(i as u16)).collect();
                (g, format_slots(&slots))
            })
            .collect()
    }
}

/// The whole table set at one epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    pub epoch: u64,
    pub tables: BTreeMap<u32, TableRoute>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("ERR syntax: {0}")]
    Syntax(String),
    #[error("ERR stale route epoch {got} (current {current})")]
    Stale { got: u64, current: u64 },
    #[error("ERR route epoch {0} already set with a different table")]
    Conflict(u64),
}

/// A parsed `PXROUTE SET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteUpdate {
    pub epoch: u64,
    pub table: u32,
    pub route: TableRoute,
}

fn num<T: std::str::FromStr>(arg: &[u8], what: &str) -> Result<T, RouteError> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| RouteError::Syntax(format!("bad {what} {:?}", String::from_utf8_lossy(arg))))
}

impl RouteUpdate {
    /// Parses the arguments after `PXROUTE SET`.
    pub fn parse(args: &[&[u8]]) -> Result<RouteUpdate, RouteError> {
        if args.len() < 3 || !(args.len() - 3).is_multiple_of(3) {
            return Err(RouteError::Syntax(
                "expected <epoch> <table> <slot-count> followed by <group> <addr> <slots> triples".into(),
            ));
        }
        let epoch: u64 = num(args[0], "epoch")?;
        let table: u32 = num(args[1], "table")?;
        let slot_count: u32 = num(args[2], "slot count")?;
        if slot_count == 0 || slot_count > 1 << 16 {
            return Err(RouteError::Syntax(format!("slot count {slot_count} out of range")));
        }
        let mut route = TableRoute::empty(slot_count);
        for triple in args[3..].chunks(3) {
            let name = String::from_utf8_lossy(triple[0]).into_owned();
            let addr = String::from_utf8_lossy(triple[1]).into_owned();
            if !addr.contains(':') {
                return Err(RouteError::Syntax(format!("bad address {addr:?}")));
            }
            if route.groups.iter().any(|g| g.name == name) {
                return Err(RouteError::Syntax(format!("group {name} listed twice")));
            }
            let slots = parse_slots(&String::from_utf8_lossy(triple[2]))
                .map_err(|e| RouteError::Syntax(format!("group {name}: {e}")))?;
            let index = route.groups.len() as u16;
            for s in slots {
                let cell = route
                    .owner
                    .get_mut(s as usize)
                    .ok_or_else(|| RouteError::Syntax(format!("slot {s} beyond the slot count {slot_count}")))?;
                if cell.is_some() {
                    return Err(RouteError::Syntax(format!("slot {s} assigned twice")));
                }
                *cell = Some(index);
            }
            route.groups.push(Group { name, addr });
        }
        Ok(RouteUpdate { epoch, table, route })
    }
}

impl Routes {
    /// The routes after `update`, or why it is refused.
    pub fn apply(&self, update: RouteUpdate) -> Result<Routes, RouteError> {
        if update.epoch < self.epoch {
            return Err(RouteError::Stale { got: update.epoch, current: self.epoch });
        }
        if update.epoch == self.epoch && self.epoch != 0 {
            return match self.tables.get(&update.table) {
                Some(existing) if *existing == update.route => Ok(self.clone()),
                _ => Err(RouteError::Conflict(update.epoch)),
            };
        }
        let mut next = self.clone();
        next.epoch = update.epoch;
        next.tables.insert(update.table, update.route);
        Ok(next)
    }

    pub fn table(&self, id: u32) -> Option<&TableRoute> {
        self.tables.get(&id)
    }

    /// A human-readable dump (`PXROUTE GET`), one line per group.
    pub fn describe(&self) -> String {
        let mut out = format!("epoch {}\n", self.epoch);
        for (id, t) in &self.tables {
            out.push_str(&format!("table {id} slots {}\n", t.slot_count));
            for (g, slots) in t.group_slots() {
                out.push_str(&format!("group {} {} {}\n", g.name, g.addr, slots));
            }
        }
        out
    }
}

/// What one node reported: per table, its slot count and the master slots it accepts writes for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    pub addr: String,
    pub tables: Vec<(u32, u32, Vec<u32>)>,
}

/// Builds routes from the nodes' own reports (each node is its own group, named by address),
/// keeping `current`'s epoch. Where two nodes claim a slot, the current owner wins if it is one
/// of them, else the first reporter; the conflicts are returned for logging.
pub fn from_reports(current: &Routes, reports: &[NodeReport]) -> (Routes, Vec<(u32, u32)>) {
    let mut next = Routes { epoch: current.epoch, tables: BTreeMap::new() };
    let mut conflicts = Vec::new();
    for report in reports {
        for (table, slot_count, slots) in &report.tables {
            let route = next.tables.entry(*table).or_insert_with(|| TableRoute::empty(*slot_count));
            if route.slot_count != *slot_count {
                continue; // a node with another layout for this table: ignore its claims
            }
            let index = match route.groups.iter().position(|g| g.addr == report.addr) {
                Some(i) => i as u16,
                None => {
                    route.groups.push(Group { name: report.addr.clone(), addr: report.addr.clone() });
                    (route.groups.len() - 1) as u16
                }
            };
            for &s in slots {
                let Some(cell) = route.owner.get_mut(s as usize) else { continue };
                match *cell {
                    None => *cell = Some(index),
                    Some(other) if other != index => {
                        conflicts.push((*table, s));
                        let current_addr = current.table(*table).and_then(|t| t.addr(s));
                        if current_addr == Some(report.addr.as_str()) {
                            *cell = Some(index);
                        }
                    }
                    Some(_) => {}
                }
            }
        }
    }
    (next, conflicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(args: &[&str]) -> Result<RouteUpdate, RouteError> {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        RouteUpdate::parse(&bytes)
    }

    #[test]
    fn parses_and_routes() {
        let u = update(&["3", "0", "8", "g1", "10.0.0.1:9221", "0-3", "g2", "10.0.0.2:9221", "4-6", "g3", "h:1", ""])
            .unwrap();
        let routes = Routes::default().apply(u).unwrap();
        let t = routes.table(0).unwrap();
        assert_eq!(t.addr(0), Some("10.0.0.1:9221"));
        assert_eq!(t.addr(6), Some("10.0.0.2:9221"));
        assert_eq!(t.addr(7), None);
        assert_eq!(routes.epoch, 3);
        assert!(routes.describe().contains("group g2 10.0.0.2:9221 4-6\n"));
    }

    #[test]
    fn bad_updates_are_refused() {
        assert!(update(&["1", "0"]).is_err());
        assert!(update(&["x", "0", "8"]).is_err());
        assert!(update(&["1", "0", "8", "g", "noport", "0"]).is_err());
        assert!(update(&["1", "0", "8", "g", "a:1", "0-8"]).is_err(), "slot beyond count");
        assert!(update(&["1", "0", "8", "g", "a:1", "0-3", "h", "b:1", "3"]).is_err(), "slot twice");
        assert!(update(&["1", "0", "8", "g", "a:1", "0", "g", "b:1", "1"]).is_err(), "group twice");
    }

    #[test]
    fn epochs_only_move_forward() {
        let r = Routes::default().apply(update(&["5", "0", "4", "g", "a:1", "0-3"]).unwrap()).unwrap();
        let stale = r.apply(update(&["4", "0", "4", "g", "b:1", "0-3"]).unwrap());
        assert_eq!(stale, Err(RouteError::Stale { got: 4, current: 5 }));
        assert_eq!(r.apply(update(&["5", "0", "4", "g", "a:1", "0-3"]).unwrap()).unwrap(), r, "idempotent");
        assert_eq!(r.apply(update(&["5", "0", "4", "g", "b:1", "0-3"]).unwrap()), Err(RouteError::Conflict(5)));
        assert!(r.apply(update(&["6", "0", "4", "g", "b:1", "0-3"]).unwrap()).is_ok());
    }

    #[test]
    fn reports_build_a_table_and_conflicts_keep_the_current_owner() {
        let current = Routes::default().apply(update(&["2", "0", "4", "g", "b:1", "2"]).unwrap()).unwrap();
        let reports = vec![
            NodeReport { addr: "a:1".into(), tables: vec![(0, 4, vec![0, 1, 2])] },
            NodeReport { addr: "b:1".into(), tables: vec![(0, 4, vec![2, 3])] },
        ];
        let (routes, conflicts) = from_reports(&current, &reports);
        let t = routes.table(0).unwrap();
        assert_eq!((t.addr(0), t.addr(2), t.addr(3)), (Some("a:1"), Some("b:1"), Some("b:1")));
        assert_eq!(conflicts, vec![(0, 2)]);
        assert_eq!(routes.epoch, 2);
    }
}
