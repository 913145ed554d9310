//! Several Portcullis gateway nodes sharing hubs over Redis.
//!
//! Each node holds its own client connections; this crate lets a node
//! - know the others ([`Members`]): every node heartbeats into Redis, and a
//!   node silent for `dead_after` is removed by the first node to notice;
//! - name itself in its connection ids ([`NodeId::connection_id`],
//!   [`owner_of`]), so a request for a session can be sent to its owner;
//! - spread a hub [`Operation`] to the other nodes with **one publish**: on
//!   the hub's channel for operations on many connections, on the owner's
//!   channel for operations on one connection; and gather their outcomes
//!   when the caller wants them (Redis says how many nodes received the
//!   message, and exactly those answer).
//!
//! Redis is a standalone server (plain pub/sub) or a Redis Cluster (sharded
//! pub/sub: each hub's channel lives on one shard). The connection reconnects
//! and resubscribes by itself; what cannot be published meanwhile is counted
//! and logged, never queued without bound.
//!
//! The crate knows nothing of transports: the gateway gives it a
//! [`LocalHubs`] to apply what other nodes send.

#![warn(missing_docs)]

mod envelope;
mod gather;
mod invocations;
mod link;
mod node;
mod registry;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_hub::{Filter, Operation, Outcome, Payload, Revocation};
use redis::{Cmd, RedisError};
use tokio::sync::{OnceCell, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use node::{InvalidNodeId, NodeId, NodeInfo, OWNER_SEPARATOR, owner_of};
pub use registry::Members;

use envelope::{Body, Envelope};
use gather::Gathering;
use invocations::Invocations;
use link::{Push, RedisLink};
use registry::Keys;

/// Where Redis is.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` (`rediss://` for TLS): one
    /// URL for a standalone server, one or more nodes of a Redis Cluster.
    pub urls: Vec<String>,
    /// The URLs are nodes of a Redis Cluster: use sharded pub/sub.
    pub cluster: bool,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long a command may wait for its reply.
    pub response_timeout: Duration,
}

impl RedisConfig {
    /// `urls` (one for a standalone server, several nodes with `cluster`),
    /// connecting and each command given 5 s.
    pub fn new(urls: Vec<String>, cluster: bool) -> Self {
        RedisConfig {
            urls,
            cluster,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for RedisConfig {
    /// Passwords in the URLs are not shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("RedisConfig")
            .field("urls", &urls)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// A Redis URL without its password, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("<redacted>"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparsable url>".into(),
    }
}

/// How a node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Redis.
    pub redis: RedisConfig,
    /// This node: its id and the address the others reach it at.
    pub node: NodeInfo,
    /// Prefix of every key and channel, so that several clusters can share
    /// one Redis.
    pub prefix: String,
    /// Interval between heartbeats.
    pub heartbeat: Duration,
    /// A node silent this long is dead (several heartbeats).
    pub dead_after: Duration,
    /// How long an operation waits for the other nodes' outcomes.
    pub request_timeout: Duration,
    /// Messages that may wait to be published (beyond: not sent, counted).
    pub max_outbound: usize,
    /// Messages from Redis that may wait to be applied (beyond: dropped,
    /// counted).
    pub max_inbound: usize,
    /// Operations that may wait for outcomes at once (beyond: the outcome
    /// is this node's alone).
    pub max_requests: usize,
    /// How long a revocation whose tokens' expiry is unknown is kept.
    pub revocation_ttl: Duration,
}

impl ClusterConfig {
    /// Defaults: heartbeat every second, dead after 5 s, outcomes within 2 s.
    pub fn new(redis: RedisConfig, node: NodeInfo) -> Self {
        ClusterConfig {
            redis,
            node,
            prefix: "portcullis".into(),
            heartbeat: Duration::from_secs(1),
            dead_after: Duration::from_secs(5),
            request_timeout: Duration::from_secs(2),
            max_outbound: 65_536,
            max_inbound: 65_536,
            max_requests: 10_000,
            revocation_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// What a node applies when another node asks.
pub trait LocalHubs: Send + Sync + 'static {
    /// Applies `operation` to this node's connections of `hub`, and gives
    /// the outcome here.
    fn apply(&self, hub: &str, operation: Operation) -> Outcome;

    /// Sends `payload` (a Socket.IO EVENT without ack id) to this node's
    /// connections of `hub` matching `filter`, each with an ack id of this
    /// node's, and streams their acknowledgements (Socket.IO ACK packets);
    /// the stream ends when all have answered or gone, or at the node's
    /// deadline. `None` when nothing here can take acknowledgements.
    fn invoke(
        &self,
        _hub: &str,
        _filter: Filter,
        _payload: Payload,
    ) -> Option<mpsc::UnboundedReceiver<String>> {
        None
    }
}

/// Failure to join the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis could not be reached or refused a command.
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
}

/// Which nodes a spread operation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// Every node holding connections of the hub (the hub's channel).
    Hub,
    /// The node owning the one connection the operation is about.
    Node(&'a str),
    /// Every node, whether or not it holds connections of the hub yet
    /// (revocations: a node must refuse the tokens at its next handshake).
    Everyone,
}

/// Counts of what went across, for metrics and `/health`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages published.
    pub published: AtomicU64,
    /// Messages that could not be published (queue full, or Redis failed).
    pub undelivered: AtomicU64,
    /// Messages received from other nodes and applied.
    pub received: AtomicU64,
    /// Messages from Redis dropped because this node fell behind.
    pub dropped_inbound: AtomicU64,
    /// Answers that did not come before the request timeout.
    pub missing_answers: AtomicU64,
}

/// What the receiver count of a publish announces.
#[derive(Debug, Clone, Copy)]
enum Awaiting {
    Nothing,
    /// How many answers request `id` gets.
    Outcome(u64),
    /// How many nodes stream acknowledgements of invocation `id`.
    Invocation(u64),
}

/// One message waiting to be published.
struct Outbound {
    /// The channel or key it goes to (its slot on a Redis Cluster).
    route: String,
    cmd: Cmd,
    awaiting: Awaiting,
    /// Told whether Redis took the message.
    published: Option<oneshot::Sender<bool>>,
    /// Whether this node is among the receivers (it never answers itself).
    self_receives: bool,
}

/// A node's membership of the cluster; cheap to clone. Stops (leaves the
/// registry, ends its tasks) with [`Cluster::leave`].
#[derive(Clone)]
pub struct Cluster(Arc<Shared>);

struct Shared {
    config: ClusterConfig,
    keys: Keys,
    link: RedisLink,
    outbound: mpsc::Sender<Outbound>,
    gathering: Gathering,
    invocations: Invocations,
    members: watch::Sender<Arc<Members>>,
    hubs: Mutex<HashMap<String, Arc<OnceCell<()>>>>,
    counters: Arc<Counters>,
    /// Whether Redis answered the last heartbeat (for logging outages once).
    redis_up: AtomicBool,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.0.config.node.id)
            .field("members", &self.0.members.borrow().len())
            .finish()
    }
}

impl Cluster {
    /// Connects to Redis, subscribes to this node's channels, loads the
    /// revocations still in force, registers the node, and starts the
    /// heartbeat, the publisher and the receiver.
    pub async fn join(
        config: ClusterConfig,
        local: Arc<dyn LocalHubs>,
    ) -> Result<Cluster, ClusterError> {
        let counters = Arc::new(Counters::default());
        let dropped = Arc::new(AtomicU64::new(0));
        let (push_tx, push_rx) = mpsc::channel(config.max_inbound.max(1));
        let link = RedisLink::connect(&config.redis, push_tx, dropped.clone()).await?;
        let (outbound, outbound_rx) = mpsc::channel(config.max_outbound.max(1));
        let keys = Keys::new(&config.prefix);
        let cluster = Cluster(Arc::new(Shared {
            gathering: Gathering::new(config.max_requests),
            invocations: Invocations::new(config.max_requests, config.max_inbound),
            keys,
            link,
            outbound,
            members: watch::Sender::new(Arc::default()),
            hubs: Mutex::default(),
            counters: counters.clone(),
            redis_up: AtomicBool::new(true),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            config,
        }));
        let shared = &cluster.0;
        shared
            .link
            .subscribe(&cluster.node_channel(&shared.config.node.id))
            .await?;
        shared.link.subscribe(&cluster.control_channel()).await?;
        cluster.load_revocations(local.as_ref()).await?;
        let members = registry::beat(
            &shared.link,
            &shared.keys,
            &shared.config.node,
            shared.config.dead_after,
        )
        .await?;
        shared.members.send_replace(Arc::new(members));
        tracing::info!(
            node = %shared.config.node.id,
            advertise = %shared.config.node.advertise,
            redis = ?shared.config.redis,
            nodes = shared.members.borrow().len(),
            "joined the cluster"
        );
        shared.tasks.spawn(cluster.clone().heartbeats());
        shared.tasks.spawn(cluster.clone().publisher(outbound_rx));
        shared
            .tasks
            .spawn(cluster.clone().receiver(push_rx, local, dropped));
        Ok(cluster)
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.0.config.node.id
    }

    /// This node's registry entry.
    pub fn node(&self) -> &NodeInfo {
        &self.0.config.node
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.0.config
    }

    /// The live nodes as of the last heartbeat.
    pub fn members(&self) -> Arc<Members> {
        self.0.members.borrow().clone()
    }

    /// Changes of [`members`](Self::members), as they are seen.
    pub fn watch_members(&self) -> watch::Receiver<Arc<Members>> {
        self.0.members.subscribe()
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.0.counters
    }

    /// Whether the connection id belongs to a connection of this node.
    pub fn owns(&self, connection_id: &str) -> bool {
        owner_of(connection_id) == Some(self.node_id().as_str())
    }

    /// Subscribes to the hub's channel (once; later calls return at once).
    /// Call it before the hub's first connection is registered, so no
    /// operation for it is missed. A failure is logged and retried by the
    /// next call: the node keeps serving its own clients meanwhile.
    pub async fn watch_hub(&self, hub: &str) {
        let cell = {
            let mut hubs = self.0.hubs.lock().unwrap_or_else(|e| e.into_inner());
            hubs.entry(hub.to_owned()).or_default().clone()
        };
        if cell.initialized() {
            return;
        }
        let channel = self.hub_channel(hub);
        let subscribed = cell
            .get_or_try_init(|| async { self.0.link.subscribe(&channel).await })
            .await;
        if let Err(error) = subscribed {
            tracing::warn!(hub, %error, "cannot subscribe to the hub's channel; operations from other nodes miss this node until it can");
        }
    }

    /// Sends `operation` to the other nodes of `destination` with one
    /// publish. With `observe`, the returned future gives the merged
    /// outcomes of the nodes that answered within the request timeout
    /// (`None` if none did, or none holds anything of the hub).
    ///
    /// Publishes keep the order of the calls: operations from one caller
    /// reach each node in the order they were spread.
    pub fn spread(
        &self,
        hub: &str,
        operation: Operation,
        destination: Destination<'_>,
        observe: bool,
    ) -> impl Future<Output = Option<Outcome>> + Send + 'static {
        self.spread_with(hub, operation, destination, observe, None)
    }

    /// Sends `operation` like [`spread`](Self::spread), asking no answer;
    /// resolves once Redis has taken the message (true), or could not
    /// (false). Every node then receives it before anything this node
    /// publishes later: a caller that waits for this before its next
    /// operation, through whichever node, keeps its operations in order.
    pub fn spread_published(
        &self,
        hub: &str,
        operation: Operation,
        destination: Destination<'_>,
    ) -> impl Future<Output = bool> + Send + 'static {
        let (published, taken) = oneshot::channel();
        drop(self.spread_with(hub, operation, destination, false, Some(published)));
        async move { taken.await.unwrap_or(false) }
    }

    fn spread_with(
        &self,
        hub: &str,
        operation: Operation,
        destination: Destination<'_>,
        observe: bool,
        published: Option<oneshot::Sender<bool>>,
    ) -> impl Future<Output = Option<Outcome>> + Send + 'static {
        let shared = self.0.clone();
        let request = observe.then(|| shared.gathering.open()).flatten();
        let (channel, self_receives) = match destination {
            Destination::Hub => (self.hub_channel(hub), self.watches(hub)),
            Destination::Node(node) => (self.node_channel_named(node), false),
            Destination::Everyone => (self.control_channel(), true),
        };
        if let Operation::Revoke(revocation) = &operation {
            self.store_revocation(hub, revocation);
        }
        let envelope = Envelope {
            from: self.node_id().clone(),
            body: Body::Apply {
                hub: hub.to_owned(),
                operation,
                reply: request.as_ref().map(|(id, _)| *id),
            },
        };
        let cmd = shared.link.publish(&channel, &envelope.encode());
        let awaiting = match &request {
            Some((id, _)) => Awaiting::Outcome(*id),
            None => Awaiting::Nothing,
        };
        let queued = self.enqueue(Outbound {
            route: channel,
            cmd,
            awaiting,
            published,
            self_receives,
        });
        async move {
            let (id, done) = request?;
            if !queued {
                shared.gathering.abandon(id);
                return None;
            }
            match tokio::time::timeout(shared.config.request_timeout, done).await {
                Ok(outcome) => outcome.ok().flatten(),
                Err(_) => {
                    let missing = shared.gathering.abandon(id).unwrap_or(0);
                    shared
                        .counters
                        .missing_answers
                        .fetch_add(missing as u64, Ordering::Relaxed);
                    tracing::warn!(missing, "cluster nodes did not answer in time");
                    // The answers may have completed it just now.
                    None
                }
            }
        }
    }

    /// Leaves the cluster: removes this node from the registry (the others
    /// stop forwarding to it at once) and stops the tasks.
    pub async fn leave(&self) {
        let shared = &self.0;
        shared.stop.cancel();
        shared.tasks.close();
        if let Err(error) =
            registry::leave(&shared.link, &shared.keys, &shared.config.node.id).await
        {
            tracing::warn!(%error, "could not remove this node from the registry");
        }
        shared.tasks.wait().await;
    }

    /// Whether this node is subscribed to the hub's channel.
    fn watches(&self, hub: &str) -> bool {
        let hubs = self.0.hubs.lock().unwrap_or_else(|e| e.into_inner());
        hubs.get(hub).is_some_and(|cell| cell.initialized())
    }

    fn hub_channel(&self, hub: &str) -> String {
        format!("{}:hub:{hub}", self.0.config.prefix)
    }

    fn node_channel(&self, node: &NodeId) -> String {
        self.node_channel_named(node.as_str())
    }

    fn node_channel_named(&self, node: &str) -> String {
        format!("{}:node:{node}", self.0.config.prefix)
    }

    fn control_channel(&self) -> String {
        format!("{}:control", self.0.config.prefix)
    }

    /// Queues a message; `false` (counted, logged) when the queue is full.
    fn enqueue(&self, outbound: Outbound) -> bool {
        match self.0.outbound.try_send(outbound) {
            Ok(()) => true,
            Err(_) => {
                let lost = self.0.counters.undelivered.fetch_add(1, Ordering::Relaxed);
                if lost.is_power_of_two() {
                    tracing::warn!(
                        undelivered = lost + 1,
                        "the queue to Redis is full; operations for other nodes are dropped"
                    );
                }
                false
            }
        }
    }

    /// Keeps a revocation in Redis until the tokens it covers expire, so a
    /// node that joins later (or restarts) still refuses them.
    fn store_revocation(&self, hub: &str, revocation: &Revocation) {
        let until_ms = match revocation {
            Revocation::Token {
                expires_at: Some(exp),
                ..
            } => exp.saturating_mul(1000),
            _ => unix_ms().saturating_add(self.0.config.revocation_ttl.as_millis() as u64),
        };
        let member = serde_json::json!({ "hub": hub, "revocation": revocation }).to_string();
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(&self.0.keys.revocations).arg(until_ms).arg(member);
        self.enqueue(Outbound {
            route: self.0.keys.revocations.clone(),
            cmd,
            awaiting: Awaiting::Nothing,
            published: None,
            self_receives: false,
        });
    }

    async fn load_revocations(&self, local: &dyn LocalHubs) -> Result<(), RedisError> {
        let now = registry::redis_now_ms(&self.0.link).await?;
        let stored: Vec<String> = self
            .0
            .link
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&self.0.keys.revocations)
                    .arg(now)
                    .arg("+inf"),
            )
            .await?;
        let mut loaded = 0usize;
        for entry in stored {
            #[derive(serde::Deserialize)]
            struct Stored {
                hub: String,
                revocation: Revocation,
            }
            if let Ok(Stored { hub, revocation }) = serde_json::from_str(&entry) {
                local.apply(&hub, Operation::Revoke(revocation));
                loaded += 1;
            }
        }
        if loaded > 0 {
            tracing::info!(loaded, "revocations in force loaded from the cluster");
        }
        Ok(())
    }

    /// Heartbeats until stopped; logs an outage of Redis once, and its end.
    async fn heartbeats(self) {
        let shared = &self.0;
        let mut ticker = tokio::time::interval(shared.config.heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shared.stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let beat = registry::beat(
                &shared.link,
                &shared.keys,
                &shared.config.node,
                shared.config.dead_after,
            )
            .await;
            match beat {
                Ok(members) => {
                    if !shared.redis_up.swap(true, Ordering::Relaxed) {
                        tracing::info!("redis is back; the cluster resumes");
                    }
                    shared.members.send_if_modified(|current| {
                        let changed = **current != members;
                        if changed {
                            tracing::info!(nodes = members.len(), "cluster membership changed");
                            *current = Arc::new(members);
                        }
                        changed
                    });
                }
                Err(error) => {
                    if shared.redis_up.swap(false, Ordering::Relaxed) {
                        tracing::warn!(%error, "redis is unreachable; serving this node's clients alone until it is back");
                    }
                }
            }
        }
    }

    /// Publishes queued messages in order: everything queued is handed to
    /// the connection at once, in queue order, then the next batch.
    async fn publisher(self, mut queue: mpsc::Receiver<Outbound>) {
        const BATCH: usize = 256;
        let shared = &self.0;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                () = shared.stop.cancelled() => return,
                received = queue.recv_many(&mut batch, BATCH) => if received == 0 { return },
            }
            let cmds: Vec<(String, Cmd)> = batch
                .iter()
                .map(|o| (o.route.clone(), o.cmd.clone()))
                .collect();
            let results = shared.link.run_in_order(&cmds).await;
            let mut failed = 0u64;
            for (outbound, result) in batch.drain(..).zip(results) {
                if let Some(published) = outbound.published {
                    let _ = published.send(result.is_some());
                }
                match result {
                    Some(receivers) => {
                        shared.counters.published.fetch_add(1, Ordering::Relaxed);
                        let receivers = usize::try_from(receivers).unwrap_or(0);
                        let others = receivers.saturating_sub(usize::from(outbound.self_receives));
                        match outbound.awaiting {
                            Awaiting::Nothing => {}
                            Awaiting::Outcome(id) => shared.gathering.expect(id, others),
                            Awaiting::Invocation(id) => shared.invocations.expect(id, others),
                        }
                    }
                    None => {
                        failed += 1;
                        match outbound.awaiting {
                            Awaiting::Nothing => {}
                            Awaiting::Outcome(id) => {
                                shared.gathering.abandon(id);
                            }
                            Awaiting::Invocation(id) => shared.invocations.close(id),
                        }
                    }
                }
            }
            if failed > 0 {
                let before = shared
                    .counters
                    .undelivered
                    .fetch_add(failed, Ordering::Relaxed);
                tracing::warn!(
                    failed,
                    undelivered = before + failed,
                    "messages to other nodes could not be published"
                );
            }
        }
    }

    /// Applies what other nodes send, in the order Redis delivers it.
    async fn receiver(
        self,
        mut pushes: mpsc::Receiver<Push>,
        local: Arc<dyn LocalHubs>,
        dropped: Arc<AtomicU64>,
    ) {
        let shared = &self.0;
        let mut reported_drops = 0;
        loop {
            let push = tokio::select! {
                () = shared.stop.cancelled() => return,
                push = pushes.recv() => match push { Some(push) => push, None => return },
            };
            let drops = dropped.load(Ordering::Relaxed);
            if drops > reported_drops {
                shared
                    .counters
                    .dropped_inbound
                    .store(drops, Ordering::Relaxed);
                tracing::warn!(
                    dropped = drops,
                    "this node fell behind the messages of other nodes; some were dropped"
                );
                reported_drops = drops;
            }
            let arrival = match push {
                Push::Message(arrival) => arrival,
                Push::Disconnected => {
                    tracing::warn!("the connection to redis dropped; reconnecting");
                    continue;
                }
            };
            let Some(envelope) = Envelope::decode(&arrival.payload) else {
                tracing::debug!("an unreadable message on a cluster channel was ignored");
                continue;
            };
            if envelope.from == shared.config.node.id {
                continue;
            }
            shared.counters.received.fetch_add(1, Ordering::Relaxed);
            match envelope.body {
                Body::Apply {
                    hub,
                    operation,
                    reply,
                } => {
                    let outcome = local.apply(&hub, operation);
                    if let Some(request) = reply {
                        self.answer(&envelope.from, request, outcome);
                    }
                }
                Body::Reply { request, outcome } => shared.gathering.answer(request, outcome),
                Body::Invoke {
                    hub,
                    filter,
                    payload,
                    request,
                    deadline_ms,
                } => {
                    let answers = local.invoke(&hub, filter, payload);
                    let node = self.clone();
                    let origin = envelope.from.clone();
                    let deadline = Duration::from_millis(deadline_ms);
                    shared
                        .tasks
                        .spawn(node.stream_answers(origin, request, answers, deadline));
                }
                Body::InvokeAck { request, answer } => shared.invocations.answer(request, answer),
                Body::InvokeEnd { request } => shared.invocations.end(request),
            }
        }
    }

    /// Sends `payload` (an EVENT without ack id) to the matching connections
    /// of `hub` on the other nodes; their acknowledgements (Socket.IO ACK
    /// packets) arrive on the receiver, which closes when every node that
    /// received the invocation has finished, or after `deadline`. `None`
    /// when too many invocations are open.
    pub fn invoke(
        &self,
        hub: &str,
        filter: Filter,
        payload: Payload,
        deadline: Duration,
    ) -> Option<mpsc::UnboundedReceiver<String>> {
        let (id, answers) = self.0.invocations.open()?;
        let envelope = Envelope {
            from: self.node_id().clone(),
            body: Body::Invoke {
                hub: hub.to_owned(),
                filter,
                payload,
                request: id,
                deadline_ms: deadline.as_millis() as u64,
            },
        };
        let channel = self.hub_channel(hub);
        let cmd = self.0.link.publish(&channel, &envelope.encode());
        let queued = self.enqueue(Outbound {
            route: channel,
            cmd,
            awaiting: Awaiting::Invocation(id),
            published: None,
            self_receives: self.watches(hub),
        });
        if !queued {
            self.0.invocations.close(id);
            return Some(answers);
        }
        let shared = self.0.clone();
        self.0.tasks.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(deadline) => shared.invocations.close(id),
                () = shared.stop.cancelled() => {}
            }
        });
        Some(answers)
    }

    /// Streams this node's acknowledgements of invocation `request` back to
    /// `origin`, then its end.
    async fn stream_answers(
        self,
        origin: NodeId,
        request: u64,
        answers: Option<mpsc::UnboundedReceiver<String>>,
        deadline: Duration,
    ) {
        if let Some(mut answers) = answers {
            let deadline = tokio::time::sleep(deadline);
            tokio::pin!(deadline);
            loop {
                let answer = tokio::select! {
                    () = self.0.stop.cancelled() => return,
                    () = &mut deadline => return,
                    answer = answers.recv() => answer,
                };
                let Some(answer) = answer else { break };
                self.send_to(&origin, Body::InvokeAck { request, answer });
            }
        }
        self.send_to(&origin, Body::InvokeEnd { request });
    }

    fn send_to(&self, node: &NodeId, body: Body) {
        let envelope = Envelope {
            from: self.node_id().clone(),
            body,
        };
        let channel = self.node_channel(node);
        let cmd = self.0.link.publish(&channel, &envelope.encode());
        self.enqueue(Outbound {
            route: channel,
            cmd,
            awaiting: Awaiting::Nothing,
            published: None,
            self_receives: false,
        });
    }

    fn answer(&self, to: &NodeId, request: u64, outcome: Outcome) {
        self.send_to(to, Body::Reply { request, outcome });
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_passwords_stay_out_of_debug_and_logs() {
        let config = RedisConfig::new(
            vec!["redis://:s3cret@10.0.0.5:6379".into(), "not a url".into()],
            true,
        );
        let text = format!("{config:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            text.contains("10.0.0.5") && text.contains("<unparsable url>"),
            "{text}"
        );
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }
}
