//! Per-socket typed storage.

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

/// Values of any type attached to a socket, one per type: the user loaded by
/// a middleware, a nickname chosen later, and so on.
///
/// Values are cloned out, so store cheap clones (`Arc`, small structs).
///
/// ```
/// use portcullis_server::Extensions;
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Nickname(String);
///
/// let ext = Extensions::default();
/// assert_eq!(ext.insert(Nickname("ada".into())), None);
/// assert_eq!(ext.get::<Nickname>(), Some(Nickname("ada".into())));
/// assert!(ext.contains::<Nickname>());
/// assert_eq!(ext.remove::<Nickname>(), Some(Nickname("ada".into())));
/// assert_eq!(ext.get::<Nickname>(), None);
/// ```
#[derive(Default)]
pub struct Extensions {
    /// A B-tree: every socket has extensions, most have none, and an empty
    /// `BTreeMap` is smaller than an empty `HashMap`.
    map: Mutex<BTreeMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl Extensions {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TypeId, Box<dyn Any + Send + Sync>>> {
        crate::sync::lock(&self.map)
    }

    /// Stores `value`, returning the previous value of that type.
    pub fn insert<T: Send + Sync + 'static>(&self, value: T) -> Option<T> {
        self.lock()
            .insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|old| old.downcast().ok().map(|b: Box<T>| *b))
    }

    /// A clone of the value of type `T`, if any.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.lock()
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref::<T>())
            .cloned()
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: Send + Sync + 'static>(&self) -> Option<T> {
        self.lock()
            .remove(&TypeId::of::<T>())
            .and_then(|old| old.downcast().ok().map(|b: Box<T>| *b))
    }

    /// Whether a value of type `T` is stored.
    pub fn contains<T: Send + Sync + 'static>(&self) -> bool {
        self.lock().contains_key(&TypeId::of::<T>())
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.lock().len())
            .finish()
    }
}
