//! The Socket.IO side of the chat: presence, rooms, typing and messages.
//!
//! Every name shown to others comes from the user restored by
//! `restore_login` (loaded from the user store by the id in the verified
//! token), never from what the client sends.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_server::extract::{AckSender, Data};
use portcullis_server::login::{LoggedIn, restore_login};
use portcullis_server::{SocketIo, SocketRef};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::users::{User, Users};

/// The room everyone is in when they arrive.
pub const LOBBY: &str = "general";
const MAX_MESSAGE_CHARS: usize = 2000;

/// A user as others see them.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
struct Person {
    id: String,
    name: String,
}

impl From<&User> for Person {
    fn from(user: &User) -> Self {
        Person {
            id: user.username.clone(),
            name: user.name.clone(),
        }
    }
}

/// Who is online: users with their number of open sockets (tabs).
#[derive(Clone, Default)]
struct Presence(Arc<Mutex<BTreeMap<String, (Person, usize)>>>);

impl Presence {
    /// Counts a socket in; true if the user just came online.
    fn arrive(&self, person: Person) -> bool {
        let mut online = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let entry = online.entry(person.id.clone()).or_insert((person, 0));
        entry.1 += 1;
        entry.1 == 1
    }

    /// Counts a socket out; true if the user just went offline.
    fn leave(&self, id: &str) -> bool {
        let mut online = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match online.get_mut(id) {
            Some(entry) if entry.1 > 1 => {
                entry.1 -= 1;
                false
            }
            Some(_) => {
                online.remove(id);
                true
            }
            None => false,
        }
    }

    fn list(&self) -> Vec<Person> {
        let online = self.0.lock().unwrap_or_else(|p| p.into_inner());
        online.values().map(|(p, _)| p.clone()).collect()
    }
}

#[derive(Deserialize)]
struct Said {
    room: String,
    text: String,
}

#[derive(Deserialize)]
struct Typing {
    room: String,
    typing: bool,
}

/// A room name: 1 to 32 lowercase letters, digits, `-` or `_`.
fn room_name(raw: &str) -> Option<String> {
    let name = raw.trim().trim_start_matches('#').to_lowercase();
    let valid = (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    valid.then_some(name)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Declares the chat's namespace on `io`.
pub fn install(io: &SocketIo, users: Users) {
    let presence = Presence::default();
    let handle = io.clone();
    io.ns("/", move |socket: SocketRef| {
        let io = handle.clone();
        let presence = presence.clone();
        async move { connected(io, presence, socket) }
    })
    // Loads the user named by the token through the user store; a socket
    // whose user does not exist is refused with "unauthorized: unknown user".
    .with(restore_login(users));
}

fn connected(io: SocketIo, presence: Presence, socket: SocketRef) {
    let Some(user) = LoggedIn::<User>::of(&socket) else {
        return socket.disconnect();
    };
    let me = Person::from(&user);
    socket.join(LOBBY);
    socket
        .emit("welcome", &json!({ "me": me, "rooms": [LOBBY] }))
        .ok();
    if presence.arrive(me.clone()) {
        socket
            .within(LOBBY)
            .emit(
                "notice",
                &json!({ "room": LOBBY, "text": format!("{} is online", me.name) }),
            )
            .ok();
    }
    io.emit("presence", &presence.list()).ok();

    socket.on(
        "join",
        |socket: SocketRef, LoggedIn(user): LoggedIn<User>, Data(room): Data<String>, ack: AckSender| async move {
            let Some(room) = room_name(&room) else {
                ack.send(&json!({ "ok": false, "error": "room names are 1 to 32 letters, digits, - or _" })).ok();
                return;
            };
            if !socket.rooms().contains(&room) {
                socket.join(room.clone());
                let text = format!("{} joined #{room}", user.name);
                socket.within(room.clone()).emit("notice", &json!({ "room": room, "text": text })).ok();
            }
            ack.send(&json!({ "ok": true, "room": room })).ok();
        },
    );

    socket.on(
        "leave",
        |socket: SocketRef,
         LoggedIn(user): LoggedIn<User>,
         Data(room): Data<String>,
         ack: AckSender| async move {
            if room == LOBBY || !socket.rooms().contains(&room) {
                ack.send(&json!({ "ok": false, "error": format!("you cannot leave #{room}") }))
                    .ok();
                return;
            }
            socket.leave(room.clone());
            let text = format!("{} left #{room}", user.name);
            socket
                .to(room.clone())
                .emit("notice", &json!({ "room": room, "text": text }))
                .ok();
            ack.send(&json!({ "ok": true, "room": room })).ok();
        },
    );

    socket.on(
        "message",
        |socket: SocketRef,
         LoggedIn(user): LoggedIn<User>,
         Data(said): Data<Said>,
         ack: AckSender| async move {
            let text = said.text.trim();
            let error = if !socket.rooms().contains(&said.room) {
                Some("join the room first")
            } else if text.is_empty() {
                Some("empty message")
            } else if text.chars().count() > MAX_MESSAGE_CHARS {
                Some("message too long")
            } else {
                None
            };
            if let Some(error) = error {
                ack.send(&json!({ "ok": false, "error": error })).ok();
                return;
            }
            // The sender is the verified user, whatever the client claims.
            let message = json!({
                "room": said.room,
                "from": Person::from(&user),
                "text": text,
                "at": now_ms(),
            });
            socket
                .within(said.room.clone())
                .emit("message", &message)
                .ok();
            ack.send(&json!({ "ok": true })).ok();
        },
    );

    socket.on(
        "typing",
        |socket: SocketRef, LoggedIn(user): LoggedIn<User>, Data(t): Data<Typing>| async move {
            if socket.rooms().contains(&t.room) {
                let event =
                    json!({ "room": t.room, "user": Person::from(&user), "typing": t.typing });
                socket.to(t.room.clone()).emit("typing", &event).ok();
            }
        },
    );

    socket.on_disconnect(move |socket: SocketRef, _reason| {
        let io = io.clone();
        let presence = presence.clone();
        let me = me.clone();
        async move {
            // Whoever saw this socket typing stops seeing it.
            for room in socket.rooms() {
                let event = json!({ "room": room, "user": me, "typing": false });
                socket.to(room).emit("typing", &event).ok();
            }
            if presence.leave(&me.id) {
                io.to(LOBBY)
                    .emit(
                        "notice",
                        &json!({ "room": LOBBY, "text": format!("{} went offline", me.name) }),
                    )
                    .ok();
            }
            io.emit("presence", &presence.list()).ok();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert_eq!(room_name(" #Random "), Some("random".into()));
        assert_eq!(room_name("rust-lang_2"), Some("rust-lang_2".into()));
        assert_eq!(room_name(""), None);
        assert_eq!(room_name("a b"), None);
        assert_eq!(room_name(&"x".repeat(33)), None);
    }

    #[test]
    fn presence_counts_tabs() {
        let p = Presence::default();
        let alice = Person {
            id: "alice".into(),
            name: "Alice".into(),
        };
        assert!(p.arrive(alice.clone()));
        assert!(!p.arrive(alice.clone()));
        assert!(!p.leave("alice"));
        assert_eq!(p.list(), [alice]);
        assert!(p.leave("alice"));
        assert!(p.list().is_empty());
    }
}
