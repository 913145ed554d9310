//! Keeps a session alive or ends it: Engine.IO pings when the gateway owns the
//! heartbeat, a silence limit when the handler does.

use std::sync::Arc;

use portcullis_protocol::engine::Packet;
use tokio::time::sleep;

use crate::hub::{Connection, DisconnectReason, Ending, Heartbeat, Hub, Payload};

/// Runs the heartbeat of `connection` until it ends.
pub(crate) fn spawn(hub: Hub, connection: Arc<Connection>) {
    tokio::spawn(async move {
        let reason = match connection.params.heartbeat {
            Heartbeat::Gateway => ping_until_timeout(&hub, &connection).await,
            Heartbeat::Application => watch_silence(&connection).await,
        };
        if let Some(reason) = reason {
            hub.end(&connection, Ending::ByServer, reason);
        }
    });
}

/// Sleeps, unless the connection ends first (then returns false).
async fn wait(connection: &Connection, duration: std::time::Duration) -> bool {
    tokio::select! {
        _ = connection.closed.cancelled() => false,
        _ = sleep(duration) => true,
    }
}

/// Engine.IO's schedule: a ping `ping_interval` after the previous pong, and
/// the connection ends if that ping's pong takes longer than `ping_timeout`.
/// (Clients expect the next ping within interval + timeout of the last one.)
async fn ping_until_timeout(hub: &Hub, connection: &Arc<Connection>) -> Option<DisconnectReason> {
    let ping = Payload::packet(Packet::Ping(String::new()));
    loop {
        if !wait(connection, connection.params.ping_interval).await {
            return None;
        }
        let pong = connection.pong_arrived.notified();
        tokio::pin!(pong);
        pong.as_mut().enable();
        connection.expect_pong();
        hub.send_to_connection_now(connection.id.as_str(), &ping);
        tokio::select! {
            _ = connection.closed.cancelled() => return None,
            _ = &mut pong => {}
            _ = sleep(connection.params.ping_timeout) => {
                if connection.awaiting_pong() {
                    return Some(DisconnectReason::PingTimeout);
                }
            }
        }
    }
}

async fn watch_silence(connection: &Connection) -> Option<DisconnectReason> {
    let limit = connection.params.ping_interval + connection.params.ping_timeout;
    let mut next = limit;
    loop {
        if !wait(connection, next).await {
            return None;
        }
        let silent = connection.silent_for();
        if silent >= limit {
            return Some(DisconnectReason::PingTimeout);
        }
        next = limit - silent;
    }
}
