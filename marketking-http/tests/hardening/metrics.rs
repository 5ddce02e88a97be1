//! `/metrics` stays bounded whatever the clients send.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};

use crate::common::{config, get, TestApp};

fn requests_series(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("marketking_http_requests_total{")).collect()
}

/// Made-up method tokens (any token is a valid HTTP method) all count as `method="other"`, so
/// 400 of them add one series per route, not 400.
#[tokio::test]
async fn made_up_methods_do_not_grow_metrics() {
    let t = TestApp::new(config()).await;
    for i in 0..200 {
        for uri in ["/healthz", "/no/such/route"] {
            let method = Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
            let r = t.send(Request::builder().method(method).uri(uri).body(Body::empty()).unwrap()).await;
            assert!(r.status == StatusCode::METHOD_NOT_ALLOWED || r.status == StatusCode::NOT_FOUND, "{}", r.status);
        }
    }
    t.send(get("/healthz")).await;
    let before = t.send(get("/metrics")).await.text();
    assert!(!before.contains("MADEUP"), "a made-up method became a label value:\n{before}");
    let series = requests_series(&before);
    assert!(series.len() <= 4, "{} request series after 400 made-up methods:\n{}", series.len(), series.join("\n"));
    assert!(
        series.iter().any(|l| l.contains(r#"method="other",route="/healthz",status="405"} 200"#)),
        "{}",
        series.join("\n")
    );
    assert!(series.iter().any(|l| l.contains(r#"method="GET",route="/healthz",status="200"} 1"#)));

    // Another 200 made-up methods leave the exposition the same size (only counts change).
    for i in 200..400 {
        let method = Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        t.send(Request::builder().method(method).uri("/healthz").body(Body::empty()).unwrap()).await;
    }
    let after = t.send(get("/metrics")).await.text();
    assert_eq!(requests_series(&after).len(), series.len() + 1, "only the /metrics scrape itself adds a series");
    t.cleanup().await;
}

/// The store's counters are registered collectors of the app's registry, with their types, so
/// any exporter built on the registry (not only the `/metrics` handler) sees them.
#[tokio::test]
async fn store_counters_are_registered_collectors() {
    let t = TestApp::new(config()).await;
    t.send(crate::common::json("POST", "/v1/search", serde_json::json!({"query": "counted"}))).await;
    let text = t.state_metrics();
    for (name, kind) in [
        ("marketking_cache_misses_total", "counter"),
        ("marketking_embedder_calls_total", "counter"),
        ("marketking_embedder_seconds_total", "counter"),
        ("marketking_pool_connections", "gauge"),
        ("marketking_pool_max_connections", "gauge"),
    ] {
        assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "no {kind} {name} in the registry:\n{text}");
    }
    assert!(text.contains("marketking_embedder_calls_total 1\n"), "{text}");
    let scraped = t.send(get("/metrics")).await.text();
    for name in ["marketking_cache_hits_total", "marketking_pool_idle_connections"] {
        assert_eq!(scraped.matches(&format!("# TYPE {name} ")).count(), 1, "{name} once in:\n{scraped}");
    }
    t.cleanup().await;
}
