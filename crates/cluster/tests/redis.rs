//! Two nodes in one process over the real Redis at `PORTCULLIS_TEST_REDIS`
//! (default `redis://127.0.0.1:6379`; `scripts/redis ensure` starts one).
//! Each test uses its own key prefix, so tests and other users of the
//! Redis do not meet.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_cluster::{
    Cluster, ClusterConfig, Destination, LocalHubs, NodeId, NodeInfo, RedisConfig,
};
use portcullis_hub::{Operation, Outcome, Revocation, Selection};

/// A node's connections, as far as these tests need: it records what it
/// is asked and answers with a fixed count.
#[derive(Default)]
struct Recorded {
    applied: Mutex<Vec<(String, Operation)>>,
    count: usize,
}

impl LocalHubs for Recorded {
    fn apply(&self, hub: &str, operation: Operation) -> Outcome {
        let outcome = match &operation {
            Operation::Exists(_) => Outcome::Exists(self.count > 0),
            Operation::Revoke(_) => Outcome::Done(true),
            _ => Outcome::Count(self.count),
        };
        self.applied
            .lock()
            .unwrap()
            .push((hub.to_owned(), operation));
        outcome
    }
}

fn redis_url() -> String {
    std::env::var("PORTCULLIS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn config(prefix: &str, node: &str) -> ClusterConfig {
    let redis = RedisConfig::new(vec![redis_url()], false);
    let info = NodeInfo {
        id: NodeId::parse(node).unwrap(),
        advertise: url::Url::parse(&format!("http://{node}.invalid:80")).unwrap(),
    };
    let mut config = ClusterConfig::new(redis, info);
    config.prefix = prefix.to_owned();
    config.heartbeat = Duration::from_millis(100);
    config.dead_after = Duration::from_millis(600);
    config.request_timeout = Duration::from_millis(1500);
    config
}

fn prefix() -> String {
    format!("test-{}", NodeId::generate())
}

async fn join(prefix: &str, node: &str, count: usize) -> (Cluster, Arc<Recorded>) {
    let local = Arc::new(Recorded {
        count,
        ..Recorded::default()
    });
    let cluster = Cluster::join(config(prefix, node), local.clone())
        .await
        .expect("Redis must run for these tests: scripts/redis ensure");
    (cluster, local)
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn nodes_see_each_other_and_the_dead_are_removed() {
    let prefix = prefix();
    let (a, _) = join(&prefix, "a", 0).await;
    let (b, _) = join(&prefix, "b", 0).await;
    until("both nodes", || {
        a.members().len() == 2 && b.members().len() == 2
    })
    .await;
    assert_eq!(
        a.members().get("b").unwrap().advertise.as_str(),
        "http://b.invalid/"
    );
    // A node that stopped heartbeating (killed) is removed after
    // `dead_after`: write one whose last heartbeat is old.
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(format!("{{{prefix}}}:nodes"))
        .arg(1)
        .arg("ghost")
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut ghost: Option<f64> = Some(1.0);
    for _ in 0..100 {
        ghost = redis::cmd("ZSCORE")
            .arg(format!("{{{prefix}}}:nodes"))
            .arg("ghost")
            .query_async(&mut redis)
            .await
            .unwrap();
        if ghost.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ghost, None, "the dead node's entry is cleaned");
    assert!(a.members().get("ghost").is_none());
    // A node that leaves is gone at once for the others.
    b.leave().await;
    until("b gone", || a.members().get("b").is_none()).await;
}

#[tokio::test]
async fn a_broadcast_is_one_publish_and_every_node_answers() {
    let prefix = prefix();
    let (a, _) = join(&prefix, "a", 1).await;
    let (b, b_local) = join(&prefix, "b", 2).await;
    let (c, c_local) = join(&prefix, "c", 3).await;
    for node in [&a, &b, &c] {
        node.watch_hub("chat").await;
    }
    let before = a
        .counters()
        .published
        .load(std::sync::atomic::Ordering::Relaxed);
    let outcome = a
        .spread(
            "chat",
            Operation::Exists(Selection::group("room")),
            Destination::Hub,
            true,
        )
        .await;
    assert_eq!(outcome, Some(Outcome::Exists(true)));
    let outcome = a
        .spread(
            "chat",
            Operation::Exists(Selection::all()),
            Destination::Hub,
            true,
        )
        .await;
    assert_eq!(outcome, Some(Outcome::Exists(true)));
    let count = a
        .spread(
            "chat",
            Operation::Close {
                who: Selection::user("u"),
                reason: "r".into(),
            },
            Destination::Hub,
            true,
        )
        .await;
    assert_eq!(count, Some(Outcome::Count(5)), "b's 2 and c's 3");
    let after = a
        .counters()
        .published
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(after - before, 3, "one publish per operation");
    assert_eq!(b_local.applied.lock().unwrap().len(), 3);
    assert_eq!(c_local.applied.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn unobserved_operations_arrive_in_order_and_ask_no_answer() {
    let prefix = prefix();
    let (a, a_local) = join(&prefix, "a", 0).await;
    let (b, b_local) = join(&prefix, "b", 0).await;
    b.watch_hub("h").await;
    for i in 0..200 {
        let operation = Operation::Join {
            who: Selection::connection(format!("c{i}")),
            groups: vec![],
        };
        drop(a.spread("h", operation, Destination::Hub, false));
    }
    until("200 operations", || {
        b_local.applied.lock().unwrap().len() == 200
    })
    .await;
    let order: Vec<String> = b_local
        .applied
        .lock()
        .unwrap()
        .iter()
        .map(|(_, op)| match op {
            Operation::Join { who, .. } => format!("{:?}", who.filter),
            _ => unreachable!(),
        })
        .collect();
    let expected: Vec<String> = (0..200)
        .map(|i| format!("{:?}", Selection::connection(format!("c{i}")).filter))
        .collect();
    assert_eq!(order, expected);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        a_local.applied.lock().unwrap().is_empty(),
        "a never hears itself"
    );
    assert_eq!(
        b.counters()
            .published
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "b answered nothing"
    );
}

#[tokio::test]
async fn directed_operations_reach_the_owner_only() {
    let prefix = prefix();
    let (a, _) = join(&prefix, "a", 0).await;
    let (b, b_local) = join(&prefix, "b", 1).await;
    let (c, c_local) = join(&prefix, "c", 1).await;
    let _ = (&b, &c);
    let id = NodeId::parse("b").unwrap().connection_id("xyz");
    let outcome = a
        .spread(
            "h",
            Operation::GroupsOf(id.as_str().into()),
            Destination::Node("b"),
            true,
        )
        .await;
    assert_eq!(outcome, Some(Outcome::Count(1)));
    assert_eq!(b_local.applied.lock().unwrap().len(), 1);
    assert!(c_local.applied.lock().unwrap().is_empty());
    // A dead owner: nobody receives, the answer is immediate.
    let started = std::time::Instant::now();
    let outcome = a
        .spread(
            "h",
            Operation::GroupsOf("zz.q".into()),
            Destination::Node("zz"),
            true,
        )
        .await;
    assert_eq!(outcome, None);
    assert!(started.elapsed() < Duration::from_millis(1000));
}

#[tokio::test]
async fn revocations_reach_every_node_and_later_joiners() {
    let prefix = prefix();
    let (a, _) = join(&prefix, "a", 0).await;
    let (_b, b_local) = join(&prefix, "b", 0).await;
    let revocation = Revocation::User {
        user: "mallory".into(),
        issued_before: 10,
    };
    let done = a
        .spread(
            "never-seen-hub",
            Operation::Revoke(revocation.clone()),
            Destination::Everyone,
            true,
        )
        .await;
    assert_eq!(done, Some(Outcome::Done(true)));
    assert_eq!(
        b_local.applied.lock().unwrap()[0],
        (
            "never-seen-hub".into(),
            Operation::Revoke(revocation.clone())
        )
    );
    let (_c, c_local) = join(&prefix, "c", 0).await;
    assert_eq!(
        c_local.applied.lock().unwrap()[0],
        ("never-seen-hub".into(), Operation::Revoke(revocation)),
        "a node that joins later loads the revocation"
    );
}
