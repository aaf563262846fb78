//! Scripted scenarios on the simulated cluster: one fault at a chosen point, for rules a seed
//! found broken. Seeds shift whenever the operator's calls change; these stay put.

use std::time::Duration;

use pika_operator::admin::DataPlane;
use pika_operator::cutover::{self, CutoverError, GroupNodes};

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
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async {
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
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async {
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
        for _ in 0..1000 {
            if p.slot_info(&a0, "2-3").await.unwrap().iter().all(|s| s.binlog_offset > (0, 0)) {
                break;
            }
            p.with(|w| w.client_write(0));
        }
        assert!(p.slot_info(&a0, "2-3").await.unwrap().iter().all(|s| s.binlog_offset > (0, 0)), "no writes landed");
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

/// One data-plane pass over two groups of two, with group 0's master recorded as `g0-m1` (a1,
/// after a failover), group 1's as `g1-m0`, and these slots recorded as theirs.
async fn pass_after_g0_failed_over(p: &SimPlane, g0: Vec<u32>, g1: Vec<u32>) {
    use pika_operator::control::{self, Cluster, GroupRecord, Member, Record};
    let member = |g: u32, m: u32| Member { name: format!("g{g}-m{m}"), addr: Some(node_addr(g, m)) };
    let cluster = Cluster {
        slots: crate::SLOTS,
        groups: 2,
        failover_after: Duration::from_secs(3),
        members: [(0, vec![member(0, 0), member(0, 1)]), (1, vec![member(1, 0), member(1, 1)])].into(),
        proxies: vec![],
        in_flight: vec![],
    };
    let mut record = Record::default();
    let recorded = |master: &str, slots| GroupRecord { master: Some(master.into()), slots, ..GroupRecord::default() };
    record.groups.insert(0, recorded("g0-m1", g0));
    record.groups.insert(1, recorded("g1-m0", g1));
    let _ = control::pass(p, &cluster, &mut record, &mut control::Unrecorded, &|| 1).await;
}

/// Seed 1105 with every fault: group 1's master still replicated a batch from group 0's former
/// master (the target side of an abandoned move); the pass took that for an interrupted
/// failover and promoted the batch while group 0's master, cut off from the operator, still
/// served it: two writable masters. Slots of a group whose master cannot be asked stay its own.
#[test]
fn slots_of_a_master_the_operator_cannot_reach_are_not_taken_over() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async {
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
        p.with(|w| {
            w.nodes.get_mut(&a1).unwrap().cut_off = true;
            w.cut_until.insert(a1.clone(), u64::MAX);
        });
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
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async {
        let p = plane();
        let (a0, a1, b0) = (node_addr(0, 0), node_addr(0, 1), node_addr(1, 0));
        // 8-11 move to g1 (b0) as a cutover moves them; a1 keeps its copy, following a0.
        let all = g0_serves_all_and_b0_follows_8_to_11(&p).await;
        p.fence(&a0, "8-11").await.unwrap();
        p.promote(&b0, "8-11").await.unwrap();
        p.unfence(&b0, "8-11").await.unwrap();
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
