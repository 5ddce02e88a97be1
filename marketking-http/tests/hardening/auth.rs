//! Wrong API keys are throttled per client IP; short keys are refused at start-up.

use std::time::Duration;

use axum::http::StatusCode;
use marketking_http::{ApiKeys, HttpConfig};

use crate::common::{bearer, config, from_ip, get, refused_start, Resp, TestApp};

const KEY: &str = "throttle-test-key-0123456789";

async fn stats(t: &TestApp, ip: &str, key: Option<&str>) -> Resp {
    let req = from_ip(get("/v1/stats"), ip);
    t.send(match key {
        Some(k) => bearer(req, k),
        None => req,
    })
    .await
}

fn retry_after(r: &Resp) -> u64 {
    r.headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {:?}", r.headers))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn wrong_keys_are_throttled_per_ip() {
    let keys = ApiKeys::parse(KEY).unwrap();
    let t = TestApp::new(HttpConfig { api_keys: keys, ..config() }).await;

    // 300 wrong keys in a burst from one address: a few 401s, then 429s. The budget is 5 per
    // second (the default), so however slow this machine is, at most 5 per started second.
    let started = std::time::Instant::now();
    let mut unauthorized = 0;
    let mut throttled = 0;
    for i in 0..300 {
        let r = stats(&t, "203.0.113.7", Some(&format!("guess-{i:020}"))).await;
        match r.status {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                throttled += 1;
                assert_eq!(r.error_code(), "rate_limited");
                assert!((1..=5).contains(&retry_after(&r)), "{:?}", r.headers);
            }
            other => panic!("wrong key answered {other}: {}", r.text()),
        }
    }
    let allowed = 5 * (1 + started.elapsed().as_secs() as usize);
    assert!(unauthorized >= 5 && unauthorized <= allowed, "{unauthorized} wrong keys were checked, {allowed} allowed");
    assert_eq!(unauthorized + throttled, 300);

    // While that address is throttled even the right key is refused from it (checking the key
    // would tell a guesser when it is right), ...
    let r = stats(&t, "203.0.113.7", Some(KEY)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&r);
    // ... while other addresses are not affected, wrong or right,
    let r = stats(&t, "198.51.100.1", Some("another-wrong-key-000000")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = stats(&t, "198.51.100.2", Some(KEY)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // and requests without any key are answered 401 without using up the budget.
    for _ in 0..20 {
        assert_eq!(stats(&t, "198.51.100.3", None).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(stats(&t, "198.51.100.3", Some("first-wrong-key-00000000")).await.status, StatusCode::UNAUTHORIZED);

    // Once Retry-After has passed, the right key works again from the throttled address.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let r = stats(&t, "203.0.113.7", Some(KEY)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    t.cleanup().await;
}

/// Valid keys never use up the failure budget: a busy client with the right key is not
/// throttled (the per-key rate limit is off here), and a few typos do not lock it out.
#[tokio::test]
async fn valid_keys_are_not_slowed_by_the_failure_throttle() {
    let keys = ApiKeys::parse(KEY).unwrap();
    let t = TestApp::new(HttpConfig { api_keys: keys, ..config() }).await;
    let ip = "192.0.2.10";
    assert_eq!(stats(&t, ip, Some("a-typo-in-the-key-000000")).await.status, StatusCode::UNAUTHORIZED);
    for i in 0..200 {
        let r = stats(&t, ip, Some(KEY)).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.text());
    }
    assert_eq!(stats(&t, ip, Some("another-typo-in-the-key-0")).await.status, StatusCode::UNAUTHORIZED);
    t.cleanup().await;
}

/// IPv6 clients are throttled per /64 (one host usually holds a whole /64).
#[tokio::test]
async fn ipv6_clients_are_throttled_per_64_prefix() {
    let keys = ApiKeys::parse(KEY).unwrap();
    let t = TestApp::new(HttpConfig { api_keys: keys, ..config() }).await;
    let mut throttled = false;
    for i in 0..50 {
        let ip = format!("2001:db8:1:2::{:x}", i + 1);
        if stats(&t, &ip, Some("wrong-key-from-ipv6-0000")).await.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = true;
            break;
        }
    }
    assert!(throttled, "50 wrong keys from one /64 were all checked");
    let r = stats(&t, "2001:db8:1:3::1", Some("wrong-key-from-ipv6-0000")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "another /64 is not throttled");
    t.cleanup().await;
}

#[test]
fn short_api_keys_are_refused() {
    let err = ApiKeys::parse("a-long-enough-key-1234,short").unwrap_err().to_string();
    assert!(err.contains("API key 2") && err.contains("16 characters"), "{err}");
    assert!(!err.contains("short"), "the error must not print the key: {err}");
    assert!(ApiKeys::parse("exactly-16-chars").is_ok());
    assert!(ApiKeys::parse("15-chars-is-bad").is_err());
    assert!(ApiKeys::parse("").unwrap().is_empty());
}

#[test]
fn binary_refuses_a_short_api_key() {
    let (code, stderr) = refused_start(&[], &[("MARKETKING_API_KEYS", "secret")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("at least 16 characters"), "{stderr}");
    assert!(!stderr.contains("secret"), "the key is printed: {stderr}");
}
