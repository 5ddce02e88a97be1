//! In-process tests of the REST service against PostgreSQL + pgvector and Redis.

// Test code: a panic is a failed test with its message, which is what unwrap, expect and
// indexing give here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
mod docs_page;
mod hardening;

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use common::{config, delete, get, json, raw, TestApp, DIMS};
use marketking_core::RedisCache;
use marketking_http::{check_bind, ApiKeys, CorsOrigins, HttpConfig};
use serde_json::{json, Value};

#[tokio::test]
async fn healthz_and_unknown_route() {
    let t = TestApp::new(config()).await;
    let r = t.send(get("/healthz")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "ok");
    let r = t.send(get("/v1/nope")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "not_found");
    let r = t.send(delete("/v1/search")).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.error_code(), "method_not_allowed");
    let r = t.send(delete("/healthz")).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.error_code(), "method_not_allowed");
    t.cleanup().await;
}

#[tokio::test]
async fn document_crud() {
    let t = TestApp::new(config()).await;
    let doc = json!({"title": "Trail shoes", "content": "Light running shoes", "source": "catalog", "metadata": {"lang": "en"}});
    let r = t.send(json("POST", "/v1/documents", doc)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let created = r.json();
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["title"], "Trail shoes");
    assert_eq!(created["metadata"]["lang"], "en");

    let r = t.send(get(&format!("/v1/documents/{id}"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["content"], "Light running shoes");

    let r = t.send(json("PUT", &format!("/v1/documents/{id}"), json!({"title": "Road shoes", "source": null}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["title"], "Road shoes");
    assert_eq!(r.json()["source"], Value::Null);

    let r = t.send(json("PUT", &format!("/v1/documents/{id}"), json!({"title": ""}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.error_code(), "invalid_input");
    assert_eq!(r.json()["error"]["field"], "title");

    let r = t.send(delete(&format!("/v1/documents/{id}"))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    let r = t.send(delete(&format!("/v1/documents/{id}"))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "not_found");
    let r = t.send(get(&format!("/v1/documents/{id}"))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = t.send(json("PUT", "/v1/documents/987654", json!({"title": "x"}))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // A non-numeric id is a 400 in the JSON shape.
    let r = t.send(get("/v1/documents/abc")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "bad_request");
    t.cleanup().await;
}

#[tokio::test]
async fn upsert_by_key() {
    let t = TestApp::new(config()).await;
    let body = json!({"title": "A", "content": "alpha"});
    let r = t.send(json("PUT", "/v1/documents/by-key/sku-1", body.clone())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["outcome"], "created");
    assert_eq!(r.json()["document"]["key"], "sku-1");
    let id = r.json()["document"]["id"].as_i64().unwrap();

    let r = t.send(json("PUT", "/v1/documents/by-key/sku-1", body)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["outcome"], "unchanged");

    let r = t.send(json("PUT", "/v1/documents/by-key/sku-1", json!({"title": "A", "content": "alpha two"}))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["outcome"], "updated");
    assert_eq!(r.json()["document"]["id"].as_i64().unwrap(), id);

    let r =
        t.send(json("PUT", "/v1/documents/by-key/sku-1", json!({"title": "A", "content": "x", "key": "other"}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.error_code(), "invalid_input");
    t.cleanup().await;
}

#[tokio::test]
async fn batch_report_conflict_and_field_errors() {
    let t = TestApp::new(config()).await;
    let docs = json!({"documents": [
        {"title": "One", "content": "first", "key": "k1"},
        {"title": "Two", "content": "second"},
    ]});
    let r = t.send(json("POST", "/v1/documents/batch", docs)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let rep = r.json();
    assert_eq!(rep["created"], 2);
    assert_eq!(rep["ids"].as_array().unwrap().len(), 2);

    let dup = json!({"documents": [
        {"title": "One", "content": "a", "key": "dup"},
        {"title": "Two", "content": "b", "key": "dup"},
    ]});
    let r = t.send(json("POST", "/v1/documents/batch", dup)).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert_eq!(r.error_code(), "conflict");

    let bad = json!({"documents": [{"title": "ok", "content": "a"}, {"title": " ", "content": "b"}]});
    let r = t.send(json("POST", "/v1/documents/batch", bad)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["error"]["field"], "documents[1].title");
    t.cleanup().await;
}

#[tokio::test]
async fn search_routes_and_stats() {
    let t = TestApp::new(config()).await;
    let docs = json!({"documents": [
        {"title": "Trail shoes", "content": "running shoes for rocky trails", "source": "catalog"},
        {"title": "Tent", "content": "two person camping tent", "source": "catalog", "metadata": {"season": "summer"}},
        {"title": "Blog", "content": "how to choose running shoes", "source": "blog"},
    ]});
    let r = t.send(json("POST", "/v1/documents/batch", docs)).await;
    assert_eq!(r.status, StatusCode::OK);
    let ids: Vec<i64> = r.json()["ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();

    let r = t.send(json("POST", "/v1/search", json!({"query": "running shoes", "k": 2}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let hits = r.json()["hits"].as_array().unwrap().clone();
    assert_eq!(hits.len(), 2);
    assert!(hits[0]["score"].is_number());

    let r = t.send(json("POST", "/v1/search", json!({"query": "shoes", "sources": ["blog"]}))).await;
    assert_eq!(r.json()["hits"].as_array().unwrap().len(), 1);
    let r = t.send(json("POST", "/v1/search", json!({"query": "tent", "metadata": {"season": "summer"}}))).await;
    assert_eq!(r.json()["hits"][0]["document"]["title"], "Tent");

    let v: Vec<f32> = (0..DIMS).map(|i| (i as f32 + 1.0) / DIMS as f32).collect();
    let r = t.send(json("POST", "/v1/search", json!({"vector": v, "k": 3, "min_score": -1.0}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["hits"].as_array().unwrap().len(), 3);

    let r = t.send(json("POST", "/v1/search", json!({"vector": [1.0, 2.0]}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.error_code(), "dimension_mismatch");
    let r = t.send(json("POST", "/v1/search", json!({"query": "x", "vector": v}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = t.send(json("POST", "/v1/search", json!({"k": 3}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = t.send(json("POST", "/v1/search", json!({"query": "x", "k": 0}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["error"]["field"], "k");

    // Modes, fusion and MMR; bad settings are 422s naming the field.
    let r = t.send(json("POST", "/v1/search", json!({"query": "running shoes", "mode": "text"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let hits = r.json()["hits"].as_array().unwrap().clone();
    assert_eq!(hits.len(), 2, "text mode: only documents with a query word");
    assert!(hits.iter().all(|h| h.get("vector").is_none()));
    let body = json!({"query": "running shoes", "mode": "hybrid", "fusion": {"rrf_k": 10.0, "text_weight": 2}, "mmr": {"lambda": 0.5}});
    let r = t.send(json("POST", "/v1/search", body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let hits = r.json()["hits"].as_array().unwrap().clone();
    assert!(hits.iter().all(|h| h["vector"]["score"].is_number()), "hybrid hits carry the cosine similarity");
    let first_text_rank = hits[0]["text"]["rank"].as_u64().unwrap();
    assert_eq!(first_text_rank, 1);
    for (body, field) in [
        (json!({"query": "x", "fusion": {"rrf_k": 0}}), "fusion.rrf_k"),
        (json!({"query": "x", "fusion": {"text_weight": 11}}), "fusion.text_weight"),
        (json!({"query": "x", "mmr": {"lambda": -0.5}}), "mmr.lambda"),
        (json!({"vector": v, "mode": "hybrid"}), "mode"),
    ] {
        let r = t.send(json("POST", "/v1/search", body.clone())).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["field"], field, "{body}");
    }
    let r = t.send(json("POST", "/v1/search", json!({"query": "x", "mode": "fuzzy"}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let r = t.send(json("POST", "/v1/search", json!({"query": "x", "fusion": {"rrf": 3}}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "unknown fusion fields are refused: {}", r.text());
    let r = t.send(get("/v1/search?q=camping%20tent&mode=text")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["hits"][0]["document"]["title"], "Tent");

    let r = t.send(get("/v1/search?q=running%20shoes&k=1&source=blog")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["hits"][0]["document"]["title"], "Blog");
    let r = t.send(get("/v1/search?k=1")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "bad_request");

    let r = t.send(get(&format!("/v1/documents/{}/similar?k=5", ids[0]))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let hits = r.json()["hits"].as_array().unwrap().clone();
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h["document"]["id"].as_i64() != Some(ids[0])));
    let r = t.send(get("/v1/documents/99999999/similar")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = t.send(get("/v1/stats")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["storage"]["documents"], 3);
    assert_eq!(r.json()["dimensions"], DIMS);
    t.cleanup().await;
}

#[tokio::test]
async fn json_rejections_use_the_error_shape() {
    let t = TestApp::new(HttpConfig { body_limit: 1024, ..config() }).await;
    let r = t.send(raw("POST", "/v1/documents", Some("application/json"), "{not json")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "bad_request");

    let r = t.send(raw("POST", "/v1/documents", None, r#"{"title":"a","content":"b"}"#)).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.error_code(), "unsupported_media_type");

    let r = t.send(json("POST", "/v1/documents", json!({"title": 5, "content": "b"}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.error_code(), "invalid_input");

    let r = t.send(json("POST", "/v1/documents", json!({"title": "a", "content": "b", "bogus": 1}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    let big = json!({"title": "big", "content": "x".repeat(4096)});
    let r = t.send(json("POST", "/v1/documents", big)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.error_code(), "payload_too_large");
    t.cleanup().await;
}

#[tokio::test]
async fn api_keys_guard_v1_only() {
    let keys = ApiKeys::parse("alpha-key-0123456789, beta-key-0123456789").unwrap();
    let t = TestApp::new(HttpConfig { api_keys: keys, ..config() }).await;
    let r = t.send(get("/v1/stats")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), "unauthorized");

    let mut req = get("/v1/stats");
    req.headers_mut().insert("authorization", "Bearer wrong-key".parse().unwrap());
    let r = t.send(req).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let mut req = get("/v1/stats");
    req.headers_mut().insert("authorization", "Basic YmV0YS1rZXk=".parse().unwrap());
    assert_eq!(t.send(req).await.status, StatusCode::UNAUTHORIZED);

    for key in ["alpha-key-0123456789", "beta-key-0123456789"] {
        let mut req = get("/v1/stats");
        req.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
        let r = t.send(req).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    for open in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"] {
        assert_eq!(t.send(get(open)).await.status, StatusCode::OK, "{open}");
    }
    t.cleanup().await;
}

#[test]
fn api_key_verification() {
    let (a, b) = ("first-key-0123456789", "second-key-0123456789");
    let keys = ApiKeys::parse(&format!(" {a} ,{b},,")).unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.verify(a), Some(0));
    assert_eq!(keys.verify(b), Some(1));
    assert_eq!(keys.verify("third-key-0123456789"), None);
    assert_eq!(keys.verify(""), None);
    assert_eq!(format!("{keys:?}"), "ApiKeys(2 configured)");
    assert!(ApiKeys::parse("").unwrap().is_empty());
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let t = TestApp::new(HttpConfig { rate_limit: 10, ..config() }).await;
    // A 400 from the path extractor still counts against the limit and needs no database.
    for i in 0..10 {
        let r = t.send(get("/v1/documents/not-a-number")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "request {i}");
    }
    let r = t.send(get("/v1/documents/not-a-number")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.error_code(), "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    // Open routes are not limited.
    assert_eq!(t.send(get("/healthz")).await.status, StatusCode::OK);
    t.cleanup().await;
}

#[tokio::test]
async fn cors_preflight() {
    let cors = CorsOrigins::parse(&["https://app.example"]).unwrap();
    let t = TestApp::new(HttpConfig { cors, ..config() }).await;
    let preflight = |origin: &str| {
        axum::http::Request::builder()
            .method("OPTIONS")
            .uri("/v1/search")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let r = t.send(preflight("https://app.example")).await;
    assert!(r.status.is_success(), "{}", r.status);
    assert_eq!(r.headers["access-control-allow-origin"], "https://app.example");
    let r = t.send(preflight("https://evil.example")).await;
    assert!(r.headers.get("access-control-allow-origin").is_none());
    t.cleanup().await;

    let t = TestApp::new(config()).await;
    let r = t.send(preflight("https://app.example")).await;
    assert!(r.headers.get("access-control-allow-origin").is_none());
    t.cleanup().await;
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let t = TestApp::new(config()).await;
    let mut req = get("/healthz");
    req.headers_mut().insert("x-request-id", "abc-123".parse().unwrap());
    let r = t.send(req).await;
    assert_eq!(r.headers["x-request-id"], "abc-123");
    let r = t.send(get("/v1/documents/12345678")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!r.headers["x-request-id"].is_empty());
    t.cleanup().await;
}

#[tokio::test]
async fn openapi_lists_every_v1_path_and_docs_page() {
    let t = TestApp::new(config()).await;
    let r = t.send(get("/openapi.json")).await;
    assert_eq!(r.status, StatusCode::OK);
    let spec = r.json();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for (p, methods) in [
        ("/v1/documents", &["post"][..]),
        ("/v1/documents/batch", &["post"]),
        ("/v1/documents/{id}", &["get", "put", "delete"]),
        ("/v1/documents/by-key/{key}", &["put"]),
        ("/v1/documents/{id}/similar", &["get"]),
        ("/v1/search", &["get", "post"]),
        ("/v1/stats", &["get"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
    ] {
        for m in methods {
            assert!(paths.get(p).and_then(|o| o.get(*m)).is_some(), "missing {m} {p}");
        }
    }
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());
    assert!(spec["paths"]["/v1/search"]["post"]["responses"]["401"].is_object());
    assert!(spec["paths"]["/v1/search"]["post"]["responses"]["415"].is_object());
    assert!(spec["paths"]["/v1/stats"]["get"]["responses"]["429"].is_object());
    assert!(spec["paths"]["/healthz"]["get"]["responses"].get("401").is_none());
    assert_eq!(spec["components"]["schemas"]["SearchBody"]["properties"]["vector"]["minItems"], DIMS);
    assert_eq!(spec["components"]["schemas"]["NewDocumentBody"]["properties"]["title"]["maxLength"], 255);
    // The page is Swagger UI started on this spec (more in docs_page).
    let r = t.send(get("/docs")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("/docs/init.js"));
    assert!(t.send(get("/docs/init.js")).await.text().contains("'/openapi.json'"));
    t.cleanup().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    let t = TestApp::new(config()).await;
    t.send(get("/v1/documents/424242")).await;
    t.send(json("POST", "/v1/search", json!({"query": "hello"}))).await;
    let r = t.send(get("/metrics")).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = r.text();
    assert!(
        text.contains(r#"marketking_http_requests_total{method="GET",route="/v1/documents/{id}",status="404"} 1"#),
        "{text}"
    );
    assert!(text.contains("marketking_http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("marketking_cache_misses_total"), "{text}");
    assert!(text.contains("marketking_embedder_calls_total 1"), "{text}");
    // Pool figures come from the Postgres pool, within its configured limit.
    let open: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("marketking_pool_connections "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pool gauge in {text}"));
    let max: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("marketking_pool_max_connections "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(open >= 1 && open <= max, "{open} of {max}");
    t.cleanup().await;
}

#[tokio::test]
async fn readiness_with_cache_up_and_down() {
    let t = TestApp::new(config()).await;
    let r = t.send(get("/readyz")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"status": "ready", "cache": "ok"}));
    t.cleanup().await;

    let t = TestApp::with_cache(config(), RedisCache::new("redis://127.0.0.1:1/0").unwrap()).await;
    let r = t.send(get("/readyz")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"status": "ready", "cache": "degraded"}));
    t.cleanup().await;
}

#[tokio::test]
async fn internal_errors_do_not_leak() {
    let t = TestApp::new(config()).await;
    let r = t.send(json("POST", "/v1/documents", json!({"title": "a", "content": "b"}))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let schema = t.schema.clone();
    t.sql(&format!("DROP TABLE \"{schema}\".docs CASCADE")).await;
    let r = t.send(json("POST", "/v1/search", json!({"query": "a query never cached"}))).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    assert_eq!(r.error_code(), "internal");
    let body = r.text().to_lowercase();
    for needle in ["select", "postgres", "docs", &schema, "relation", "127.0.0.1"] {
        assert!(!body.contains(needle), "500 body leaks {needle:?}: {body}");
    }
    let r = t.send(get("/readyz")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["status"], "unavailable");
    t.cleanup().await;
}

#[test]
fn check_bind_refuses_public_address_without_keys() {
    let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let local6: SocketAddr = "[::1]:8080".parse().unwrap();
    let none = ApiKeys::none();
    let some = ApiKeys::parse("a-key-of-16-chars").unwrap();
    let err = check_bind(&public, &none, false).unwrap_err();
    assert!(err.contains("MARKETKING_API_KEYS") && err.contains("--allow-unauthenticated"), "{err}");
    assert!(check_bind(&public, &some, false).is_ok());
    assert!(check_bind(&public, &none, true).is_ok());
    assert!(check_bind(&local, &none, false).is_ok());
    assert!(check_bind(&local6, &none, false).is_ok());
}

#[test]
fn binary_exits_1_on_public_bind_without_keys() {
    let dir = std::env::temp_dir().join(format!("mkh_bin_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marketking-http"))
        .args(["--bind", "0.0.0.0:0"])
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("MARKETKING_API_KEYS")
        .env_remove("MARKETKING_ALLOW_UNAUTHENTICATED")
        .env("MARKETKING_DB_PATH", dir.join("t.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing to listen on 0.0.0.0:0 without API keys"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn request_timeout_answers_json() {
    // A timeout shorter than any database round trip makes the search time out.
    let t = TestApp::new(HttpConfig { request_timeout: Duration::from_nanos(1), ..config() }).await;
    let r = t.send(json("POST", "/v1/search", json!({"query": "slow"}))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.error_code(), "timeout");
    t.cleanup().await;
}

/// Starts the `marketking-http` binary on an ephemeral loopback port over an embedded store in
/// `dir`, with `env` added, and returns it with its port (read from its "listening" log line).
/// The rest of its log is drained on a thread, so it never blocks on a full pipe.
fn spawn_binary(dir: &std::path::Path, env: &[(&str, &str)]) -> (std::process::Child, u16) {
    use std::io::{BufRead, BufReader};
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_marketking-http"));
    cmd.args(["--bind", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("MARKETKING_DB_PATH", dir.join("s.db"))
        .env("RUST_LOG", "info")
        // Explicitly the hashing embedder (tests that need another one say so): an installed
        // local model would otherwise be loaded by every spawned server.
        .env("MARKETKING_EMBEDDER", "hash")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = loop {
        let line = lines.next().expect("server exited before listening").unwrap();
        if let Some(pos) = line.find("127.0.0.1:").filter(|_| line.contains("listening")) {
            let digits: String = line[pos + 10..].chars().take_while(char::is_ascii_digit).collect();
            break digits.parse::<u16>().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (child, port)
}

fn sigterm(child: &std::process::Child) {
    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
}

/// Waits up to 20 s from `started` for `child` to exit.
fn wait_exit(
    mut child: std::process::Child,
    started: std::time::Instant,
    timeout_msg: &str,
) -> std::process::ExitStatus {
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{timeout_msg}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn binary_serves_and_shuts_down_on_sigterm() {
    use std::io::{Read, Write};
    let dir = std::env::temp_dir().join(format!("mkh_srv_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (child, port) = spawn_binary(&dir, &[]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200") && resp.ends_with("ok"), "{resp}");
    assert!(resp.to_lowercase().contains("x-request-id"), "{resp}");

    sigterm(&child);
    let status = wait_exit(child, std::time::Instant::now(), "server did not stop on SIGTERM");
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGTERM at once after the "listening" line still shuts down gracefully (exit 0): the signal
/// handler is installed before the server says it listens, not in a task that runs later.
#[test]
fn sigterm_right_after_listening_exits_cleanly() {
    let dir = std::env::temp_dir().join(format!("mkh_early_term_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for round in 0..5 {
        let (child, _port) = spawn_binary(&dir, &[]);
        sigterm(&child);
        let status = wait_exit(child, std::time::Instant::now(), "server did not stop on SIGTERM");
        assert!(status.success(), "round {round}: {status:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A slow OpenAI-compatible embeddings server on a thread: answers every POST after `delay`
/// with one 8-dimensional vector per input. Returns its base URL.
fn slow_embedder(delay: Duration) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let inputs = request["input"].as_array().map_or(1, Vec::len);
                std::thread::sleep(delay);
                let data: Vec<serde_json::Value> = (0..inputs)
                    .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, (i + 1) as f32]}))
                    .collect();
                let reply = json!({"object": "list", "data": data, "model": "slow"}).to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            });
        }
    });
    format!("http://{addr}/v1")
}

/// SIGTERM while a search is waiting on the embedder: the search still completes with 200, and
/// the process then exits cleanly (the graceful shutdown finishes in-flight requests).
#[test]
fn sigterm_finishes_the_request_in_flight() {
    use std::io::{Read, Write};
    let dir = std::env::temp_dir().join(format!("mkh_inflight_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let embedder = slow_embedder(Duration::from_millis(1500));
    let (child, port) = spawn_binary(
        &dir,
        &[
            ("MARKETKING_EMBEDDER", "openai"),
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_BASE_URL", &embedder),
            ("MARKETKING_EMBEDDING_MODEL", "slow"),
            ("MARKETKING_EMBEDDING_DIMENSIONS", "8"),
        ],
    );
    let search = std::thread::spawn(move || {
        let body = r#"{"query": "waiting for the embedder", "k": 3}"#;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "POST /v1/search HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    });
    // The search is now waiting on the embedder (1.5 s).
    std::thread::sleep(Duration::from_millis(400));
    let started = std::time::Instant::now();
    sigterm(&child);
    let resp = search.join().unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "the in-flight search must complete: {resp}");
    assert!(resp.contains("\"hits\""), "{resp}");
    assert!(started.elapsed() >= Duration::from_millis(800), "the answer came after the signal, from the embedder");
    let status = wait_exit(child, started, "server did not stop after the request finished");
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn filters_on_search_count_and_delete() {
    let t = TestApp::new(config()).await;
    let docs = json!({"documents": [
        {"title": "Trail shoes", "content": "running shoes", "source": "catalog", "metadata": {"price": 120, "tags": ["sale"]}},
        {"title": "Road shoes", "content": "running shoes", "source": "catalog", "metadata": {"price": 80}},
        {"title": "Blog", "content": "running shoes blog", "source": "blog", "metadata": {"price": "80"}},
    ]});
    assert_eq!(t.send(json("POST", "/v1/documents/batch", docs)).await.status, StatusCode::OK);

    let r =
        t.send(json("POST", "/v1/search", json!({"query": "running shoes", "filter": {"price": {"$lt": 100}}}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let titles: Vec<Value> =
        r.json()["hits"].as_array().unwrap().iter().map(|h| h["document"]["title"].clone()).collect();
    assert_eq!(titles, [json!("Road shoes")], "numbers never equal strings");

    // Bad filters: 400 with the path; the operator as a literal key (the issue's example) too.
    for (filter, field) in [
        (json!({"$and": [{"price": 1}, {"price": {"$lt": [1]}}]}), "filter.$and[1].price.$lt"),
        (json!({"price": {"$lte": 100, "$foo": 1}}), "filter.price.$foo"),
        (json!({"created_at": {"$gt": "yesterday"}}), "filter.created_at.$gt"),
        (json!("price < 100"), "filter"),
    ] {
        let r = t.send(json("POST", "/v1/search", json!({"query": "shoes", "filter": filter}))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        assert_eq!(r.error_code(), "invalid_input");
        assert_eq!(r.json()["error"]["field"], field, "{}", r.text());
    }

    // `fusion` and `mmr` are objects (schemathesis ST201: an array of the fields was accepted).
    let r = t.send(json("POST", "/v1/search", json!({"query": "shoes", "fusion": [null, null]}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());

    // The issue's example: operators in the containment option are refused, not matched literally.
    let r = t.send(json("POST", "/v1/search", json!({"query": "shoes", "metadata": {"price": {"$lt": 100}}}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert!(r.text().contains("`filter`"), "{}", r.text());

    let r = t.send(json("POST", "/v1/documents/count", json!({"filter": {"source": "catalog"}}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), json!({"count": 2}));
    let r = t.send(json("POST", "/v1/documents/count", json!({}))).await;
    assert_eq!(r.json(), json!({"count": 3}));

    // Delete: `{}` needs "all"; the delete invalidates cached results.
    let before = t.send(json("POST", "/v1/search", json!({"query": "running shoes"}))).await.json();
    assert_eq!(before["hits"].as_array().unwrap().len(), 3);
    let r = t.send(json("POST", "/v1/documents/delete", json!({"filter": {}}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["error"]["field"], "filter");
    let r = t.send(json("POST", "/v1/documents/delete", json!({"filter": {"tags": "sale"}}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), json!({"deleted": 1}));
    let after = t.send(json("POST", "/v1/search", json!({"query": "running shoes"}))).await.json();
    assert_eq!(after["hits"].as_array().unwrap().len(), 2, "no stale cached results after a delete by filter");
    let r = t.send(json("POST", "/v1/documents/delete", json!({"filter": {}, "all": true}))).await;
    assert_eq!(r.json(), json!({"deleted": 2}));

    let spec = t.send(get("/openapi.json")).await.json();
    assert!(spec["paths"]["/v1/documents/count"]["post"].is_object());
    assert!(spec["paths"]["/v1/documents/delete"]["post"].is_object());
    assert_eq!(
        spec["components"]["schemas"]["SearchBody"]["properties"]["filter"]["anyOf"][0]["$ref"],
        "#/components/schemas/Filter"
    );
    assert!(spec["components"]["schemas"]["Filter"]["properties"]["$and"].is_object());
    t.cleanup().await;
}

/// Every public operation of `VectorStore` (read from the core's source, so a new one without a
/// route fails here) has a route in the OpenAPI document with an `area_action` operation id, and
/// the walk below calls each of them on PostgreSQL, the backend where every operation works.
#[tokio::test]
async fn every_store_operation_is_a_route_and_answers() {
    const ROUTES: &[(&str, &str, &str)] = &[
        ("create", "post", "/v1/documents"),
        ("batch", "post", "/v1/documents/batch"),
        ("upsert", "put", "/v1/documents/by-key/{key}"),
        ("get", "get", "/v1/documents/{id}"),
        ("get_with_embedding", "get", "/v1/documents/{id}"),
        ("get_by_key", "get", "/v1/documents/by-key/{key}"),
        ("update", "put", "/v1/documents/{id}"),
        ("delete", "delete", "/v1/documents/{id}"),
        ("delete_by_key", "delete", "/v1/documents/by-key/{key}"),
        ("delete_by_filter", "post", "/v1/documents/delete"),
        ("delete_all", "post", "/v1/documents/delete"),
        ("list", "get", "/v1/documents"),
        ("list_page", "get", "/v1/documents"),
        ("list_stream", "get", "/v1/export"),
        ("list_stream_with", "get", "/v1/export"),
        ("count", "get", "/v1/count"),
        ("stats", "get", "/v1/stats"),
        ("search", "post", "/v1/search"),
        ("search_by_vector", "post", "/v1/search"),
        ("search_ids", "post", "/v1/search/ids"),
        ("search_ids_by_vector", "post", "/v1/search/ids"),
        ("insert_new", "post", "/v1/documents/batch"),
        ("embed_missing", "post", "/v1/documents/batch"),
        ("find_similar", "get", "/v1/documents/{id}/similar"),
        ("explain_search", "post", "/v1/search/explain"),
        ("explain_query", "post", "/v1/search/explain"),
        ("create_index", "post", "/v1/index"),
        ("drop_index", "delete", "/v1/index"),
        ("rebuild_index", "post", "/v1/index/rebuild"),
        ("analyze", "post", "/v1/analyze"),
        ("tune_recall", "post", "/v1/index/tune"),
        ("clear_tuning", "delete", "/v1/index/tune"),
        ("ping", "get", "/readyz"),
        ("ping_cache", "get", "/readyz"),
        // Each chunk of a background import is written once under its checkpoint.
        ("batch_once", "post", "/v1/jobs/import"),
        // Forgetting a finished job forgets its chunks' checkpoints.
        ("forget_checkpoints", "delete", "/v1/jobs/{id}"),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../marketking-core/src/store");
    let re = regex::Regex::new(r"(?m)^    pub (?:async )?fn ([a-z_]+)\(&self").unwrap();
    let accessors = [
        "dimensions",
        "model",
        "backend_kind",
        "embedder",
        "cache_stats",
        "pool_stats",
        "embedder_stats",
        "is_read_only",
        // In `GET /v1/stats` (`replication`) and `/metrics`; the write position is the
        // `x-marketking-write-position` header of every write's response.
        "replication_stats",
        "write_position",
        // The service's own shutdown (main.rs closes the store once in-flight requests are
        // done), not an operation a client may call.
        "close",
    ];
    let mut ops = Vec::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        if text.contains("impl VectorStore {") {
            ops.extend(re.captures_iter(&text).map(|c| c[1].to_string()).filter(|n| !accessors.contains(&n.as_str())));
        }
    }
    assert!(ops.len() >= 25, "{ops:?}");

    let t = TestApp::new(config()).await;
    let spec = t.send(get("/openapi.json")).await.json();
    let op_id = regex::Regex::new("^[a-z]+_[a-z_]+$").unwrap();
    for op in &ops {
        let (_, method, path) = ROUTES
            .iter()
            .find(|(o, _, _)| o == op)
            .unwrap_or_else(|| panic!("VectorStore::{op} has no route in this table"));
        let operation = &spec["paths"][path][method];
        let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("no {method} {path} in the spec"));
        assert!(op_id.is_match(id), "{method} {path}: {id}");
    }
    // Operation ids are unique.
    let mut ids: Vec<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values().filter_map(|op| op["operationId"].as_str()))
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate operation ids");

    // The walk.
    let created = t
        .send(json(
            "POST",
            "/v1/documents",
            json!({"title": "Trail shoes", "content": "Light shoes for rocky paths", "metadata": {"price": 120}}),
        ))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.json()["id"].as_i64().unwrap();
    let batch = json!({"documents": [{"title": "Rain jacket", "content": "Keeps you dry", "key": "sku-2", "source": "catalog"},
                                      {"title": "Stove", "content": "Cooks fast", "source": "catalog"}]});
    assert_eq!(t.send(json("POST", "/v1/documents/batch", batch)).await.status, StatusCode::OK);
    let up = t.send(json("PUT", "/v1/documents/by-key/sku-3", json!({"title": "Tent", "content": "Two people"}))).await;
    assert_eq!(up.status, StatusCode::CREATED);
    let with = t.send(get(&format!("/v1/documents/{id}?with_embedding=true"))).await.json();
    assert_eq!(with["embedding"].as_array().unwrap().len(), DIMS);
    assert_eq!(t.send(get("/v1/documents/by-key/sku-2")).await.json()["title"], "Rain jacket");
    let changed = t.send(json("PUT", &format!("/v1/documents/{id}"), json!({"title": "Trail runners"}))).await;
    assert_eq!(changed.json()["title"], "Trail runners");
    let page = t.send(get("/v1/documents?limit=3")).await.json();
    assert_eq!(page["documents"].as_array().unwrap().len(), 3);
    let next = t.send(get(&format!("/v1/documents?limit=3&after={}", page["next_after"]))).await.json();
    assert_eq!(next["documents"].as_array().unwrap().len(), 1);
    assert!(next.get("next_after").is_none(), "the last page has no cursor: {next}");
    let filtered = t.send(get("/v1/documents?filter=%7B%22source%22%3A%22catalog%22%7D")).await.json();
    assert_eq!(filtered["documents"].as_array().unwrap().len(), 2);
    assert_eq!(t.send(get("/v1/count?filter=%7B%22source%22%3A%22catalog%22%7D")).await.json()["count"], 2);
    let export = t.send(get("/v1/export?with_embeddings=true")).await;
    assert_eq!(export.headers["content-type"], "application/x-ndjson");
    assert_eq!(export.text().lines().count(), 4);
    let hits = t.send(json("POST", "/v1/search", json!({"vector": with["embedding"], "k": 1}))).await.json();
    assert_eq!(hits["hits"][0]["document"]["id"], id);
    let exact = t.send(json("POST", "/v1/search", json!({"vector": with["embedding"], "k": 1, "exact": true}))).await;
    assert_eq!(exact.json(), hits, "{}", exact.text());
    let ids = t.send(json("POST", "/v1/search/ids", json!({"vector": with["embedding"], "k": 1}))).await.json();
    assert_eq!(ids["hits"][0]["id"], id, "{ids}");
    assert_eq!(ids["hits"][0]["score"], hits["hits"][0]["score"], "{ids}");
    let ids = t.send(json("POST", "/v1/search/ids", json!({"query": "rocky shoes", "k": 2}))).await.json();
    assert_eq!(ids["hits"].as_array().unwrap().len(), 2, "{ids}");
    let fast = json!({"assume_new": true, "documents": [{"title": "Lamp", "content": "Bright", "key": "sku-9", "embedding": with["embedding"]}]});
    let r = t.send(json("POST", "/v1/documents/batch", fast.clone())).await;
    assert_eq!(r.json()["created"], 1, "{}", r.text());
    assert_eq!(t.send(json("POST", "/v1/documents/batch", fast)).await.status, StatusCode::CONFLICT);
    // Documents without a vector are embedded first, then written the same way.
    let plain = json!({"assume_new": true, "documents": [{"title": "x", "content": "y", "key": "sku-10"}]});
    let r = t.send(json("POST", "/v1/documents/batch", plain)).await;
    assert_eq!((r.json()["created"].clone(), r.json()["embedded"].clone()), (json!(1), json!(1)), "{}", r.text());
    assert_eq!(t.send(delete("/v1/documents/by-key/sku-10")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(t.send(delete("/v1/documents/by-key/sku-9")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        t.send(get(&format!("/v1/documents/{id}/similar?k=2"))).await.json()["hits"].as_array().unwrap().len(),
        2
    );
    for body in [json!({"query": "rocky shoes"}), json!({"vector": with["embedding"]})] {
        let plan = t.send(json("POST", "/v1/search/explain", body)).await;
        assert!(plan.json()["plan"].as_str().unwrap().contains("Limit"), "{}", plan.text());
    }
    let index = t.send(json("POST", "/v1/index", json!({"kind": "hnsw", "m": 8}))).await;
    assert_eq!(index.status, StatusCode::OK, "{}", index.text());
    assert_eq!(t.send(json("POST", "/v1/index/rebuild", json!({}))).await.status, StatusCode::OK);
    let index = t.send(json("POST", "/v1/index", json!({"kind": "hnsw", "quantization": "half"}))).await;
    assert_eq!(index.json()["quantization"], "half", "{}", index.text());
    let hits = t.send(json("POST", "/v1/search", json!({"vector": with["embedding"], "k": 1, "oversample": 3}))).await;
    assert_eq!(hits.json()["hits"][0]["document"]["id"], id, "{}", hits.text());
    let bad = t.send(json("POST", "/v1/search", json!({"query": "rocky shoes", "oversample": 0}))).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text());
    assert_eq!(bad.json()["error"]["field"], "oversample", "{}", bad.text());
    let tuned = t.send(json("POST", "/v1/index/tune", json!({"target": 0.5, "queries": 3}))).await;
    assert_eq!(tuned.status, StatusCode::OK, "{}", tuned.text());
    assert_eq!(tuned.json()["applied"], true, "{}", tuned.text());
    assert!(tuned.json()["index"]["tuned"]["ef_search"].is_u64(), "{}", tuned.text());
    let bad = t.send(json("POST", "/v1/index/tune", json!({"target": 2}))).await;
    assert_eq!(bad.json()["error"]["field"], "target", "{}", bad.text());
    let cleared = t.send(delete("/v1/index/tune")).await;
    assert!(cleared.json().get("tuned").is_none(), "{}", cleared.text());
    let bad = t.send(json("POST", "/v1/index", json!({"kind": "hnsw", "quantization": "quarter"}))).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text());
    assert!(bad.text().contains("quantization"), "{}", bad.text());
    assert_eq!(t.send(delete("/v1/index")).await.json()["dropped"], true);
    let none = t.send(json("POST", "/v1/index/tune", json!({}))).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND, "{}", none.text());
    assert_eq!(t.send(raw("POST", "/v1/analyze", None, "")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(t.send(get("/readyz")).await.status, StatusCode::OK);
    assert_eq!(t.send(get("/v1/stats")).await.status, StatusCode::OK);
    assert_eq!(t.send(delete("/v1/documents/by-key/sku-3")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(t.send(get("/v1/documents/by-key/sku-3")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(t.send(delete(&format!("/v1/documents/{id}"))).await.status, StatusCode::NO_CONTENT);
    let gone = t.send(json("POST", "/v1/documents/delete", json!({"filter": {"source": "catalog"}}))).await;
    assert_eq!(gone.json()["deleted"], 2);
    assert_eq!(
        t.send(json("POST", "/v1/documents/delete", json!({"filter": {}, "all": true}))).await.status,
        StatusCode::OK
    );
    t.cleanup().await;
}

/// `GET /v1/export` then `POST /v1/import?keep_ids=true` into an empty store gives the same
/// documents (ids, keys, times, embeddings) and the same search results.
#[tokio::test]
async fn export_then_import_restores_exactly() {
    let (a, b) = (TestApp::new(config()).await, TestApp::new(config()).await);
    for i in 0..12 {
        let body = json!({"title": format!("Item {i}"), "content": format!("thing {i} for {} weather", ["rain", "sun"][i % 2]),
                          "key": format!("k{i}"), "metadata": {"n": i}});
        assert_eq!(a.send(json("POST", "/v1/documents", body)).await.status, StatusCode::CREATED);
    }
    assert_eq!(a.send(delete("/v1/documents/by-key/k3")).await.status, StatusCode::NO_CONTENT);
    a.send(json("PUT", "/v1/documents/by-key/k5", json!({"title": "Item 5", "content": "now for snow"}))).await;
    let export = a.send(get("/v1/export?with_embeddings=true")).await.text();
    let r = b.send(raw("POST", "/v1/import?keep_ids=true", Some("application/x-ndjson"), export.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["created"], 11);
    assert_eq!(b.send(get("/v1/export?with_embeddings=true")).await.text(), export);
    for line in export.lines() {
        let id = serde_json::from_str::<Value>(line).unwrap()["id"].clone();
        let uri = format!("/v1/documents/{id}");
        assert_eq!(b.send(get(&uri)).await.json(), a.send(get(&uri)).await.json());
    }
    let q = json!({"query": "weather for rain", "k": 5});
    assert_eq!(
        b.send(json("POST", "/v1/search", q.clone())).await.json(),
        a.send(json("POST", "/v1/search", q)).await.json()
    );
    // Into a store that is no longer empty: 409; the same file again without keep_ids: all unchanged.
    let again = b.send(raw("POST", "/v1/import?keep_ids=true", None, export.clone())).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let same = b.send(raw("POST", "/v1/import", None, export.clone())).await.json();
    assert_eq!((same["created"].clone(), same["unchanged"].clone()), (json!(0), json!(11)));
    // Invalid lines: skipped and reported with their line numbers, or the import stops at them.
    let bad = "{\"title\":\"ok\",\"content\":\"fine\"}\n{\"title\":\"no content\"}\n\n{\"title\":\"m\",\"content\":\"c\",\"metadata\":[1]}\n";
    let r = b.send(raw("POST", "/v1/import?skip_invalid=true", None, bad)).await.json();
    assert_eq!(r["skipped"], 2);
    assert_eq!(
        r["errors"],
        json!([{"line": 2, "field": "content", "reason": "missing"},
                                   {"line": 4, "field": "metadata", "reason": "must be a JSON object, got an array"}])
    );
    let r = b.send(raw("POST", "/v1/import", None, bad)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["error"]["field"], "content");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("line 2"), "{}", r.text());
    a.cleanup().await;
    b.cleanup().await;
}

/// Query parameters a route does not know are a 400 naming them, not silently ignored.
#[tokio::test]
async fn unknown_query_parameters_are_refused() {
    let t = TestApp::new(config()).await;
    for uri in [
        "/v1/search?q=x&metadata=y",
        "/v1/documents?limt=5",
        "/v1/count?filtr=%7B%7D",
        "/v1/export?embeddings=true",
        "/v1/documents/1?with_embeddings=true",
    ] {
        let r = t.send(get(uri)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.text());
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains("unknown field"), "{uri}: {msg}");
    }
    let r = t.send(get("/v1/documents?filter=%7Bnot%20json")).await;
    assert_eq!((r.status, r.json()["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("filter")));
    let r = t.send(get("/v1/documents?limit=0")).await;
    assert_eq!(r.json()["error"]["field"], "limit");
    t.cleanup().await;
}

/// Background import jobs over HTTP: queued at once (202 + Location), run by the service's
/// worker, reported line by line; bad options, ids and paths are typed errors naming the field.
#[tokio::test]
async fn background_import_job_is_queued_run_and_reported() {
    let dir = std::env::temp_dir().join(format!("mk-import-dir-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mut input = String::new();
    for i in 1..=120 {
        match i {
            5 => input.push_str("{\"title\":\"no content\"}\n"),
            _ => input.push_str(&format!("{{\"title\":\"job doc {i}\",\"content\":\"text {i}\",\"key\":\"j{i}\"}}\n")),
        }
    }
    std::fs::write(dir.join("sub/docs.jsonl"), &input).unwrap();
    let t = TestApp::new(HttpConfig { import_dir: Some(dir.clone()), ..config() }).await;
    let workers = t.state.jobs.spawn_workers(1);

    let r = t.send(raw("POST", "/v1/jobs/import?chunk_lines=50", Some("application/x-ndjson"), input.clone())).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let queued = r.json();
    let id = queued["id"].as_str().unwrap().to_string();
    assert_eq!(r.headers["location"], format!("/v1/jobs/{id}").as_str());
    assert_eq!((queued["total"].as_u64(), queued["chunks"].as_u64()), (Some(120), Some(3)));

    let status = loop {
        let s = t.send(get(&format!("/v1/jobs/{id}"))).await.json();
        if s["state"] == "done" {
            break s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!((status["done"].as_u64(), status["failed"].as_u64()), (Some(119), Some(1)), "{status}");
    assert_eq!(status["errors"][0]["line"], 5);
    assert_eq!(status["errors"][0]["field"], "content");
    assert_eq!(t.send(get("/v1/count")).await.json()["count"], 119);

    // The same file from the server's import directory: every key is unchanged now.
    let r = t.send(raw("POST", "/v1/jobs/import?path=sub/docs.jsonl", None, "")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let id2 = r.json()["id"].as_str().unwrap().to_string();
    let s2 = loop {
        let s = t.send(get(&format!("/v1/jobs/{id2}"))).await.json();
        if s["state"] == "done" {
            break s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!((s2["unchanged"].as_u64(), s2["created"].as_u64()), (Some(119), Some(0)), "{s2}");
    assert_eq!(s2["options"]["name"], "sub/docs.jsonl");
    let listed = t.send(get("/v1/jobs?limit=5")).await.json();
    assert_eq!(listed["jobs"][0]["id"], id2.as_str());
    assert_eq!(listed["jobs"][1]["id"], id.as_str());

    // Typed errors.
    let r = t.send(raw("POST", "/v1/jobs/import?path=../etc/passwd", None, "")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.json()["error"]["message"].as_str().unwrap().starts_with("path: "));
    let r = t.send(raw("POST", "/v1/jobs/import?path=%2Fetc%2Fpasswd", None, "")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let r = t.send(raw("POST", "/v1/jobs/import?path=sub/none.jsonl", None, "")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let r = t.send(raw("POST", "/v1/jobs/import?path=sub/docs.jsonl", None, "{\"title\":\"x\"}\n")).await;
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("body")));
    let r = t.send(raw("POST", "/v1/jobs/import?chunk_lines=0", None, input.clone())).await;
    assert_eq!(
        (r.status, r.json()["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("chunk_lines"))
    );
    let r = t.send(raw("POST", "/v1/jobs/import", None, "\n\n")).await;
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("input")));
    assert_eq!(t.send(get("/v1/jobs/0123abcd")).await.status, StatusCode::NOT_FOUND);
    let r = t.send(get("/v1/jobs/NOT-AN-ID")).await;
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("id")));
    // Forgotten: gone from the list, its documents stay.
    assert_eq!(t.send(delete(&format!("/v1/jobs/{id}"))).await.status, StatusCode::NO_CONTENT);
    assert_eq!(t.send(get(&format!("/v1/jobs/{id}"))).await.status, StatusCode::NOT_FOUND);
    assert_eq!(t.send(get("/v1/count")).await.json()["count"], 119);
    workers.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    t.cleanup().await;
}
