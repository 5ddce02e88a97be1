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

fn pattern(spec: &Value, schema: &str, field: &str) -> regex::Regex {
    let p = spec["components"]["schemas"][schema]["properties"][field]["pattern"]
        .as_str()
        .unwrap_or_else(|| panic!("{schema}.{field} has no pattern"));
    regex::Regex::new(p).unwrap_or_else(|e| panic!("{schema}.{field}: {p}: {e}"))
}

/// Text fields: the published pattern and the server agree on blank and NUL-holding text,
/// with the whitespace the store trims (Unicode White_Space), not a regex engine's `\s`.
#[tokio::test]
async fn text_patterns_match_what_the_server_accepts() {
    let t = TestApp::new(config()).await;
    let spec = t.send(get("/openapi.json")).await.json();
    let samples = ["plain", " padded ", " ", "\t\n", "\u{3000}", "\u{1c}", "\u{feff}", "a\u{0}b", "\u{0}", "\\u0000"];
    let doc = |field: &str, value: &str| {
        let mut d = json!({"title": "t", "content": "c"});
        d[field] = json!(value);
        d
    };
    let mut n = 0;
    for (field, schema) in [
        ("title", "NewDocumentBody"),
        ("content", "NewDocumentBody"),
        ("source", "NewDocumentBody"),
        ("key", "NewDocumentBody"),
    ] {
        let re = pattern(&spec, schema, field);
        for value in samples {
            if field == "key" && value == "plain" {
                continue; // used below
            }
            let key_unique = if field == "key" { value.to_string() } else { format!("k{n}") };
            n += 1;
            let mut body = doc(field, value);
            if field != "key" {
                body["key"] = json!(key_unique);
            }
            let r = t.send(json("POST", "/v1/documents", body)).await;
            let server_accepts = r.status.is_success();
            assert!(server_accepts || r.status == StatusCode::UNPROCESSABLE_ENTITY, "{field}={value:?}: {}", r.text());
            assert_eq!(
                re.is_match(value),
                server_accepts,
                "{field}={value:?}: schema and server disagree: {}",
                r.text()
            );
        }
    }
    // The same rules on updates and keyed upserts.
    let id = t.send(json("POST", "/v1/documents", json!({"title": "t", "content": "c"}))).await.json()["id"]
        .as_i64()
        .unwrap();
    for field in ["title", "content", "source"] {
        let patch = pattern(&spec, "PatchBody", field);
        let upsert = pattern(&spec, "UpsertDocumentBody", field);
        for value in samples {
            let r = t.send(json("PUT", &format!("/v1/documents/{id}"), json!({field: value}))).await;
            assert_eq!(patch.is_match(value), r.status.is_success(), "PUT {field}={value:?}: {}", r.text());
            let r = t.send(json("PUT", "/v1/documents/by-key/up", doc(field, value))).await;
            assert_eq!(upsert.is_match(value), r.status.is_success(), "upsert {field}={value:?}: {}", r.text());
        }
    }
    // A query is only embedded: NUL is fine there, blank is not. (Samples with a word only: the
    // offline hashing embedder of these tests refuses text without letters or digits, a rule of
    // that embedder that the schema does not carry.)
    let query = pattern(&spec, "SearchBody", "query");
    for value in ["plain", " padded ", " ", "\t\n", "\u{3000}", "a\u{0}b", "\\u0000"] {
        let r = t.send(json("POST", "/v1/search", json!({"query": value}))).await;
        assert_eq!(query.is_match(value), r.status.is_success(), "query={value:?}: {}", r.text());
    }
    t.cleanup().await;
}

/// Metadata is published as an object whose keys and strings hold no NUL at any depth, which
/// is what the server refuses; the key of a keyed upsert comes from the path only; a search
/// needs exactly one of `query` and `vector`.
#[tokio::test]
async fn metadata_upsert_and_search_schemas_match_the_server() {
    let t = TestApp::new(config()).await;
    let spec = t.send(get("/openapi.json")).await.json();
    let schemas = &spec["components"]["schemas"];
    assert_eq!(schemas["Metadata"]["type"], "object");
    let no_nul = regex::Regex::new(schemas["Metadata"]["propertyNames"]["pattern"].as_str().unwrap()).unwrap();
    assert!(!no_nul.is_match("a\u{0}") && no_nul.is_match("a"));
    for schema in ["NewDocumentBody", "UpsertDocumentBody", "PatchBody", "SearchBody"] {
        let refs = schemas[schema]["properties"]["metadata"]["anyOf"].to_string();
        assert!(refs.contains("#/components/schemas/Metadata"), "{schema}.metadata: {refs}");
    }
    for (metadata, ok) in [
        (json!({"lang": "en", "tags": ["a", {"deep": "fine"}]}), true),
        (json!({"la\u{0}ng": "en"}), false),
        (json!({"tags": ["a", {"deep": "no\u{0}"}]}), false),
    ] {
        let r =
            t.send(json("POST", "/v1/documents", json!({"title": "t", "content": "c", "metadata": metadata}))).await;
        assert_eq!(r.status.is_success(), ok, "{metadata}: {}", r.text());
    }

    let upsert = &schemas["UpsertDocumentBody"];
    assert_eq!(upsert["additionalProperties"], false);
    assert!(upsert["properties"].get("key").is_none(), "{upsert}");
    let body = json!({"title": "t", "content": "c", "key": "sku-9"});
    let r = t.send(json("PUT", "/v1/documents/by-key/sku-9", body)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let path_key = &spec["paths"]["/v1/documents/by-key/{key}"]["put"]["parameters"][0]["schema"];
    assert_eq!(path_key["maxLength"], 512, "{path_key}");

    let search = schemas["SearchBody"]["anyOf"].as_array().unwrap();
    assert_eq!(search.len(), 2);
    let v: Vec<f32> = (0..DIMS).map(|i| i as f32 + 1.0).collect();
    for (body, ok) in [
        (json!({"query": "x"}), true),
        (json!({"vector": v}), true),
        (json!({"query": "x", "vector": null}), true),
        (json!({}), false),
        (json!({"query": null, "vector": null}), false),
        (json!({"query": "x", "vector": v}), false),
    ] {
        let r = t.send(json("POST", "/v1/search", body.clone())).await;
        assert_eq!(r.status.is_success(), ok, "{body}: {}", r.text());
    }
    t.cleanup().await;
}

/// JSON Schema's `integer` includes `3.0`; the server takes it as 3, and refuses `2.5`.
#[tokio::test]
async fn whole_numbers_written_as_floats_are_integers() {
    let t = TestApp::new(config()).await;
    for i in 0..5 {
        let r =
            t.send(json("POST", "/v1/documents", json!({"title": format!("Doc {i}"), "content": "integral k"}))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    let r = t.send(json("POST", "/v1/search", json!({"query": "integral k", "k": 3.0, "ef_search": 40.0}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["hits"].as_array().map(Vec::len), Some(3));
    for bad in [json!(2.5), json!(-1), json!("3")] {
        let r = t.send(json("POST", "/v1/search", json!({"query": "integral k", "k": bad}))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "k = {bad}: {}", r.text());
    }
    t.cleanup().await;
}

/// The lengths and ranges in /openapi.json are the core's own constants.
#[tokio::test]
async fn published_limits_are_the_cores() {
    let t = TestApp::new(config()).await;
    let spec = t.send(get("/openapi.json")).await.json();
    let schemas = &spec["components"]["schemas"];
    let limit = |schema: &str, field: &str, key: &str| schemas[schema]["properties"][field][key].as_f64();
    let n = |x: usize| Some(x as f64);
    for schema in ["NewDocumentBody", "UpsertDocumentBody"] {
        assert_eq!(limit(schema, "title", "maxLength"), n(marketking_core::MAX_TITLE_CHARS), "{schema}.title");
    }
    assert_eq!(limit("PatchBody", "title", "maxLength"), n(marketking_core::MAX_TITLE_CHARS));
    assert_eq!(limit("NewDocumentBody", "key", "maxLength"), n(marketking_core::MAX_KEY_CHARS));
    assert_eq!(limit("SearchBody", "k", "maximum"), n(marketking_core::MAX_K));
    assert_eq!(limit("SearchBody", "ef_search", "maximum"), Some(f64::from(*marketking_core::EF_SEARCH_RANGE.end())));
    assert_eq!(limit("SearchBody", "probes", "maximum"), Some(f64::from(*marketking_core::PROBES_RANGE.end())));
    let source = &schemas["NewDocumentBody"]["properties"]["source"];
    let max = source["maxLength"]
        .as_f64()
        .or_else(|| source["anyOf"].as_array().and_then(|a| a.iter().find_map(|v| v["maxLength"].as_f64())));
    assert_eq!(max, n(marketking_core::MAX_SOURCE_CHARS), "{source}");
    // Responses are the core's types.
    for core in ["Document", "SearchResults", "SearchHit", "BatchReport", "Stats", "StorageStats", "UpsertOutcome"] {
        assert!(schemas.get(core).is_some(), "{core} is published");
    }
    for mirror in ["DocumentBody", "HitBody", "StatsBody", "BatchReportBody", "SearchResponse"] {
        assert!(schemas.get(mirror).is_none(), "{mirror} is gone");
    }
    t.cleanup().await;
}
