//! SIGHUP: reload the TLS certificate (`systemctl reload`, or after a
//! certificate renewal that wants to be picked up before the next poll).

use portcullis_gateway::Gateway;

/// Reloads the gateway's certificate on each SIGHUP until the process
/// exits. Without TLS there is nothing to reload, and SIGHUP is still
/// taken (and logged) rather than ending the process: `systemctl reload`
/// must never stop a gateway.
pub fn on_sighup(gateway: &Gateway) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::warn!(%error, "cannot handle SIGHUP; the certificate reloads on file changes only");
                return;
            }
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                if gateway.config().tls.is_some() {
                    tracing::info!("SIGHUP: reloading the TLS certificate");
                    gateway.reload_tls();
                } else {
                    tracing::info!("SIGHUP: nothing to reload (no TLS configured)");
                }
            }
        });
    }
}
