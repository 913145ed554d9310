//! Reloading the certificate: when its files change (their modification
//! time, size or inode, polled), and when asked.
//!
//! Polling rather than inotify: it sees a file replaced by a rename (how
//! certbot and Kubernetes secrets update), a symlink switched to another
//! target, and files on network mounts, at the cost of a `stat` of two files
//! every few seconds.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::CertificateStore;

/// What a file's metadata says about its contents: any change means it was
/// rewritten or replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    // `metadata` follows symlinks: a switched link shows as a new inode.
    let metadata = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        modified: metadata.modified().ok(),
        len: metadata.len(),
        inode,
    })
}

fn stamps(store: &CertificateStore) -> (Option<Stamp>, Option<Stamp>) {
    (stamp(store.cert_path()), stamp(store.key_path()))
}

/// Reloads `store` when its files change (checked every `interval`; never
/// when zero) and whenever `requested` changes. Runs until dropped.
///
/// A failed reload is logged (file names and the cause, never key
/// material) and the current certificate stays; it is tried again at the
/// next change, so a certificate and key written one after the other load
/// once both are in place.
pub(crate) async fn watch(
    store: Arc<CertificateStore>,
    interval: Duration,
    mut requested: watch::Receiver<u64>,
) {
    let mut seen = stamps(&store);
    let mut ticker = (!interval.is_zero()).then(|| {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    loop {
        let asked = tokio::select! {
            changed = requested.changed() => {
                if changed.is_err() {
                    // The gateway (which outlives its serve loop) is gone.
                    return;
                }
                true
            }
            _ = async {
                match ticker.as_mut() {
                    Some(ticker) => ticker.tick().await,
                    None => std::future::pending().await,
                }
            } => false,
        };
        let now = stamps(&store);
        if !asked && now == seen {
            continue;
        }
        seen = now;
        match store.reload() {
            Ok(()) => tracing::info!(
                cert = %store.cert_path().display(),
                "TLS certificate reloaded"
            ),
            Err(error) => tracing::error!(
                %error,
                "cannot reload the TLS certificate; still serving the previous one"
            ),
        }
    }
}
