//! `import --background`, `worker` and `jobs list|show|cancel`: background jobs on the job
//! queue shared with the HTTP service.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use marketking_core::jobs::{ImportJobOptions, JobStatus, Jobs};
use marketking_core::VectorStore;

use crate::args::{Format, ImportArgs, JobsCommand, WorkerArgs};
use crate::output::print_json;

/// The store's jobs on the configured queue; a queue that only this process would see is
/// refused (its jobs would end with the command).
fn shared_jobs(store: &VectorStore, redis_url: Option<&str>) -> anyhow::Result<Jobs> {
    let mut builder = Jobs::builder(store.clone()).from_env()?;
    // `--redis-url` (or the config file's) counts like REDIS_URL: jobs go to its database 2,
    // unless MARKETKING_QUEUE_URL names the queue.
    if std::env::var_os("MARKETKING_QUEUE_URL").is_none() {
        if let Some(url) = redis_url {
            builder = builder.queue_beside_cache(url)?;
        }
    }
    let jobs = builder.build()?;
    if jobs.queue_kind() == "in-process" {
        bail!(
            "background jobs need a job queue shared between processes: set REDIS_URL (jobs go to its \
             database 2) or MARKETKING_QUEUE_URL; without one, marketking-http runs jobs in its own process"
        );
    }
    Ok(jobs)
}

pub(super) async fn import_background(
    store: &VectorStore,
    out: &mut impl Write,
    a: &ImportArgs,
    quiet: bool,
    redis_url: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if crate::import::detect_format(&a.file, a.format) == Format::Csv {
        bail!("background imports take JSONL; import CSV without --background");
    }
    let jobs = shared_jobs(store, redis_url)?;
    let options = ImportJobOptions {
        keep_ids: a.keep_ids,
        chunk_lines: a.chunk_lines.map_or(marketking_core::jobs::DEFAULT_CHUNK_LINES, |n| n as usize),
        name: None,
    };
    let status = if a.file.as_os_str() == "-" {
        use std::io::Read;
        let mut upload = jobs.import(ImportJobOptions { name: Some("stdin".into()), ..options }).await?;
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = stdin.read(&mut buf)?;
            if n == 0 {
                break;
            }
            upload.push(buf.get(..n).unwrap_or_default()).await?;
        }
        upload.finish().await?
    } else {
        jobs.import_file(&a.file, options).await?
    };
    if !a.wait {
        if !quiet {
            writeln!(
                out,
                "queued job {} ({} lines in {} chunks); follow it with: marketking jobs show {}",
                status.id, status.total, status.chunks, status.id
            )?;
        } else {
            writeln!(out, "{}", status.id)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut last = String::new();
    let status = loop {
        let s = jobs.status(&status.id).await?;
        if s.is_finished() {
            break s;
        }
        let now = format!("{} {}/{} lines", s.state, s.done + s.failed, s.total);
        if !quiet && now != last {
            eprintln!("job {}: {now}", s.id);
            last = now;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    print_status(out, &status)?;
    Ok(if status.failed > 0 { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

pub(super) async fn worker(
    store: &VectorStore,
    out: &mut impl Write,
    a: WorkerArgs,
    quiet: bool,
    redis_url: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let jobs = shared_jobs(store, redis_url)?;
    let workers = jobs.spawn_workers(a.concurrency as usize);
    if !quiet {
        eprintln!(
            "{} job worker(s) on the {} queue, writing with {}; Ctrl-C or SIGTERM stops them after the chunk in hand",
            workers.len(),
            jobs.queue_kind(),
            super::model::describe_embedder(store.model())
        );
    }
    shutdown_signal().await;
    if !quiet {
        eprintln!("stopping: finishing the chunks in hand");
    }
    workers.stop().await;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(super) async fn run(
    store: &VectorStore,
    out: &mut impl Write,
    c: JobsCommand,
    redis_url: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let jobs = shared_jobs(store, redis_url)?;
    match c {
        JobsCommand::List { limit, json } => {
            let list = jobs.list(limit as usize).await?;
            if json {
                for s in &list {
                    print_json(out, s)?;
                }
            } else if list.is_empty() {
                writeln!(out, "no jobs")?;
            } else {
                for s in &list {
                    writeln!(
                        out,
                        "{}  {:<9} {:>7}/{:<7} failed {:<5} {}  {}",
                        s.id,
                        s.state.to_string(),
                        s.done,
                        s.total,
                        s.failed,
                        s.created_at.format("%Y-%m-%d %H:%M:%S"),
                        s.options.name.as_deref().unwrap_or("-")
                    )?;
                }
            }
        }
        JobsCommand::Show { id, json } => {
            let s = jobs.status(&id).await?;
            match json {
                true => print_json(out, &s)?,
                false => print_status(out, &s)?,
            }
        }
        JobsCommand::Forget { id } => {
            let n = jobs.forget(&id).await?;
            writeln!(out, "forgot job {id} and its {n} chunk checkpoint(s)")?;
        }
        JobsCommand::Cancel { id, json } => {
            let s = jobs.cancel(&id).await?;
            match json {
                true => print_json(out, &s)?,
                false => print_status(out, &s)?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A job's report, for people.
fn print_status(out: &mut impl Write, s: &JobStatus) -> std::io::Result<()> {
    writeln!(
        out,
        "job {} ({}): {}{}",
        s.id,
        s.kind,
        s.state,
        s.options.name.as_deref().map(|n| format!(", {n}")).unwrap_or_default()
    )?;
    writeln!(
        out,
        "  lines {}: done {}, failed {} (created {}, updated {}, unchanged {})",
        s.total, s.done, s.failed, s.created, s.updated, s.unchanged
    )?;
    let mut timing = format!("  chunks {}/{}", s.chunks_done, s.chunks);
    if let Some(ms) = s.elapsed_ms {
        timing.push_str(&format!(", {:.1}s", ms as f64 / 1000.0));
    }
    if let Some(rate) = s.lines_per_second {
        timing.push_str(&format!(", {rate:.0} lines/s"));
    }
    if let Some(eta) = s.eta_ms {
        timing.push_str(&format!(", about {:.0}s left", eta as f64 / 1000.0));
    }
    if s.chunks_taken_over > 0 {
        timing.push_str(&format!(", {} chunk(s) taken over from a stopped worker", s.chunks_taken_over));
    }
    writeln!(out, "{timing}")?;
    if let Some(p) = &s.paused {
        writeln!(out, "  waiting now: {p}")?;
    }
    if s.pauses > 0 {
        writeln!(
            out,
            "  paused {} time(s), {:.1}s in all; last: {}",
            s.pauses,
            s.paused_ms as f64 / 1000.0,
            s.last_pause.as_deref().unwrap_or("-")
        )?;
    }
    if !s.errors.is_empty() {
        writeln!(out, "  lines not written{}:", if s.failed as usize > s.errors.len() { " (first ones)" } else { "" })?;
        for e in &s.errors {
            writeln!(out, "    line {}: {}: {}", e.line, e.field, e.reason)?;
        }
    }
    Ok(())
}
