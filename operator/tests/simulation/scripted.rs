//! Scripted scenarios on the simulated cluster: one fault at a chosen point, for rules a seed
//! found broken. Seeds shift whenever the operator's calls change; these stay put.

use std::time::Duration;

use pika_operator::admin::DataPlane;
use pika_operator::control::{self, Cluster, GroupRecord, Member, Record};
use pika_operator::cutover::{self, CutoverError, GroupNodes};
use pika_operator::switchover;

use crate::operator::limits;
use crate::plane::SimPlane;
use crate::world::{node_addr, World};

fn plane() -> SimPlane {
    let mut world = World::new(1, crate::SLOTS);
    for g in 0..2 {
        for m in 0..2 {
            world.add_node(g, m);
        }
    }
    world.add_proxy(0);
    let plane = SimPlane::new(world, tokio::sync::mpsc::unbounded_channel().0);
    plane.op.authority.renewed(tokio::time::Instant::now() + std::time::Duration::from_secs(3600));
    plane
}

/// Runs a scenario on one thread in virtual time, as the simulation runs its seeds.
fn simulated(scenario: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(scenario);
}

/// Client writes through proxy 0 until every slot of `slots` on `node` has taken one.
async fn write_until_logged(p: &SimPlane, node: &str, slots: &str) {
    for _ in 0..1000 {
        if p.slot_info(node, slots).await.unwrap().iter().all(|s| s.binlog_offset > (0, 0)) {
            return;
        }
        p.with(|w| w.client_write(0));
    }
    panic!("no writes landed on {node} for {slots}");
}

/// Lets virtual time pass until `master` streams `slots` to `n` replicas.
async fn until_streaming(plane: &SimPlane, master: &str, slots: &str, n: usize) {
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        plane.with(|w| w.tick());
        let info = plane.slot_info(master, slots).await.unwrap();
        if !info.is_empty() && info.iter().all(|s| s.streaming_replicas() >= n) {
            return;
        }
    }
    panic!("{master} never streamed {slots} to {n} replicas");
}

/// Seed 1193 with every fault: slots moved into a group whose replica was down; the cleanup
/// deleted the old group's copies at once, so the new master held the only copy, and when it
/// died the slots were gone. The old copies must stay until the new group has its replica.
#[test]
fn a_moved_slots_old_copies_stay_until_the_new_group_has_its_replica() {
    simulated(async {
        let p = plane();
        let (a0, a1, b0, b1) = (node_addr(0, 0), node_addr(0, 1), node_addr(1, 0), node_addr(1, 1));
        let slots = "0-3";
        // Group 0 serves the slots with its replica streaming; group 1's master takes them over
        // as a cutover does (follow, fence the source, promote) while group 1's replica is down.
        for n in [&a0, &a1, &b0] {
            p.add_slots(n, slots).await.unwrap();
        }
        p.promote(&a0, slots).await.unwrap();
        p.unfence(&a0, slots).await.unwrap();
        p.follow(&a1, &a0, slots).await.unwrap();
        p.follow(&b0, &a0, slots).await.unwrap();
        until_streaming(&p, &a0, slots, 2).await;
        p.with(|w| w.kill(&b1, 30_000));
        p.fence(&a0, slots).await.unwrap();
        p.promote(&b0, slots).await.unwrap();
        p.unfence(&b0, slots).await.unwrap();

        let from = GroupNodes { master: a0.clone(), replicas: vec![a1.clone()], size: 2 };
        let serving = GroupNodes { master: b0.clone(), replicas: vec![], size: 2 };
        let early = cutover::clean_up_source(&p, &from, &serving, slots, Duration::from_secs(5)).await;
        assert!(matches!(early, Err(CutoverError::Timeout(_))), "{early:?}");
        for n in [&a0, &a1] {
            assert_eq!(p.slot_info(n, slots).await.unwrap().len(), 4, "{n} kept its copies");
        }

        // The replica is back and streams: now the old copies go.
        tokio::time::sleep(Duration::from_secs(30)).await;
        p.with(|w| w.tick());
        p.add_slots(&b1, slots).await.unwrap();
        p.follow(&b1, &b0, slots).await.unwrap();
        until_streaming(&p, &b0, slots, 1).await;
        cutover::clean_up_source(&p, &from, &serving, slots, Duration::from_secs(5)).await.unwrap();
        for n in [&a0, &a1] {
            assert!(p.slot_info(n, slots).await.unwrap().is_empty(), "{n} let go");
        }
    });
}

/// Seed 339: a move abandoned after `addslots` left empty fenced master copies in its target;
/// a later move of the same slots took that group as their source and promoted the empty
/// copies next to the real master. A slot belongs to the group that serves it; one that several
/// groups hold fenced belongs to none until the repair settles it.
#[test]
fn a_migration_moves_slots_from_the_group_that_serves_them() {
    simulated(async {
        let p = plane();
        let (a0, b0) = (node_addr(0, 0), node_addr(1, 0));
        let topology = pika_operator::control::topology_of(
            &[0, 1]
                .into_iter()
                .map(|g| {
                    let members = (0..2)
                        .map(|m| pika_operator::control::Member {
                            name: format!("g{g}-m{m}"),
                            addr: Some(node_addr(g, m)),
                            outdated: false,
                        })
                        .collect();
                    (g, members)
                })
                .collect(),
            &[(0, "g0-m0".to_string()), (1, "g1-m0".to_string())].into_iter().collect(),
            crate::SLOTS,
        )
        .unwrap();
        // g0 serves 0-3; g1 holds empty fenced master copies of 2-3 (an abandoned move).
        p.add_slots(&a0, "0-3").await.unwrap();
        p.promote(&a0, "0-3").await.unwrap();
        p.unfence(&a0, "0-3").await.unwrap();
        p.lease(&a0, 60_000).await.unwrap();
        p.add_slots(&b0, "2-3").await.unwrap();
        p.promote(&b0, "2-3").await.unwrap();
        let held = topology.held(&p).await.unwrap();
        assert_eq!(held.get(&0), Some(&vec![0, 1, 2, 3]));
        assert_eq!(held.get(&1), None, "{held:?}");
        // Fenced everywhere: the copy with the most history (g0's, which took writes).
        let routes = vec![("g0".to_string(), a0.clone(), "0-3".to_string())];
        p.set_route("10.1.0.0:9221", 1, crate::SLOTS, &routes).await.unwrap();
        write_until_logged(&p, &a0, "2-3").await;
        p.fence(&a0, "0-3").await.unwrap();
        let held = topology.held(&p).await.unwrap();
        assert_eq!(held.get(&0), Some(&vec![0, 1, 2, 3]));
        assert_eq!(held.get(&1), None, "{held:?}");
    });
}

/// Group 0 serves every slot from its master a0, its replica a1 following; group 1's master b0
/// follows a0 for 8-11 and streams them (the start of a move, or what an abandoned one left).
/// Returns every slot, in range syntax.
async fn g0_serves_all_and_b0_follows_8_to_11(p: &SimPlane) -> String {
    let (a0, a1, b0) = (node_addr(0, 0), node_addr(0, 1), node_addr(1, 0));
    let all = format!("0-{}", crate::SLOTS - 1);
    for n in [&a0, &a1] {
        p.add_slots(n, &all).await.unwrap();
    }
    p.promote(&a0, &all).await.unwrap();
    p.unfence(&a0, &all).await.unwrap();
    p.lease(&a0, 60_000).await.unwrap();
    p.follow(&a1, &a0, &all).await.unwrap();
    p.add_slots(&b0, "8-11").await.unwrap();
    p.follow(&b0, &a0, "8-11").await.unwrap();
    until_streaming(p, &a0, "8-11", 2).await;
    all
}

/// The two groups of two as a runtime observes them: a node that is down has no address.
fn two_groups(p: &SimPlane) -> Cluster {
    let member = |g: u32, m: u32| {
        let addr = node_addr(g, m);
        let alive = p.with(|w| w.nodes[&addr].alive);
        Member { name: format!("g{g}-m{m}"), addr: alive.then_some(addr), outdated: false }
    };
    Cluster {
        slots: crate::SLOTS,
        groups: 2,
        failover_after: Duration::from_secs(3),
        min_replica_acks: 0,
        members: [(0, vec![member(0, 0), member(0, 1)]), (1, vec![member(1, 0), member(1, 1)])].into(),
        proxies: vec![],
        in_flight: vec![],
    }
}

/// The operator's record: each group's master (a member name) and the slots recorded as its.
fn recorded(groups: [(&str, Vec<u32>); 2]) -> Record {
    let mut record = Record::default();
    for (g, (master, slots)) in groups.into_iter().enumerate() {
        record.groups.insert(g as u32, GroupRecord { master: Some(master.into()), slots, ..GroupRecord::default() });
    }
    record
}

/// One data-plane pass over the two groups, `after` some virtual time has passed.
async fn pass_after(p: &SimPlane, after: Duration, record: &mut Record) {
    tokio::time::sleep(after).await;
    p.with(|w| w.tick());
    let _ = control::pass(p, &two_groups(p), record, &mut control::Unrecorded, &|| 1).await;
}

/// One data-plane pass with group 0's master recorded as `g0-m1` (a1, after a failover),
/// group 1's as `g1-m0`, and these slots recorded as theirs.
async fn pass_after_g0_failed_over(p: &SimPlane, g0: Vec<u32>, g1: Vec<u32>) {
    pass_after(p, Duration::ZERO, &mut recorded([("g0-m1", g0), ("g1-m0", g1)])).await;
}

/// Moves 8-11 from a0 to b0 as a cutover does (b0 follows a0 for them already): fence the
/// source, promote and unfence the target, which gets a lease.
async fn move_8_to_11_to_b0(p: &SimPlane) {
    let (a0, b0) = (node_addr(0, 0), node_addr(1, 0));
    p.fence(&a0, "8-11").await.unwrap();
    p.promote(&b0, "8-11").await.unwrap();
    p.unfence(&b0, "8-11").await.unwrap();
    p.lease(&b0, 60_000).await.unwrap();
}

/// Seed 1105 with every fault: group 1's master still replicated a batch from group 0's former
/// master (the target side of an abandoned move); the pass took that for an interrupted
/// failover and promoted the batch while group 0's master, cut off from the operator, still
/// served it: two writable masters. Slots of a group whose master cannot be asked stay its own.
#[test]
fn slots_of_a_master_the_operator_cannot_reach_are_not_taken_over() {
    simulated(async {
        let p = plane();
        let (a0, a1, b0) = (node_addr(0, 0), node_addr(0, 1), node_addr(1, 0));
        // g0: a1 is the master now (a0 was demoted and follows it); g1's master b0 still
        // replicates 8-11 from a0, where an abandoned move left it.
        let all = g0_serves_all_and_b0_follows_8_to_11(&p).await;
        // g0 fails over from a0 to a1; b0 keeps following a0.
        p.fence(&a0, &all).await.unwrap();
        p.promote(&a1, &all).await.unwrap();
        p.unfence(&a1, &all).await.unwrap();
        p.lease(&a1, 60_000).await.unwrap();
        p.follow_force(&a0, &a1, "0-7,12-15").await.unwrap();
        // a1 is cut off from the operator; clients still reach it.
        p.with(|w| w.cut_off(&a1, u64::MAX));
        pass_after_g0_failed_over(&p, (0..crate::SLOTS).collect(), vec![]).await;
        let writable = p.with(|w| w.writable(&b0)).unwrap();
        let violations = p.with(|w| w.violations.clone());
        assert!(writable.is_empty() && violations.is_empty(), "g1 took over {writable:?}: {violations:?}");
    });
}

/// Seed 587 with every fault: group 0's new master still replicated slots 8-11 from group 0's
/// former master (a copy kept by a replica that was down when the slots moved to group 1); the
/// pass took that for an interrupted failover and promoted them, because group 1's master, back
/// from a cut-off, had let its lease run out and listed nothing as writable. Leases are renewed
/// before the failover checks, so a live master's slots stay its own.
#[test]
fn slots_of_a_master_whose_lease_ran_out_are_not_taken_over() {
    simulated(async {
        let p = plane();
        let (a0, a1, b0) = (node_addr(0, 0), node_addr(0, 1), node_addr(1, 0));
        // 8-11 move to g1 (b0) as a cutover moves them; a1 keeps its copy, following a0.
        let all = g0_serves_all_and_b0_follows_8_to_11(&p).await;
        move_8_to_11_to_b0(&p).await;
        p.lease(&b0, 3_000).await.unwrap();
        // g0 fails over from a0 to a1 for the slots it serves.
        p.fence(&a0, &all).await.unwrap();
        p.promote(&a1, "0-7,12-15").await.unwrap();
        p.unfence(&a1, "0-7,12-15").await.unwrap();
        p.lease(&a1, 60_000).await.unwrap();
        p.follow_force(&a0, &a1, "0-7,12-15").await.unwrap();
        // b0's lease runs out (it was cut off; it answers again now).
        tokio::time::sleep(Duration::from_secs(10)).await;
        p.with(|w| w.tick());
        assert!(p.with(|w| w.writable(&b0)).unwrap().is_empty(), "b0's lease ran out");
        pass_after_g0_failed_over(&p, (0..8).chain(12..crate::SLOTS).collect(), (8..12).collect()).await;
        let writable = p.with(|w| w.writable(&a1)).unwrap();
        let violations = p.with(|w| w.violations.clone());
        assert!(
            !writable.iter().any(|s| (8..12).contains(s)) && violations.is_empty(),
            "g0 took over {writable:?}: {violations:?}"
        );
    });
}

/// Seed 1177 with every fault: group 1's master, silent to the operator for a while, answered
/// the renewal of its lease and was cut off again before the pass checked it; the failover wait
/// still counted from its first silence, so it was failed over 2 s after that renewal and
/// accepted writes next to its successor. A renewal restarts the wait.
#[test]
fn a_master_whose_lease_was_just_renewed_is_not_failed_over() {
    simulated(async {
        let p = plane();
        let (b0, b1) = (node_addr(1, 0), node_addr(1, 1));
        serve(&p, 0, "0-7").await;
        serve(&p, 1, "8-15").await;
        let mut record = recorded([("g0-m0", (0..8).collect()), ("g1-m0", (8..16).collect())]);
        p.with(|w| w.cut_off(&b0, u64::MAX));
        pass_after(&p, Duration::ZERO, &mut record).await;
        // 5 s later b0 answers the renewal of its lease, and is cut off again right after.
        p.with(|w| {
            w.reconnect(&b0);
            w.cut_after_call = Some((format!("lease {b0}"), b0.clone()));
        });
        pass_after(&p, Duration::from_secs(5), &mut record).await;
        pass_after(&p, Duration::from_secs(3), &mut record).await;
        let (writable, violations) = p.with(|w| (w.writable_at_any(&b1), w.violations.clone()));
        assert!(writable.is_empty() && violations.is_empty(), "failed over early: {writable:?} {violations:?}");
        // Past its lease and the margin, counted from the renewal: b1 takes over.
        pass_after(&p, Duration::from_secs(5), &mut record).await;
        let (writable, violations) = p.with(|w| (w.writable_at_any(&b1), w.violations.clone()));
        assert!(writable == (8..16).collect::<Vec<_>>() && violations.is_empty(), "{writable:?} {violations:?}");
    });
}

/// Seed 8304 with every fault: slots had moved to group 1, whose master then restarted (and,
/// as every node does, came back with its slots fenced); group 0's master died, and its
/// successor, which still replicated the moved slots (it had missed their cleanup), took them
/// over because group 1's master listed nothing as writable. What another group's master holds
/// as master, fenced or not, is not taken over.
#[test]
fn slots_a_restarted_master_holds_fenced_are_not_taken_over() {
    simulated(async {
        let p = plane();
        let (a0, a1, b0) = (node_addr(0, 0), node_addr(0, 1), node_addr(1, 0));
        g0_serves_all_and_b0_follows_8_to_11(&p).await;
        move_8_to_11_to_b0(&p).await;
        // b0 takes writes for them (a1's copies, following a0, stay behind).
        let routes = vec![
            ("g0".to_string(), a0.clone(), "0-7,12-15".to_string()),
            ("g1".to_string(), b0.clone(), "8-11".to_string()),
        ];
        p.set_route("10.1.0.0:9221", 1, crate::SLOTS, &routes).await.unwrap();
        write_until_logged(&p, &b0, "8-11").await;
        p.with(|w| w.kill(&b0, 1_000));
        p.with(|w| w.kill(&a0, 600_000));
        let mut record = recorded([("g0-m0", (0..8).chain(12..16).collect()), ("g1-m0", (8..12).collect())]);
        pass_after(&p, Duration::from_secs(2), &mut record).await;
        assert!(p.with(|w| w.writable_at_any(&b0)).is_empty(), "b0 restarted fenced");
        pass_after(&p, Duration::from_secs(8), &mut record).await;
        let writable = p.with(|w| w.writable_at_any(&a1));
        assert_eq!(writable, (0..8).chain(12..16).collect::<Vec<_>>(), "a1 took over group 0's slots only");
        // The next pass gives b0 its slots back.
        pass_after(&p, Duration::from_secs(1), &mut record).await;
        let (writable, violations) = p.with(|w| (w.writable_at_any(&b0), w.violations.clone()));
        assert!(writable == (8..12).collect::<Vec<_>>() && violations.is_empty(), "{writable:?} {violations:?}");
    });
}

/// Seed 2853 with every fault: slots moved to group 1 while group 0's master was down, so no
/// pass finished and the record still listed them in group 0; group 1's master was then cut off
/// from the operator, and group 0's failover promoted them on a replica that had missed their
/// cleanup: two writable masters. Each pass records what a renewed master accepts writes for,
/// also one that stops early.
#[test]
fn slots_moved_while_a_group_had_no_master_are_recorded_where_they_went() {
    simulated(async {
        let p = plane();
        let (a0, a1, b0) = (node_addr(0, 0), node_addr(0, 1), node_addr(1, 0));
        g0_serves_all_and_b0_follows_8_to_11(&p).await;
        move_8_to_11_to_b0(&p).await;
        p.with(|w| w.kill(&a0, 600_000));
        let mut record = recorded([("g0-m0", (0..16).collect()), ("g1-m0", vec![])]);
        pass_after(&p, Duration::ZERO, &mut record).await;
        pass_after(&p, Duration::from_secs(5), &mut record).await;
        p.with(|w| w.cut_off(&b0, u64::MAX));
        pass_after(&p, Duration::from_secs(3), &mut record).await;
        let (writable, violations) = p.with(|w| (w.writable_at_any(&a1), w.violations.clone()));
        let expected: Vec<u32> = (0..8).chain(12..16).collect();
        assert!(writable == expected && violations.is_empty(), "{writable:?} {violations:?}");
    });
}

/// Group `g`'s master (member 0) serves `slots` with its replica (member 1) streaming them.
async fn serve(p: &SimPlane, g: u32, slots: &str) {
    let (master, replica) = (node_addr(g, 0), node_addr(g, 1));
    for n in [&master, &replica] {
        p.add_slots(n, slots).await.unwrap();
    }
    p.promote(&master, slots).await.unwrap();
    p.unfence(&master, slots).await.unwrap();
    p.lease(&master, 6_000).await.unwrap();
    p.follow(&replica, &master, slots).await.unwrap();
    until_streaming(p, &master, slots, 1).await;
}

/// A planned switchover while clients write: the replica takes over, the old master follows it
/// incrementally (no full sync anywhere), nothing is lost, never two writers; and back again.
#[test]
fn a_switchover_moves_the_master_without_a_full_sync_or_a_lost_write() {
    simulated(async {
        let p = plane();
        let (a0, a1, b0) = (node_addr(0, 0), node_addr(0, 1), node_addr(1, 0));
        serve(&p, 0, "0-7").await;
        serve(&p, 1, "8-15").await;
        let routes =
            vec![("g0".to_string(), a0.clone(), "0-7".to_string()), ("g1".to_string(), b0, "8-15".to_string())];
        p.set_route("10.1.0.0:9221", 1, crate::SLOTS, &routes).await.unwrap();
        let mut record = recorded([("g0-m0", (0..8).collect()), ("g1-m0", (8..16).collect())]);
        let writes = |p: &SimPlane| p.with(|w| (0..200).for_each(|_| w.client_write(0)));
        writes(&p);
        until_streaming(&p, &a0, "0-7", 1).await;
        let full_syncs = p.with(|w| w.full_syncs);
        for (to, from, old, new) in [("g0-m1", "g0-m0", &a0, &a1), ("g0-m0", "g0-m1", &a1, &a0)] {
            let cluster = two_groups(&p);
            let done = switchover::switchover(&p, &cluster, &mut record, &mut control::Unrecorded, 0, to, 10, limits())
                .await
                .unwrap();
            assert_eq!(done, from);
            assert_eq!(record.groups[&0].master.as_deref(), Some(to));
            writes(&p);
            until_streaming(&p, new, "0-7", 1).await;
            pass_after(&p, Duration::from_secs(1), &mut record).await;
            writes(&p);
            let (mine, theirs) = p.with(|w| (w.writable_at_any(new), w.writable_at_any(old)));
            assert_eq!((mine, theirs), ((0..8).collect(), vec![]), "{to} serves group 0");
        }
        let (violations, missing, full) = p.with(|w| (w.violations.clone(), w.missing(), w.full_syncs - full_syncs));
        assert!(
            violations.is_empty() && missing == 0 && full == 0,
            "{violations:?} missing={missing} full syncs={full}"
        );
    });
}

/// Seed 842 with every fault (switchovers): a switchover chose a former master a failover had
/// just replaced, before it re-synced (it may lack writes, or hold writes nobody else has).
#[test]
fn a_switchover_never_picks_a_former_master_not_yet_re_synced() {
    simulated(async {
        let p = plane();
        serve(&p, 0, "0-7").await;
        serve(&p, 1, "8-15").await;
        let mut record = recorded([("g0-m0", (0..8).collect()), ("g1-m0", (8..16).collect())]);
        record.groups.get_mut(&0).unwrap().demoted.push("g0-m1".into());
        let req = switchover::Request { group: 0, to: None };
        let chosen = switchover::choose(&p, &two_groups(&p), &record, &req).await;
        assert!(matches!(chosen, Err(switchover::SwitchoverError::NotNow(_))), "{chosen:?}");
    });
}

/// Lets the world run (replication, restarts) while `f` runs: the plane alone does not tick.
async fn ticking<T>(p: &SimPlane, f: impl std::future::Future<Output = T>) -> T {
    let done = std::cell::Cell::new(false);
    let ticker = async {
        while !done.get() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            p.with(|w| w.tick());
        }
    };
    let work = async {
        let out = f.await;
        done.set(true);
        out
    };
    tokio::join!(work, ticker).0
}

/// Seed 487 in replicated mode: a move promoted its batch at the target before the target's
/// replica had it; the target died right after, a failover promoted its (empty) replica, and
/// the move then deleted the source's copy. In replicated mode a batch is promoted only once
/// `minReplicaAcks` of the target's replicas hold it.
#[test]
fn a_batch_is_promoted_only_once_the_targets_replicas_hold_it() {
    simulated(async {
        let p = plane();
        let (a0, a1, b0, b1) = (node_addr(0, 0), node_addr(0, 1), node_addr(1, 0), node_addr(1, 1));
        serve(&p, 0, "0-15").await;
        let from = GroupNodes { master: a0.clone(), replicas: vec![a1], size: 2 };
        let to = GroupNodes { master: b0.clone(), replicas: vec![b1.clone()], size: 2 };
        let limits = cutover::Limits { target_copies: 1, sync_timeout: Duration::from_secs(5), ..limits() };
        let routes: cutover::Routes = vec![];
        // The target's replica dies once it was told to follow: the batch is not promoted.
        let mut steps = cutover::Logged(|step| {
            if step == cutover::CutoverStep::CatchUp {
                p.with(|w| w.kill(&b1, 10_000));
            }
        });
        let start = cutover::Start::Beginning;
        let moved = ticking(&p, async {
            cutover::move_slots(&p, "8-11", &from, &to, &[], (1, crate::SLOTS, &routes), limits, start, &mut steps)
                .await
        })
        .await;
        assert!(moved.is_err(), "{moved:?}");
        assert!(p.with(|w| w.writable(&b0)).unwrap().is_empty(), "not promoted at the target");
        p.lease(&a0, 6_000).await.unwrap();
        assert_eq!(p.with(|w| w.writable(&a0)).unwrap(), (0..crate::SLOTS).collect::<Vec<_>>(), "the source serves");

        // The replica is back: the move goes through, and the replica holds the batch.
        ticking(&p, tokio::time::sleep(Duration::from_secs(10))).await;
        let mut steps = cutover::Logged(|_| {});
        ticking(&p, async {
            cutover::move_slots(&p, "8-11", &from, &to, &[], (2, crate::SLOTS, &routes), limits, start, &mut steps)
                .await
        })
        .await
        .unwrap();
        let info = p.slot_info(&b0, "8-11").await.unwrap();
        assert!(info.iter().all(|s| s.streaming_replicas() == 1), "{info:?}");
    });
}

/// A failover while a migration is in flight: the proxies get the new master at once, not
/// once the migration ends (they would hold the failed group's requests until then).
#[test]
fn a_failover_during_a_migration_reroutes_the_proxies() {
    simulated(async {
        let p = plane();
        let (b0, b1) = (node_addr(1, 0), node_addr(1, 1));
        serve(&p, 0, "0-7").await;
        serve(&p, 1, "8-15").await;
        // A migration of slot 0 to g1 is under way (its batch not promoted yet).
        let moving =
            control::InFlight { slots: vec![0], to: 1, batch: vec![0], from: Some(0), promoted: false, done: vec![] };
        let mut record = recorded([("g0-m0", (0..8).collect()), ("g1-m0", (8..16).collect())]);
        p.with(|w| w.kill(&b0, 60_000));
        let epoch = std::sync::atomic::AtomicU64::new(1);
        let next_epoch = || epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            p.with(|w| w.tick());
            let cluster =
                Cluster { proxies: vec!["10.1.0.0:9221".into()], in_flight: vec![moving.clone()], ..two_groups(&p) };
            let _ = control::pass(&p, &cluster, &mut record, &mut control::Unrecorded, &next_epoch).await;
            if record.groups[&1].master.as_deref() == Some("g1-m1") {
                break;
            }
        }
        assert_eq!(record.groups[&1].master.as_deref(), Some("g1-m1"), "g1 failed over");
        let routes = p.with(|w| w.proxies[0].routes.clone());
        assert!((8..16).all(|s| routes.get(&s) == Some(&b1)), "g1's slots routed to its new master: {routes:?}");
        assert!((0..8).all(|s| routes.get(&s) == Some(&node_addr(0, 0))), "g0's slots stay: {routes:?}");
    });
}
