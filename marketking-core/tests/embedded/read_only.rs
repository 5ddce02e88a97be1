//! Read-only stores (`VectorStoreBuilder::read_only`): reading a file that a writer store has
//! open, following its commits, refusing writes, and never creating or migrating a file.

use super::*;

async fn try_open_read_only(path: &Path) -> Result<VectorStore> {
    VectorStore::builder()
        .db_path(path)
        .read_only(true)
        .embedder(HashingEmbedder::new(64).unwrap())
        .cache(NoCache)
        .build()
        .await
}

fn ids(hits: &[marketking_core::SearchHit]) -> Vec<i64> {
    hits.iter().map(|h| h.document.id).collect()
}

/// Every file in `dir`, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// A reader opened while the writer holds the file sees the writer's later commits (inserts,
/// updates, deletes) in searches, counts and reads, and answers exactly as the writer does.
#[tokio::test]
async fn a_reader_follows_the_writers_commits() {
    let _guard = no_fork().await;
    let dir = temp_dir("ro-follow");
    let path = dir.join("x.db");
    let writer = open(&path).await;
    let lamp = writer.create(NewDocument::new("Blue lamp", "a blue desk lamp").with_source("shop")).await.unwrap();
    writer.create(NewDocument::new("Red chair", "a red wooden chair")).await.unwrap();

    let reader = try_open_read_only(&path).await.unwrap();
    assert!(reader.is_read_only() && !writer.is_read_only());
    let opts = SearchOptions::top(5);
    assert_eq!(ids(&reader.search("lamp", &opts).await.unwrap()), ids(&writer.search("lamp", &opts).await.unwrap()));
    assert_eq!(reader.count(&marketking_core::Filter::everything()).await.unwrap(), 2);

    // Commits after the reader loaded its memory index.
    let kettle = writer.create(NewDocument::new("Green kettle", "a green kettle, 1.7 litres")).await.unwrap();
    let hits = reader.search("green kettle", &SearchOptions::top(1)).await.unwrap();
    assert_eq!(ids(&hits), [kettle.id], "the reader sees a document committed after it loaded");
    writer.update(lamp.id, DocumentPatch::new().content("a kettle shaped lamp")).await.unwrap();
    writer.delete(kettle.id).await.unwrap();
    for query in ["kettle", "lamp", "chair"] {
        for opts in [SearchOptions::top(5), SearchOptions::top(5).mode(marketking_core::SearchMode::Vector)] {
            assert_eq!(
                reader.search(query, &opts).await.unwrap(),
                writer.search(query, &opts).await.unwrap(),
                "{query} {opts:?}"
            );
        }
    }
    // At a new file version the first search reads the file in one pass and the second loads
    // the memory index: both answer as the writer does, with filters and a score floor too.
    writer.create(NewDocument::new("Lamp shade", "a lamp shade").with_source("shop")).await.unwrap();
    let filtered = SearchOptions::top(5).source("shop").min_score(0.05);
    let first = reader.search("lamp", &filtered).await.unwrap();
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(first, reader.search("lamp", &filtered).await.unwrap());
    assert_eq!(first, writer.search("lamp", &filtered).await.unwrap());
    assert_eq!(reader.count(&marketking_core::Filter::everything()).await.unwrap(), 3);
    assert_eq!(reader.get(lamp.id).await.unwrap().content, "a kettle shaped lamp");
    assert!(matches!(reader.get(kettle.id).await, Err(Error::NotFound { .. })));
    assert_eq!(reader.stats().await.unwrap().storage.documents, 3);
    let similar = reader.find_similar(lamp.id, &SearchOptions::top(5)).await.unwrap();
    assert_eq!(similar, writer.find_similar(lamp.id, &SearchOptions::top(5)).await.unwrap());

    // A reader does not hold the writer's lock: a second writer is still refused, with the
    // clear message, and the file opens for writing again once the writer is gone.
    assert!(matches!(try_open(&path, 64).await, Err(Error::Locked { .. })));
    drop(writer);
    let again = open(&path).await;
    again.create(NewDocument::new("Yellow mug", "a yellow mug")).await.unwrap();
    assert_eq!(reader.count(&marketking_core::Filter::everything()).await.unwrap(), 4);
    drop(again);
    drop(reader);
    let _ = std::fs::remove_dir_all(dir);
}

/// Every write on a read-only store is `Unsupported`, naming the operation, before any work:
/// the file is unchanged.
#[tokio::test]
async fn writes_on_a_read_only_store_are_refused() {
    let _guard = no_fork().await;
    let dir = temp_dir("ro-writes");
    let path = dir.join("x.db");
    let writer = open(&path).await;
    let doc = writer.create(NewDocument::new("Blue lamp", "a blue desk lamp").with_key("lamp")).await.unwrap();
    let reader = try_open_read_only(&path).await.unwrap();
    let new = || NewDocument::new("t", "c").with_key("k");
    let patch = DocumentPatch::new().title("x");
    let filter = marketking_core::Filter::everything();
    let results: Vec<(&str, Result<()>)> = vec![
        ("create", reader.create(new()).await.map(drop)),
        ("batch", reader.batch(vec![new()]).await.map(drop)),
        ("upsert", reader.upsert(new()).await.map(drop)),
        ("update", reader.update(doc.id, patch).await.map(drop)),
        ("delete", reader.delete(doc.id).await),
        ("delete_all", reader.delete_all().await.map(drop)),
        ("delete_by_filter", reader.delete_by_filter(&filter).await.map(drop)),
        ("create_index", reader.create_index(IndexSpec::default()).await.map(drop)),
        ("drop_index", reader.drop_index().await.map(drop)),
        ("analyze", reader.analyze().await),
    ];
    for (op, result) in results {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{op}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(op) && msg.contains("read-only") && msg.contains("x.db"), "{op}: {msg}");
    }
    assert_eq!(reader.embedder_stats().texts, 0, "a refused write makes no embedder call");
    assert_eq!(writer.list(0, 10, false).await.unwrap(), vec![doc.clone()]);
    drop(writer);
    drop(reader);
    let _ = std::fs::remove_dir_all(dir);
}

/// A read-only open never creates nor migrates: a missing file is a configuration error naming
/// it (and nothing is created), an older file is `NeedsMigration` (and is left as it was), a
/// file for another model is the usual schema mismatch.
#[tokio::test]
async fn a_read_only_open_never_creates_nor_migrates() {
    let _guard = no_fork().await;
    let dir = temp_dir("ro-open");
    let missing = dir.join("missing.db");
    let err = try_open_read_only(&missing).await.unwrap_err();
    assert!(matches!(&err, Error::Config { field, .. } if field == "db_path"), "{err:?}");
    assert!(err.to_string().contains("missing.db") && err.to_string().contains("does not exist"), "{err}");
    assert!(files(&dir).is_empty(), "nothing created: {:?}", files(&dir));

    let path = dir.join("old.db");
    drop(open(&path).await);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE marketking_meta SET value = '2' WHERE key = 'schema_version'", []).unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = try_open_read_only(&path).await.unwrap_err();
    assert!(matches!(err, Error::NeedsMigration { found: 2, current: 3, .. }), "{err:?}");
    assert!(err.to_string().contains("old.db") && err.to_string().contains("read-only"), "{err}");
    // SQLite may leave its WAL side files (a read-only connection cannot remove them); the
    // database itself is byte for byte unchanged and no lock file was made.
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file is unchanged");
    assert!(!files(&dir).iter().any(|f| f.ends_with(".lock")), "no lock file: {:?}", files(&dir));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: String =
        conn.query_row("SELECT value FROM marketking_meta WHERE key = 'schema_version'", [], |r| r.get(0)).unwrap();
    assert_eq!(version, "2", "not migrated");
    drop(conn);

    let current = dir.join("current.db");
    drop(open(&current).await);
    let err = VectorStore::builder()
        .db_path(&current)
        .read_only(true)
        .embedder(HashingEmbedder::new(32).unwrap())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SchemaMismatch { stored_dimensions: 64, dimensions: 32, .. }), "{err:?}");
    let err = VectorStore::builder().database_url("postgres://nobody@127.0.0.1:1/none").read_only(true).build().await;
    assert!(matches!(err, Err(Error::Config { ref field, .. }) if field == "read_only"), "{err:?}");
    let _ = std::fs::remove_dir_all(dir);
}
