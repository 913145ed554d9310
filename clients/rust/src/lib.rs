//! Keeps the access token of a [`rust_socketio`] client connected to a
//! Portcullis gateway fresh, the Rust counterpart of the npm package
//! `portcullis-client`.
//!
//! - [`refresh`] hands a fresh token to the gateway over the live connection
//!   (the reserved event `portcullis:refresh`, which the gateway intercepts
//!   and acknowledges with the new expiry): the connection keeps its socket
//!   id and rooms.
//! - [`keep_fresh`] runs that before each token expires, asking the
//!   application for the token through a [`FreshToken`] (the app's
//!   negotiate).
//! - [`FreshToken::on_reconnect`] is a callback for
//!   [`ClientBuilder::on_reconnect`](rust_socketio::asynchronous::ClientBuilder::on_reconnect):
//!   rust_socketio awaits it before every reconnection attempt, so each
//!   attempt carries a token negotiated just before it.
//!
//! ```no_run
//! use std::time::Duration;
//! use rust_socketio::asynchronous::ClientBuilder;
//! use portcullis_client_refresh::{FreshToken, keep_fresh};
//!
//! # async fn negotiate() -> Result<String, std::io::Error> { unimplemented!() }
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let endpoint = "http://127.0.0.1:8080/clients/socketio/hubs/chat/";
//! let tokens = FreshToken::new(negotiate().await?, negotiate);
//! let client = ClientBuilder::new(format!("{endpoint}?access_token={}", tokens.current()))
//!     .on_reconnect(tokens.on_reconnect(move |token| format!("{endpoint}?access_token={token}")))
//!     .connect()
//!     .await?;
//! let keeper = keep_fresh(client.clone(), tokens, Duration::from_secs(30));
//! // ... until the client is done:
//! keeper.stop();
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use rust_socketio::Payload;
use rust_socketio::asynchronous::{Client, ReconnectSettings};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

/// The reserved Socket.IO event the gateway intercepts (it never reaches
/// the application).
pub const REFRESH_EVENT: &str = "portcullis:refresh";

/// How long [`refresh`] waits for the gateway's acknowledgement.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Refreshes are never scheduled closer than this: a short or expired token
/// must not turn into a busy loop of negotiations.
const MIN_DELAY: Duration = Duration::from_secs(1);

/// Retries after a failed refresh back off up to this.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Clock skew tolerated between the token's issuer and this client.
const CLOCK_SKEW: Duration = Duration::from_secs(30);

/// A refresh the gateway accepted: the connection's new deadline (the fresh
/// token's `exp`; the gateway closes the connection its grace period later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// The new token's `exp`, in seconds since the Unix epoch.
    pub expires_at: u64,
}

impl Expiry {
    /// The deadline as a [`SystemTime`].
    pub fn at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.expires_at)
    }
}

/// Why a refresh did not happen. The connection keeps its old deadline.
/// No variant carries the token.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The gateway refused the token: `code` is 400 (malformed), 401 (not
    /// valid: signature, expiry, revoked) or 403 (another hub or user).
    #[error("the gateway refused the token ({code}): {message}")]
    Refused {
        /// The status the gateway answered.
        code: u16,
        /// The gateway's reason.
        message: String,
    },
    /// No acknowledgement within the timeout (a gateway without in-band
    /// refresh passes the event to the application, which does not answer).
    #[error("the gateway did not acknowledge the refresh within {0:?}")]
    Timeout(Duration),
    /// The event could not be sent (the client is disconnected).
    #[error("the refresh could not be sent: {0}")]
    Send(Box<rust_socketio::Error>),
    /// The acknowledgement was not of the documented form.
    #[error("unexpected acknowledgement: {0}")]
    BadAnswer(String),
    /// The application's negotiate failed.
    #[error("negotiate failed: {0}")]
    Negotiate(String),
}

/// Hands `token` to the gateway over `client`'s live connection and waits
/// (at most [`DEFAULT_ACK_TIMEOUT`]) for its answer.
pub async fn refresh(client: &Client, token: &str) -> Result<Expiry, RefreshError> {
    refresh_with_timeout(client, token, DEFAULT_ACK_TIMEOUT).await
}

/// [`refresh`] with an explicit acknowledgement timeout.
pub async fn refresh_with_timeout(
    client: &Client,
    token: &str,
    timeout: Duration,
) -> Result<Expiry, RefreshError> {
    let (tx, rx) = oneshot::channel::<Payload>();
    // rust_socketio wants an FnMut callback; the answer is sent once.
    let tx = Arc::new(Mutex::new(Some(tx)));
    client
        .emit_with_ack(
            REFRESH_EVENT,
            Payload::Text(vec![json!({ "token": token })]),
            timeout,
            move |payload: Payload, _client: Client| {
                if let Some(tx) = tx.lock().ok().and_then(|mut tx| tx.take()) {
                    tx.send(payload).ok();
                }
                async {}.boxed()
            },
        )
        .await
        .map_err(|e| RefreshError::Send(Box::new(e)))?;
    // rust_socketio drops a late acknowledgement without calling back, so
    // the deadline is kept here as well.
    let payload = match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(payload)) => payload,
        _ => return Err(RefreshError::Timeout(timeout)),
    };
    parse_answer(payload)
}

/// The answer's first argument: `{"ok":true,"expiresAt":N}` or
/// `{"ok":false,"code":C,"message":"…"}`.
fn parse_answer(payload: Payload) -> Result<Expiry, RefreshError> {
    let values = match payload {
        Payload::Text(values) => values,
        other => return Err(RefreshError::BadAnswer(format!("{other:?}"))),
    };
    // rust_socketio hands an acknowledgement's arguments over as one array.
    let first = match values.as_slice() {
        [Value::Array(args)] => args.first().cloned(),
        [one, ..] => Some(one.clone()),
        [] => None,
    };
    let Some(Value::Object(answer)) = first else {
        return Err(RefreshError::BadAnswer(format!("{values:?}")));
    };
    match answer.get("ok") {
        Some(Value::Bool(true)) => answer
            .get("expiresAt")
            .and_then(Value::as_u64)
            .map(|expires_at| Expiry { expires_at })
            .ok_or_else(|| RefreshError::BadAnswer("no expiresAt".into())),
        Some(Value::Bool(false)) => Err(RefreshError::Refused {
            code: answer
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(400),
            message: answer
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("refused")
                .to_owned(),
        }),
        _ => Err(RefreshError::BadAnswer("no ok field".into())),
    }
}

/// `exp` and `iat` of a JWT (seconds since the epoch), decoded WITHOUT
/// verification: the client only needs to know when to refresh; the
/// gateway verifies. `None` for a token without a numeric `exp`.
pub fn token_times(token: &str) -> Option<(u64, Option<u64>)> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp").and_then(Value::as_f64)?;
    let iat = claims.get("iat").and_then(Value::as_f64).map(|v| v as u64);
    Some((exp as u64, iat))
}

/// How long after `now` to refresh `token`: `margin` before its expiry, or
/// half its remaining lifetime when that is shorter (short tokens), never
/// less than a second; `None` for a token without `exp`.
///
/// A remaining lifetime that cannot be right for a token with `iat` (already
/// past, or longer than `exp - iat` plus 30 s) means the local clock is
/// wrong: the lifetime then counts from now (tokens come fresh from
/// negotiate).
pub fn refresh_delay(token: &str, margin: Duration, now: SystemTime) -> Option<Duration> {
    let (exp, iat) = token_times(token)?;
    let exp = UNIX_EPOCH + Duration::from_secs(exp);
    let lifetime = iat.and_then(|iat| {
        exp.duration_since(UNIX_EPOCH + Duration::from_secs(iat))
            .ok()
    });
    let mut remaining = exp.duration_since(now).unwrap_or(Duration::ZERO);
    if let Some(lifetime) = lifetime.filter(|l| !l.is_zero())
        && (remaining.is_zero() || remaining > lifetime + CLOCK_SKEW)
    {
        remaining = lifetime;
    }
    let margin = margin.min(remaining / 2);
    Some((remaining - margin).max(MIN_DELAY))
}

type NegotiateFn = dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync;

/// The connection's current token and the application's negotiate, shared
/// by [`keep_fresh`] and the reconnection callback.
#[derive(Clone)]
pub struct FreshToken {
    current: Arc<Mutex<String>>,
    negotiate: Arc<NegotiateFn>,
}

impl fmt::Debug for FreshToken {
    // Never print the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FreshToken").finish_non_exhaustive()
    }
}

impl FreshToken {
    /// `token` is what the client connects with; `negotiate` asks the
    /// application for a new one (its `/negotiate`).
    pub fn new<N, Fut, E>(token: impl Into<String>, negotiate: N) -> Self
    where
        N: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: fmt::Display,
    {
        let negotiate = Arc::new(negotiate);
        FreshToken {
            current: Arc::new(Mutex::new(token.into())),
            negotiate: Arc::new(move || {
                let negotiate = Arc::clone(&negotiate);
                async move { negotiate().await.map_err(|e| e.to_string()) }.boxed()
            }),
        }
    }

    /// The latest token (the one the next connection will present).
    pub fn current(&self) -> String {
        self.current.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Asks the application for a new token and makes it the current one.
    pub async fn renew(&self) -> Result<String, RefreshError> {
        let token = (self.negotiate)().await.map_err(RefreshError::Negotiate)?;
        if let Ok(mut current) = self.current.lock() {
            current.clone_from(&token);
        }
        Ok(token)
    }

    /// A callback for `ClientBuilder::on_reconnect`: before every
    /// reconnection attempt it negotiates and returns the address `address`
    /// builds from the fresh token (e.g. the endpoint with
    /// `?access_token=…`). If negotiate fails, the attempt goes to the
    /// address of the current token (and fails; rust_socketio retries).
    pub fn on_reconnect<A>(
        &self,
        address: A,
    ) -> impl FnMut() -> BoxFuture<'static, ReconnectSettings> + Send + Sync + 'static
    where
        A: Fn(&str) -> String + Send + Sync + 'static,
    {
        let tokens = self.clone();
        let address = Arc::new(address);
        move || {
            let tokens = tokens.clone();
            let address = Arc::clone(&address);
            async move {
                let token = match tokens.renew().await {
                    Ok(token) => token,
                    Err(error) => {
                        tracing::warn!(%error, "no fresh token for the reconnection");
                        tokens.current()
                    }
                };
                let mut settings = ReconnectSettings::new();
                settings.address(address(&token));
                settings
            }
            .boxed()
        }
    }
}

/// What [`keep_fresh`] has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Refreshes the gateway accepted.
    pub refreshes: u64,
    /// The connection's deadline after the last accepted refresh.
    pub expiry: Option<Expiry>,
    /// The last failure (negotiate or refresh), if the last attempt failed.
    pub last_error: Option<String>,
}

/// The task [`keep_fresh`] started; it stops when this is dropped.
#[derive(Debug)]
pub struct KeepFresh {
    task: tokio::task::JoinHandle<()>,
    status: watch::Receiver<Status>,
}

impl KeepFresh {
    /// What it has done so far.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A receiver that sees every change of [`status`](Self::status).
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Stops refreshing.
    pub fn stop(self) {}
}

impl Drop for KeepFresh {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Refreshes `client`'s token `margin` before each expiry (half the
/// remaining lifetime for short tokens): negotiates through `tokens`, then
/// [`refresh`]. A failure is retried with back-off (1 s, 2 s, … 30 s); if the
/// connection is closed meanwhile, rust_socketio's reconnection (with
/// [`FreshToken::on_reconnect`]) takes over, and the next refresh follows the
/// token it connected with.
pub fn keep_fresh(client: Client, tokens: FreshToken, margin: Duration) -> KeepFresh {
    let (status_tx, status) = watch::channel(Status::default());
    let task = tokio::spawn(async move {
        let mut failures: u32 = 0;
        loop {
            let delay = if failures == 0 {
                match refresh_delay(&tokens.current(), margin, SystemTime::now()) {
                    Some(delay) => delay,
                    // A token without `exp` never expires: nothing to do.
                    None => return,
                }
            } else {
                (MIN_DELAY * 2u32.saturating_pow(failures - 1)).min(MAX_RETRY)
            };
            tokio::time::sleep(delay).await;
            let outcome = match tokens.renew().await {
                Ok(token) => refresh(&client, &token).await,
                Err(error) => Err(error),
            };
            match outcome {
                Ok(expiry) => {
                    failures = 0;
                    status_tx.send_modify(|s| {
                        s.refreshes += 1;
                        s.expiry = Some(expiry);
                        s.last_error = None;
                    });
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, "token refresh failed");
                    status_tx.send_modify(|s| s.last_error = Some(error.to_string()));
                }
            }
        }
    });
    KeepFresh { task, status }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: Value) -> String {
        format!("h.{}.s", URL_SAFE_NO_PAD.encode(claims.to_string()))
    }

    fn secs(n: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(n)
    }

    #[test]
    fn delay_is_the_margin_or_half_the_lifetime() {
        let margin = Duration::from_secs(30);
        let hour = token(json!({"iat": 1000, "exp": 4600}));
        assert_eq!(
            refresh_delay(&hour, margin, secs(1000)),
            Some(Duration::from_secs(3570))
        );
        let short = token(json!({"iat": 1000, "exp": 1004}));
        assert_eq!(
            refresh_delay(&short, margin, secs(1000)),
            Some(Duration::from_secs(2))
        );
        // Never below a second.
        let tiny = token(json!({"iat": 1000, "exp": 1001}));
        assert_eq!(refresh_delay(&tiny, margin, secs(1000)), Some(MIN_DELAY));
        assert_eq!(refresh_delay("not a jwt", margin, secs(1000)), None);
        assert_eq!(
            refresh_delay(&token(json!({"iat": 1})), margin, secs(1000)),
            None
        );
    }

    #[test]
    fn a_wrong_local_clock_counts_the_lifetime_from_now() {
        let margin = Duration::from_secs(30);
        // Local clock ten minutes ahead: already "expired" locally.
        let t = token(json!({"iat": 1000, "exp": 1060}));
        assert_eq!(
            refresh_delay(&t, margin, secs(1600)),
            Some(Duration::from_secs(30))
        );
        // Ten minutes behind: longer than the whole lifetime.
        assert_eq!(
            refresh_delay(&t, margin, secs(400)),
            Some(Duration::from_secs(30))
        );
        // An old token with a right clock: what is left of it.
        let old = token(json!({"iat": 1000, "exp": 4600}));
        assert_eq!(
            refresh_delay(&old, margin, secs(4000)),
            Some(Duration::from_secs(570))
        );
    }

    #[test]
    fn answers() {
        let ok = Payload::Text(vec![json!([{"ok": true, "expiresAt": 1234}])]);
        assert_eq!(parse_answer(ok).unwrap(), Expiry { expires_at: 1234 });
        let refused = Payload::Text(vec![
            json!([{"ok": false, "code": 403, "message": "another user"}]),
        ]);
        match parse_answer(refused) {
            Err(RefreshError::Refused { code, message }) => {
                assert_eq!(code, 403);
                assert_eq!(message, "another user");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_answer(Payload::Text(vec![json!(["nope"])])),
            Err(RefreshError::BadAnswer(_))
        ));
    }

    #[test]
    fn debug_hides_the_token() {
        let tokens = FreshToken::new("secret.token.value", || async {
            Ok::<_, String>(String::new())
        });
        assert!(!format!("{tokens:?}").contains("secret"));
    }
}
