//! Accepting and serving TCP connections, with the limits that keep slow or
//! silent clients from holding the gateway's sockets and memory before they
//! have passed the gate.
//!
//! Definitions (see also README, "Configuration"):
//! - A connection is *pre-gate* from accept until one of its requests is
//!   answered with `101` (a WebSocket upgrade, which the gate or the tunnel
//!   authenticates first), or with a `2xx` to a `GET`/`POST` on the client
//!   endpoint (a handshake that passed the gate, or a poll/send on a session
//!   that accepted the request's token) or to any call of the REST API
//!   (authenticated by its Bearer token). `/health`, CORS preflights and
//!   errors do not count.
//! - A connection is *idle* while no request is in flight on it: from accept
//!   to the first request, and from each response (its headers handed to
//!   hyper) to the next request. A long-poll waiting for packets is a request
//!   in flight; an upgraded WebSocket is no longer served here at all.
//! - An idle pre-gate connection is closed after the header-read timeout, an
//!   idle connection past the gate after the idle timeout. Both therefore
//!   bound the time to send a request's head, including a slowloris dribble.
//! - Pre-gate connections are capped per client address (IPv6 by /64) and in
//!   total. Over the per-address cap a new connection is refused (a best-effort
//!   `503`, then closed). At the total cap the oldest *idle* pre-gate
//!   connection is closed to make room, so a flood of half-open connections
//!   only ever evicts itself: a valid client's handshake is pre-gate for the
//!   milliseconds it takes, while the flood's connections sit idle.
//! - With TLS, the TLS handshake is part of the first request's head: the
//!   connection is pre-gate and idle until its first request, so a client
//!   that never finishes the handshake is closed by the header-read timeout
//!   and counts against the pre-gate caps. Over the per-address cap it is
//!   closed without the `503` (which it could not read).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Limits on accepted connections, before and after the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a pre-gate connection may go without a request in flight
    /// (e.g. while it sends its first request's head) before it is closed.
    pub header_read_timeout: Duration,
    /// How long a connection past the gate may go without a request in
    /// flight (a keep-alive connection between requests) before it is closed.
    pub idle_timeout: Duration,
    /// Most pre-gate connections at once; at the cap the oldest idle one is
    /// closed for each new one.
    pub max_pending_connections: usize,
    /// Most pre-gate connections from one client address (IPv6: one /64).
    pub max_pending_per_address: usize,
}

impl Default for ConnectionLimits {
    /// 10 s to send a request head, 60 s idle keep-alive (longer than the
    /// 25 s ping interval, so no active polling client hits it), 10000
    /// pre-gate connections, 256 from one address.
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_pending_connections: 10_000,
            max_pending_per_address: 256,
        }
    }
}

/// How long to wait before accepting again after an error such as EMFILE:
/// long enough not to spin, short enough that valid clients barely notice.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How many of the oldest pre-gate connections to look through for an idle
/// one to evict (bounds the work per accept when all are busy).
const EVICTION_SCAN: usize = 64;

/// Accepts connections until `shutdown` resolves, then lets every connection
/// finish its requests (each is told to close when idle) and returns. With
/// `tls`, every connection is served over TLS.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Arc::new(limits);
    let pending = Arc::new(PendingConnections::new(&limits));
    let trimmer = tokio::spawn(trim_after_floods(pending.clone()));
    let closing = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut shutdown = pin!(shutdown);
    let mut errors = AcceptErrors::default();
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &pending, &mut errors) => accepted,
        };
        // Real-time traffic is many small writes: Nagle's algorithm would
        // hold each behind the peer's delayed ACK (tens of ms a hop).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let activity = Arc::new(Activity::new());
        let Some(ticket) = pending.admit(peer.ip(), &activity) else {
            if tls.is_none() {
                refuse(&stream);
            }
            continue;
        };
        activity.hold(ticket);
        let connection = Connection {
            router: router.clone(),
            peer,
            limits: limits.clone(),
            activity,
            closing: closing.clone(),
            tls: tls.clone(),
        };
        tracker.spawn(connection.run(stream));
    }
    drop(listener);
    trimmer.abort();
    closing.cancel();
    tracker.close();
    tracker.wait().await;
}

/// The next accepted connection. Errors never end the loop: per-connection
/// ones (the peer already gone) are skipped, others (EMFILE, ENFILE, ENOBUFS)
/// are waited out, evicting an idle pre-gate connection each time to free a
/// descriptor.
async fn accept(
    listener: &TcpListener,
    pending: &PendingConnections,
    errors: &mut AcceptErrors,
) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) if is_connection_error(&error) => {}
            Err(error) => {
                errors.record(&error);
                pending.evict_idle();
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Logs accept errors once per burst: the first, then at most one summary
/// every [`ACCEPT_ERROR_LOG_INTERVAL`] while they go on (out of descriptors,
/// every other accept fails, which would otherwise flood the log).
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    suppressed: u64,
}

/// See [`AcceptErrors`].
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl AcceptErrors {
    fn record(&mut self, error: &io::Error) {
        let now = Instant::now();
        let due = self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= ACCEPT_ERROR_LOG_INTERVAL);
        if !due {
            self.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut self.suppressed);
        tracing::warn!(%error, suppressed, "cannot accept connections; backing off");
        self.last_logged = Some(now);
    }
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The answer to a connection over a pre-gate cap, written without waiting
/// (a full socket buffer just means the client sees a close).
static REFUSAL: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let body = r#"{"code":503,"message":"too many connections are waiting to connect (from this address, or in all); retry later"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

fn refuse(stream: &TcpStream) {
    let _ = stream.try_write(&REFUSAL);
}

/// One accepted connection being served.
struct Connection {
    router: Router,
    peer: SocketAddr,
    limits: Arc<ConnectionLimits>,
    activity: Arc<Activity>,
    closing: CancellationToken,
    tls: Option<TlsAcceptor>,
}

impl Connection {
    /// Serves the connection, over TLS if configured, then frees its
    /// pre-gate place if it still holds one.
    async fn run(self, stream: TcpStream) {
        let activity = self.activity.clone();
        match self.tls.clone() {
            None => self.serve(stream).await,
            Some(acceptor) => {
                // Under the same deadline as a request head (the connection
                // is idle and pre-gate): a silent or slow ClientHello, or a
                // handshake never finished, is closed by it.
                let handshake = tokio::select! {
                    result = acceptor.accept(stream) => result
                        .inspect_err(|error| tracing::trace!(%error, "TLS handshake failed"))
                        .ok(),
                    () = activity.expired(&self.limits) => {
                        tracing::debug!("closing a connection that did not finish its TLS handshake in time");
                        None
                    }
                    () = self.closing.cancelled() => None,
                };
                if let Some(stream) = handshake {
                    self.serve(stream).await;
                }
            }
        }
        activity.release();
    }

    /// Serves HTTP/1.1 (with upgrades) until the client closes, the
    /// connection upgrades, or it stays idle too long.
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = GatedService {
            router: self.router,
            peer: ConnectInfo(self.peer),
            activity: self.activity.clone(),
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The timeouts are enforced below, per the definitions in this
        // module: hyper's header timer would also run between keep-alive
        // requests and so cut the idle timeout short.
        builder.header_read_timeout(None);
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut connection = pin!(connection);
        let mut told_to_close = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::trace!(%error, "connection ended");
                    }
                    break;
                }
                () = self.activity.expired(&self.limits) => {
                    tracing::debug!("closing an idle connection");
                    break;
                }
                () = self.closing.cancelled(), if !told_to_close => {
                    told_to_close = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Serves each request with the router, keeping the connection's activity
/// (requests in flight, passing the gate) up to date.
#[derive(Clone)]
struct GatedService {
    router: Router,
    /// The client's address, for handlers that limit per address (what
    /// `into_make_service_with_connect_info` would give them).
    peer: ConnectInfo<SocketAddr>,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for GatedService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.peer);
        let busy = Busy::start(self.activity.clone());
        let router = self.router.clone();
        Box::pin(async move {
            let kind = RequestKind::of(request.method(), request.uri().path());
            let response = router
                .oneshot(request.map(Body::new))
                .await
                .unwrap_or_else(|never| match never {});
            if kind.passes_gate(response.status()) {
                busy.activity.pass_gate();
            }
            drop(busy);
            Ok(response)
        })
    }
}

/// What a request may prove about its connection, by method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    /// A handshake, poll or send on the client endpoint.
    Client,
    /// A REST API call (always authenticated).
    Api,
    /// Anything else (`/health`, preflights, unknown paths).
    Other,
}

impl RequestKind {
    fn of(method: &Method, path: &str) -> Self {
        let client_method = method == Method::GET || method == Method::POST;
        if path.starts_with("/clients/") && client_method {
            RequestKind::Client
        } else if path.starts_with("/api/") {
            RequestKind::Api
        } else {
            RequestKind::Other
        }
    }

    /// Whether answering this request with `status` shows that the client
    /// passed the gate (or the tunnel's or the API's authentication).
    fn passes_gate(self, status: StatusCode) -> bool {
        status == StatusCode::SWITCHING_PROTOCOLS
            || (status.is_success() && self != RequestKind::Other)
    }
}

/// What the timeouts of one connection look at.
struct Activity {
    accepted: Instant,
    in_flight: AtomicUsize,
    /// When the last request was answered, in ms after `accepted`.
    last_done_ms: AtomicU64,
    passed_gate: AtomicBool,
    evicted: AtomicBool,
    changed: Notify,
    ticket: Mutex<Option<Ticket>>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            passed_gate: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            changed: Notify::new(),
            ticket: Mutex::new(None),
        }
    }

    fn ticket(&self) -> MutexGuard<'_, Option<Ticket>> {
        self.ticket.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hold(&self, ticket: Ticket) {
        *self.ticket() = Some(ticket);
    }

    /// Stops counting the connection as pre-gate.
    fn release(&self) {
        let ticket = self.ticket().take();
        drop(ticket);
    }

    fn pass_gate(&self) {
        self.passed_gate.store(true, Ordering::Release);
        self.release();
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// When the connection is to be closed if nothing happens (`None` while a
    /// request is in flight).
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        if !self.is_idle() {
            return None;
        }
        let since =
            self.accepted + Duration::from_millis(self.last_done_ms.load(Ordering::Acquire));
        let allowed = if self.passed_gate.load(Ordering::Acquire) {
            limits.idle_timeout
        } else {
            limits.header_read_timeout
        };
        Some(since + allowed)
    }

    /// Resolves when the connection has been idle too long or was evicted.
    async fn expired(&self, limits: &ConnectionLimits) {
        loop {
            if self.evicted.load(Ordering::Acquire) {
                return;
            }
            let Some(deadline) = self.deadline(limits) else {
                self.changed.notified().await;
                continue;
            };
            tokio::select! {
                () = self.changed.notified() => {}
                () = tokio::time::sleep_until(deadline) => {
                    // Re-read: a request may have started meanwhile.
                    if self.deadline(limits).is_some_and(|d| d <= Instant::now()) {
                        return;
                    }
                }
            }
        }
    }
}

/// A request in flight on a connection, from hyper handing it over until its
/// response is ready (or the request is dropped).
struct Busy {
    activity: Arc<Activity>,
}

impl Busy {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.changed.notify_one();
        Busy { activity }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.activity;
        let elapsed = u64::try_from(activity.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        // Record the time first, so an idle deadline never uses a stale one.
        activity.last_done_ms.store(elapsed, Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
        activity.changed.notify_one();
    }
}

/// The pre-gate connections, by age and by client address.
struct PendingConnections {
    max_total: usize,
    max_per_address: usize,
    inner: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    next_id: u64,
    /// The most pre-gate connections held at once since the last trim.
    peak: usize,
    by_age: BTreeMap<u64, (IpAddr, Weak<Activity>)>,
    per_address: HashMap<IpAddr, usize>,
}

impl Pending {
    fn remove(&mut self, id: u64) -> Option<Weak<Activity>> {
        let (address, activity) = self.by_age.remove(&id)?;
        if let Some(count) = self.per_address.get_mut(&address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_address.remove(&address);
            }
        }
        Some(activity)
    }

    /// Closes the oldest idle pre-gate connection among the first few.
    fn evict_idle(&mut self) -> bool {
        let victim = self
            .by_age
            .iter()
            .take(EVICTION_SCAN)
            .find(|(_, (_, activity))| activity.upgrade().is_none_or(|a| a.is_idle()))
            .map(|(id, _)| *id);
        let Some(activity) = victim.and_then(|id| self.remove(id)) else {
            return false;
        };
        if let Some(activity) = activity.upgrade() {
            activity.evict();
        }
        true
    }
}

impl PendingConnections {
    fn new(limits: &ConnectionLimits) -> Self {
        PendingConnections {
            max_total: limits.max_pending_connections,
            max_per_address: limits.max_pending_per_address,
            inner: Mutex::new(Pending::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a new connection from `address`, or `None` to refuse it.
    fn admit(self: &Arc<Self>, address: IpAddr, activity: &Arc<Activity>) -> Option<Ticket> {
        let address = address_key(address);
        let mut pending = self.lock();
        if pending.per_address.get(&address).copied().unwrap_or(0) >= self.max_per_address {
            return None;
        }
        if pending.by_age.len() >= self.max_total && !pending.evict_idle() {
            return None;
        }
        let id = pending.next_id;
        pending.next_id += 1;
        pending
            .by_age
            .insert(id, (address, Arc::downgrade(activity)));
        *pending.per_address.entry(address).or_insert(0) += 1;
        pending.peak = pending.peak.max(pending.by_age.len());
        Some(Ticket {
            pending: self.clone(),
            id,
        })
    }

    fn evict_idle(&self) {
        self.lock().evict_idle();
    }
}

/// How many pre-gate connections must have gone since their peak before
/// the allocator is asked to give memory back.
const TRIM_AFTER_DROP: usize = 1000;
const TRIM_CHECK: Duration = Duration::from_secs(2);

/// Gives the memory of a flood back to the system once it is over.
///
/// Each half-open connection costs 10–14 KiB of buffers. glibc keeps freed
/// memory in its arenas, so after a flood the gateway's RSS would stay at
/// the flood's high-water mark; `malloc_trim` returns it. Checked every
/// couple of seconds, and run only after a drop of `TRIM_AFTER_DROP`
/// connections, so steady traffic never pays for it.
async fn trim_after_floods(pending: Arc<PendingConnections>) {
    let mut ticker = tokio::time::interval(TRIM_CHECK);
    loop {
        ticker.tick().await;
        let flood_over = {
            let mut pending = pending.lock();
            let now = pending.by_age.len();
            let over = pending.peak.saturating_sub(now) >= TRIM_AFTER_DROP;
            if over {
                pending.peak = now;
            }
            over
        };
        if flood_over {
            let _ = tokio::task::spawn_blocking(release_free_memory).await;
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

/// A connection's place among the pre-gate ones; dropping it frees the place.
struct Ticket {
    pending: Arc<PendingConnections>,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.pending.lock().remove(self.id);
    }
}

/// The address a client is counted under: IPv4 (also when IPv4-mapped) as
/// is, IPv6 by its /64, the smallest block a site is usually given.
fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_address: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_pending_connections: total,
            max_pending_per_address: per_address,
            ..ConnectionLimits::default()
        }
    }

    #[test]
    fn per_address_cap_refuses_and_frees() {
        let pending = Arc::new(PendingConnections::new(&limits(10, 2)));
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let activity = Arc::new(Activity::new());
        let first = pending.admit(a, &activity);
        let _second = pending.admit(a, &activity).expect("second");
        assert!(pending.admit(a, &activity).is_none());
        assert!(pending.admit(b, &activity).is_some());
        drop(first);
        assert!(pending.admit(a, &activity).is_some());
    }

    #[test]
    fn total_cap_evicts_the_oldest_idle_connection() {
        let pending = Arc::new(PendingConnections::new(&limits(2, 10)));
        let address: IpAddr = [10, 0, 0, 1].into();
        let busy = Arc::new(Activity::new());
        let _busy_guard = Busy::start(busy.clone());
        let idle = Arc::new(Activity::new());
        let _t1 = pending.admit(address, &busy).expect("busy");
        let _t2 = pending.admit(address, &idle).expect("idle");
        let fresh = Arc::new(Activity::new());
        let _t3 = pending.admit(address, &fresh).expect("evicts the idle one");
        assert!(idle.evicted.load(Ordering::Acquire));
        assert!(!busy.evicted.load(Ordering::Acquire));
        // Only busy ones left to evict: refuse instead.
        drop(_t3);
        let busy2 = Arc::new(Activity::new());
        let _g2 = Busy::start(busy2.clone());
        let _t4 = pending.admit(address, &busy2).expect("room again");
        assert!(pending.admit(address, &fresh).is_none());
    }

    #[test]
    fn ipv6_is_counted_by_slash_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(mapped), IpAddr::from([192, 0, 2, 1]));
    }

    #[test]
    fn only_successful_client_or_api_requests_pass_the_gate() {
        let client = RequestKind::of(&Method::GET, "/clients/socketio/hubs/x/");
        assert!(client.passes_gate(StatusCode::OK));
        assert!(!client.passes_gate(StatusCode::UNAUTHORIZED));
        let health = RequestKind::of(&Method::GET, "/health");
        assert!(!health.passes_gate(StatusCode::OK));
        assert!(health.passes_gate(StatusCode::SWITCHING_PROTOCOLS));
        let preflight = RequestKind::of(&Method::OPTIONS, "/clients/socketio/hubs/x/");
        assert!(!preflight.passes_gate(StatusCode::NO_CONTENT));
        assert!(
            RequestKind::of(&Method::DELETE, "/api/hubs/x/groups/g").passes_gate(StatusCode::OK)
        );
    }
}
