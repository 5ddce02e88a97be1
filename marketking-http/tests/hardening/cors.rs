//! `--cors-origin '*'` allows any origin; an invalid origin stops the start-up, naming it.

use std::io::{Read, Write};

use crate::common::refused_start;

/// A started server, killed if the test fails before stopping it.
struct Running(Option<std::process::Child>);

impl Running {
    fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> (Self, u16) {
        let (child, port) = crate::spawn_binary(dir, env);
        (Running(Some(child)), port)
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        let child = self.0.take().unwrap();
        crate::sigterm(&child);
        let status = crate::wait_exit(child, std::time::Instant::now(), "server did not stop on SIGTERM");
        assert!(status.success(), "{status:?}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn preflight(port: u16, origin: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "OPTIONS /v1/search HTTP/1.1\r\nhost: x\r\norigin: {origin}\r\naccess-control-request-method: POST\r\n\
         access-control-request-headers: authorization,content-type\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.to_lowercase()
}

#[test]
fn binary_with_cors_wildcard_allows_any_origin() {
    let dir = std::env::temp_dir().join(format!("mkh_cors_any_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (server, port) = Running::start(&dir, &[("MARKETKING_CORS_ORIGINS", "*")]);
    for origin in ["https://app.example", "http://localhost:3000"] {
        let resp = preflight(port, origin);
        assert!(resp.starts_with("http/1.1 200"), "{resp}");
        assert!(resp.contains("access-control-allow-origin: *\r\n"), "{resp}");
        assert!(resp.contains("authorization"), "Authorization must be an allowed header: {resp}");
        assert!(!resp.contains("access-control-allow-credentials"), "{resp}");
    }
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn binary_with_listed_origins_allows_only_those() {
    let dir = std::env::temp_dir().join(format!("mkh_cors_list_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Written with a trailing slash and upper case: normalised to the origin browsers send.
    let (server, port) =
        Running::start(&dir, &[("MARKETKING_CORS_ORIGINS", "https://App.example/,http://localhost:3000")]);
    let resp = preflight(port, "https://app.example");
    assert!(resp.contains("access-control-allow-origin: https://app.example\r\n"), "{resp}");
    let resp = preflight(port, "http://localhost:3000");
    assert!(resp.contains("access-control-allow-origin: http://localhost:3000\r\n"), "{resp}");
    let resp = preflight(port, "https://evil.example");
    assert!(!resp.contains("access-control-allow-origin"), "{resp}");
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn binary_refuses_an_invalid_cors_origin_naming_it() {
    for (bad, why) in [
        ("app.example", "scheme"),
        ("https://app.example/path", "path"),
        ("https://app .example", "invalid"),
        ("null", "scheme"),
        ("*,https://app.example", "alone"),
    ] {
        let (code, stderr) = refused_start(&["--cors-origin", bad], &[]);
        assert_eq!(code, Some(1), "{bad}: {stderr}");
        let named = bad.split(',').next().unwrap_or(bad);
        assert!(stderr.contains(named), "{bad}: the error must name the origin: {stderr}");
        assert!(stderr.to_lowercase().contains(why), "{bad}: the error must say why ({why}): {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{bad}: {stderr}");
    }
}

#[test]
fn cors_origins_are_validated_and_normalised() {
    use marketking_http::{ConfigError, CorsOrigins};
    assert_eq!(CorsOrigins::parse(&["*"]).unwrap(), CorsOrigins::Any);
    assert_eq!(CorsOrigins::parse::<&str>(&[]).unwrap(), CorsOrigins::None);
    assert_eq!(CorsOrigins::parse(&[" ", ""]).unwrap(), CorsOrigins::None);
    let CorsOrigins::List(list) =
        CorsOrigins::parse(&["https://App.Example:443/", "https://app.example", "http://[::1]:8080"]).unwrap()
    else {
        panic!("expected a list")
    };
    assert_eq!(list, ["https://app.example", "http://[::1]:8080"]);
    assert!(matches!(
        CorsOrigins::parse(&["https://a.example", "*"]),
        Err(ConfigError::CorsWildcardNotAlone { other }) if other == "https://a.example"
    ));
    for bad in ["ftp://a.example", "https://user@a.example", "https://a.example?x=1", "https://"] {
        assert!(
            matches!(CorsOrigins::parse(&[bad]), Err(ConfigError::InvalidCorsOrigin { ref origin, .. }) if origin == bad),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn wildcard_preflight_in_process() {
    use axum::http::StatusCode;
    let cors = marketking_http::CorsOrigins::parse(&["*"]).unwrap();
    let t = crate::common::TestApp::new(marketking_http::HttpConfig { cors, ..crate::common::config() }).await;
    let req = axum::http::Request::builder()
        .method("OPTIONS")
        .uri("/v1/search")
        .header("origin", "https://anywhere.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .body(axum::body::Body::empty())
        .unwrap();
    let r = t.send(req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["access-control-allow-origin"], "*");
    // A simple request gets the header too.
    let mut req = crate::common::get("/healthz");
    req.headers_mut().insert("origin", "https://anywhere.example".parse().unwrap());
    assert_eq!(t.send(req).await.headers["access-control-allow-origin"], "*");
    t.cleanup().await;
}
