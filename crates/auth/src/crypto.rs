//! Lazy selection of jsonwebtoken's crypto provider.

use std::sync::Once;

use jsonwebtoken::crypto::CryptoProvider;

/// Makes sure jsonwebtoken has a process-wide crypto provider before it is first used.
///
/// With only the `rust_crypto` feature jsonwebtoken picks it by itself, but if feature
/// unification ever enables a second backend it would refuse to choose. Installing the
/// RustCrypto provider explicitly (and ignoring "already installed") keeps callers free of
/// any set-up step.
pub(crate) fn ensure_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error only means another provider was installed first; that one is kept.
        let _ =
            CryptoProvider::install_default(&jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER);
    });
}
