//! Times encoding and decoding of a typical tunnel frame: an `HttpRequest`
//! of about 300 bytes with a 100-byte body (an SDK `:send` to a connection).
//!
//! `cargo run --release -p portcullis-tunnel --example frame_bench`
//!
//! Prints nanoseconds per operation, the best of many short rounds (the
//! least disturbed by other work on the machine). An argument `encode` or
//! `decode` times only that operation, e.g. under `perf stat` to count its
//! instructions, which other work on the machine does not disturb.

use std::hint::black_box;
use std::time::Instant;

use portcullis_tunnel::{HttpRequest, TunnelMessage, frame};

const ROUNDS: usize = 300;
const ITERATIONS: u32 = 5_000;

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

    let only = std::env::args().nth(1);
    println!("frame of {} bytes", bytes.len());
    if only.as_deref() != Some("decode") {
        let encode = best_ns_per_op(|| {
            black_box(frame::encode(black_box(&message)).ok());
        });
        println!("encode: {encode:.0} ns/op");
    }
    if only.as_deref() != Some("encode") {
        let decode = best_ns_per_op(|| {
            black_box(frame::decode(black_box(&bytes)).ok());
        });
        println!("decode: {decode:.0} ns/op");
    }
}
