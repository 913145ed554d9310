//! A small in-memory user store: the axum-login backend of the demo.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum_login::{AuthUser, AuthnBackend, UserId};
use serde::{Deserialize, Serialize};

/// A user of the chat.
#[derive(Clone, Debug, Serialize)]
pub struct User {
    /// The login name, also the user id in tokens (`alice`).
    pub username: String,
    /// The name shown to others (`Alice`).
    pub name: String,
    #[serde(skip)]
    password: String,
}

impl AuthUser for User {
    type Id = String;

    fn id(&self) -> String {
        self.username.clone()
    }

    /// Sessions are tied to the password: changing it logs the user out.
    fn session_auth_hash(&self) -> &[u8] {
        self.password.as_bytes()
    }
}

/// What the login form posts.
#[derive(Clone, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The users, by login name. A real application would keep password
/// hashes in a database; the demo's users are fixed.
#[derive(Clone, Debug)]
pub struct Users(Arc<BTreeMap<String, User>>);

impl Users {
    /// The demo users: each one's password is their login name.
    pub fn demo() -> Self {
        let users = [("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol")]
            .into_iter()
            .map(|(username, name)| {
                let user = User {
                    username: username.to_owned(),
                    name: name.to_owned(),
                    password: username.to_owned(),
                };
                (username.to_owned(), user)
            })
            .collect();
        Users(Arc::new(users))
    }

    /// The login names, for the login page's hint.
    pub fn usernames(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl AuthnBackend for Users {
    type User = User;
    type Credentials = Credentials;
    type Error = std::convert::Infallible;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<User>, Self::Error> {
        let user = self.0.get(creds.username.trim().to_lowercase().as_str());
        Ok(user.filter(|u| u.password == creds.password).cloned())
    }

    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<User>, Self::Error> {
        Ok(self.0.get(id).cloned())
    }
}
