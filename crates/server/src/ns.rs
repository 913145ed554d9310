//! Namespaces: their connect handler and middlewares.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, RwLock};

use futures_util::future::BoxFuture;

use crate::socket::SocketRef;

type ConnectFn = Arc<dyn Fn(SocketRef) -> BoxFuture<'static, ()> + Send + Sync>;
type MiddlewareFn = Arc<dyn Fn(SocketRef) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;
type MatchFn = Arc<dyn Fn(&str) -> bool + Send + Sync>;

pub(crate) struct NamespaceInner {
    handler: ConnectFn,
    middlewares: RwLock<Vec<MiddlewareFn>>,
}

impl NamespaceInner {
    pub fn new<H, Fut>(handler: H) -> Arc<Self>
    where
        H: Fn(SocketRef) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Arc::new(NamespaceInner {
            handler: Arc::new(move |s| Box::pin(handler(s))),
            middlewares: RwLock::default(),
        })
    }

    /// Runs the middlewares in order; the first refusal's message.
    pub async fn admit(&self, socket: &SocketRef) -> Result<(), String> {
        let middlewares = self
            .middlewares
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for middleware in middlewares {
            middleware(socket.clone()).await?;
        }
        Ok(())
    }

    pub fn connected(&self, socket: SocketRef) {
        crate::backend::run_handler((self.handler)(socket));
    }
}

/// The namespaces of a server, static and dynamic.
#[derive(Default)]
pub(crate) struct Namespaces {
    /// Paths as `Arc<str>`, shared with the sockets of the namespace.
    exact: HashMap<Arc<str>, Arc<NamespaceInner>>,
    dynamic: Vec<(MatchFn, Arc<NamespaceInner>)>,
}

impl Namespaces {
    pub fn insert(&mut self, path: String, ns: Arc<NamespaceInner>) {
        self.exact.insert(path.into(), ns);
    }

    pub fn insert_dynamic(&mut self, matcher: MatchFn, ns: Arc<NamespaceInner>) {
        self.dynamic.push((matcher, ns));
    }

    /// The namespace serving `path`, with the path: a static one of that
    /// name, else the first dynamic one whose matcher accepts it.
    pub fn find(&self, path: &str) -> Option<(Arc<str>, Arc<NamespaceInner>)> {
        if let Some((path, ns)) = self.exact.get_key_value(path) {
            return Some((path.clone(), ns.clone()));
        }
        self.dynamic
            .iter()
            .find(|(matches, _)| matches(path))
            .map(|(_, ns)| (path.into(), ns.clone()))
    }
}

/// A registered namespace, returned by [`SocketIo::ns`](crate::SocketIo::ns)
/// and [`SocketIo::dyn_ns`](crate::SocketIo::dyn_ns); add connect
/// middlewares to it with [`with`](Self::with).
#[derive(Clone)]
pub struct Namespace(pub(crate) Arc<NamespaceInner>);

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace").finish_non_exhaustive()
    }
}

impl Namespace {
    /// Adds a connect middleware, run (in the order added) before the socket
    /// is accepted. Returning `Err(message)` refuses the socket: the client
    /// gets a CONNECT_ERROR with that message (`connect_error` with
    /// `err.message` in socket.io-client) and the connect handler is not
    /// called.
    ///
    /// The socket is not connected yet: emits fail, but claims, handshake,
    /// extensions and rooms work.
    ///
    /// ```no_run
    /// use portcullis_server::{SocketIo, SocketRef};
    ///
    /// #[derive(Clone)]
    /// struct Admin(String);
    ///
    /// let io = SocketIo::new();
    /// io.ns("/admin", |socket: SocketRef| async move { /* ... */ })
    ///     .with(|socket: SocketRef| async move {
    ///         if !socket.roles().iter().any(|r| r == "admin") {
    ///             return Err("admins only");
    ///         }
    ///         let name = socket.user_id().unwrap_or_default().to_owned();
    ///         socket.extensions().insert(Admin(name));
    ///         Ok(())
    ///     });
    /// ```
    pub fn with<M, Fut, E>(self, middleware: M) -> Self
    where
        M: Fn(SocketRef) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        let middleware: MiddlewareFn = Arc::new(move |socket| {
            let fut = middleware(socket);
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        });
        self.0
            .middlewares
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(middleware);
        self
    }

    /// Same as [`with`](Self::with).
    pub fn with_middleware<M, Fut, E>(self, middleware: M) -> Self
    where
        M: Fn(SocketRef) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        self.with(middleware)
    }
}
