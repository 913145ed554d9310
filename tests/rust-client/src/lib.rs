//! Nothing but tests: `tests/rust_client.rs` drives the Rust server crate
//! (embedded and over the tunnel) with the `rust_socketio` client. They live
//! in their own package so `rust_socketio`'s old dependency tree (openssl,
//! an older tungstenite) stays out of every other crate's, even as a
//! development dependency.
