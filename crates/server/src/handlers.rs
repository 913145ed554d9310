//! The event handlers of a socket.
//!
//! The sockets of a namespace nearly always register the same handlers (the
//! connect handler calls `socket.on` the same way for each of them), and
//! most handlers are closures that capture nothing. Such a handler has no
//! state, so any instance of its type can serve any socket: sockets that
//! registered the same stateless handlers, under the same names and in the
//! same order, share one immutable [`Table`], and a socket holds a pointer
//! instead of its own map of names and boxed handlers. A handler with state
//! (captured variables) moves its socket to a table of its own.

use std::any::TypeId;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use crate::extract::{ErasedEventHandler, EventHandler, wrap};
use crate::sync::lock;

/// A handler with its argument types erased.
pub(crate) type Handler = Arc<dyn ErasedEventHandler>;

/// Shared tables derived from one table, at most: beyond that (event names
/// made up per socket, say) tables are not shared, so that the lists stay
/// short.
const MAX_CHILDREN: usize = 64;

/// The table of sockets without handlers.
static EMPTY: LazyLock<Arc<Table>> = LazyLock::new(Arc::default);

/// A socket's handlers by event name.
pub(crate) struct Handlers(Mutex<Arc<Table>>);

#[derive(Default)]
struct Table {
    /// Sorted by event name.
    entries: Vec<(Box<str>, Handler)>,
    /// For a shared table: the table it extends (kept alive, so that the
    /// next socket finds the same chain) and what it adds to it.
    origin: Option<(Arc<Table>, Box<str>, TypeId)>,
    /// The shared tables that extend this one.
    children: Mutex<Vec<Weak<Table>>>,
}

impl Default for Handlers {
    fn default() -> Self {
        Handlers(Mutex::new(EMPTY.clone()))
    }
}

impl Handlers {
    /// Registers the handler of `event`, replacing any previous one.
    pub fn insert<H, T>(&self, event: String, handler: H)
    where
        H: EventHandler<T>,
        T: 'static,
    {
        let mut table = lock(&self.0);
        if let Some(own) = Arc::get_mut(&mut table) {
            // Nobody else holds this table (not even as a shared child).
            set(&mut own.entries, event.into(), wrap(handler));
        } else if is_stateless::<H>() {
            *table = Table::child(&table, event, TypeId::of::<(H, T)>(), || wrap(handler));
        } else {
            let mut entries = table.entries.clone();
            set(&mut entries, event.into(), wrap(handler));
            *table = Arc::new(Table::private(entries));
        }
    }

    /// The handler of `event`.
    pub fn get(&self, event: &str) -> Option<Handler> {
        let table = lock(&self.0);
        find(&table.entries, event)
            .ok()
            .map(|i| table.entries[i].1.clone())
    }

    /// Drops every handler.
    pub fn clear(&self) {
        *lock(&self.0) = EMPTY.clone();
    }
}

impl Table {
    fn private(entries: Vec<(Box<str>, Handler)>) -> Self {
        Table {
            entries,
            origin: None,
            children: Mutex::default(),
        }
    }

    /// The shared table that is `parent` plus the stateless handler of type
    /// `kind` for `event`; made (with `make`) if there is none yet.
    fn child(
        parent: &Arc<Table>,
        event: String,
        kind: TypeId,
        make: impl FnOnce() -> Handler,
    ) -> Arc<Table> {
        let mut children = lock(&parent.children);
        let existing = children.iter().filter_map(Weak::upgrade).find(
            |child| matches!(&child.origin, Some((_, name, k)) if **name == *event && *k == kind),
        );
        if let Some(child) = existing {
            return child;
        }
        let mut entries = parent.entries.clone();
        set(&mut entries, event.as_str().into(), make());
        let child = Arc::new(Table {
            entries,
            origin: Some((parent.clone(), event.into(), kind)),
            children: Mutex::default(),
        });
        children.retain(|c| c.strong_count() > 0);
        if children.len() < MAX_CHILDREN {
            children.push(Arc::downgrade(&child));
        }
        child
    }
}

/// Whether every value of `H` behaves the same: no data, nothing to drop.
fn is_stateless<H>() -> bool {
    size_of::<H>() == 0 && !std::mem::needs_drop::<H>()
}

fn find(entries: &[(Box<str>, Handler)], event: &str) -> Result<usize, usize> {
    entries.binary_search_by(|(name, _)| (**name).cmp(event))
}

fn set(entries: &mut Vec<(Box<str>, Handler)>, event: Box<str>, handler: Handler) {
    match find(entries, &event) {
        Ok(i) => entries[i].1 = handler,
        Err(i) => entries.insert(i, (event, handler)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::Data;

    fn table(handlers: &Handlers) -> *const Table {
        Arc::as_ptr(&lock(&handlers.0))
    }

    /// What a connect handler does for every socket.
    fn register(handlers: &Handlers, second: &str) {
        handlers.insert("a".into(), |Data(_): Data<u8>| async {});
        handlers.insert(second.into(), || async {});
    }

    #[test]
    fn sockets_registering_the_same_stateless_handlers_share_a_table() {
        let (one, two, other) = (
            Handlers::default(),
            Handlers::default(),
            Handlers::default(),
        );
        register(&one, "b");
        register(&two, "b");
        register(&other, "c");
        assert_eq!(table(&one), table(&two));
        assert_ne!(table(&one), table(&other));
        assert!(one.get("a").is_some() && one.get("b").is_some());
        assert!(one.get("c").is_none() && other.get("b").is_none());
    }

    #[test]
    fn a_stateful_handler_gets_a_private_table_updated_in_place() {
        let (one, two) = (Handlers::default(), Handlers::default());
        register(&one, "b");
        register(&two, "b");
        let state = Arc::new(1u8);
        two.insert("b".into(), move || {
            let _ = &state;
            async {}
        });
        let private = table(&two);
        assert_ne!(table(&one), private);
        two.insert("z".into(), || async {});
        assert_eq!(private, table(&two), "updated in place");
        assert!(two.get("a").is_some() && two.get("z").is_some());
        assert!(one.get("z").is_none(), "the shared table is unchanged");
    }

    #[test]
    fn replacing_and_clearing() {
        let handlers = Handlers::default();
        register(&handlers, "b");
        handlers.insert("a".into(), || async {});
        assert_eq!(lock(&handlers.0).entries.len(), 2);
        handlers.clear();
        assert!(handlers.get("a").is_none());
    }
}
