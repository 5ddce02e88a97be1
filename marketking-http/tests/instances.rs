//! Two `marketking-http` processes on one PostgreSQL and one Redis, as behind a load balancer:
//! a write through one is seen by the next search through the other (no stale cached result),
//! and one API key's rate limit holds across both.
#![allow(missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const KEY: &str = "instances-test-key-0123456789";

struct Instance {
    child: std::process::Child,
    port: u16,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on an ephemeral loopback port over `table`, with `env` added.
fn start(table: &str, env: &[(&str, &str)]) -> Instance {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_marketking-http"));
    cmd.args(["--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", marketking_testkit::database_url())
        .env("REDIS_URL", marketking_testkit::redis_url())
        .env("MARKETKING_TABLE", table)
        .env("MARKETKING_API_KEYS", KEY)
        .env("MARKETKING_EMBEDDER", "hash")
        .env("RUST_LOG", "info")
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
    Instance { child, port }
}

struct Response {
    status: u16,
    headers: String,
    body: Value,
}

/// One request on a fresh connection (`connection: close`).
fn send(port: u16, method: &str, path: &str, body: Option<Value>) -> Response {
    send_with(port, method, path, body, "")
}

/// [`send`] with `extra` header lines (each ending in `\r\n`).
fn send_with(port: u16, method: &str, path: &str, body: Option<Value>, extra: &str) -> Response {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\n\
         {extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    // Chunked bodies are not expected from these endpoints; take the JSON as sent.
    let body = serde_json::from_str(rest).unwrap_or(Value::Null);
    Response { status, headers: head.to_ascii_lowercase(), body }
}

fn table() -> (String, String) {
    let schema = format!("mkhi_{}_{}", std::process::id(), Instant::now().elapsed().subsec_nanos() % 100_000);
    (format!("{schema}.docs"), schema)
}

async fn drop_schema(schema: &str) {
    let (client, conn) =
        tokio_postgres::connect(&marketking_testkit::database_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await.unwrap();
}

#[tokio::test]
async fn a_write_through_one_instance_is_seen_by_the_next_search_through_the_other() {
    let (table, schema) = table();
    let a = start(&table, &[("MARKETKING_RATE_LIMIT", "0")]);
    let b = start(&table, &[("MARKETKING_RATE_LIMIT", "0")]);
    let search = |port: u16, word: &str| {
        let r = send(port, "POST", "/v1/search", Some(json!({"query": word, "mode": "text"})));
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["hits"].as_array().unwrap().iter().map(|h| h["document"]["id"].as_i64().unwrap()).collect::<Vec<_>>()
    };
    for i in 0..25 {
        let word = format!("relay{i}");
        // B caches "no hit" for the word first, so a stale result would be there to serve.
        assert!(search(b.port, &word).is_empty());
        assert!(search(b.port, &word).is_empty());
        let created = send(a.port, "POST", "/v1/documents", Some(json!({"title": word, "content": "x"})));
        assert_eq!(created.status, 201, "{:?}", created.body);
        let id = created.body["id"].as_i64().unwrap();
        assert_eq!(search(b.port, &word), vec![id], "instance B after a write through A ({word})");
        // And the other way round: B deletes, A's next search no longer finds it.
        let deleted = send(b.port, "DELETE", &format!("/v1/documents/{id}"), None);
        assert_eq!(deleted.status, 204);
        assert!(search(a.port, &word).is_empty(), "instance A after a delete through B ({word})");
    }
    drop((a, b));
    drop_schema(&schema).await;
}

#[tokio::test]
async fn one_keys_rate_limit_holds_across_both_instances() {
    let (table, schema) = table();
    let limit = 10;
    let env = [("MARKETKING_RATE_LIMIT", "10")];
    let a = start(&table, &env);
    let b = start(&table, &env);
    let started = Instant::now();
    let mut allowed = 0;
    let mut refused = Vec::new();
    for i in 0..40 {
        let port = if i % 2 == 0 { a.port } else { b.port };
        let r = send(port, "GET", "/v1/stats", None);
        match r.status {
            200 => allowed += 1,
            429 => refused.push(r),
            other => panic!("unexpected status {other}: {:?}", r.body),
        }
    }
    let elapsed = started.elapsed();
    // One shared budget: the burst (10) plus what refills while the requests run. Two
    // separate budgets would allow at least 20.
    let most = limit + (elapsed.as_secs_f64() * limit as f64).ceil() as usize + 1;
    eprintln!("40 requests over two instances in {elapsed:?}: {allowed} allowed (shared limit 10/s)");
    assert!(allowed >= limit && allowed <= most, "{allowed} allowed in {elapsed:?} (at most {most})");
    assert!(elapsed < Duration::from_secs(1) && allowed < 2 * limit, "{allowed} allowed in {elapsed:?}");
    assert!(refused.iter().all(|r| r.headers.contains("retry-after:")), "a 429 without Retry-After");
    drop((a, b));
    drop_schema(&schema).await;
}

/// The Grafana dashboard of the `scale` compose profile queries only metrics a running service
/// exports: one with a read replica and a Redis Cluster (the local topology of
/// `scripts/topology.sh`, which `bash scripts/test.sh` starts), after a write and a search.
#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported() {
    let var =
        |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run `bash scripts/test.sh`"));
    let (table, schema) = table();
    let primary = var("MK_TOPOLOGY_PRIMARY_URL");
    let s = start(
        &table,
        &[
            ("DATABASE_URL", primary.as_str()),
            ("DATABASE_READ_URLS", var("MK_TOPOLOGY_REPLICA_URL").as_str()),
            ("REDIS_URL", var("MK_TOPOLOGY_REDIS_NODES").as_str()),
        ],
    );
    let created = send(s.port, "POST", "/v1/documents", Some(json!({"title": "gauge", "content": "dial"})));
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert!(created.headers.contains("x-marketking-write-position:"), "{}", created.headers);
    for _ in 0..3 {
        let r = send(s.port, "POST", "/v1/search", Some(json!({"query": "gauge dial", "k": 3})));
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    // The write's position, passed on in a header or in the body, is accepted; a malformed one
    // is a 422 naming where it came from.
    let position = created.headers.split("x-marketking-write-position: ").nth(1).unwrap().lines().next().unwrap();
    let header = format!("x-marketking-consistent-after: {position}\r\n");
    let r = send_with(s.port, "POST", "/v1/search", Some(json!({"query": "gauge", "mode": "text"})), &header);
    assert_eq!((r.status, r.body["hits"].as_array().map(Vec::len)), (200, Some(1)), "{:?}", r.body);
    let r = send(s.port, "POST", "/v1/search/ids", Some(json!({"query": "gauge", "consistent_after": position})));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = send_with(s.port, "GET", "/v1/search?q=gauge", None, "x-marketking-consistent-after: 12\r\n");
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert!(r.body.to_string().contains("x-marketking-consistent-after"), "{:?}", r.body);
    let r = send(s.port, "POST", "/v1/search", Some(json!({"query": "gauge", "consistent_after": "zz"})));
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert!(r.body.to_string().contains("consistent_after"), "{:?}", r.body);
    let stats = send(s.port, "GET", "/v1/stats", None);
    assert_eq!(stats.body["replication"]["replicas"].as_array().map(Vec::len), Some(1), "{:?}", stats.body);
    let metrics = {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        write!(c, "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
        let mut raw = String::new();
        c.read_to_string(&mut raw).unwrap();
        raw
    };
    let exported: std::collections::BTreeSet<&str> =
        metrics.lines().filter(|l| l.starts_with("marketking_")).map(|l| l.split(['{', ' ']).next().unwrap()).collect();
    let dashboard: Value =
        serde_json::from_str(include_str!("../../deploy/grafana/dashboards/marketking.json")).unwrap();
    let name = regex::Regex::new(r"marketking_[a-z_]+").unwrap();
    let mut queried = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queried.extend(name.find_iter(target["expr"].as_str().unwrap()).map(|m| m.as_str().to_string()));
        }
    }
    assert!(queried.len() >= 15, "{queried:?}");
    let missing: Vec<_> = queried.iter().filter(|q| !exported.contains(q.as_str())).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics the service does not export: {missing:?}\nexported: {exported:?}"
    );
    drop(s);
    let (client, conn) = tokio_postgres::connect(&primary, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await.unwrap();
}
