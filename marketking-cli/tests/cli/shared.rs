//! The CLI on an embedded file that the HTTP service has open: read commands open it read-only
//! and answer as the service does; write commands are refused with the service's pid.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::*;

/// The HTTP service (`marketking_http::app`, as its binary serves it) over the embedded file
/// `path`, listening on a loopback port, in this test process: it holds the file's write lock
/// while the CLI runs as other processes.
struct Service {
    port: u16,
    _runtime: tokio::runtime::Runtime,
}

impl Service {
    fn start(path: &Path) -> Service {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let port = runtime.block_on(async {
            let store = marketking_core::VectorStore::builder()
                .db_path(path)
                .embedder(marketking_core::HashingEmbedder::default())
                .cache(marketking_core::NoCache)
                .build()
                .await
                .unwrap();
            let config = marketking_http::HttpConfig { rate_limit: 0, ..Default::default() };
            let app = marketking_http::app(marketking_http::AppState::new(store, config));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            port
        });
        Service { port, _runtime: runtime }
    }

    /// `POST path` with a JSON body; the status and the JSON answer.
    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let (_, json) = resp.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no body: {resp}"));
        (status, json_of(json))
    }
}

/// The store's size: the 20k documents, where a reader's first search loads the whole
/// file's vectors (the lazy first-search pass) while the service holds the write lock.
const DOCS: usize = 20_000;

fn hit_ids(answer: &Value) -> Vec<i64> {
    answer["hits"].as_array().unwrap().iter().map(|h| h["document"]["id"].as_i64().unwrap()).collect()
}

#[test]
fn read_commands_work_while_the_service_has_the_file_open() {
    let s = Store::embedded();
    let file = tmp_file("docs.jsonl", jsonl(DOCS, None).as_bytes());
    s.ok(&["import", file.to_str().unwrap()]);
    let service = Service::start(Path::new(&s.args[1]));

    for (query, k) in [("blue chair", 10), ("green kettle in good condition", 25), ("Listing 7", 3)] {
        let cli = json_of(&s.ok(&["search", query, "-k", &k.to_string(), "--json"]));
        let (status, http) = service.post("/v1/search", &json!({"query": query, "k": k}));
        assert_eq!(status, 200, "{http}");
        assert_eq!(hit_ids(&cli).len(), k, "{cli}");
        assert_eq!(hit_ids(&cli), hit_ids(&http), "{query}: same hits, same order");
        assert_eq!(cli, http, "{query}: the same answer");
    }

    // A document the service writes after the CLI's last call: the next CLI call sees it.
    let (status, created) = service.post(
        "/v1/documents",
        &json!({"title": "Violet umbrella", "content": "a violet umbrella, never used", "key": "umbrella"}),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    let hits = json_of(&s.ok(&["search", "violet umbrella", "-k", "1", "--json"]));
    assert_eq!(hit_ids(&hits), [id]);
    assert_eq!(json_of(&s.ok(&["get", &id.to_string(), "--json"]))["key"], "umbrella");
    assert_eq!(s.ok(&["count"]).trim(), (DOCS + 1).to_string());
    assert_eq!(s.count(), DOCS as u64 + 1);
    assert_eq!(s.export(&[]).len(), DOCS + 1);
    let similar = json_of(&s.ok(&["similar", &id.to_string(), "-k", "3", "--json"]));
    assert_eq!(hit_ids(&similar).len(), 3);

    // Writes still need the file to themselves: refused with the holder's pid, nothing written.
    let pid = std::process::id();
    let id_arg = id.to_string();
    for args in [
        vec!["create", "--title", "T", "--content", "c"],
        vec!["delete", &id_arg],
        vec!["delete", "--all", "--yes"],
        vec!["demo", "--quiet"],
    ] {
        let line = fails(&s.run(&args));
        assert!(line.contains("already open") && line.contains(&format!("in process {pid}")), "{args:?}: {line}");
    }
    let o = s.run_stdin(&["import", "-"], jsonl(2, None).as_bytes());
    let line = fails(&o);
    assert!(line.contains(&format!("in process {pid}")), "{line}");
    assert_eq!(s.count(), DOCS as u64 + 1);
}
