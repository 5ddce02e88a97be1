//! `GET /docs`: the Swagger UI page and its embedded files (a real browser drives it in
//! `scripts/check-api-page.sh`; these check what the server promises about it).

use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::common::{config, get, TestApp};

#[tokio::test]
async fn docs_page_loads_only_its_own_files_under_a_strict_csp() {
    let t = TestApp::new(config()).await;
    let r = t.send(get("/docs")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "text/html; charset=utf-8");
    let csp = r.headers["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(!csp.contains("unsafe-"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let page = r.text();
    // No inline script: every <script> has a src, and everything referenced is same-origin.
    assert_eq!(page.matches("<script").count(), page.matches("<script src=\"/docs/").count(), "{page}");
    let refs: Vec<String> = regex::Regex::new(r#"(?:src|href)="([^"]+)""#)
        .unwrap()
        .captures_iter(&page)
        .map(|c| c[1].to_string())
        .collect();
    for must in ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/docs/init.js"] {
        assert!(refs.iter().any(|r| r == must), "{must} not in {refs:?}");
    }
    for path in refs.iter().filter(|r| r.starts_with("/docs")) {
        let r = t.send(get(path)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(!r.body.is_empty(), "{path}");
    }
    assert!(refs.iter().all(|r| r.starts_with('/') && !r.starts_with("//")), "{refs:?}");

    let init = t.send(get("/docs/init.js")).await;
    assert_eq!(init.headers["content-type"], "text/javascript; charset=utf-8");
    let init = init.text();
    assert!(init.contains("SwaggerUIBundle(") && init.contains("url: '/openapi.json'"), "{init}");
    assert!(init.contains("persistAuthorization: false"), "{init}");
    // The default validator is an outside host.
    assert!(init.contains("validatorUrl: null"), "{init}");
    t.cleanup().await;
}

#[tokio::test]
async fn docs_assets_have_types_and_etags_and_answer_304() {
    let t = TestApp::new(config()).await;
    for (path, content_type) in [
        ("/docs/swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
        ("/docs/swagger-ui.css", "text/css; charset=utf-8"),
        ("/docs/favicon-32x32.png", "image/png"),
    ] {
        let r = t.send(get(path)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.headers["content-type"], content_type, "{path}");
        assert_eq!(r.headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(r.headers["cache-control"], "no-cache", "{path}");
        let etag = r.headers["etag"].to_str().unwrap().to_string();
        assert!(etag.starts_with('"') && etag.len() > 10, "{path}: {etag}");

        for given in [etag.clone(), format!("W/{etag}"), format!("\"other\", {etag}")] {
            let req = Request::get(path).header("if-none-match", &given).body(Body::empty()).unwrap();
            let r = t.send(req).await;
            assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{path} with If-None-Match: {given}");
            assert!(r.body.is_empty());
            assert_eq!(r.headers["etag"], etag.as_str());
        }
        let req = Request::get(path).header("if-none-match", "\"stale\"").body(Body::empty()).unwrap();
        assert_eq!(t.send(req).await.status, StatusCode::OK, "{path} with a stale ETag");
    }
    // The bundle is the vendored file, unchanged.
    let bundle = t.send(get("/docs/swagger-ui-bundle.js")).await;
    assert_eq!(bundle.body, include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js"));
    // Distinct files, distinct ETags.
    let css = t.send(get("/docs/swagger-ui.css")).await;
    assert_ne!(bundle.headers["etag"], css.headers["etag"]);
    // The page's files are open like /docs, but only GET (and HEAD) are routed.
    let r = t.send(Request::post("/docs/init.js").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    t.cleanup().await;
}
