//! The default embedder selection as a user meets it: which model `stats` reports for each
//! environment, the one warning line of the fallback, `MARKETKING_EMBEDDER`, `model list`.

use super::*;

/// The installed all-MiniLM-L6-v2 (scripts/test.sh fetches it first).
fn model_dir() -> PathBuf {
    marketking_core::find_local_model()
        .unwrap()
        .map(|m| m.path)
        .expect("no local model installed: run `bash scripts/fetch-model.sh` (scripts/test.sh does)")
}

const LOCAL_ID: &str = "local:all-MiniLM-L6-v2@53aa51172d14";

/// A scratch HOME with no model anywhere, and the binary with no embedder settings.
fn clean(home: &Path) -> Command {
    let mut c = bin();
    for v in ["MARKETKING_EMBEDDER", "HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME", "MARKETKING_CACHE_DIR"] {
        c.env_remove(v);
    }
    c.env("HOME", home);
    c
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Links the model's files into `dest` (a copy of the layout, without copying 90 MB).
fn link_model(dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    let src = model_dir();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        std::os::unix::fs::symlink(&p, dest.join(p.file_name().unwrap())).unwrap();
    }
}

fn stats(mut c: Command, dir: &Path) -> Output {
    c.arg("--db-path").arg(dir.join("s.db")).arg("stats");
    run(c, None)
}

#[test]
fn no_model_falls_back_to_hashing_with_one_warning() {
    let home = scratch("nomodel");
    let o = stats(clean(&home), &home);
    let out = ok(&o);
    assert!(out.contains("marketking-hash-v1-1536"), "{out}");
    assert!(out.contains("lexical, not semantic"), "{out}");
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one warning line expected: {err}");
    assert!(lines[0].contains("WARN") && lines[0].contains("marketking model pull"), "{err}");
    // Asking for the local model when there is none is an error that says how to get one.
    let mut c = clean(&home);
    c.env("MARKETKING_EMBEDDER", "local");
    let e = fails(&stats(c, &home));
    assert!(e.contains("marketking model pull"), "{e}");
    let o = run(
        {
            let mut c = clean(&home);
            c.args(["model", "list"]);
            c
        },
        None,
    );
    assert!(ok(&o).contains("no local model installed"), "{}", stdout(&o));
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn explicit_folder_hf_cache_and_marketking_cache_are_found() {
    // MARKETKING_MODEL_DIR
    let home = scratch("explicit");
    let mut c = clean(&home);
    c.env("MARKETKING_MODEL_DIR", model_dir());
    let out = ok(&stats(c, &home));
    assert!(out.contains(LOCAL_ID) && out.contains("local model, semantic"), "{out}");
    // A MARKETKING_MODEL_DIR that holds no model is an error, not a silent fallback.
    let mut c = clean(&home);
    c.env("MARKETKING_MODEL_DIR", home.join("missing"));
    assert!(fails(&stats(c, &home)).contains("MARKETKING_MODEL_DIR"));

    // The Hugging Face cache layout under HOME.
    let hf = scratch("hf");
    link_model(&hf.join(".cache/huggingface/hub/models--sentence-transformers--all-MiniLM-L6-v2/snapshots/0123abc"));
    let out = ok(&stats(clean(&hf), &hf));
    assert!(out.contains(LOCAL_ID), "{out}");
    let list = ok(&run(
        {
            let mut c = clean(&hf);
            c.args(["model", "list"]);
            c
        },
        None,
    ));
    assert!(list.contains("sentence-transformers/all-MiniLM-L6-v2") && list.contains("Hugging Face cache"), "{list}");

    // MarketKing's own cache ($XDG_CACHE_HOME/marketking/models/NAME).
    let mk = scratch("mkcache");
    link_model(&mk.join("xdg/marketking/models/all-MiniLM-L6-v2"));
    let mut c = clean(&mk);
    c.env("XDG_CACHE_HOME", mk.join("xdg"));
    let out = ok(&stats(c, &mk));
    assert!(out.contains(LOCAL_ID), "{out}");

    // An OpenAI-compatible setting wins over an installed model.
    let mut c = clean(&mk);
    c.env("XDG_CACHE_HOME", mk.join("xdg")).env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1");
    let out = ok(&stats(c, &mk.join("openai")));
    assert!(out.contains("openai:"), "{out}");
    for d in [home, hf, mk] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn embedder_none_labels_the_store_and_refuses_text_search() {
    let home = scratch("none");
    let none = || {
        let mut c = clean(&home);
        c.env("MARKETKING_EMBEDDER", "none")
            .env("MARKETKING_EMBEDDING_MODEL", "external-minilm")
            .env("MARKETKING_EMBEDDING_DIMENSIONS", "384");
        c
    };
    let out = ok(&stats(none(), &home));
    assert!(out.contains("external-minilm (384 dimensions)"), "{out}");
    let mut c = none();
    c.arg("--db-path").arg(home.join("s.db")).args(["search", "tent"]);
    let e = fails(&run(c, None));
    assert!(e.contains("no embedder") && e.contains("external-minilm"), "{e}");
    // Without the model name, `none` cannot label the store.
    let mut c = clean(&home);
    c.env("MARKETKING_EMBEDDER", "none");
    assert!(fails(&stats(c, &home.join("x"))).contains("MARKETKING_EMBEDDING_MODEL"));
    // A model name with no embedder to use it is refused, not ignored.
    let mut c = clean(&home);
    c.env("MARKETKING_EMBEDDER", "hash").env("MARKETKING_EMBEDDING_MODEL", "all-MiniLM-L6-v2");
    assert!(fails(&stats(c, &home.join("y"))).contains("MARKETKING_EMBEDDER=none"));
    std::fs::remove_dir_all(&home).unwrap();
}

/// A local server speaking the part of the Hugging Face hub protocol `hf-hub` uses: `GET
/// /{repo}/resolve/{revision}/{file}` with a `Range` header, answered 206 with `ETag`,
/// `X-Repo-Commit` and `Content-Range`. It serves the installed model's files, with
/// `model.safetensors` replaced by `corrupt_weights` when given.
fn fake_hub(corrupt_weights: Option<Vec<u8>>) -> String {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{header, HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};

    #[derive(Clone)]
    struct Hub {
        root: PathBuf,
        weights: Option<std::sync::Arc<Vec<u8>>>,
    }
    async fn resolve(State(hub): State<Hub>, UrlPath(rest): UrlPath<String>, headers: HeaderMap) -> Response {
        let Some(file) = rest.strip_prefix("sentence-transformers/all-MiniLM-L6-v2/resolve/main/") else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let bytes = match (&hub.weights, file) {
            (Some(w), "model.safetensors") => w.as_ref().clone(),
            _ => match std::fs::read(hub.root.join(file)) {
                Ok(b) => b,
                Err(_) => return StatusCode::NOT_FOUND.into_response(),
            },
        };
        let total = bytes.len();
        let (start, end) = headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes="))
            .and_then(|v| v.split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
            .map(|(a, b)| (a.min(total), b.min(total.saturating_sub(1))))
            .unwrap_or((0, total.saturating_sub(1)));
        let body = bytes.get(start..=end).unwrap_or(&[]).to_vec();
        let etag = format!("\"{:x}-{}\"", total, file.len());
        (
            StatusCode::PARTIAL_CONTENT,
            [
                (header::ETAG.as_str(), etag),
                ("x-repo-commit", "0123456789abcdef0123456789abcdef01234567".to_string()),
                (header::CONTENT_RANGE.as_str(), format!("bytes {start}-{end}/{total}")),
            ],
            body,
        )
            .into_response()
    }
    let hub = Hub { root: model_dir(), weights: corrupt_weights.map(std::sync::Arc::new) };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route("/{*rest}", axum::routing::get(resolve)).with_state(hub);
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{addr}")
}

fn pull(home: &Path, endpoint: &str) -> Output {
    let mut c = clean(home);
    c.env("HF_ENDPOINT", endpoint).args(["model", "pull"]);
    run(c, None)
}

#[test]
fn model_pull_downloads_from_the_hub_verifies_and_is_then_the_default() {
    let home = scratch("pull");
    let o = pull(&home, &fake_hub(None));
    let out = ok(&o);
    assert!(out.contains("all-MiniLM-L6-v2 installed in") && out.contains("SHA-256 of 6 files verified"), "{out}");
    let snapshot = home.join(".cache/huggingface/hub/models--sentence-transformers--all-MiniLM-L6-v2/snapshots");
    assert!(snapshot.is_dir(), "{out}");
    // The pulled model is the default selection from now on.
    let out = ok(&stats(clean(&home), &home));
    assert!(out.contains(LOCAL_ID), "{out}");
    std::fs::remove_dir_all(&home).unwrap();

    // Weights that do not match the table are refused and removed.
    let home = scratch("pullbad");
    let mut weights = std::fs::read(model_dir().join("model.safetensors")).unwrap();
    let last = weights.len() - 1;
    weights[last] ^= 1;
    let e = fails(&pull(&home, &fake_hub(Some(weights))));
    assert!(e.contains("model.safetensors") && e.contains("refused"), "{e}");
    let out = ok(&stats(clean(&home), &home));
    assert!(out.contains("marketking-hash-"), "a refused download must not be selected: {out}");

    // A hub that cannot be reached: the error says what to do instead.
    let e = fails(&pull(&home, "http://127.0.0.1:9"));
    assert!(e.contains("scripts/fetch-model.sh") && e.contains("MARKETKING_MODEL_DIR"), "{e}");
    std::fs::remove_dir_all(&home).unwrap();
}

/// `marketking demo` with no key and an installed model: the local model runs, says so, and
/// answers by meaning, including queries that share no word with the document they find.
#[test]
fn demo_with_the_local_model_answers_by_meaning() {
    let home = scratch("demo");
    let db = home.join("demo.db");
    let mut c = clean(&home);
    c.env("MARKETKING_MODEL_DIR", model_dir()).arg("--db-path").arg(&db).arg("demo");
    let out = ok(&run(c, None));
    assert!(out.contains(&format!("embedder: {LOCAL_ID} (local model, semantic)")), "{out}");
    let tent = out.split("$ marketking search \"tent that survived the rain\"").nth(1).expect("the tent example");
    let first = tent.lines().find(|l| l.starts_with("1 ")).expect("a first hit");
    assert!(first.contains("tent"), "the tent example's first hit is not a tent: {first}");
    // Paraphrases: no word of the query is in the document found.
    for (query, want) in [
        ("shelter for a couple of campers", "Two-person tent"),
        ("footwear for jogging in the hills", "Trail running shoes"),
    ] {
        let mut c = clean(&home);
        c.env("MARKETKING_MODEL_DIR", model_dir())
            .arg("--db-path")
            .arg(&db)
            .args(["search", query, "-k", "1", "--json"]);
        let v: Value = serde_json::from_str(&ok(&run(c, None))).unwrap();
        let doc = &v["hits"][0]["document"];
        let title = doc["title"].as_str().unwrap();
        assert!(title.contains(want), "{query:?} found {title:?}");
        let text = format!("{} {}", title, doc["content"].as_str().unwrap()).to_lowercase();
        for word in query.split(' ').filter(|w| w.len() > 3) {
            assert!(!text.contains(word), "{query:?} shares {word:?} with {title:?}: not a paraphrase test");
        }
    }
    std::fs::remove_dir_all(&home).unwrap();
}
