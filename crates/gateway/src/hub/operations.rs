//! The hub contract's operations, applied to the connections of this process.

use portcullis_hub::{Applied, Hub, Operation, Outcome};

use super::LocalHub;

impl Hub for LocalHub {
    fn name(&self) -> &str {
        LocalHub::name(self)
    }

    /// Every operation completes before this returns: the outcome is ready.
    fn apply(&self, operation: Operation) -> Applied {
        Applied::ready(self.apply_now(operation))
    }
}

impl LocalHub {
    /// Applies an operation and gives its outcome.
    pub fn apply_now(&self, operation: Operation) -> Outcome {
        match operation {
            Operation::Send { to, payload } => Outcome::Count(self.send(&to, &payload)),
            Operation::Join { who, groups } => Outcome::Count(self.join(&who, &groups)),
            Operation::Leave { who, groups } => Outcome::Count(self.leave(&who, &groups)),
            Operation::Close { who, reason } => Outcome::Count(self.close(&who, &reason)),
            Operation::Exists(who) => Outcome::Exists(self.exists(&who)),
            Operation::GroupsOf(id) => Outcome::Groups(self.groups_of(id.as_str())),
        }
    }
}
