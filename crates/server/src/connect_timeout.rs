//! socket.io's `connectTimeout`: a connection that joins no namespace in
//! time is closed.
//!
//! One task per server watches every connection's deadline, rather than a
//! timer task per connection: the timeout is the same for all, so the
//! deadlines fall in the order the connections started and a queue holds
//! them. The task runs only while deadlines are pending.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

use tokio::time::Instant;

use crate::conn_id::ConnId;
use crate::io::IoInner;
use crate::sync::lock;

/// The pending deadlines of a server's connections.
#[derive(Default)]
pub(crate) struct ConnectDeadlines(Mutex<Queue>);

#[derive(Default)]
struct Queue {
    /// In deadline order.
    deadlines: VecDeque<(Instant, ConnId)>,
    /// Whether the watching task runs.
    watching: bool,
}

impl ConnectDeadlines {
    /// Starts the timeout of connection `id`.
    pub fn start(io: &Arc<IoInner>, id: ConnId) {
        let mut queue = lock(&io.connect_deadlines.0);
        // Read under the lock, so that the queue stays in deadline order.
        let deadline = Instant::now() + io.config.connect_timeout;
        queue.deadlines.push_back((deadline, id));
        if !queue.watching {
            queue.watching = true;
            tokio::spawn(watch(Arc::downgrade(io)));
        }
    }

    /// What the watching task does next; the deadlines that passed are
    /// removed.
    fn step(&self, now: Instant) -> Step {
        let mut queue = lock(&self.0);
        let passed = queue.deadlines.partition_point(|(at, _)| *at <= now);
        if passed > 0 {
            return Step::Expire(queue.deadlines.drain(..passed).map(|(_, id)| id).collect());
        }
        match queue.deadlines.front() {
            Some((at, _)) => Step::SleepUntil(*at),
            None => {
                queue.watching = false;
                // No buffer kept between bursts of connections.
                queue.deadlines = VecDeque::new();
                Step::Stop
            }
        }
    }
}

enum Step {
    Expire(Vec<ConnId>),
    SleepUntil(Instant),
    Stop,
}

/// Closes the connections whose deadline passed without a namespace
/// joined, until no deadline is pending (or the server is gone).
async fn watch(io: Weak<IoInner>) {
    loop {
        let Some(io) = io.upgrade() else {
            return;
        };
        match io.connect_deadlines.step(Instant::now()) {
            Step::Expire(passed) => passed.iter().for_each(|id| expire(&io, id)),
            Step::SleepUntil(next) => {
                // Not holding the server while asleep.
                drop(io);
                tokio::time::sleep_until(next).await;
            }
            Step::Stop => return,
        }
    }
}

fn expire(io: &IoInner, id: &ConnId) {
    if let Some(conn) = io.conn(id.as_str())
        && conn.never_connected()
    {
        tracing::debug!(connection = %conn.id, "no namespace joined in time; closing");
        io.close_connection(&conn.id, "connect timeout");
    }
}
