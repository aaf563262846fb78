//! The checker: the clients' history against what the cluster holds at the end, in the manner
//! of Jepsen's set and counter checkers. Pure: no I/O, so each rule has a unit test.
//!
//! - lost: an acknowledged write that is not there;
//! - duplicated: a write applied more than once (a pushed element present twice, a counter
//!   above the number of INCRs sent);
//! - phantom: a value that no client wrote.
//!
//! Asynchronous replication loses, by design, what a master acknowledged but had not yet sent to
//! its replica when it died or was cut off. Lost writes acknowledged shortly before such a
//! master fault, on a slot the faulted master served, are counted apart as `lost_async`: they
//! are reported, not hidden, and not a pass (replicated acknowledgement closes that case).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::history::{Entry, Op, Outcome};

/// How long before a master fault an acknowledged write may still have been on its way to the
/// replica. Replication lag on loopback is milliseconds; a throttled replica can be seconds.
pub const ASYNC_WINDOW: Duration = Duration::from_secs(10);

/// A master killed or stopped: the slots it accepted writes for at that moment.
#[derive(Debug, Clone)]
pub struct MasterFault {
    pub at: Instant,
    pub slots: HashSet<u32>,
}

/// What the cluster holds at the end.
#[derive(Debug, Default, Clone)]
pub struct ReadBack {
    pub strings: HashMap<String, Option<String>>,
    pub lists: HashMap<String, Vec<String>>,
    pub counters: HashMap<String, i64>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub acknowledged: u64,
    pub unknown: u64,
    pub lost: u64,
    pub lost_async: u64,
    pub duplicated: u64,
    pub phantom: u64,
    /// A few examples of each anomaly, for the report.
    pub examples: Vec<String>,
}

impl Verdict {
    fn note(&mut self, example: String) {
        if self.examples.len() < 20 {
            self.examples.push(example);
        }
    }

    /// No acknowledged write lost for any reason, nothing duplicated or invented.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.lost_async == 0 && self.duplicated == 0 && self.phantom == 0
    }
}

/// Whether losing a write acknowledged at `acked` on `slot` is explained by asynchronous
/// replication: a master serving that slot failed within [`ASYNC_WINDOW`] after it.
fn async_loss(faults: &[MasterFault], slot: u32, acked: Instant) -> bool {
    faults.iter().any(|f| f.slots.contains(&slot) && acked <= f.at && f.at.duration_since(acked) <= ASYNC_WINDOW)
}

pub fn check(history: &[Entry], back: &ReadBack, faults: &[MasterFault], slot_of: impl Fn(&str) -> u32) -> Verdict {
    let mut v = Verdict::default();
    let lost = |v: &mut Verdict, what: String, key: &str, acked: Instant| {
        if async_loss(faults, slot_of(key), acked) {
            v.lost_async += 1;
        } else {
            v.lost += 1;
            v.note(format!("lost: {what}"));
        }
    };
    // Per list, every element sent (acknowledged or not) and when the acknowledged ones were.
    let mut pushed: HashMap<&str, HashMap<&str, Option<Instant>>> = HashMap::new();
    // Per counter, INCRs sent and the acknowledgement times.
    let mut incrs: BTreeMap<&str, (u64, Vec<Instant>)> = BTreeMap::new();
    for e in history {
        match e.outcome {
            Outcome::Acked => v.acknowledged += 1,
            Outcome::Unknown => v.unknown += 1,
        }
        let acked = (e.outcome == Outcome::Acked).then_some(e.replied);
        match &e.op {
            Op::Set { key, value } => match back.strings.get(key.as_str()) {
                Some(Some(read)) if read != value => {
                    v.phantom += 1;
                    v.note(format!("phantom: {key} = {read:?}, written {value:?}"));
                }
                Some(Some(_)) => {}
                _ => {
                    if let Some(at) = acked {
                        lost(&mut v, format!("SET {key} {value}"), key, at);
                    }
                }
            },
            Op::Push { list, element } => {
                pushed.entry(list).or_default().insert(element, acked);
            }
            Op::Incr { counter } => {
                let c = incrs.entry(counter).or_default();
                c.0 += 1;
                c.1.extend(acked);
            }
        }
    }
    for (list, sent) in &pushed {
        let read = back.lists.get(*list).map(Vec::as_slice).unwrap_or_default();
        let mut seen: HashMap<&str, u64> = HashMap::new();
        for element in read {
            *seen.entry(element).or_default() += 1;
        }
        for (element, &count) in &seen {
            if !sent.contains_key(element) {
                v.phantom += count;
                v.note(format!("phantom: {element:?} in {list}"));
            } else if count > 1 {
                v.duplicated += count - 1;
                v.note(format!("duplicated: {element:?} {count} times in {list}"));
            }
        }
        for (element, acked) in sent {
            if let (Some(at), false) = (acked, seen.contains_key(element)) {
                lost(&mut v, format!("RPUSH {list} {element}"), list, *at);
            }
        }
    }
    for (counter, (sent, acks)) in &incrs {
        let value = back.counters.get(*counter).copied().unwrap_or(0).max(0) as u64;
        if value > *sent {
            v.duplicated += value - sent;
            v.note(format!("duplicated: {counter} = {value} after {sent} INCRs"));
        }
        let missing = (acks.len() as u64).saturating_sub(value);
        if missing > 0 {
            // Which increments are missing cannot be told apart: as many as were acknowledged
            // within the window of a fault count as asynchronous losses, the rest as lost.
            let explained = acks.iter().filter(|&&at| async_loss(faults, slot_of(counter), at)).count() as u64;
            let by_async = missing.min(explained);
            v.lost_async += by_async;
            if missing > by_async {
                v.lost += missing - by_async;
                v.note(format!("lost: {counter} = {value} after {} acknowledged INCRs", acks.len()));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(op: Op, outcome: Outcome, at: Instant) -> Entry {
        Entry { op, outcome, error: None, in_doubt: false, sent: at, replied: at }
    }

    fn set(key: &str, value: &str) -> Op {
        Op::Set { key: key.into(), value: value.into() }
    }

    fn push(element: &str) -> Op {
        Op::Push { list: "l".into(), element: element.into() }
    }

    fn incr() -> Op {
        Op::Incr { counter: "c".into() }
    }

    #[test]
    fn acknowledged_writes_that_are_there_pass() {
        let t = Instant::now();
        let history = [entry(set("a", "1"), Outcome::Acked, t), entry(push("x"), Outcome::Acked, t)];
        let mut back = ReadBack::default();
        back.strings.insert("a".into(), Some("1".into()));
        back.lists.insert("l".into(), vec!["x".into()]);
        let v = check(&history, &back, &[], |_| 0);
        assert_eq!((v.acknowledged, v.lost, v.phantom, v.duplicated), (2, 0, 0, 0));
        assert!(v.clean());
    }

    #[test]
    fn a_missing_acknowledged_write_is_lost_and_a_missing_unknown_one_is_not() {
        let t = Instant::now();
        let history = [entry(set("a", "1"), Outcome::Acked, t), entry(set("b", "2"), Outcome::Unknown, t)];
        let v = check(&history, &ReadBack::default(), &[], |_| 0);
        assert_eq!((v.lost, v.unknown), (1, 1));
        assert!(!v.clean());
    }

    #[test]
    fn a_value_nobody_wrote_is_a_phantom() {
        let t = Instant::now();
        let history = [entry(set("a", "1"), Outcome::Unknown, t), entry(push("x"), Outcome::Unknown, t)];
        let mut back = ReadBack::default();
        back.strings.insert("a".into(), Some("9".into()));
        back.lists.insert("l".into(), vec!["x".into(), "zz".into()]);
        let v = check(&history, &back, &[], |_| 0);
        assert_eq!(v.phantom, 2);
    }

    #[test]
    fn an_element_twice_and_a_counter_above_its_incrs_are_duplicates() {
        let t = Instant::now();
        let history = [entry(push("x"), Outcome::Acked, t), entry(incr(), Outcome::Unknown, t)];
        let mut back = ReadBack::default();
        back.lists.insert("l".into(), vec!["x".into(), "x".into()]);
        back.counters.insert("c".into(), 2);
        let v = check(&history, &back, &[], |_| 0);
        assert_eq!(v.duplicated, 2);
    }

    #[test]
    fn a_counter_below_its_acknowledged_incrs_lost_some() {
        let t = Instant::now();
        let history: Vec<Entry> = (0..5).map(|_| entry(incr(), Outcome::Acked, t)).collect();
        let mut back = ReadBack::default();
        back.counters.insert("c".into(), 3);
        let v = check(&history, &back, &[], |_| 0);
        assert_eq!(v.lost, 2);
    }

    #[test]
    fn losses_just_before_a_master_fault_on_their_slot_are_counted_apart() {
        let t = Instant::now();
        let fault = MasterFault { at: t + Duration::from_secs(1), slots: HashSet::from([7]) };
        let long_before = t.checked_sub(ASYNC_WINDOW * 2).expect("the machine is up longer than that");
        let history = [
            entry(set("on7", "1"), Outcome::Acked, t),
            entry(set("on8", "1"), Outcome::Acked, t),
            entry(set("on7-after", "1"), Outcome::Acked, t + Duration::from_secs(2)),
            entry(set("on7-long-before", "1"), Outcome::Acked, long_before),
            entry(incr(), Outcome::Acked, t),
            entry(incr(), Outcome::Acked, t + Duration::from_secs(2)),
        ];
        let slot = |k: &str| if k.starts_with("on8") { 8 } else { 7 };
        let v = check(&history, &ReadBack::default(), &[fault], slot);
        // on7 and one INCR fall in the window; on8 (another slot), the write after the fault,
        // the one long before it and the later INCR do not.
        assert_eq!((v.lost_async, v.lost), (2, 4));
    }
}
