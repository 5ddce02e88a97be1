//! Background import jobs: each chunk written once (checkpoints), the line report, workers
//! taking over a dead worker's chunk, and a queue (Redis) that stops and comes back.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use marketking_core::jobs::{ImportJobOptions, JobState, JobStatus, Jobs};
use marketking_core::{BatchOnce, Error, Filter, NewDocument, NoCache};

use crate::common::{redis_url, unique, Fixture, Kind, PgTable, TestEmbedder};
use crate::faults::Proxy;

crate::conformance!(batch_once_writes_each_checkpoint_once, import_job_in_process_reports_every_line,);

async fn batch_once_writes_each_checkpoint_once(kind: Kind) {
    let t = Fixture::new(kind);
    let emb = TestEmbedder::new(16);
    let store = t.store(emb.clone(), NoCache).await.unwrap();
    let docs = || vec![NewDocument::new("a", "one"), NewDocument::new("b", "two"), NewDocument::new("c", "three")];

    let first = store.batch_once("job:x:0", docs()).await.unwrap();
    let BatchOnce::Written(report) = &first else { panic!("first write replayed: {first:?}") };
    assert_eq!(report.created, 3);
    let calls = emb.calls();
    // The same name again writes nothing and asks the embedder nothing.
    let again = store.batch_once("job:x:0", docs()).await.unwrap();
    assert_eq!(again, BatchOnce::Replayed(BatchReport { embedded: 0, ..report.clone() }));
    assert_eq!(emb.calls(), calls);
    assert_eq!(store.count(&Filter::everything()).await.unwrap(), 3);

    // Two writers of one new name at once: one writes, the other is answered its report.
    let (a, b) = tokio::join!(store.batch_once("job:x:1", docs()), store.batch_once("job:x:1", docs()));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        [&a, &b].iter().filter(|o| matches!(o, BatchOnce::Written(_))).count(),
        1,
        "exactly one writer writes: {a:?} {b:?}"
    );
    assert_eq!(a.report().ids, b.report().ids);
    assert_eq!(store.count(&Filter::everything()).await.unwrap(), 6);

    // Forgotten checkpoints: the batch is written again.
    assert_eq!(store.forget_checkpoints("job:x:").await.unwrap(), 2);
    assert!(matches!(store.batch_once("job:x:0", docs()).await.unwrap(), BatchOnce::Written(_)));
    assert_eq!(store.count(&Filter::everything()).await.unwrap(), 9);

    // Bad names are typed errors naming the field, and write nothing.
    for bad in ["", &"n".repeat(201)] {
        let e = store.batch_once(bad, docs()).await.unwrap_err();
        assert!(matches!(e, Error::InvalidInput { ref field, .. } if field == "checkpoint"), "{e}");
    }
    let e = store.batch_once("ok", vec![NewDocument::new("", "x")]).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { ref field, .. } if field == "documents[0].title"), "{e}");
    assert_eq!(store.count(&Filter::everything()).await.unwrap(), 9);
    t.cleanup().await;
}

use marketking_core::BatchReport;

/// `n` JSONL lines; line `bad_at` entries are invalid in the ways a real file is.
fn jsonl(n: usize, prefix: &str) -> String {
    let mut out = String::new();
    for i in 1..=n {
        let line = match i {
            7 => "{not json".to_string(),
            20 => format!(r#"{{"title":"","content":"empty title {i}"}}"#),
            33 => String::new(),
            // The same key twice in one chunk: the later line wins.
            40 | 41 => format!(r#"{{"title":"{prefix} keyed {i}","content":"version {i}","key":"{prefix}-k"}}"#),
            _ => format!(r#"{{"title":"{prefix} {i}","content":"document number {i} about topic {}"}}"#, i % 9),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

async fn import_job_in_process_reports_every_line(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.store(TestEmbedder::new(16), NoCache).await.unwrap();
    let jobs = Jobs::in_process(store.clone());
    assert_eq!(jobs.queue_kind(), "in-process");
    let workers = jobs.spawn_workers(2);
    let opts = ImportJobOptions { chunk_lines: 100, name: Some("docs.jsonl".into()), ..Default::default() };
    let mut upload = jobs.import(opts).await.unwrap();
    // Pushed in odd pieces: lines cross the pieces' ends.
    for piece in jsonl(1050, "p").as_bytes().chunks(777) {
        upload.push(piece).await.unwrap();
    }
    let queued = upload.finish().await.unwrap();
    assert_eq!((queued.total, queued.chunks), (1049, 11));
    let s = jobs.wait(&queued.id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(s.state, JobState::Done, "{s:?}");
    // 1,049 lines: 2 invalid, 1,047 written (one of them replaced by the next line's key).
    assert_eq!((s.done, s.failed, s.chunks_done), (1047, 2, 11), "{s:?}");
    assert_eq!(s.created, 1046);
    let lines: Vec<(u64, &str)> = s.errors.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(lines, vec![(7, "json"), (20, "title")]);
    assert_eq!(store.count(&Filter::everything()).await.unwrap(), 1046);
    assert_eq!(store.get_by_key("p-k").await.unwrap().content, "version 41");
    assert!(s.elapsed_ms.is_some() && s.lines_per_second.is_some() && s.eta_ms.is_none(), "{s:?}");
    assert_eq!(jobs.list(10).await.unwrap().first().map(|j| j.id.clone()), Some(s.id.clone()));
    // A job still queued cannot be forgotten (its chunks may still run).
    let mut pending = jobs.import(ImportJobOptions::default()).await.unwrap();
    pending.push(b"{\"title\":\"a\",\"content\":\"b\"}").await.unwrap();
    let e = jobs.forget(pending.id()).await.unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e}");
    // An upload dropped before `finish` (a client gone mid-body) queues nothing.
    let abandoned = pending.id().to_string();
    drop(pending);
    let gone =
        until(&jobs, &abandoned, "the abandoned upload to be cancelled", |s| s.state == JobState::Cancelled).await;
    assert!(gone.reason.as_deref().is_some_and(|r| r.contains("upload ended")), "{gone:?}");
    assert_eq!(gone.chunks_done, 0);

    // A finished job is forgotten with its chunks' checkpoints (11 of them); the documents stay.
    assert_eq!(jobs.forget(&s.id).await.unwrap(), 11);
    assert!(matches!(jobs.status(&s.id).await, Err(Error::JobNotFound { .. })));
    assert_eq!(store.count(&Filter::everything()).await.unwrap(), 1046);

    // Unknown and malformed ids.
    assert!(matches!(jobs.status("0123abcd").await, Err(Error::JobNotFound { .. })));
    assert!(matches!(jobs.status("../x").await, Err(Error::InvalidInput { ref field, .. }) if field == "id"));
    // A job cancelled while its input arrives stays cancelled: its upload's finish is refused.
    let mut racing = jobs.import(ImportJobOptions { chunk_lines: 1, ..Default::default() }).await.unwrap();
    racing.push(b"{\"title\":\"a\",\"content\":\"b\"}\n").await.unwrap();
    let racing_id = racing.id().to_string();
    assert_eq!(jobs.cancel(&racing_id).await.unwrap().state, JobState::Cancelled);
    assert!(matches!(racing.finish().await, Err(Error::Conflict { .. })));
    assert_eq!(jobs.status(&racing_id).await.unwrap().state, JobState::Cancelled);

    // An empty input queues nothing.
    let mut empty = jobs.import(ImportJobOptions::default()).await.unwrap();
    empty.push(b"\n  \n").await.unwrap();
    let e = empty.finish().await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { ref field, .. } if field == "input"), "{e}");
    workers.stop().await;
    t.cleanup().await;
}

/// Waits until `check` holds for the job's status (panics after 60 s).
async fn until(jobs: &Jobs, id: &str, what: &str, check: impl Fn(&JobStatus) -> bool) -> JobStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = jobs.status(id).await {
            if check(&s) {
                return s;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}: {s:?}");
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_chunk_whose_worker_died_is_finished_by_another_exactly_once() {
    let t = PgTable::new();
    // A slow embedder: a chunk takes a while, so the first worker dies in the middle of one.
    let store = t.store(TestEmbedder::new(16).batch_size(20).slow(Duration::from_millis(150)), NoCache).await.unwrap();
    let jobs =
        Jobs::builder(store.clone()).redis_url(redis_url()).claim_after(Duration::from_millis(800)).build().unwrap();
    assert_eq!(jobs.queue_kind(), "redis");
    let mut upload = jobs.import(ImportJobOptions { chunk_lines: 100, ..Default::default() }).await.unwrap();
    let mut input = String::new();
    for i in 0..600 {
        // Half the lines without a key: only the checkpoint keeps them from being written twice.
        match i % 2 {
            0 => input.push_str(&format!("{{\"title\":\"t{i}\",\"content\":\"c {i}\",\"key\":\"k{i}\"}}\n")),
            _ => input.push_str(&format!("{{\"title\":\"t{i}\",\"content\":\"c {i}\"}}\n")),
        }
    }
    upload.push(input.as_bytes()).await.unwrap();
    let job = upload.finish().await.unwrap();

    // The first worker dies (its task is dropped, as a killed process stops) mid-chunk.
    let first = {
        let jobs = jobs.clone();
        tokio::spawn(async move { jobs.run_worker(Some("doomed".into()), std::future::pending()).await })
    };
    until(&jobs, &job.id, "the first chunk to start", |s| s.started_at.is_some()).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    first.abort();
    let _ = first.await;

    let workers = jobs.spawn_workers(2);
    let s = jobs.wait(&job.id, Duration::from_secs(90)).await.unwrap();
    workers.stop().await;
    assert_eq!(s.state, JobState::Done, "{s:?}");
    assert_eq!((s.total, s.done, s.failed, s.created), (600, 600, 0, 600), "{s:?}");
    assert!(s.chunks_taken_over >= 1, "the dead worker's chunk was taken over: {s:?}");
    assert_eq!(store.count(&Filter::everything()).await.unwrap(), 600);
    let distinct = t.sql(&format!("SELECT count(DISTINCT title) FROM {}", t.table)).await;
    assert_eq!(distinct[0].get::<_, i64>(0), 600, "no line written twice");
    t.cleanup().await;
}

/// A throwaway Redis with its append-only file on, so a restart keeps the queue.
struct OwnRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let port = 20000 + (std::process::id() % 20000) as u16;
        let dir = std::env::temp_dir().join(unique("mk-redis"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = OwnRedis { port, dir, child: None };
        r.up();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--save", "", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it as an operator would (SHUTDOWN: the append-only file is complete).
    fn down(&mut self) {
        let _ = Command::new("redis-cli").args(["-p", &self.port.to_string(), "shutdown"]).output();
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn redis_stopped_during_a_job_pauses_it_and_nothing_is_lost() {
    let mut redis = OwnRedis::start();
    let t = PgTable::new();
    let store = t.store(TestEmbedder::new(16).batch_size(50).slow(Duration::from_millis(100)), NoCache).await.unwrap();
    let jobs = Jobs::builder(store.clone()).redis_url(redis.url()).claim_after(Duration::from_secs(2)).build().unwrap();
    let mut upload = jobs.import(ImportJobOptions { chunk_lines: 50, ..Default::default() }).await.unwrap();
    upload.push(jsonl(1000, "r").as_bytes()).await.unwrap();
    let job = upload.finish().await.unwrap();
    let workers = jobs.spawn_workers(1);
    until(&jobs, &job.id, "two chunks done", |s| s.chunks_done >= 2).await;

    redis.down();
    // While it is down, the status says why instead of guessing.
    let e = jobs.status(&job.id).await.unwrap_err();
    assert!(e.is_unavailable() && e.to_string().contains("job queue"), "{e}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.up();

    let s = jobs.wait(&job.id, Duration::from_secs(90)).await.unwrap();
    workers.stop().await;
    assert_eq!(s.state, JobState::Done, "{s:?}");
    assert_eq!((s.total, s.done, s.failed), (999, 997, 2), "{s:?}");
    assert!(s.pauses >= 1 && s.paused_ms >= 1000, "the pause is in the report: {s:?}");
    assert!(s.last_pause.as_deref().is_some_and(|p| p.contains("job queue")), "{s:?}");
    assert!(s.paused.is_none(), "{s:?}");
    assert_eq!(store.count(&Filter::everything()).await.unwrap(), 996);
    t.cleanup().await;
}

#[tokio::test]
async fn a_job_waits_out_a_database_outage_and_says_so() {
    let t = PgTable::new();
    let (target, mut proxy, url) = crate::faults::proxied_database().await;
    let store = marketking_core::VectorStore::builder()
        .database_url(url)
        .table(&t.table)
        .pool_size(2)
        .embedder(TestEmbedder::new(16).batch_size(20).slow(Duration::from_millis(50)))
        .cache(NoCache)
        .build()
        .await
        .unwrap();
    let jobs = Jobs::in_process(store.clone());
    let mut upload = jobs.import(ImportJobOptions { chunk_lines: 20, ..Default::default() }).await.unwrap();
    upload.push(jsonl(400, "o").as_bytes()).await.unwrap();
    let job = upload.finish().await.unwrap();
    let workers = jobs.spawn_workers(1);
    until(&jobs, &job.id, "two chunks done", |s| s.chunks_done >= 2).await;

    proxy.down().await;
    let waiting = until(&jobs, &job.id, "the job to say it waits", |s| s.paused.is_some()).await;
    assert!(waiting.paused.as_deref().is_some_and(|p| p.contains("storage unavailable")), "{waiting:?}");
    assert_eq!(waiting.state, JobState::Running);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _proxy = Proxy::start(proxy.port, target).await;

    let s = jobs.wait(&job.id, Duration::from_secs(60)).await.unwrap();
    workers.stop().await;
    assert_eq!(s.state, JobState::Done, "{s:?}");
    assert_eq!((s.total, s.done, s.failed), (399, 397, 2), "{s:?}");
    assert!(s.paused.is_none() && s.pauses >= 1 && s.paused_ms >= 500, "{s:?}");
    assert_eq!(store.count(&Filter::everything()).await.unwrap(), 396);
    drop(store);
    t.cleanup().await;
}
