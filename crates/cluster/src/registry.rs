//! Membership: every node writes a heartbeat into Redis; a node whose last
//! heartbeat is older than `dead_after` is dead, and whoever notices first
//! removes its entries.
//!
//! Times are Redis's own clock (`TIME`), so nodes with skewed clocks agree.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::RedisResult;

use crate::link::RedisLink;
use crate::{NodeId, NodeInfo};

/// The live nodes as last read from Redis, this one included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    nodes: BTreeMap<NodeId, NodeInfo>,
}

impl Members {
    /// A node's entry, if it is alive.
    pub fn get(&self, id: &str) -> Option<&NodeInfo> {
        self.nodes
            .iter()
            .find(|(k, _)| k.as_str() == id)
            .map(|(_, v)| v)
    }

    /// How many nodes are alive.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node is known (before the first heartbeat).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every live node.
    pub fn iter(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values()
    }
}

/// The registry's keys. One hash tag, so that on a Redis Cluster they live
/// in one slot.
pub(crate) struct Keys {
    pub nodes: String,
    pub info: String,
    pub revocations: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            nodes: format!("{{{prefix}}}:nodes"),
            info: format!("{{{prefix}}}:node-info"),
            revocations: format!("{{{prefix}}}:revocations"),
        }
    }
}

/// Redis's clock, in milliseconds since the epoch.
pub(crate) async fn redis_now_ms(link: &RedisLink) -> RedisResult<u64> {
    let (secs, micros): (u64, u64) = link.query(&redis::cmd("TIME")).await?;
    Ok(secs * 1000 + micros / 1000)
}

/// One heartbeat: records this node as alive now, removes the dead, and
/// reads who is alive.
pub(crate) async fn beat(
    link: &RedisLink,
    keys: &Keys,
    me: &NodeInfo,
    dead_after: Duration,
) -> RedisResult<Members> {
    let now = redis_now_ms(link).await?;
    let info = serde_json::to_string(me).expect("node info encodes");
    link.query::<()>(
        redis::cmd("ZADD")
            .arg(&keys.nodes)
            .arg(now)
            .arg(me.id.as_str()),
    )
    .await?;
    link.query::<()>(
        redis::cmd("HSET")
            .arg(&keys.info)
            .arg(me.id.as_str())
            .arg(info),
    )
    .await?;
    let horizon = now.saturating_sub(dead_after.as_millis() as u64);
    let dead: Vec<String> = link
        .query(
            redis::cmd("ZRANGEBYSCORE")
                .arg(&keys.nodes)
                .arg("-inf")
                .arg(format!("({horizon}")),
        )
        .await?;
    if !dead.is_empty() {
        tracing::warn!(nodes = ?dead, "cluster nodes stopped heartbeating; removing them");
        link.query::<()>(redis::cmd("ZREM").arg(&keys.nodes).arg(&dead))
            .await?;
        link.query::<()>(redis::cmd("HDEL").arg(&keys.info).arg(&dead))
            .await?;
    }
    link.query::<()>(
        redis::cmd("ZREMRANGEBYSCORE")
            .arg(&keys.revocations)
            .arg("-inf")
            .arg(format!("({now}")),
    )
    .await?;
    let live: Vec<String> = link
        .query(
            redis::cmd("ZRANGEBYSCORE")
                .arg(&keys.nodes)
                .arg(horizon)
                .arg("+inf"),
        )
        .await?;
    let mut members = Members::default();
    if live.is_empty() {
        return Ok(members);
    }
    let infos: Vec<Option<String>> = link
        .query(redis::cmd("HMGET").arg(&keys.info).arg(&live))
        .await?;
    for info in infos.into_iter().flatten() {
        if let Ok(node) = serde_json::from_str::<NodeInfo>(&info) {
            members.nodes.insert(node.id.clone(), node);
        }
    }
    Ok(members)
}

/// Removes this node's entries (on a clean shutdown, so the others stop
/// forwarding to it at once rather than after `dead_after`).
pub(crate) async fn leave(link: &RedisLink, keys: &Keys, me: &NodeId) -> RedisResult<()> {
    link.query::<()>(redis::cmd("ZREM").arg(&keys.nodes).arg(me.as_str()))
        .await?;
    link.query::<()>(redis::cmd("HDEL").arg(&keys.info).arg(me.as_str()))
        .await
}
