//! Login integration over real HTTP: log in with a session cookie
//! (tower-sessions + axum-login), negotiate with `use_login`, connect the real
//! socket.io-client, and see the user restored by `restore_login` in the
//! handlers; refusals of the logged-out, the expired and the deleted.
//! The Node part needs `npm ci` in `tests/compat` (done by `scripts/test`).
#![cfg(feature = "login")]

mod negotiate_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::Json;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum_login::{AuthManagerLayerBuilder, AuthSession, AuthUser, AuthnBackend, UserId};
use negotiate_support::{
    Answer, DEADLINE, HUB, KEY, TestGateway, payload, serve_app, socket_io_client,
};
use portcullis_server::extract::AckSender;
use portcullis_server::login::{LoggedIn, restore_login, use_login};
use portcullis_server::negotiate::Negotiate;
use portcullis_server::{SocketIo, SocketRef};
use serde::Deserialize;
use serde_json::{Value, json};
use tower_sessions::{MemoryStore, SessionManagerLayer};

#[derive(Clone, Debug)]
struct User {
    id: u64,
    name: String,
    password: String,
}

impl AuthUser for User {
    type Id = u64;

    fn id(&self) -> u64 {
        self.id
    }

    fn session_auth_hash(&self) -> &[u8] {
        self.password.as_bytes()
    }
}

#[derive(Deserialize, Clone)]
struct Credentials {
    username: String,
    password: String,
}

/// Users by id, deletable during a test.
#[derive(Clone, Default)]
struct Users(Arc<RwLock<HashMap<u64, User>>>);

impl Users {
    fn with(users: &[(u64, &str, &str)]) -> Self {
        let map = users
            .iter()
            .map(|&(id, name, password)| {
                let user = User {
                    id,
                    name: name.to_owned(),
                    password: password.to_owned(),
                };
                (id, user)
            })
            .collect();
        Users(Arc::new(RwLock::new(map)))
    }

    fn delete(&self, id: u64) {
        self.0.write().unwrap().remove(&id);
    }
}

impl AuthnBackend for Users {
    type User = User;
    type Credentials = Credentials;
    type Error = std::convert::Infallible;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<User>, Self::Error> {
        Ok(self
            .0
            .read()
            .unwrap()
            .values()
            .find(|u| u.name.eq_ignore_ascii_case(&creds.username) && u.password == creds.password)
            .cloned())
    }

    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<User>, Self::Error> {
        Ok(self.0.read().unwrap().get(id).cloned())
    }
}

async fn login(mut session: AuthSession<Users>, Json(creds): Json<Credentials>) -> StatusCode {
    match session.authenticate(creds).await {
        Ok(Some(user)) => match session.login(&user).await {
            Ok(()) => StatusCode::NO_CONTENT,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        },
        _ => StatusCode::UNAUTHORIZED,
    }
}

async fn logout(mut session: AuthSession<Users>) -> StatusCode {
    match session.logout().await {
        Ok(_) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

struct Setup {
    users: Users,
    gw: TestGateway,
    app: String,
    /// How many sockets reached the namespace's middleware.
    middleware_calls: Arc<AtomicUsize>,
}

async fn setup(token_leeway: Duration) -> Setup {
    let users = Users::with(&[(1, "Alice", "alice"), (2, "Bob", "bob")]);
    let middleware_calls = Arc::new(AtomicUsize::new(0));

    let io = SocketIo::new();
    let restore = restore_login(users.clone());
    let calls = middleware_calls.clone();
    io.ns(
        "/",
        |socket: SocketRef, LoggedIn(user): LoggedIn<User>| async move {
            // In the connect handler: the restored user, as an extractor and
            // from the extensions (the same user).
            let name = LoggedIn::<User>::of(&socket)
                .map(|u| u.name)
                .filter(|name| *name == user.name);
            socket.emit("hello", &name).ok();
            // In event handlers: the LoggedIn<User> extractor.
            socket.on(
                "whoami",
                |socket: SocketRef, LoggedIn(user): LoggedIn<User>, ack: AckSender| async move {
                    let mut who = negotiate_support::whoami(&socket);
                    who["name"] = json!(user.name);
                    who["id"] = json!(user.id);
                    ack.send(&who).ok();
                },
            );
        },
    )
    .with(move |socket: SocketRef| {
        calls.fetch_add(1, Ordering::SeqCst);
        restore(socket)
    });
    let gw = TestGateway::start(&io, token_leeway).await;

    let sessions = SessionManagerLayer::new(MemoryStore::default()).with_secure(false);
    let auth = AuthManagerLayerBuilder::new(users.clone(), sessions).build();
    let negotiate = Negotiate::new(gw.connection_string(), HUB)
        .unwrap()
        .handler(use_login::<Users>());
    let app = Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/negotiate", get(negotiate))
        .layer(auth);
    let app = serve_app(app).await;
    Setup {
        users,
        gw,
        app,
        middleware_calls,
    }
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(DEADLINE)
        .build()
        .unwrap()
}

async fn log_in(client: &reqwest::Client, app: &str, username: &str, password: &str) {
    let response = client
        .post(format!("{app}/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "login as {username}");
}

async fn negotiate(client: &reqwest::Client, url: String) -> (u16, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn logged_in_user_is_restored_in_handlers_and_logout_is_refused() {
    let s = setup(Duration::from_secs(30)).await;
    let alice = browser();

    // Not logged in: 401 with a JSON message.
    let (status, body) = negotiate(&alice, format!("{}/negotiate", s.app)).await;
    assert_eq!(status, 401);
    assert_eq!(body, json!({"message": "unauthorized: log in first"}));
    // Wrong password: still not logged in.
    let response = alice
        .post(format!("{}/login", s.app))
        .json(&json!({"username": "alice", "password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    log_in(&alice, &s.app, "alice", "alice").await;
    let (status, answer) = negotiate(&alice, format!("{}/negotiate", s.app)).await;
    assert_eq!(status, 200, "{answer}");
    let claims = payload(answer["token"].as_str().unwrap());
    assert_eq!(claims["userId"], "1", "the AuthUser id");
    assert_eq!(claims["sub"], "1");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600,
        "one hour by default (usePassport's 600 minutes is too long for a bearer token)"
    );
    let (_, short) = negotiate(&alice, format!("{}/negotiate?expirationMinutes=10", s.app)).await;
    let short = payload(short["token"].as_str().unwrap());
    assert_eq!(
        short["exp"].as_u64().unwrap() - short["iat"].as_u64().unwrap(),
        600
    );
    // A client cannot lengthen its token: a longer lifetime is clamped.
    let (status, long) = negotiate(
        &alice,
        format!("{}/negotiate?expirationMinutes=100000", s.app),
    )
    .await;
    assert_eq!(status, 200, "{long}");
    let long = payload(long["token"].as_str().unwrap());
    assert_eq!(
        long["exp"].as_u64().unwrap() - long["iat"].as_u64().unwrap(),
        3600,
        "clamped to the app's expiration"
    );

    // The real socket.io-client connects with the answer; the handler sees
    // the user loaded through the backend.
    let result = socket_io_client(Answer::Json(&answer)).await;
    assert_eq!(result["connected"], true, "{result}");
    assert_eq!(result["whoami"]["name"], "Alice");
    assert_eq!(result["whoami"]["id"], 1);
    assert_eq!(result["whoami"]["user"], "1");

    // Logged out: negotiate is refused again.
    let response = alice
        .post(format!("{}/logout", s.app))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (status, body) = negotiate(&alice, format!("{}/negotiate", s.app)).await;
    assert_eq!(status, 401);
    assert_eq!(body, json!({"message": "unauthorized: log in first"}));

    // Bob's session is his own.
    let bob = browser();
    log_in(&bob, &s.app, "bob", "bob").await;
    let (_, answer) = negotiate(&bob, format!("{}/negotiate", s.app)).await;
    let result = socket_io_client(Answer::Json(&answer)).await;
    assert_eq!(result["whoami"]["name"], "Bob", "{result}");
}

#[tokio::test]
async fn a_deleted_user_is_refused_with_a_message() {
    let s = setup(Duration::from_secs(30)).await;
    let bob = browser();
    log_in(&bob, &s.app, "bob", "bob").await;
    let (status, answer) = negotiate(&bob, format!("{}/negotiate", s.app)).await;
    assert_eq!(status, 200);

    s.users.delete(2);
    let result = socket_io_client(Answer::Json(&answer)).await;
    assert_eq!(result["connected"], false, "{result}");
    assert_eq!(result["connectError"], "unauthorized: unknown user");
    assert_eq!(s.middleware_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_expired_token_is_refused_at_the_gateway_before_any_session() {
    // No clock-skew allowance, so the test need not wait 30 s.
    let s = setup(Duration::ZERO).await;
    let alice = browser();
    log_in(&alice, &s.app, "alice", "alice").await;
    // A one-second token (1/60 minute).
    let (status, answer) = negotiate(
        &alice,
        format!("{}/negotiate?expirationMinutes=0.0166667", s.app),
    )
    .await;
    assert_eq!(status, 200);
    let token = answer["token"].as_str().unwrap();
    let exp = payload(token)["exp"].as_u64().unwrap();
    tokio::time::timeout(DEADLINE, async {
        while SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            <= exp
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap();

    // The Engine.IO handshake itself is refused: 401, no session.
    let handshake = reqwest::get(format!(
        "{}{}/?EIO=4&transport=polling&access_token={token}",
        answer["endpoint"].as_str().unwrap(),
        answer["path"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(handshake.status(), 401);
    let body: Value = handshake.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    // The real client is refused too, and the application never saw it.
    let result = socket_io_client(Answer::Json(&answer)).await;
    assert_eq!(result["connected"], false, "{result}");
    assert_eq!(s.middleware_calls.load(Ordering::SeqCst), 0);
    assert_eq!(s.gw.connections().await, 0);
}

#[tokio::test]
async fn the_user_is_restored_from_sub_never_from_user_id() {
    let s = setup(Duration::from_secs(30)).await;
    // A token (signed with the key, as a careless app's custom claims could
    // produce) whose `userId` names Alice but whose `sub` names Bob.
    let path = format!("/clients/socketio/hubs/{HUB}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "userId": "1", "sub": "2", "iat": now, "exp": now + 600,
        "aud": format!("{}{path}", s.gw.origin()),
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap();
    let answer = json!({"endpoint": s.gw.origin(), "path": path, "token": token});
    let result = socket_io_client(Answer::Json(&answer)).await;
    assert_eq!(result["connected"], true, "{result}");
    assert_eq!(result["whoami"]["user"], "2");
    assert_eq!(result["whoami"]["name"], "Bob", "the sub's user: {result}");
}
