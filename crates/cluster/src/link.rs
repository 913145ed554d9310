//! The connection to Redis: one standalone server (plain pub/sub) or a
//! Redis Cluster (sharded pub/sub), both over RESP3 so that commands and
//! subscriptions share one multiplexed connection, and both reconnecting
//! and resubscribing by themselves (redis-rs's `ConnectionManager` and
//! cluster-async connection).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, ProtocolVersion, PushInfo, PushKind, RedisResult, Value};
use tokio::sync::mpsc;

use crate::RedisConfig;

/// A message that arrived on a subscribed channel.
#[derive(Debug)]
pub(crate) struct Arrival {
    pub payload: Vec<u8>,
}

/// What the connection hands over besides command replies.
pub(crate) enum Push {
    Message(Arrival),
    /// The connection to Redis dropped (it reconnects by itself).
    Disconnected,
}

/// A handle on the Redis connection; cheap to clone.
#[derive(Clone)]
pub(crate) enum RedisLink {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisLink {
    /// Connects; pushes go to `pushes` without ever blocking the connection
    /// (when the channel is full they are dropped and counted in `dropped`).
    pub(crate) async fn connect(
        config: &RedisConfig,
        pushes: mpsc::Sender<Push>,
        dropped: Arc<AtomicU64>,
    ) -> RedisResult<RedisLink> {
        let sink = move |info: PushInfo| -> Result<(), std::convert::Infallible> {
            let push = match info.kind {
                PushKind::Message | PushKind::SMessage => match info.data.into_iter().nth(1) {
                    Some(Value::BulkString(payload)) => Push::Message(Arrival { payload }),
                    _ => return Ok(()),
                },
                PushKind::Disconnection => Push::Disconnected,
                _ => return Ok(()),
            };
            if pushes.try_send(push).is_err() {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        };
        if config.cluster {
            let client = redis::cluster::ClusterClientBuilder::new(config.urls.clone())
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(sink)
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.response_timeout)
                .build()?;
            Ok(RedisLink::Cluster(client.get_async_connection().await?))
        } else {
            let info: redis::ConnectionInfo = config.urls[0].as_str().parse()?;
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            let client = redis::Client::open(info.set_redis_settings(settings))?;
            let manager_config = redis::aio::ConnectionManagerConfig::new()
                .set_push_sender(sink)
                .set_automatic_resubscription()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.response_timeout))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_secs(2));
            let manager = ConnectionManager::new_with_config(client, manager_config).await?;
            Ok(RedisLink::Standalone(manager))
        }
    }

    /// Runs one command.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self.clone() {
            RedisLink::Standalone(mut c) => cmd.query_async(&mut c).await,
            RedisLink::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
    }

    /// The command that publishes to a channel: `PUBLISH`, or `SPUBLISH` on a
    /// cluster (the channel then lives on one shard, chosen by its name).
    pub(crate) fn publish(&self, channel: &str, message: &[u8]) -> Cmd {
        let name = match self {
            RedisLink::Standalone(_) => "PUBLISH",
            RedisLink::Cluster(_) => "SPUBLISH",
        };
        let mut cmd = redis::cmd(name);
        cmd.arg(channel).arg(message);
        cmd
    }

    /// Subscribes to a channel, for good: after a reconnection the
    /// subscription is renewed by the connection itself.
    pub(crate) async fn subscribe(&self, channel: &str) -> RedisResult<()> {
        match self.clone() {
            RedisLink::Standalone(mut c) => c.subscribe(channel).await,
            RedisLink::Cluster(mut c) => c.ssubscribe(channel).await,
        }
    }

    /// Runs commands so that each node of Redis receives them in the order
    /// given, and gives each one's integer reply (`None`: it failed).
    ///
    /// A standalone server gets them as one pipeline. A cluster gets one
    /// pipeline per routing key (a channel or key: one slot), in order
    /// within it, the pipelines concurrently: ordering only holds per
    /// channel there anyway, as each channel lives on its own shard.
    pub(crate) async fn run_in_order(&self, cmds: &[(String, Cmd)]) -> Vec<Option<i64>> {
        match self.clone() {
            RedisLink::Standalone(mut connection) => {
                let mut pipe = redis::pipe();
                for (_, cmd) in cmds {
                    pipe.add_command(cmd.clone());
                }
                match pipe.query_async::<Vec<i64>>(&mut connection).await {
                    Ok(replies) => replies.into_iter().map(Some).collect(),
                    Err(_) => vec![None; cmds.len()],
                }
            }
            RedisLink::Cluster(connection) => {
                let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
                for (index, (route, _)) in cmds.iter().enumerate() {
                    match groups.iter_mut().find(|(r, _)| *r == route.as_str()) {
                        Some((_, indices)) => indices.push(index),
                        None => groups.push((route, vec![index])),
                    }
                }
                let runs = groups.iter().map(|(_, indices)| {
                    let mut pipe = redis::pipe();
                    for index in indices {
                        pipe.add_command(cmds[*index].1.clone());
                    }
                    let mut connection = connection.clone();
                    async move { pipe.query_async::<Vec<i64>>(&mut connection).await.ok() }
                });
                let replies = futures_util::future::join_all(runs).await;
                let mut results = vec![None; cmds.len()];
                for ((_, indices), replies) in groups.iter().zip(replies) {
                    if let Some(replies) = replies {
                        for (index, reply) in indices.iter().zip(replies) {
                            results[*index] = Some(reply);
                        }
                    }
                }
                results
            }
        }
    }
}
