//! `/readyz` answers within a second whatever PostgreSQL does, and `/metrics` never waits on it.

use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::common::proxy::{Mode, PgProxy};
use crate::common::{config, database_name, get, postgres_addr, Resp, TestApp};

/// Sends `uri`, failing the test if no answer comes within 5 s (a hang), and returns the answer
/// with how long it took.
async fn timed(t: &TestApp, uri: &str) -> (Resp, Duration) {
    let start = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), t.send(get(uri)))
        .await
        .unwrap_or_else(|_| panic!("{uri} did not answer within 5 s"));
    (r, start.elapsed())
}

async fn assert_not_ready_fast(t: &TestApp, what: &str) {
    // Several probes in a row: the first may meet a connection that fails fast, the later
    // ones have to open new connections.
    for probe in 1..=3 {
        let (r, took) = timed(t, "/readyz").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{what}, probe {probe}: {}", r.text());
        assert_eq!(r.json()["status"], "unavailable", "{what}, probe {probe}");
        assert!(took < Duration::from_secs(1), "{what}, probe {probe}: not-ready took {took:?}");
    }
}

async fn wait_ready(t: &TestApp, within: Duration) {
    let start = Instant::now();
    loop {
        let (r, _) = timed(t, "/readyz").await;
        if r.status == StatusCode::OK {
            return;
        }
        assert!(start.elapsed() < within, "not ready {within:?} after PostgreSQL came back: {}", r.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readyz_is_not_ready_within_a_second_while_postgres_hangs() {
    let proxy = PgProxy::start(postgres_addr()).await;
    let t = TestApp::over(&proxy.url(&database_name()), config()).await;
    let (r, _) = timed(&t, "/readyz").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    proxy.set(Mode::Hang);
    assert_not_ready_fast(&t, "PostgreSQL hanging").await;
    // A scrape reads in-process counters only: it answers at once with the pool figures.
    let (r, took) = timed(&t, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("marketking_pool_connections"), "{}", r.text());
    assert!(took < Duration::from_millis(500), "/metrics took {took:?} while PostgreSQL hangs");

    proxy.set(Mode::Forward);
    wait_ready(&t, Duration::from_secs(5)).await;
    t.cleanup().await;
}

#[tokio::test]
async fn readyz_is_not_ready_within_a_second_while_postgres_is_down() {
    let proxy = PgProxy::start(postgres_addr()).await;
    let t = TestApp::over(&proxy.url(&database_name()), config()).await;
    let (r, _) = timed(&t, "/readyz").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    proxy.set(Mode::Down);
    assert_not_ready_fast(&t, "PostgreSQL down").await;

    proxy.set(Mode::Forward);
    wait_ready(&t, Duration::from_secs(5)).await;
    t.cleanup().await;
}
