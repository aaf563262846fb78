//! Wake-ups for blocked clients (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH).
//!
//! A blocked client registers its keys with its own notifier, then retries its pop each time it
//! is woken, until it gets something or times out. A push signals every client waiting on the
//! key with `notify_one`, which leaves a permit when the client is not parked yet, so a push that
//! lands between a failed attempt and the wait is never missed.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

type WaitKey = (u32, Vec<u8>);

#[derive(Default)]
pub struct Blocking {
    waiters: Mutex<HashMap<WaitKey, Vec<Arc<Notify>>>>,
}

/// A client's registration on its keys; dropping it unregisters.
pub struct Interest<'a> {
    blocking: &'a Blocking,
    keys: Vec<WaitKey>,
    pub notify: Arc<Notify>,
}

impl Blocking {
    pub fn register(&self, table: u32, keys: &[bytes::Bytes]) -> Interest<'_> {
        let notify = Arc::new(Notify::new());
        let keys: Vec<WaitKey> = keys.iter().map(|k| (table, k.to_vec())).collect();
        let mut map = self.waiters.lock();
        for key in &keys {
            map.entry(key.clone()).or_default().push(notify.clone());
        }
        Interest { blocking: self, keys, notify }
    }

    /// Called after a push to `key` has been committed.
    pub fn signal(&self, table: u32, key: &[u8]) {
        let map = self.waiters.lock();
        if map.is_empty() {
            return;
        }
        if let Some(clients) = map.get(&(table, key.to_vec())) {
            for client in clients {
                client.notify_one();
            }
        }
    }

    /// Number of clients blocked on at least one key (INFO `blocked_clients` counts clients).
    pub fn blocked_keys(&self) -> usize {
        self.waiters.lock().len()
    }
}

impl Drop for Interest<'_> {
    fn drop(&mut self) {
        let mut map = self.blocking.waiters.lock();
        for key in &self.keys {
            if let Some(clients) = map.get_mut(key) {
                clients.retain(|c| !Arc::ptr_eq(c, &self.notify));
                if clients.is_empty() {
                    map.remove(key);
                }
            }
        }
    }
}
