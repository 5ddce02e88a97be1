//! End-to-end tests of the `marketking` binary.
//!
//! `pg`: against PostgreSQL (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`),
//! each test in its own schema, dropped afterwards. `embedded`: against a temporary file
//! (`--db-path`), with `DATABASE_URL` removed from the environment.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn database_url() -> String {
    marketking_testkit::database_url()
}

/// The binary with a clean environment: no store settings inherited from the caller.
fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_marketking"));
    for v in [
        "DATABASE_URL",
        "REDIS_URL",
        "MARKETKING_TABLE",
        "MARKETKING_DB_PATH",
        "MARKETKING_CACHE",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "RUST_LOG",
        "MARKETKING_MODEL_DIR",
        "MARKETKING_EMBEDDING_MODEL",
        "MARKETKING_EMBEDDING_DIMENSIONS",
    ] {
        c.env_remove(v);
    }
    // The hashing embedder, explicitly: with a local model installed on the machine the default
    // selection would load it and make every test slow. The model's own tests say otherwise.
    c.env("MARKETKING_EMBEDDER", "hash");
    c
}

fn run(mut c: Command, stdin: Option<&[u8]>) -> Output {
    c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn marketking");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "stdout: {}\nstderr: {}", stdout(o), stderr(o));
    stdout(o)
}

/// Asserts exit 1 with exactly one `error: ...` line on stderr; returns it.
#[track_caller]
fn fails(o: &Output) -> String {
    fails_with(o, 1)
}

/// Asserts exit 3 (a document or key that does not exist) with one `error: ...` line.
#[track_caller]
fn not_found(o: &Output) -> String {
    fails_with(o, 3)
}

#[track_caller]
fn fails_with(o: &Output, code: i32) -> String {
    assert_eq!(o.status.code(), Some(code), "stdout: {}\nstderr: {}", stdout(o), stderr(o));
    let err = stderr(o);
    // `import` names its embedder first (a line of its own, not an error).
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("embedding with ")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

fn json_of(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// A store location: a PostgreSQL schema.table or an embedded file. Cleaned up on drop.
struct Store {
    args: Vec<String>,
    env_db: Option<String>,
    schema: Option<String>,
    dir: Option<PathBuf>,
}

impl Store {
    fn pg() -> Store {
        let schema = unique("mkcli");
        Store {
            args: vec!["--table".into(), format!("{schema}.docs")],
            env_db: Some(database_url()),
            schema: Some(schema),
            dir: None,
        }
    }

    fn embedded() -> Store {
        let dir = std::env::temp_dir().join(unique("mkcli_emb"));
        std::fs::create_dir_all(&dir).unwrap();
        Store {
            args: vec!["--db-path".into(), dir.join("store.db").display().to_string()],
            env_db: None,
            schema: None,
            dir: Some(dir),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = bin();
        if let Some(url) = &self.env_db {
            c.env("DATABASE_URL", url);
        }
        c.args(&self.args).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        run(self.cmd(args), None)
    }

    fn run_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        run(self.cmd(args), Some(input))
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(&self.run(args))
    }

    fn count(&self) -> u64 {
        json_of(&self.ok(&["stats", "--json"]))["storage"]["documents"].as_u64().unwrap()
    }

    fn export(&self, extra: &[&str]) -> Vec<Value> {
        self.ok(&[&["export"], extra].concat()).lines().map(json_of).collect()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(schema) = &self.schema {
            let _ = Command::new("psql")
                .args([&database_url(), "-qc", &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")])
                .output();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A file in its own temporary directory, removed on drop.
struct TmpFile(PathBuf);

impl TmpFile {
    fn to_str(&self) -> Option<&str> {
        self.0.to_str()
    }
}

impl AsRef<std::ffi::OsStr> for TmpFile {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn tmp_file(name: &str, contents: &[u8]) -> TmpFile {
    let dir = std::env::temp_dir().join(unique("mkcli_files"));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    TmpFile(p)
}

fn doc_line(i: usize) -> String {
    let color = ["red", "blue", "green"][i % 3];
    let thing = ["lamp", "chair", "kettle", "bike"][i % 4];
    let source = ["catalog", "help"][i % 2];
    json!({
        "title": format!("Listing {i}"),
        "content": format!("Item number {i}: a {color} {thing} in good condition"),
        "source": source,
        "metadata": {"n": i, "even": i.is_multiple_of(2)},
        "key": format!("k{i}"),
    })
    .to_string()
}

/// `n` JSONL lines; line `bad` (1-based) has empty content.
fn jsonl(n: usize, bad: Option<usize>) -> String {
    let mut s = String::new();
    for i in 1..=n {
        if Some(i) == bad {
            s.push_str(&json!({"title": "Broken", "content": "", "key": format!("k{i}")}).to_string());
        } else {
            s.push_str(&doc_line(i));
        }
        s.push('\n');
    }
    s
}

/// The default embedder selection and the local model (tests/cli/model.rs).
#[cfg(feature = "local")]
#[path = "cli/model.rs"]
mod model;

/// The CLI next to the HTTP service on one embedded file (tests/cli/shared.rs).
#[path = "cli/shared.rs"]
mod shared;

/// Tests that need no store at all.
mod offline {
    use super::*;

    #[test]
    fn usage_errors_exit_2() {
        for args in [
            vec!["frobnicate"],
            vec!["search"],
            vec!["search", "x", "-k", "many"],
            vec!["search", "x", "-k", "0"],
            vec!["similar", "1", "--top", "1001"],
            vec!["create", "--title", "t", "--content", "c", "--meta", "novalue"],
            vec!["import", "f.jsonl", "--format", "xml"],
            vec!["completions", "tcsh"],
        ] {
            let o = run(
                {
                    let mut c = bin();
                    c.args(&args);
                    c
                },
                None,
            );
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
            assert!(stderr(&o).contains("error:"), "{args:?}: {}", stderr(&o));
        }
    }

    #[test]
    fn completions_need_no_store() {
        for (shell, marker) in
            [("bash", "_marketking"), ("zsh", "#compdef marketking"), ("fish", "complete -c marketking")]
        {
            let mut c = bin();
            c.args(["--db-path", "/nonexistent/dir/x.db", "completions", shell]);
            let out = ok(&run(c, None));
            assert!(out.contains(marker), "{shell}: {}", &out[..out.len().min(300)]);
            assert!(out.contains("import"), "{shell} completes subcommands");
        }
    }

    #[test]
    fn unreachable_database_is_one_error_line() {
        let mut c = bin();
        c.args(["--database-url", "postgres://nobody@127.0.0.1:1/none", "stats"]);
        let line = fails(&run(c, None));
        assert!(line.contains("cannot open PostgreSQL table"), "{line}");
        assert!(!line.contains("nobody@"), "no credentials in errors: {line}");
    }

    #[test]
    fn help_lists_commands_and_global_flags() {
        let mut c = bin();
        c.arg("--help");
        let out = ok(&run(c, None));
        for word in ["demo", "import", "export", "search", "similar", "index", "migrate", "--database-url", "--table"] {
            assert!(out.contains(word), "{word} missing from help");
        }
    }
}

/// Against PostgreSQL.
mod pg {
    use super::*;

    /// `marketking tune --target 0.95` on a generated store whose default ef_search is known to
    /// miss the target (uniform random directions, a sparse HNSW graph): it keeps a value that
    /// meets it, and a later process searching with the kept value measures the target reached.
    #[test]
    fn tune_keeps_an_ef_search_that_reaches_the_target() {
        let s = Store::pg();
        let with_vectors = |args: &[&str]| {
            let mut c = s.cmd(args);
            c.env("MARKETKING_EMBEDDER", "none")
                .env("MARKETKING_EMBEDDING_MODEL", "random-64")
                .env("MARKETKING_EMBEDDING_DIMENSIONS", "64");
            run(c, None)
        };
        // A small xorshift generator: the same 5,000 unit-free random vectors on every run.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        let mut file = String::new();
        for i in 0..5000 {
            let v: Vec<f64> = (0..64).map(|_| next()).collect();
            file.push_str(&json!({"title": format!("doc {i}"), "content": "body", "embedding": v}).to_string());
            file.push('\n');
        }
        let path = tmp_file("random.jsonl", file.as_bytes());
        ok(&with_vectors(&["--quiet", "import", path.to_str().unwrap()]));
        // No index yet: nothing to tune, said by field.
        let line = fails(&with_vectors(&["tune"]));
        assert!(line.contains("index"), "{line}");
        ok(&with_vectors(&["index", "create", "--m", "4", "--ef-construction", "8"]));

        let dry = json_of(&ok(&with_vectors(&["tune", "--target", "0.95", "--queries", "100", "--dry-run", "--json"])));
        assert_eq!(dry["before"]["value"], 100);
        assert!(dry["before"]["recall"].as_f64().unwrap() < 0.95, "the default must miss the target: {dry}");
        assert_eq!(dry["applied"], false);

        let text = ok(&with_vectors(&["tune", "--target", "0.95", "--queries", "100"]));
        assert!(text.contains("<- chosen") && text.contains("kept with the index"), "{text}");
        let stats = json_of(&ok(&with_vectors(&["stats", "--json"])));
        let kept = stats["storage"]["index"]["tuned"]["ef_search"].as_u64().expect("a kept ef_search");
        assert!(kept > 100, "{stats}");

        // A new process measures with what searches now use: the kept value, at the target.
        let again =
            json_of(&ok(&with_vectors(&["tune", "--target", "0.95", "--queries", "100", "--dry-run", "--json"])));
        assert_eq!(again["before"]["value"], kept);
        assert!(again["before"]["recall"].as_f64().unwrap() >= 0.95, "{again}");
        // Out-of-range options are refused by name.
        let line = fails(&with_vectors(&["tune", "--target", "1.5"]));
        assert!(line.contains("target"), "{line}");
    }

    /// `search --json` prints exactly what the HTTP service answers to the same search on the
    /// same store: one result type, one shape.
    #[test]
    fn search_json_is_the_http_answer() {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let s = Store::pg();
        let file = tmp_file("shape.jsonl", jsonl(30, None).as_bytes());
        s.ok(&["import", file.to_str().unwrap()]);
        let cli = json_of(&s.ok(&["search", "blue chair", "-k", "4", "--json"]));

        let rt = tokio::runtime::Runtime::new().unwrap();
        let http: Value = rt.block_on(async {
            let table = format!("{}.docs", s.schema.as_deref().unwrap());
            let store = marketking_core::VectorStore::builder()
                .database_url(database_url())
                .table(table)
                .cache(marketking_core::NoCache)
                .build()
                .await
                .unwrap();
            let config = marketking_http::HttpConfig { rate_limit: 0, ..Default::default() };
            let app = marketking_http::app(marketking_http::AppState::new(store, config));
            let req = axum::http::Request::post("/v1/search")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(r#"{"query": "blue chair", "k": 4}"#))
                .unwrap();
            let resp = app.oneshot(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
        });
        assert_eq!(cli["hits"].as_array().map(Vec::len), Some(4));
        assert_eq!(cli, http);
    }

    #[test]
    fn create_get_delete() {
        let s = Store::pg();
        let id = s
            .ok(&[
                "create",
                "--title",
                "Red kettle",
                "--content",
                "A 1.7 litre kettle",
                "--source",
                "catalog",
                "--meta",
                "price=24.5",
                "--meta",
                "color=red",
                "--meta",
                "in_stock=true",
                "--key",
                "kettle-1",
            ])
            .trim()
            .to_string();
        let id_num: i64 = id.parse().expect("create prints the id");
        let doc = json_of(&s.ok(&["get", &id, "--json"]));
        assert_eq!(doc["id"], json!(id_num));
        assert_eq!(doc["title"], "Red kettle");
        assert_eq!(doc["source"], "catalog");
        assert_eq!(doc["key"], "kettle-1");
        assert_eq!(doc["metadata"], json!({"price": 24.5, "color": "red", "in_stock": true}));
        assert!(doc["created_at"].is_string());

        let human = s.ok(&["get", &id]);
        assert!(human.contains("title:      Red kettle") && human.contains("A 1.7 litre kettle"), "{human}");

        // Content from stdin.
        let id2 = ok(&s.run_stdin(&["create", "--title", "From stdin", "--content", "-"], b"piped body\n"));
        let doc2 = json_of(&s.ok(&["get", id2.trim(), "--json"]));
        assert_eq!(doc2["content"], "piped body\n");
        assert_eq!(doc2["metadata"], json!({}));

        assert_eq!(s.ok(&["delete", &id]).trim(), format!("deleted {id}"));
        let line = not_found(&s.run(&["get", &id]));
        assert!(line.contains(&format!("document {id} not found")), "{line}");
        let line = not_found(&s.run(&["delete", &id]));
        assert!(line.contains("not found"), "{line}");
        // Invalid input is a runtime error naming the field.
        let long = "x".repeat(300);
        let line = fails(&s.run(&["create", "--title", &long, "--content", "c"]));
        assert!(line.contains("title") && line.contains("255"), "{line}");
        assert_eq!(s.count(), 1);
    }

    #[test]
    fn search_similar_and_json_shapes() {
        let s = Store::pg();
        let file = tmp_file("docs.jsonl", jsonl(40, None).as_bytes());
        s.ok(&["import", file.to_str().unwrap()]);

        let out = json_of(&s.ok(&["search", "blue chair", "-k", "5", "--json"]));
        let results = out["hits"].as_array().unwrap();
        assert_eq!(results.len(), 5);
        // Hybrid by default: each hit has its cosine similarity (`vector`) and, when the text leg
        // found it, its text rank and score.
        let mut keys: Vec<&str> = results[0].as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["document", "score", "text", "vector"]);
        assert!(results.iter().all(|h| h["vector"]["score"].is_number()));
        let vector = json_of(&s.ok(&["search", "blue chair", "-k", "5", "--mode", "vector", "--json"]));
        let mut keys: Vec<&str> = vector["hits"][0].as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["document", "score"]);
        let mut keys: Vec<&str> = results[0]["document"].as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["content", "created_at", "id", "key", "metadata", "source", "title", "updated_at"]);
        let scores: Vec<f64> = results.iter().map(|r| r["score"].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "best first: {scores:?}");
        assert!(results[0]["document"]["content"].as_str().unwrap().contains("blue chair"), "{}", results[0]);

        // Filters: source and metadata (JSON-typed values).
        let out = json_of(&s.ok(&["search", "lamp", "-k", "50", "--source", "help", "--json"]));
        let r = out["hits"].as_array().unwrap();
        assert_eq!(r.len(), 20);
        assert!(r.iter().all(|h| h["document"]["source"] == "help"));
        let out = json_of(&s.ok(&["search", "lamp", "--meta", "n=7", "--meta", "even=false", "--json"]));
        assert_eq!(out["hits"].as_array().unwrap().len(), 1);
        assert_eq!(out["hits"][0]["document"]["key"], "k7");
        let out = json_of(&s.ok(&["search", "lamp", "--min-score", "0.999", "--json"]));
        assert_eq!(out, json!({"hits": []}));
        assert_eq!(s.ok(&["search", "lamp", "--min-score", "0.999"]).trim(), "no results");

        // Human output: header, rank, 3-decimal score, title, source, snippet.
        let human = s.ok(&["search", "green kettle", "-k", "3", "--mode", "vector"]);
        let lines: Vec<&str> = human.lines().collect();
        assert_eq!(lines.len(), 1 + 3 * 2, "{human}");
        assert!(lines[0].contains("score") && lines[0].contains("title") && lines[0].contains("source"));
        let first = lines[1].split_whitespace().collect::<Vec<_>>();
        assert_eq!(first[0], "1");
        assert!(first[1].len() == 5 && first[1].contains('.'), "3 decimals: {}", lines[1]);
        assert!(lines[1].contains("Listing") && (lines[1].contains("catalog") || lines[1].contains("help")));
        assert!(lines[2].trim_start().starts_with("Item number"), "{}", lines[2]);

        // Hybrid (the default) shows the fused score and the cosine similarity.
        let human = s.ok(&["search", "green kettle", "-k", "3"]);
        let lines: Vec<&str> = human.lines().collect();
        assert!(lines[0].contains("fused") && lines[0].contains("cosine"), "{human}");
        assert_eq!(lines.len(), 1 + 3 * 2, "{human}");
        // Text mode, MMR and fusion flags; bad values name the field.
        let text = json_of(&s.ok(&["search", "green kettle", "-k", "3", "--mode", "text", "--json"]));
        assert!(text["hits"][0]["document"]["content"].as_str().unwrap().contains("green kettle"), "{text}");
        let mmr = json_of(&s.ok(&["search", "green kettle", "-k", "3", "--mmr", "0.5", "--json"]));
        assert_eq!(mmr["hits"].as_array().unwrap().len(), 3);
        let line = fails(&s.run(&["search", "x", "--mmr", "2"]));
        assert!(line.contains("mmr.lambda"), "{line}");
        let line = fails(&s.run(&["search", "x", "--rrf-k", "0"]));
        assert!(line.contains("fusion.rrf_k"), "{line}");

        // Similar excludes the document itself.
        let id = results[0]["document"]["id"].as_i64().unwrap().to_string();
        let sim = json_of(&s.ok(&["similar", &id, "-k", "3", "--json"]));
        let sim = sim["hits"].as_array().unwrap();
        assert_eq!(sim.len(), 3);
        assert!(sim.iter().all(|h| h["document"]["id"] != results[0]["document"]["id"]));
        assert!(s.ok(&["similar", &id, "-k", "2"]).contains("Listing"));
        let line = not_found(&s.run(&["similar", "999999999"]));
        assert!(line.contains("not found"), "{line}");
        // `-k 0` is a usage error (exit 2): `offline::usage_errors_exit_2`.
    }

    #[test]
    fn stats_index_and_migrate() {
        let s = Store::pg();
        let out = s.ok(&["migrate"]);
        assert!(out.starts_with("ok: postgres store") && out.contains("0 documents"), "{out}");
        let file = tmp_file("docs.jsonl", jsonl(30, None).as_bytes());
        s.ok(&["import", file.to_str().unwrap(), "--quiet"]);

        let stats = json_of(&s.ok(&["stats", "--json"]));
        assert_eq!(stats["storage"]["backend"], "postgres");
        assert_eq!(stats["storage"]["documents"], 30);
        assert_eq!(stats["dimensions"], 1536);
        assert!(stats["storage"]["index"].is_null());
        let human = s.ok(&["stats"]);
        assert!(human.contains("documents:  30") && human.contains("catalog") && human.contains("index:      none"));

        let out = s.ok(&["index", "create", "--kind", "hnsw", "--m", "8", "--ef-construction", "32"]);
        assert!(out.contains("created index") && out.contains("m=8"), "{out}");
        let stats = json_of(&s.ok(&["stats", "--json"]));
        assert_eq!(stats["storage"]["index"]["kind"], json!({"kind": "hnsw", "m": 8, "ef_construction": 32}));
        assert!(s.ok(&["index", "rebuild"]).contains("rebuilt index"));
        let out = s.ok(&["index", "create", "--kind", "ivfflat", "--lists", "2", "--concurrently"]);
        assert!(out.contains("ivfflat (lists=2)"), "{out}");
        // Searching still works through the index.
        let hits = json_of(&s.ok(&["search", "red lamp", "-k", "3", "--json"]));
        assert_eq!(hits["hits"].as_array().unwrap().len(), 3);
        let out = s.ok(&["index", "create", "--quantization", "binary"]);
        assert!(out.contains("hnsw (m=16, ef_construction=64), quantization binary"), "{out}");
        let stats = json_of(&s.ok(&["stats", "--json"]));
        assert_eq!(stats["storage"]["index"]["quantization"], "binary");
        let plan = s.ok(&["search", "red lamp", "--mode", "vector", "--oversample", "8", "--explain"]);
        // (30 rows: the planner scans them; the quantized order and the exact re-rank are there.)
        assert!(plan.contains("binary_quantize") && plan.contains("<~>") && plan.contains("<=>"), "{plan}");
        let hits = json_of(&s.ok(&["search", "red lamp", "-k", "3", "--oversample", "8", "--json"]));
        assert_eq!(hits["hits"].as_array().unwrap().len(), 3);
        let line = fails(&s.run(&["search", "red lamp", "--oversample", "0"]));
        assert!(line.contains("oversample"), "{line}");
        assert_eq!(s.run(&["index", "create", "--quantization", "quarter"]).status.code(), Some(2));
        assert_eq!(s.ok(&["index", "drop"]).trim(), "dropped the vector index");
        assert_eq!(s.ok(&["index", "drop"]).trim(), "there was no vector index");
        let line = fails(&s.run(&["index", "rebuild"]));
        assert!(line.contains("no vector index"), "{line}");
        // Bad parameter combinations are usage errors.
        assert_eq!(s.run(&["index", "create", "--kind", "hnsw", "--lists", "3"]).status.code(), Some(2));
        assert_eq!(s.run(&["index", "create", "--kind", "ivfflat", "--m", "3"]).status.code(), Some(2));
        let line = fails(&s.run(&["index", "create", "--m", "1"]));
        assert!(line.contains("m"), "{line}");
    }

    /// The issue's acceptance case: a bad line at 5,001 of 10,000.
    #[test]
    fn import_stops_at_bad_line_or_skips_it_and_is_idempotent() {
        let file = tmp_file("big.jsonl", jsonl(10_000, Some(5001)).as_bytes());
        let path = file.to_str().unwrap();

        let s = Store::pg();
        let line = fails(&s.run(&["import", path]));
        assert!(line.contains(&format!("{path}:5001: content: must not be empty")), "{line}");
        assert!(line.contains("5000 rows committed"), "{line}");
        assert_eq!(s.count(), 5000, "nothing past the last committed batch");

        // With a batch boundary inside: the batch holding line 5001 (4801..) is not written.
        let s2 = Store::pg();
        let line = fails(&s2.run(&["import", path, "--batch-size", "300"]));
        assert!(line.contains(":5001: content:") && line.contains("4800 rows committed"), "{line}");
        assert_eq!(s2.count(), 4800);
        drop(s2);

        let s3 = Store::pg();
        let o = s3.run(&["import", path, "--skip-invalid"]);
        let out = ok(&o);
        assert!(stderr(&o).contains(&format!("{path}:5001: content: must not be empty")), "{}", stderr(&o));
        assert!(out.contains("read 10000, created 9999, updated 0, unchanged 0, skipped 1"), "summary: {out}");
        assert!(out.contains("docs/s"), "{out}");
        assert_eq!(s3.count(), 9999);
        // Re-running is idempotent: every keyed row is unchanged.
        let out = s3.ok(&["import", path, "--skip-invalid"]);
        assert!(out.contains("created 0, updated 0, unchanged 9999, skipped 1"), "{out}");
        assert_eq!(s3.count(), 9999);
    }

    #[test]
    fn import_reports_each_kind_of_bad_line() {
        let mut text = Vec::new();
        text.extend_from_slice(format!("{}\n", doc_line(1)).as_bytes());
        text.extend_from_slice(b"{not json\n");
        text.extend_from_slice(b"{\"title\":\"no content\"}\n");
        text.extend_from_slice(b"{\"title\":\"bad \xff bytes\",\"content\":\"c\"}\n");
        text.extend_from_slice(b"{\"title\":\"short vector\",\"content\":\"c\",\"embedding\":[0.1,0.2]}\n");
        text.extend_from_slice(format!("{{\"title\":\"{}\",\"content\":\"c\"}}\n", "t".repeat(256)).as_bytes());
        text.extend_from_slice(b"\n");
        text.extend_from_slice(format!("{}\n", doc_line(2)).as_bytes());
        let file = tmp_file("bad.jsonl", &text);
        let path = file.to_str().unwrap();
        let s = Store::pg();
        let o = s.run(&["import", path, "--skip-invalid"]);
        let out = ok(&o);
        let err = stderr(&o);
        for expected in [
            format!("{path}:2: json: "),
            format!("{path}:3: content: missing"),
            format!("{path}:4: line: invalid UTF-8"),
            format!("{path}:5: embedding: expected 1536 dimensions, got 2"),
            format!("{path}:6: title: must be at most 255 characters"),
        ] {
            assert!(err.contains(&expected), "{expected} not in {err}");
        }
        assert!(out.contains("read 7, created 2, updated 0, unchanged 0, skipped 5"), "{out}");
        // Without --skip-invalid the first bad line stops everything (same batch as line 1).
        let s2 = Store::pg();
        let line = fails(&s2.run(&["import", path]));
        assert!(line.contains(&format!("{path}:2: json:")) && line.contains("0 rows committed"), "{line}");
        assert_eq!(s2.count(), 0);
        let line = fails(&s2.run(&["import", "/nonexistent/file.jsonl"]));
        assert!(line.contains("cannot open /nonexistent/file.jsonl"), "{line}");
    }

    #[test]
    fn csv_and_stdin_import() {
        let s = Store::pg();
        let csv = "title,content,source,key,metadata\n\
                   Blue lamp,\"A lamp, blue\",catalog,l1,\"{\"\"price\"\": 10}\"\n\
                   Help: returns,Send it back within 30 days,help,,\n\
                   Empty,,,,\n";
        let file = tmp_file("docs.csv", csv.as_bytes());
        let o = s.run(&["import", file.to_str().unwrap(), "--skip-invalid"]);
        let out = ok(&o);
        assert!(out.contains("read 3, created 2") && out.contains("skipped 1"), "{out}");
        assert!(stderr(&o).contains("docs.csv:4: content: must not be empty"), "{}", stderr(&o));
        let hits = json_of(&s.ok(&["search", "blue lamp", "-k", "1", "--json"]));
        assert_eq!(hits["hits"][0]["document"]["metadata"], json!({"price": 10}));
        assert_eq!(hits["hits"][0]["document"]["key"], "l1");

        let o = s.run_stdin(&["import", "-"], jsonl(5, None).as_bytes());
        assert!(ok(&o).contains("imported -: read 5, created 5"), "{}", stdout(&o));
        // The same key twice in one batch: the later line wins.
        let dup = b"{\"title\":\"v1\",\"content\":\"first\",\"key\":\"dup\"}\n{\"title\":\"v2\",\"content\":\"second\",\"key\":\"dup\"}\n";
        let out = ok(&s.run_stdin(&["import", "-"], dup));
        assert!(out.contains("read 2, created 1, updated 1"), "{out}");
        let rows = s.export(&[]);
        let d: Vec<&Value> = rows.iter().filter(|r| r["key"] == "dup").collect();
        assert_eq!((d.len(), d[0]["content"].as_str()), (1, Some("second")));
        let o = s.run_stdin(&["import", "-", "--format", "csv", "--quiet"], b"title,content\nA,b\n");
        assert_eq!(ok(&o), "", "--quiet prints nothing");
        assert_eq!(s.count(), 9);
    }

    fn strip(rows: &[Value]) -> Vec<Value> {
        rows.iter()
            .map(|r| {
                let mut r = r.clone();
                let o = r.as_object_mut().unwrap();
                o.remove("id");
                o.remove("created_at");
                r
            })
            .collect()
    }

    #[test]
    fn export_import_round_trip() {
        let a = Store::pg();
        a.ok(&["demo", "--quiet"]);
        a.ok(&["create", "--title", "No key", "--content", "keyless doc", "--meta", "x=[1,2]"]);
        let rows = a.export(&[]);
        assert_eq!(rows.len(), 248);
        let first = rows[0].as_object().unwrap();
        for k in ["id", "title", "content", "source", "metadata", "key", "created_at"] {
            assert!(first.contains_key(k), "{k} in export");
        }
        assert!(!first.contains_key("embedding"));

        // Export to a file, import into a fresh store: same documents.
        let dir = std::env::temp_dir().join(unique("mkcli_export"));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("export.jsonl");
        let out = a.ok(&["export", f.to_str().unwrap()]);
        assert!(out.contains("exported 248 documents"), "{out}");
        let b = Store::pg();
        assert!(b.ok(&["import", f.to_str().unwrap()]).contains("created 248"));
        assert_eq!(strip(&b.export(&[])), strip(&rows));

        // With embeddings: identical vectors (not re-embedded).
        let with = a.export(&["--with-embeddings"]);
        assert_eq!(with[0]["embedding"].as_array().unwrap().len(), 1536);
        let f2 = dir.join("with.jsonl");
        a.ok(&["export", f2.to_str().unwrap(), "--with-embeddings"]);
        let c = Store::pg();
        c.ok(&["import", f2.to_str().unwrap()]);
        let back = c.export(&["--with-embeddings"]);
        assert_eq!(strip(&back), strip(&with));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn demo_loads_once_and_prints_results() {
        let s = Store::pg();
        let out = s.ok(&["demo"]);
        assert!(out.contains("loaded 247 demo documents"), "{out}");
        assert!(out.contains("$ marketking search \"waterproof boots for hiking\""), "{out}");
        assert!(out.to_lowercase().contains("hiking boots"), "{out}");
        assert!(out.contains("How do I return an item?") || out.contains("Exchanging"), "help hits: {out}");
        assert!(out.contains("0."), "scores printed: {out}");
        let again = s.ok(&["demo"]);
        assert!(again.contains("already holds 247 documents"), "{again}");
        assert_eq!(s.count(), 247);
    }

    #[test]
    fn flags_win_over_environment_and_redis_cache_works() {
        let s = Store::pg();
        s.ok(&["create", "--title", "T", "--content", "flag table"]);
        // MARKETKING_TABLE in the environment loses to --table.
        let mut c = s.cmd(&["stats", "--json"]);
        c.env("MARKETKING_TABLE", "should_not_be_used");
        let stats = json_of(&ok(&run(c, None)));
        assert_eq!(stats["storage"]["documents"], 1);
        assert!(stats["storage"]["location"].as_str().unwrap().contains("docs"));

        let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
        for _ in 0..2 {
            let out = json_of(&s.ok(&["--redis-url", &redis, "search", "flag", "--json"]));
            assert_eq!(out["hits"][0]["document"]["content"], "flag table");
        }
        let stats = json_of(&s.ok(&["--redis-url", &redis, "stats", "--json"]));
        assert_eq!(stats["cache"]["kind"], "redis", "{stats}");
    }

    #[test]
    fn verbose_logs_to_stderr_only() {
        let s = Store::pg();
        // The second open finds the table: its `IF NOT EXISTS` statements raise NOTICEs on the
        // server, which never reach the log.
        for _ in 0..2 {
            let o = s.run(&["--verbose", "stats", "--json"]);
            let out = ok(&o);
            json_of(&out);
            let err = stderr(&o);
            assert!(err.contains("opening store"), "{err}");
            // stderr is a pipe here: no colour codes.
            assert!(!err.contains('\u{1b}'), "escape codes in a piped log: {err:?}");
            assert!(!err.contains("NOTICE"), "server notices in the log: {err}");
        }
    }
}

/// Against the embedded store (a temporary `--db-path`). These need the embedded backend; in a
/// tree where it is still a stub they fail at open.
mod embedded {
    use super::*;

    #[test]
    fn create_search_get_stats() {
        let s = Store::embedded();
        let id = s.ok(&["create", "--title", "Blue lamp", "--content", "A blue desk lamp", "--meta", "price=10"]);
        s.ok(&["create", "--title", "Red chair", "--content", "A red wooden chair"]);
        let hits = json_of(&s.ok(&["search", "blue lamp", "-k", "1", "--json"]));
        assert_eq!(hits["hits"][0]["document"]["id"].to_string(), id.trim());
        let hits = json_of(&s.ok(&["search", "lamp chair", "--top", "2", "--json"]));
        assert_eq!(hits["hits"].as_array().unwrap().len(), 2, "--top is -k: {hits}");
        let doc = json_of(&s.ok(&["get", id.trim(), "--json"]));
        assert_eq!(doc["metadata"], json!({"price": 10}));
        let stats = json_of(&s.ok(&["stats", "--json"]));
        assert_eq!(stats["storage"]["backend"], "embedded");
        assert_eq!(stats["storage"]["documents"], 2);
        assert!(Path::new(&s.args[1]).exists());
    }

    #[test]
    fn import_export_round_trip_and_demo() {
        let s = Store::embedded();
        let out = s.ok(&["demo"]);
        assert!(out.contains("loaded 247 demo documents"), "{out}");
        let rows = s.export(&["--with-embeddings"]);
        assert_eq!(rows.len(), 247);
        let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
        let t = Store::embedded();
        assert!(ok(&t.run_stdin(&["import", "-"], text.as_bytes())).contains("created 247"));
        assert_eq!(t.export(&["--with-embeddings"]).len(), 247);
        // Re-importing the same rows with their embeddings is a no-op: the stored vectors are
        // compared, every keyed row is unchanged, nothing is duplicated.
        assert!(ok(&t.run_stdin(&["import", "-"], text.as_bytes())).contains("created 0, updated 0, unchanged 247"));
        assert_eq!(t.count(), 247);
        // Without embeddings, a re-import is a no-op: every keyed row is unchanged.
        let plain: String = s.export(&[]).iter().map(|r| format!("{r}\n")).collect();
        assert!(ok(&t.run_stdin(&["import", "-"], plain.as_bytes())).contains("created 0, updated 0, unchanged 247"));
    }

    #[test]
    fn db_path_flag_wins_over_database_url_in_environment() {
        let s = Store::embedded();
        let mut c = s.cmd(&["stats", "--json"]);
        c.env("DATABASE_URL", database_url());
        assert_eq!(json_of(&ok(&run(c, None)))["storage"]["backend"], "embedded");
    }

    #[test]
    fn index_commands_build_the_embedded_stores_graph() {
        let s = Store::embedded();
        let out = s.ok(&["index", "create", "--kind", "hnsw", "--m", "8"]);
        assert!(out.contains("hnsw (m=8, ef_construction=64)"), "{out}");
        let line = fails(&s.run(&["index", "create", "--kind", "ivfflat"]));
        assert!(line.contains("IVFFlat"), "{line}");
        assert!(s.ok(&["index", "rebuild"]).contains("rebuilt index"));
        assert!(s.ok(&["index", "drop"]).contains("dropped the vector index"));
        assert!(s.ok(&["index", "drop"]).contains("there was no vector index"));
        let line = fails(&s.run(&["index", "rebuild"]));
        assert!(line.contains("create one first"), "{line}");
        assert!(s.ok(&["migrate"]).starts_with("ok: embedded store"));
    }
}

/// The optional `marketking.toml` (lowest priority).
mod config_file {
    use super::*;

    #[test]
    fn file_settings_apply_below_flags_and_environment() {
        let s = Store::pg();
        s.ok(&["create", "--title", "From file", "--content", "configured by marketking.toml"]);
        let table = s.args[1].clone();
        let cfg = tmp_file("marketking.toml", format!("# test\ntable = \"{table}\"  # the table\n").as_bytes());
        // No --table flag: the file names the table.
        let mut c = bin();
        c.env("DATABASE_URL", database_url()).env("MARKETKING_CONFIG", &cfg);
        c.args(["stats", "--json"]);
        assert_eq!(json_of(&ok(&run(c, None)))["storage"]["documents"], 1);
        // The flag wins over the file.
        let other = Store::pg();
        let mut c = other.cmd(&["stats", "--json"]);
        c.env("MARKETKING_CONFIG", &cfg);
        assert_eq!(json_of(&ok(&run(c, None)))["storage"]["documents"], 0);
        // A broken file is a one-line error naming the line.
        let bad = tmp_file("marketking.toml", b"tabel = \"x\"\n");
        let mut c = bin();
        c.env("MARKETKING_CONFIG", &bad).args(["stats"]);
        let line = fails(&run(c, None));
        assert!(line.contains("marketking.toml:1: unknown field `tabel`"), "{line}");
    }

    #[test]
    fn closed_stdout_is_not_an_error() {
        let s = Store::pg();
        s.ok(&["demo", "--quiet"]);
        let mut c = s.cmd(&["export"]);
        c.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = c.spawn().unwrap();
        drop(child.stdout.take()); // like `| head -0`
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
}

/// `--filter` on search, count and delete, on both backends.
mod filters {
    use super::*;

    fn check(s: Store) {
        for (title, price, tag) in [("Kettle", "24.5", "sale"), ("Teapot", "120", "new"), ("Mug", "\"8\"", "sale")] {
            s.ok(&[
                "create",
                "--title",
                title,
                "--content",
                "kitchen item",
                "--meta",
                &format!("price={price}"),
                "--meta",
                &format!("tag={tag}"),
            ]);
        }
        let hits = json_of(&s.ok(&["search", "kitchen", "--filter", r#"{"price": {"$lt": 100}}"#, "--json"]));
        let titles: Vec<&str> =
            hits["hits"].as_array().unwrap().iter().map(|h| h["document"]["title"].as_str().unwrap()).collect();
        assert_eq!(titles, ["Kettle"], "numbers never equal strings");
        assert_eq!(s.ok(&["count", "--filter", r#"{"tag": "sale"}"#]).trim(), "2");
        assert_eq!(json_of(&s.ok(&["count", "--json"])), json!({"count": 3}));
        // A bad filter: exit 1, one line naming the path.
        let line = fails(&s.run(&[
            "search",
            "kitchen",
            "--filter",
            r#"{"$and": [{"tag": "sale"}, {"price": {"$lt": [1]}}]}"#,
        ]));
        assert!(line.contains("filter.$and[1].price.$lt"), "{line}");
        let line = fails(&s.run(&["count", "--filter", "{price < 100}"]));
        assert!(line.contains("not valid JSON"), "{line}");
        // Delete asks for confirmation (stdin is not a terminal here: refused), --yes deletes.
        let line = fails(&s.run(&["delete", "--filter", r#"{"tag": "sale"}"#]));
        assert!(line.contains("--yes"), "{line}");
        assert_eq!(s.count(), 3);
        let line = fails(&s.run(&["delete", "--filter", "{}", "--yes"]));
        assert!(line.contains("--all"), "{line}");
        assert_eq!(s.ok(&["delete", "--filter", r#"{"tag": "sale"}"#, "--yes"]).trim(), "deleted 2 documents");
        assert_eq!(s.count(), 1);
        assert_eq!(s.ok(&["delete", "--all", "--yes"]).trim(), "deleted 1 documents");
        assert_eq!(s.count(), 0);
    }

    #[test]
    fn pg() {
        check(Store::pg());
    }

    #[test]
    fn embedded() {
        check(Store::embedded());
    }
}

/// Every public operation of `VectorStore` (read from the core's source, so a new one without a
/// command fails here) is reachable from the CLI: each is run against PostgreSQL, the backend
/// where every operation works, and an export is restored exactly with `--keep-ids`.
mod every_store_operation {
    use super::*;

    /// Operation -> the command that reaches it.
    const COMMANDS: &[(&str, &str)] = &[
        ("create", "create"),
        ("batch", "import"),
        ("upsert", "create --key"),
        ("get", "get"),
        ("get_with_embedding", "get --with-embedding"),
        ("get_by_key", "get --key"),
        ("update", "update"),
        ("delete", "delete"),
        ("delete_by_key", "delete --key"),
        ("delete_by_filter", "delete --filter"),
        ("delete_all", "delete --all"),
        ("list", "list / export"),
        ("list_page", "list"),
        ("list_stream", "export"),
        ("list_stream_with", "export --with-embeddings"),
        ("count", "count"),
        ("stats", "stats"),
        ("search", "search"),
        ("search_by_vector", "search --vector"),
        ("search_ids", "search --ids-only"),
        ("search_ids_by_vector", "search --vector --ids-only"),
        ("insert_new", "import --assume-new"),
        ("embed_missing", "import --assume-new"),
        ("find_similar", "similar"),
        ("explain_search", "search --vector --explain"),
        ("explain_query", "search --explain"),
        ("create_index", "index create"),
        ("drop_index", "index drop"),
        ("rebuild_index", "index rebuild"),
        ("analyze", "analyze"),
        ("tune_recall", "tune"),
        ("clear_tuning", "tune --clear"),
        ("ping", "ping"),
        ("ping_cache", "ping"),
        // Each chunk of a background import, run by `worker`.
        ("batch_once", "import --background + worker"),
        ("forget_checkpoints", "jobs forget"),
        // Read replicas' state is a part of `stats` (one line per replica).
        ("replication_stats", "stats"),
        // Not a command of its own: every command closes the store before it exits.
        ("close", "every command, at exit"),
    ];

    /// `pub async fn` and `pub fn list_stream*` names of `VectorStore`'s impl blocks.
    fn store_operations() -> Vec<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../marketking-core/src/store");
        let re = regex::Regex::new(r"(?m)^    pub (?:async )?fn ([a-z_]+)\(&self").unwrap();
        let mut ops = Vec::new();
        for f in std::fs::read_dir(dir).unwrap() {
            let path = f.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            if !text.contains("impl VectorStore {") {
                continue;
            }
            for c in re.captures_iter(&text) {
                let name = c[1].to_string();
                let sync_accessor = [
                    "dimensions",
                    "model",
                    "backend_kind",
                    "embedder",
                    "cache_stats",
                    "pool_stats",
                    "embedder_stats",
                    "is_read_only",
                    // Where this process's last write is: shown by `stats` (`replication`) in the
                    // SDK; a CLI command's store ends with the command.
                    "write_position",
                ];
                if !sync_accessor.contains(&name.as_str()) {
                    ops.push(name);
                }
            }
        }
        ops.sort();
        ops
    }

    #[test]
    fn has_a_command_and_runs() {
        let ops = store_operations();
        assert!(ops.len() >= 25, "{ops:?}");
        for op in &ops {
            assert!(COMMANDS.iter().any(|(o, _)| o == op), "VectorStore::{op} has no CLI command in this table");
        }
        let s = Store::pg();
        let id = s.ok(&[
            "create",
            "--title",
            "Trail shoes",
            "--content",
            "Light shoes for rocky paths",
            "--meta",
            "price=120",
        ]);
        let id = id.trim();
        s.ok(&[
            "create",
            "--title",
            "Rain jacket",
            "--content",
            "Keeps you dry",
            "--key",
            "sku-2",
            "--source",
            "catalog",
        ]);
        let lines = format!("{}\n{}\n", doc_line(1), doc_line(2));
        let file = tmp_file("more.jsonl", lines.as_bytes());
        s.ok(&["import", file.to_str().unwrap()]);
        let doc = json_of(&s.ok(&["get", id, "--with-embedding", "--json"]));
        let vector = doc["embedding"].to_string();
        assert_eq!(json_of(&s.ok(&["get", "--key", "sku-2", "--json"]))["title"], "Rain jacket");
        assert_eq!(json_of(&s.ok(&["update", id, "--title", "Trail runners", "--json"]))["title"], "Trail runners");
        let page = json_of(&s.ok(&["list", "--limit", "2", "--json"]));
        assert_eq!(page["documents"].as_array().unwrap().len(), 2);
        let after = page["next_after"].to_string();
        assert_eq!(json_of(&s.ok(&["list", "--after", &after, "--json"]))["documents"].as_array().unwrap().len(), 2);
        assert_eq!(s.ok(&["count", "--filter", r#"{"source": "catalog"}"#]).trim(), "2");
        let hits = json_of(&s.ok(&["search", "--vector", &vector, "-k", "1", "--json"]));
        assert_eq!(hits["hits"][0]["document"]["id"].to_string(), id);
        assert!(s.ok(&["search", "shoes", "--explain"]).contains("Limit"), "a PostgreSQL plan");
        assert!(s.ok(&["search", "--vector", &vector, "--explain"]).contains("Limit"));
        assert!(s.ok(&["search", "rocky", "--top-k", "1"]).contains("Trail runners"));
        let exact = json_of(&s.ok(&["search", "--vector", &vector, "-k", "3", "--exact", "--json"]));
        assert_eq!(exact, json_of(&s.ok(&["search", "--vector", &vector, "-k", "3", "--json"])));
        let ids = json_of(&s.ok(&["search", "--vector", &vector, "-k", "1", "--ids-only", "--json"]));
        assert_eq!(ids["hits"][0]["id"].to_string(), id, "{ids}");
        assert!(ids["hits"][0].get("document").is_none(), "{ids}");
        let line = s.ok(&["search", "rocky", "-k", "1", "--ids-only"]);
        assert_eq!(line.split('\t').next(), Some(id), "{line}");
        s.ok(&["similar", id, "-k", "1"]);
        s.ok(&["index", "create", "--m", "8"]);
        s.ok(&["index", "rebuild"]);
        let tuned = json_of(&s.ok(&["tune", "--target", "0.5", "--queries", "3", "--json"]));
        assert_eq!(tuned["applied"], true, "{tuned}");
        assert!(s.ok(&["tune", "--clear"]).starts_with("cleared the tuned settings"));
        s.ok(&["index", "drop"]);
        assert_eq!(s.ok(&["analyze"]).trim(), "analyzed");
        assert!(s.ok(&["ping"]).starts_with("ok: postgres"));
        s.ok(&["stats"]);

        // Backup and exact restore into an empty store.
        let exported = s.ok(&["export", "--with-embeddings"]);
        let backup = tmp_file("backup.jsonl", exported.as_bytes());
        let restored = Store::pg();
        restored.ok(&["import", "--keep-ids", backup.to_str().unwrap()]);
        assert_eq!(restored.ok(&["export", "--with-embeddings"]), exported);
        for id in exported.lines().map(|l| json_of(l)["id"].to_string()) {
            assert_eq!(restored.ok(&["get", &id, "--json"]), s.ok(&["get", &id, "--json"]));
        }
        let q = ["search", "dry jacket", "--json"];
        assert_eq!(restored.ok(&q), s.ok(&q));
        let line = fails(&restored.run(&["import", "--keep-ids", backup.to_str().unwrap()]));
        assert!(line.contains("--keep-ids restores ids into an empty store"), "{line}");
        // The fast path restores the same store: one COPY per batch, keys asserted new.
        let fast = Store::pg();
        fast.ok(&["import", "--assume-new", "--keep-ids", backup.to_str().unwrap()]);
        assert_eq!(fast.ok(&["export", "--with-embeddings"]), exported);
        let line = fails(&fast.run(&["import", "--assume-new", backup.to_str().unwrap()]));
        assert!(line.contains("already exists"), "a stored key is a conflict: {line}");
        // Lines without a vector are embedded first.
        let plain = tmp_file("plain.jsonl", format!("{}\n", doc_line(9)).as_bytes());
        let out = fast.ok(&["import", "--assume-new", plain.to_str().unwrap()]);
        assert!(out.contains("created 1"), "{out}");

        s.ok(&["delete", "--key", "sku-2"]);
        not_found(&s.run(&["get", "--key", "sku-2"]));
        s.ok(&["delete", id]);
        s.ok(&["delete", "--filter", r#"{"source": "catalog"}"#, "--yes"]);
        s.ok(&["delete", "--all", "--yes"]);
        assert_eq!(s.count(), 0);
    }

    #[test]
    fn options_are_grouped_and_the_environment_adds_no_phantom_flags() {
        let help = stdout(&run(
            {
                let mut c = bin();
                c.args(["search", "--help"]);
                c
            },
            None,
        ));
        let store = help.find("Store options:").expect("a Store options heading");
        let output = help.find("Output options:").expect("an Output options heading");
        for flag in ["--database-url", "--db-path", "--table", "--redis-url"] {
            let at = help.find(flag).unwrap();
            assert!(at > store && at < output, "{flag} under Store options:\n{help}");
        }
        let mut c = bin();
        c.env("MARKETKING_DB_PATH", "/tmp/nowhere.db").env("DATABASE_URL", "postgres://x@127.0.0.1:1/x");
        c.arg("search");
        let err = stderr(&run(c, None));
        let usage = err.lines().find(|l| l.starts_with("Usage:")).unwrap();
        assert_eq!(usage, "Usage: marketking search <QUERY>", "no flag set from the environment: {err}");
    }

    #[test]
    fn json_logs_are_one_object_per_line() {
        let s = Store::embedded();
        let o = s.run(&["--verbose", "--log-format", "json", "stats"]);
        ok(&o);
        let err = stderr(&o);
        assert!(!err.is_empty());
        for line in err.lines() {
            let v = json_of(line);
            assert!(v["level"].is_string() && v["fields"]["message"].is_string(), "{line}");
        }
    }
}

/// Background imports: `import --background`, `worker` processes (one SIGKILLed mid-job),
/// `jobs list|show|cancel`.
mod jobs {
    use super::*;

    fn redis_url() -> String {
        marketking_testkit::redis_url()
    }

    /// `n` lines: odd ones keyed, even ones without a key (only the chunk checkpoints keep
    /// those from being written twice); line `bad` is invalid.
    fn lines(n: usize, bad: usize) -> String {
        let mut s = String::new();
        for i in 1..=n {
            let line = match (i == bad, i % 2) {
                (true, _) => json!({"title": "Broken", "content": ""}),
                (false, 1) => {
                    json!({"title": format!("Doc {i}"), "content": format!("text {i} about {}", i % 13), "key": format!("k{i}")})
                }
                (false, _) => json!({"title": format!("Doc {i}"), "content": format!("text {i} about {}", i % 13)}),
            };
            s.push_str(&line.to_string());
            s.push('\n');
        }
        s
    }

    fn show(store: &Store, id: &str) -> Value {
        let mut c = store.cmd(&["jobs", "show", id, "--json"]);
        c.env("REDIS_URL", redis_url());
        json_of(&ok(&run(c, None)))
    }

    #[test]
    fn a_killed_worker_leaves_its_job_to_another_with_exact_documents() {
        let store = Store::pg();
        let n = 12_000;
        let file = tmp_file("big.jsonl", lines(n, 777).as_bytes());
        let mut c = store.cmd(&["import", file.to_str().unwrap(), "--background", "--chunk-lines", "250"]);
        c.env("REDIS_URL", redis_url());
        let out = ok(&run(c, None));
        let id = out.split_whitespace().nth(2).unwrap().to_string();
        assert!(out.contains(&format!("marketking jobs show {id}")), "{out}");

        let worker = |name: &str| {
            let mut c = store.cmd(&["worker"]);
            c.env("REDIS_URL", redis_url()).env("MARKETKING_JOB_CLAIM_AFTER_MS", "1500").env("HOSTNAME", name);
            c.stdout(Stdio::null()).stderr(Stdio::null());
            c.spawn().expect("marketking worker")
        };
        let mut first = worker("first");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while show(&store, &id)["chunks_done"].as_u64().unwrap() < 3 {
            assert!(std::time::Instant::now() < deadline, "the first worker did no chunk");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // SIGKILL: no chance to finish the chunk in hand or to say goodbye.
        first.kill().unwrap();
        first.wait().unwrap();
        let mut second = worker("second");
        let status = loop {
            let s = show(&store, &id);
            if s["state"] == "done" {
                break s;
            }
            assert!(std::time::Instant::now() < deadline, "the job did not finish: {s}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        // SIGTERM: the worker stops cleanly.
        let _ = Command::new("kill").args(["-TERM", &second.id().to_string()]).status();
        assert_eq!(second.wait().unwrap().code(), Some(0));

        assert_eq!(
            (status["total"].as_u64(), status["done"].as_u64(), status["failed"].as_u64()),
            (Some(12_000), Some(11_999), Some(1)),
            "{status}"
        );
        assert_eq!(status["errors"][0]["line"], 777);
        assert_eq!(store.count(), 11_999);
        let titles = store
            .export(&[])
            .into_iter()
            .map(|d| d["title"].as_str().unwrap().to_string())
            .collect::<std::collections::HashSet<_>>();
        assert_eq!(titles.len(), 11_999, "no line written twice, none lost");
        eprintln!("chunks taken over from the killed worker: {}", status["chunks_taken_over"]);

        // People's views of it.
        // `--redis-url` counts like REDIS_URL.
        let c = store.cmd(&["--redis-url", &redis_url(), "jobs", "list"]);
        let list = ok(&run(c, None));
        assert!(list.lines().next().unwrap().starts_with(&format!("{id}  done")), "{list}");
        let mut c = store.cmd(&["jobs", "show", &id]);
        c.env("REDIS_URL", redis_url());
        let text = ok(&run(c, None));
        assert!(text.contains("done 11999, failed 1") && text.contains("line 777: content:"), "{text}");
        let mut c = store.cmd(&["jobs", "cancel", &id, "--json"]);
        c.env("REDIS_URL", redis_url());
        assert_eq!(json_of(&ok(&run(c, None)))["state"], "done", "a finished job stays done");
        let mut c = store.cmd(&["jobs", "forget", &id]);
        c.env("REDIS_URL", redis_url());
        assert!(ok(&run(c, None)).contains("its 48 chunk checkpoint(s)"));
        let mut c = store.cmd(&["jobs", "show", "0123abcd"]);
        c.env("REDIS_URL", redis_url());
        assert!(not_found(&run(c, None)).contains("no job with id"));
    }

    #[test]
    fn background_needs_a_shared_queue_and_jsonl() {
        let store = Store::pg();
        let file = tmp_file("a.jsonl", lines(3, 0).as_bytes());
        let err = fails(&store.run(&["import", file.to_str().unwrap(), "--background"]));
        assert!(err.contains("REDIS_URL") && err.contains("MARKETKING_QUEUE_URL"), "{err}");
        let csv = tmp_file("a.csv", b"title,content\na,b\n");
        let mut c = store.cmd(&["import", csv.to_str().unwrap(), "--background"]);
        c.env("REDIS_URL", redis_url());
        assert!(fails(&run(c, None)).contains("JSONL"));
        let err = fails(&store.run(&["worker"]));
        assert!(err.contains("REDIS_URL"), "{err}");
    }
}
