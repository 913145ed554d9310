//! The hub contract's operations, applied to the connections of this process.

use portcullis_hub::{Applied, Hub, Operation, Outcome};

use super::LocalHub;

impl Hub for LocalHub {
    fn name(&self) -> &str {
        LocalHub::name(self)
    }

    /// Alone, every operation completes before this returns: the outcome is
    /// ready. In a cluster it is applied here at once and sent to the other
    /// nodes; the outcome then waits for theirs (see `cluster.rs`).
    fn apply(&self, operation: Operation) -> Applied {
        self.apply_everywhere(operation, true)
    }

    fn apply_and_forget(&self, operation: Operation) {
        drop(self.apply_everywhere(operation, false));
    }
}

impl LocalHub {
    /// Applies an operation to this node's connections and gives its outcome.
    pub fn apply_now(&self, operation: Operation) -> Outcome {
        match operation {
            Operation::Send { to, payload } => Outcome::Count(self.send(&to, &payload)),
            Operation::Join { who, groups } => Outcome::Count(self.join(&who, &groups)),
            Operation::Leave { who, groups } => Outcome::Count(self.leave(&who, &groups)),
            Operation::Close { who, reason } => Outcome::Count(self.close(&who, &reason)),
            Operation::Exists(who) => Outcome::Exists(self.exists(&who)),
            Operation::GroupsOf(id) => Outcome::Groups(self.groups_of(id.as_str())),
            Operation::Revoke(revocation) => Outcome::Done(self.revoke(&revocation).recorded),
        }
    }
}

#[cfg(test)]
mod tests {
    use portcullis_hub::{Groups, Payload, Selection};
    use portcullis_protocol::engine::Packet;

    use super::*;
    use crate::hub::Connection;
    use crate::hub::testing::hub_with_one_connection;

    fn send(hub: &LocalHub, connection: &Connection, text: &str) {
        hub.apply_now(Operation::Send {
            to: Selection::connection(connection.id.as_str()),
            payload: Payload::parse(text).unwrap(),
        });
    }

    const CHAT: &str = "0~L2NoYXQ~";

    /// Whoever serves the hub, a CONNECT it delivers joins the namespace
    /// group and a DISCONNECT or CONNECT_ERROR leaves every group of it.
    #[tokio::test]
    async fn delivered_packets_keep_namespace_groups() {
        let (hub, connection, _) = hub_with_one_connection();
        let id = connection.id.as_str();
        send(&hub, &connection, "40/chat,{\"sid\":\"s\"}");
        assert_eq!(hub.groups_of(id), vec![CHAT.to_owned()]);
        hub.join(
            &Selection::connection(id),
            &[format!("{CHAT}cm9vbQ"), "other".into()],
        );
        send(&hub, &connection, "41/chat,");
        assert_eq!(hub.groups_of(id), vec!["other".to_owned()]);
        send(&hub, &connection, "40/chat,{\"sid\":\"s\"}");
        send(&hub, &connection, "44/chat,{\"message\":\"no\"}");
        assert_eq!(hub.groups_of(id), vec!["other".to_owned()]);
    }

    /// A client's own DISCONNECT leaves the namespace's groups before the
    /// handler hears it.
    #[tokio::test]
    async fn a_client_disconnect_leaves_the_namespace() {
        let (hub, connection, recorder) = hub_with_one_connection();
        let id = connection.id.as_str();
        hub.join(
            &Selection::connection(id),
            &[CHAT.to_owned(), format!("{CHAT}cm9vbQ")],
        );
        hub.dispatch(&connection.id, Packet::Message("1/chat,".into()));
        assert!(hub.groups_of(id).is_empty());
        assert_eq!(*recorder.0.lock().unwrap(), vec!["1/chat,".to_owned()]);
    }

    /// `{"close":false}` is answered with a client DISCONNECT handed to the
    /// handler, and the client gets the DISCONNECT without the data;
    /// `{"close":true}` closes the connection.
    #[tokio::test]
    async fn close_flags_of_a_delivered_disconnect() {
        let (hub, connection, recorder) = hub_with_one_connection();
        send(&hub, &connection, "41/chat,{\"close\":false}");
        assert_eq!(*recorder.0.lock().unwrap(), vec!["1/chat,".to_owned()]);
        assert!(connection.ending().is_none());
        send(&hub, &connection, "41{\"close\":true}");
        assert!(connection.ending().is_some());
        assert!(!hub.exists(&Selection::connection(connection.id.as_str())));
        assert!(hub.leave(&Selection::all(), &Groups::All) == 0);
    }
}
