//! JSON bodies must be objects where the API expects objects; the published schema says what
//! the server accepts.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::{config, get, json, raw, TestApp};

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
