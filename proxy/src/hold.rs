//! Held slots and the requests parked on them during a cutover. Pure bookkeeping (the proxy
//! re-dispatches what `release` hands back); bounded by bytes, each request with a deadline.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// A parked request: its arguments, the client it came from, and where its reply goes.
pub struct Parked<R> {
    pub args: Vec<bytes::Bytes>,
    pub client: u64,
    /// When the request first arrived (a retried request parks late but keeps its place).
    pub arrival: Instant,
    pub deadline: Instant,
    pub reply: R,
    bytes: usize,
}

struct Hold<R> {
    since: Instant,
    queue: VecDeque<Parked<R>>,
}

/// Why a request could not be parked.
#[derive(Debug, PartialEq, Eq)]
pub enum ParkError {
    /// The parked requests already use the memory bound.
    Full,
}

pub struct Holds<R> {
    held: BTreeMap<(u32, u32), Hold<R>>,
    bytes: usize,
    max_bytes: usize,
}

impl<R> Holds<R> {
    pub fn new(max_bytes: usize) -> Self {
        Holds { held: BTreeMap::new(), bytes: 0, max_bytes }
    }

    pub fn is_held(&self, table: u32, slot: u32) -> bool {
        self.held.contains_key(&(table, slot))
    }

    pub fn any_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// Holds slots (already held ones stay as they are).
    pub fn hold(&mut self, table: u32, slots: &[u32], now: Instant) {
        for &s in slots {
            self.held.entry((table, s)).or_insert_with(|| Hold { since: now, queue: VecDeque::new() });
        }
    }

    /// Releases slots (all held slots of `table` when `slots` is None), returning their parked
    /// requests in arrival order, slot by slot.
    pub fn release(&mut self, table: u32, slots: Option<&[u32]>) -> Vec<Parked<R>> {
        let keys: Vec<(u32, u32)> = match slots {
            Some(list) => list.iter().map(|&s| (table, s)).filter(|k| self.held.contains_key(k)).collect(),
            None => self.held.keys().filter(|k| k.0 == table).copied().collect(),
        };
        let mut out = Vec::new();
        for k in keys {
            if let Some(hold) = self.held.remove(&k) {
                for p in hold.queue {
                    self.bytes -= p.bytes;
                    out.push(p);
                }
            }
        }
        out.sort_by_key(|p| p.arrival);
        out
    }

    /// Parks a request on a held slot.
    pub fn park(&mut self, table: u32, slot: u32, parked: Parked<R>) -> Result<(), (ParkError, Parked<R>)> {
        if self.bytes + parked.bytes > self.max_bytes {
            return Err((ParkError::Full, parked));
        }
        match self.held.get_mut(&(table, slot)) {
            Some(hold) => {
                self.bytes += parked.bytes;
                hold.queue.push_back(parked);
                Ok(())
            }
            None => Err((ParkError::Full, parked)),
        }
    }

    /// Requests past their deadline, removed.
    pub fn expired(&mut self, now: Instant) -> Vec<(u32, Parked<R>)> {
        let mut out = Vec::new();
        for ((_, slot), hold) in self.held.iter_mut() {
            while hold.queue.front().is_some_and(|p| p.deadline <= now) {
                let p = hold.queue.pop_front().expect("checked");
                self.bytes -= p.bytes;
                out.push((*slot, p));
            }
        }
        out
    }

    /// Holds older than `max_age` (an operator that died mid-cutover), as (table, slot).
    pub fn stale(&self, max_age: Duration, now: Instant) -> Vec<(u32, u32)> {
        self.held.iter().filter(|(_, h)| now.duration_since(h.since) >= max_age).map(|(k, _)| *k).collect()
    }

    pub fn parked_count(&self) -> usize {
        self.held.values().map(|h| h.queue.len()).sum()
    }

    pub fn held_slots(&self) -> usize {
        self.held.len()
    }
}

impl<R> Parked<R> {
    pub fn new(args: Vec<bytes::Bytes>, client: u64, arrival: Instant, deadline: Instant, reply: R) -> Self {
        let bytes = args.iter().map(|a| a.len() + 16).sum();
        Parked { args, client, arrival, deadline, reply, bytes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(n: u8, deadline: Instant) -> Parked<u8> {
        Parked::new(vec![bytes::Bytes::from(vec![n; 10])], 1, deadline, deadline, n)
    }

    #[test]
    fn park_release_in_order_and_bounded() {
        let now = Instant::now();
        let mut h = Holds::new(100);
        h.hold(0, &[5, 6], now);
        assert!(h.is_held(0, 5) && !h.is_held(0, 7));
        for i in 0..3 {
            assert!(h.park(0, 5, parked(i, now + Duration::from_secs(1 + i as u64))).is_ok());
        }
        assert!(h.park(0, 7, parked(9, now)).is_err(), "not held");
        // 3 x 26 bytes parked; a fourth would exceed 100.
        assert!(matches!(h.park(0, 6, parked(3, now + Duration::from_secs(9))), Err((ParkError::Full, _))));
        let released = h.release(0, None);
        assert_eq!(released.iter().map(|p| p.reply).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(!h.any_held());
        assert_eq!(h.parked_count(), 0);
    }

    #[test]
    fn deadlines_and_stale_holds() {
        let now = Instant::now();
        let mut h = Holds::new(1000);
        h.hold(0, &[1], now);
        h.park(0, 1, parked(1, now + Duration::from_millis(10))).ok().unwrap();
        h.park(0, 1, parked(2, now + Duration::from_secs(10))).ok().unwrap();
        let gone = h.expired(now + Duration::from_millis(20));
        assert_eq!(gone.iter().map(|(s, p)| (*s, p.reply)).collect::<Vec<_>>(), vec![(1, 1)]);
        assert_eq!(h.parked_count(), 1);
        assert!(h.stale(Duration::from_secs(60), now).is_empty());
        assert_eq!(h.stale(Duration::from_secs(60), now + Duration::from_secs(61)), vec![(0, 1)]);
    }
}
