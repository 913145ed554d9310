//! Times encoding and decoding of a typical tunnel frame: an `HttpRequest`
//! of about 300 bytes with a 100-byte body (an SDK `:send` to a connection).
//!
//! `cargo run --release -p portcullis-tunnel --example frame_bench`
//!
//! Prints nanoseconds per operation, the best of several rounds (the least
//! disturbed by other work on the machine).

use std::hint::black_box;
use std::time::Instant;

use portcullis_tunnel::{HttpRequest, TunnelMessage, frame};

const ROUNDS: usize = 15;
const ITERATIONS: u32 = 200_000;

fn best_ns_per_op(mut op: impl FnMut()) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ITERATIONS {
                op();
            }
            start.elapsed().as_nanos() as f64 / f64::from(ITERATIONS)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let mut request = HttpRequest::new(
        41,
        "POST",
        "https://host/api/hubs/eio_hub/connections/conn-abc123/:send?api-version=2023-07-01",
    )
    .with_header("Content-Type", "text/plain")
    .with_content(format!("42[\"message\",\"{}\"]", "x".repeat(85)));
    request.local_routing = true;
    let message = TunnelMessage::HttpRequest(request);
    let bytes = frame::encode(&message).expect("encodes");
    assert_eq!(frame::decode(&bytes).expect("decodes"), message);

    let encode = best_ns_per_op(|| {
        black_box(frame::encode(black_box(&message)).ok());
    });
    let decode = best_ns_per_op(|| {
        black_box(frame::decode(black_box(&bytes)).ok());
    });
    println!("frame of {} bytes", bytes.len());
    println!("encode: {encode:.0} ns/op");
    println!("decode: {decode:.0} ns/op");
}
