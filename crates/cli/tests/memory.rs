//! A load check (not timed): a storm of refused handshakes must not grow the
//! gateway's resident memory. Refusals allocate nothing that outlives them.

mod common;

use common::{KEY, TestGateway, resident_kib};
use portcullis_auth::{ClientTokenOptions, mint_client_token, mint_client_token_at};

const REFUSALS: usize = 20_000;
const CONCURRENCY: usize = 16;
const ALLOWED_GROWTH_KIB: i64 = 2 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_handshakes_leave_no_memory_behind() {
    let gateway = TestGateway::start(&["--echo-hub", "chat"]);
    let audience = "http://localhost/clients/socketio/hubs/chat";
    let bad_tokens = [
        String::new(),
        mint_client_token("wrong-key", audience, &ClientTokenOptions::default()),
        mint_client_token_at(KEY, audience, &ClientTokenOptions::default(), 1_000_000),
        mint_client_token(
            KEY,
            "http://localhost/clients/socketio/hubs/other",
            &ClientTokenOptions::default(),
        ),
        "not.a.token".to_owned(),
    ];
    let urls: Vec<String> = bad_tokens
        .iter()
        .map(|t| {
            gateway.client_url(
                "chat",
                &format!("EIO=4&transport=polling&t=abc&access_token={t}"),
            )
        })
        .collect();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();

    // One round first, so the baseline includes the server's per-worker
    // buffers and the keep-alive connections the storm will reuse.
    storm(&client, &urls, CONCURRENCY * urls.len()).await;
    let before = resident_kib(gateway.pid());
    storm(&client, &urls, REFUSALS).await;
    let after = resident_kib(gateway.pid());

    eprintln!("resident memory: {before} KiB before, {after} KiB after {REFUSALS} refusals");
    assert!(
        after - before <= ALLOWED_GROWTH_KIB,
        "resident memory grew by {} KiB (limit {ALLOWED_GROWTH_KIB} KiB)",
        after - before
    );
    assert_eq!(gateway.connections().await, 0);
}

/// Sends `total` refused handshakes, `CONCURRENCY` at a time, cycling through
/// `urls`; every one must be refused with 401.
async fn storm(client: &reqwest::Client, urls: &[String], total: usize) {
    let per_worker = total / CONCURRENCY;
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|worker| {
            let client = client.clone();
            let urls = urls.to_vec();
            tokio::spawn(async move {
                for i in 0..per_worker {
                    let url = &urls[(worker + i) % urls.len()];
                    let response = client.get(url).send().await.expect("request");
                    assert_eq!(response.status(), 401);
                    response.bytes().await.expect("body");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
}
