//! JSON bodies must be objects where the API expects objects; the published schema says what
//! the server accepts.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::common::{config, get, json, raw, TestApp, DIMS};

#[tokio::test]
async fn arrays_are_not_accepted_as_object_bodies() {
    let t = TestApp::new(config()).await;
    let r = t.send(json("POST", "/v1/documents", json!({"title": "Kept", "content": "as it was"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    let doc = format!("/v1/documents/{id}");

    for (method, uri, body) in [
        ("PUT", doc.as_str(), "[null,null]"),
        ("PUT", doc.as_str(), r#"["Replaced","by an array"]"#),
        ("POST", "/v1/documents", r#"["Title","Content"]"#),
        ("POST", "/v1/documents/batch", r#"[[{"title":"a","content":"b"}]]"#),
        ("POST", "/v1/documents/batch", r#"{"documents":[["Title","Content"]]}"#),
        ("PUT", "/v1/documents/by-key/k1", r#"["Title","Content"]"#),
        ("POST", "/v1/search", r#"["running shoes"]"#),
        ("POST", "/v1/search", r#""running shoes""#),
        ("POST", "/v1/search", "null"),
        ("POST", "/v1/search", "17"),
    ] {
        let r = t.send(raw(method, uri, Some("application/json"), body)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{method} {uri} {body}: {}", r.text());
        assert_eq!(r.error_code(), "invalid_input", "{method} {uri} {body}");
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("JSON object"), "{method} {uri} {body}: {message}");
    }
    let r = t.send(get(&doc)).await;
    assert_eq!(r.json()["title"], "Kept");
    let r = t.send(get("/v1/stats")).await;
    assert_eq!(r.json()["storage"]["documents"], 1, "nothing was written");
    // Whitespace before the object is fine.
    let r = t.send(raw("PUT", &doc, Some("application/json"), " \n\t{\"title\": \"Renamed\"}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    t.cleanup().await;
}

fn vector_schema(spec: &Value, schema: &str, field: &str) -> Value {
    spec["components"]["schemas"][schema]["properties"][field].clone()
}

fn with_first(value: f64) -> Vec<f64> {
    let mut v = vec![0.0; DIMS];
    v[0] = value;
    v
}

/// What the schema says about query vectors and embeddings is what the server does: an
/// all-zero vector and values beyond the published bound are outside the schema and answered
/// 422; the smallest nonzero peak and the bound itself are inside and accepted.
#[tokio::test]
async fn vector_schema_matches_what_the_server_accepts() {
    let t = TestApp::new(config()).await;
    let spec = t.send(get("/openapi.json")).await.json();
    for (schema, field) in [("SearchBody", "vector"), ("NewDocumentBody", "embedding")] {
        let s = vector_schema(&spec, schema, field);
        assert_eq!(s["minItems"], DIMS, "{schema}.{field}: {s}");
        assert!(s["items"]["maximum"].is_number() && s["items"]["minimum"].is_number(), "{schema}.{field}: {s}");
        assert!(s["contains"].is_object(), "{schema}.{field} must exclude all-zero vectors: {s}");
    }
    let s = vector_schema(&spec, "SearchBody", "vector");
    let max = s["items"]["maximum"].as_f64().unwrap();
    assert_eq!(s["items"]["minimum"].as_f64().unwrap(), -max);
    let peak = s["contains"]["anyOf"][0]["minimum"].as_f64().unwrap();
    assert_eq!(s["contains"]["anyOf"][1]["maximum"].as_f64().unwrap(), -peak);
    assert_eq!(vector_schema(&spec, "NewDocumentBody", "embedding")["items"], s["items"]);
    assert_eq!(vector_schema(&spec, "NewDocumentBody", "embedding")["contains"], s["contains"]);

    let search = |v: Vec<f64>| json("POST", "/v1/search", json!({"vector": v, "min_score": -1.0}));
    let store = |v: Vec<f64>| json("POST", "/v1/documents", json!({"title": "t", "content": "c", "embedding": v}));
    for (label, v, accepted) in [
        ("all zeros", vec![0.0; DIMS], false),
        ("the smallest peak", with_first(peak), true),
        ("a negative peak", with_first(-peak), true),
        ("the bound", with_first(max), true),
        ("beyond the bound", with_first(max * 10.0), false),
        ("below the negative bound", with_first(-max * 10.0), false),
    ] {
        for (what, req) in [("search", search(v.clone())), ("store", store(v))] {
            let r = t.send(req).await;
            if accepted {
                assert!(r.status.is_success(), "{what} with {label}: {} {}", r.status, r.text());
            } else {
                assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{what} with {label}: {}", r.text());
            }
        }
    }
    t.cleanup().await;
}
