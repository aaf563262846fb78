//! Background expiry: walks each owned slot's expiry index (keys ordered by expiry time) and
//! deletes what is due. Reads already treat expired keys as absent; this reclaims their space.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::server::Server;
use crate::slots::Slot;
use crate::storage::encoding::{decode_expire_key, TAG_EXPIRE};
use crate::storage::{now_ms, Meta};

/// Keys removed per slot per pass, so one pass never holds a slot's write lock for long.
const BATCH: usize = 200;

pub async fn run(server: Arc<Server>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if server.is_shutting_down() {
            return;
        }
        let topology = server.slots.snapshot();
        for table in topology.tables.values() {
            for slot in table.owned() {
                // Replica slots receive their deletes from the master.
                if slot.is_replica() {
                    continue;
                }
                match expire_slot(&server, slot) {
                    Ok(n) => {
                        server.stats.expired_keys.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(err) => tracing::warn!(slot = slot.id, error = %err, "background expiry failed"),
                }
            }
        }
    }
}

/// Deletes up to [`BATCH`] due keys of one slot; returns how many.
pub fn expire_slot(server: &Server, slot: &Arc<Slot>) -> Result<usize, crate::error::CmdError> {
    let now = now_ms();
    let generation = {
        // A slot whose lock is held (a write, perhaps waiting out a write stall) is left for a
        // later pass rather than waited for on an async worker.
        let Some(state) = slot.lock.try_lock() else { return Ok(0) };
        if state.next_expiry > now {
            return Ok(0); // nothing due: no RocksDB access at all
        }
        state.expiry_gen
    };
    let (start, end) = slot.prefix.tag_range(TAG_EXPIRE);
    // Peek without the lock first: most passes find little to do.
    let mut due: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut next_after = u64::MAX;
    {
        let mut iter = server.store.raw_iter(&start, &end);
        iter.seek_to_first();
        while iter.valid() && due.len() < BATCH {
            let Some((at, key)) = iter.key().and_then(decode_expire_key) else { break };
            if at > now {
                next_after = at;
                break;
            }
            due.push((at, key.to_vec()));
            iter.next();
        }
        if due.len() == BATCH {
            next_after = 0; // more may be due: look again next pass
        }
    }
    if due.is_empty() {
        let mut state = slot.state();
        // A write that set an earlier expiry meanwhile has already lowered it: keep that.
        if state.expiry_gen == generation {
            state.next_expiry = next_after;
        }
        return Ok(0);
    }
    let mut txn = server.store.txn(slot.prefix, &slot.cache, Some(&slot.lock));
    if !slot.alive.load(Ordering::Acquire) || slot.write_refusal().is_some() {
        return Ok(0);
    }
    // Look again on the next pass: the remaining entries (if any) decide then.
    txn.reset_next_expiry();
    let mut removed = 0;
    for (at, key) in due {
        let meta = txn.get(&slot.prefix.meta_key(&key))?.and_then(|raw| Meta::decode(&raw));
        match meta {
            Some(meta) if meta.expire_at == at => {
                txn.delete_key(&key, &meta)?;
                removed += 1;
            }
            // The key is gone or has another expiry now: the index entry is stale.
            _ => txn.delete(slot.prefix.expire_key(at, &key)),
        }
    }
    txn.commit()?;
    Ok(removed)
}
