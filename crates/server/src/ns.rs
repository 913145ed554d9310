//! Namespaces: their connect handler and middlewares.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use crate::extract::{
    ConnectHandler, ConnectMiddleware, ErasedConnectHandler, ErasedMiddleware, ExtractError,
    PreparedConnect, wrap_connect, wrap_middleware,
};
use crate::socket::SocketRef;
use crate::sync::{read, write};

type MatchFn = Arc<dyn Fn(&str) -> bool + Send + Sync>;

pub(crate) struct NamespaceInner {
    handler: Arc<dyn ErasedConnectHandler>,
    middlewares: RwLock<Vec<Arc<dyn ErasedMiddleware>>>,
}

impl NamespaceInner {
    pub fn new<H, T>(handler: H) -> Arc<Self>
    where
        H: ConnectHandler<T>,
        T: 'static,
    {
        Arc::new(NamespaceInner {
            handler: wrap_connect(handler),
            middlewares: RwLock::default(),
        })
    }

    /// Runs the middlewares in order; the first refusal's message.
    pub async fn admit(&self, socket: &SocketRef) -> Result<(), String> {
        let middlewares = read(&self.middlewares).clone();
        for middleware in middlewares {
            middleware.call(socket).await?;
        }
        Ok(())
    }

    /// Builds the connect handler's arguments (after the middlewares, so
    /// that their extensions are there); the call to make once the socket
    /// is accepted.
    pub fn prepare(&self, socket: &SocketRef) -> Result<PreparedConnect, ExtractError> {
        self.handler.prepare(socket)
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
    /// A middleware takes [`FromConnect`](crate::extract::FromConnect)
    /// arguments in any order, like the connect handler: [`SocketRef`],
    /// [`State<T>`](crate::extract::State), [`Data<T>`](crate::extract::Data)
    /// (the CONNECT `auth` payload), [`Extension<T>`](crate::extract::Extension).
    /// If one cannot be built, the socket is refused (see
    /// [`ConnectMiddleware`](crate::extract::ConnectMiddleware)).
    ///
    /// The socket is not connected yet: emits fail, but claims, handshake,
    /// extensions and rooms work.
    ///
    /// ```no_run
    /// use portcullis_server::{SocketIo, SocketRef, extract::{Data, State}};
    /// use serde::Deserialize;
    ///
    /// #[derive(Clone)]
    /// struct Admin(String);
    /// #[derive(Deserialize)]
    /// struct Auth { device: String }
    /// #[derive(Clone)]
    /// struct Banned(Vec<String>);
    ///
    /// let io = SocketIo::builder().with_state(Banned(vec!["toaster".into()])).build();
    /// io.ns("/admin", |socket: SocketRef| async move { /* ... */ })
    ///     .with(|socket: SocketRef| async move {
    ///         if !socket.roles().iter().any(|r| r == "admin") {
    ///             return Err("admins only");
    ///         }
    ///         let name = socket.user_id().unwrap_or_default().to_owned();
    ///         socket.extensions().insert(Admin(name));
    ///         Ok(())
    ///     })
    ///     .with(|Data(auth): Data<Auth>, State(banned): State<Banned>| async move {
    ///         if banned.0.contains(&auth.device) {
    ///             return Err(format!("device {} is banned", auth.device));
    ///         }
    ///         Ok(())
    ///     });
    /// ```
    pub fn with<M, T>(self, middleware: M) -> Self
    where
        M: ConnectMiddleware<T>,
        T: 'static,
    {
        write(&self.0.middlewares).push(wrap_middleware(middleware));
        self
    }

    /// Same as [`with`](Self::with).
    pub fn with_middleware<M, T>(self, middleware: M) -> Self
    where
        M: ConnectMiddleware<T>,
        T: 'static,
    {
        self.with(middleware)
    }
}
