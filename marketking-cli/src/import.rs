//! Streaming import of JSONL and CSV files in batches, with line-accurate validation.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use marketking_core::jsonl::{self, LineError, LineOptions};
use marketking_core::{DocumentRef, NewDocument, VectorStore};
use serde_json::{Map, Value};

use crate::args::Format;

/// Why a line was rejected: the field and the reason (the core's, shared with HTTP import).
pub(crate) type Bad = LineError;

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Summary {
    pub(crate) read: u64,
    pub(crate) created: u64,
    pub(crate) updated: u64,
    pub(crate) unchanged: u64,
    pub(crate) skipped: u64,
    pub(crate) elapsed: Duration,
}

impl Summary {
    pub(crate) fn committed(&self) -> u64 {
        self.created + self.updated + self.unchanged
    }

    pub(crate) fn line(&self, name: &str) -> String {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 { self.read as f64 / secs } else { 0.0 };
        format!(
            "imported {name}: read {}, created {}, updated {}, unchanged {}, skipped {} in {secs:.2}s ({rate:.0} docs/s)",
            self.read, self.created, self.updated, self.unchanged, self.skipped
        )
    }
}

/// How to import.
#[derive(Debug, Clone)]
pub(crate) struct ImportOptions {
    pub(crate) format: Option<Format>,
    pub(crate) batch_size: usize,
    pub(crate) skip_invalid: bool,
    pub(crate) quiet: bool,
    /// Keep each line's id (`--keep-ids`; the store must be empty).
    pub(crate) keep_ids: bool,
    /// Lines bring embeddings and new keys: [`VectorStore::insert_new`] per batch.
    pub(crate) assume_new: bool,
}

/// Chooses the format: the flag, else the extension (`.csv` is CSV), else JSONL.
pub(crate) fn detect_format(path: &Path, flag: Option<Format>) -> Format {
    if let Some(f) = flag {
        return f;
    }
    match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()) {
        Some(e) if e == "csv" => Format::Csv,
        _ => Format::Jsonl,
    }
}

/// A reader that counts the bytes it hands out (for the progress bar).
struct Counting<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// One input row: its line number and the document or why it is invalid.
type Row = (u64, Result<NewDocument, Bad>);

/// Source of rows, one at a time (never the whole file).
trait Rows: Send {
    fn next_row(&mut self, dims: usize) -> anyhow::Result<Option<Row>>;
}

struct JsonlRows<R> {
    reader: R,
    line: u64,
    buf: Vec<u8>,
    opts: LineOptions,
}

impl<R: BufRead + Send> Rows for JsonlRows<R> {
    fn next_row(&mut self, dims: usize) -> anyhow::Result<Option<Row>> {
        loop {
            self.buf.clear();
            let n = self.reader.read_until(b'\n', &mut self.buf).context("read error")?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            let bytes = self.buf.trim_ascii();
            if bytes.is_empty() {
                continue;
            }
            return Ok(Some((self.line, jsonl::parse_line(bytes, dims, self.opts))));
        }
    }
}

/// CSV columns an import reads; others are ignored.
const CSV_COLUMNS: [&str; 9] =
    ["id", "title", "content", "source", "key", "metadata", "embedding", "created_at", "updated_at"];

struct CsvRows<R> {
    reader: csv::Reader<R>,
    columns: Vec<(String, usize)>,
    record: csv::ByteRecord,
    opts: LineOptions,
}

impl<R: Read> CsvRows<R> {
    fn new(inner: R, opts: LineOptions) -> anyhow::Result<Self> {
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(inner);
        let headers = reader.byte_headers().context("cannot read the CSV header")?.clone();
        let columns: Vec<(String, usize)> = headers
            .iter()
            .enumerate()
            .map(|(i, h)| (String::from_utf8_lossy(h).trim().to_ascii_lowercase(), i))
            .filter(|(c, _)| CSV_COLUMNS.contains(&c.as_str()))
            .collect();
        for needed in ["title", "content"] {
            if !columns.iter().any(|(c, _)| c == needed) {
                bail!("the CSV header has no `{needed}` column (columns: title, content, source, key, metadata, embedding)");
            }
        }
        Ok(CsvRows { reader, columns, record: csv::ByteRecord::new(), opts })
    }
}

impl<R: Read + Send> Rows for CsvRows<R> {
    fn next_row(&mut self, dims: usize) -> anyhow::Result<Option<Row>> {
        if !self.reader.read_byte_record(&mut self.record).context("CSV read error")? {
            return Ok(None);
        }
        let line = self.record.position().map_or(0, |p| p.line());
        let mut obj = Map::new();
        let mut bad = None;
        for (name, i) in &self.columns {
            let Some(raw) = self.record.get(*i) else { continue };
            let text = match std::str::from_utf8(raw) {
                Ok(t) => t,
                Err(e) => {
                    bad = Some(Bad::new(name.clone(), format!("invalid UTF-8 at byte {}", e.valid_up_to())));
                    break;
                }
            };
            let value = match name.as_str() {
                // Empty optional cells mean "absent".
                "id" | "source" | "key" | "metadata" | "embedding" | "created_at" | "updated_at"
                    if text.trim().is_empty() =>
                {
                    continue
                }
                "metadata" | "embedding" => match serde_json::from_str::<Value>(text) {
                    Ok(v) => v,
                    Err(e) => {
                        bad = Some(Bad::new(name.clone(), format!("invalid JSON: {e}")));
                        break;
                    }
                },
                _ => Value::String(text.to_string()),
            };
            obj.insert(name.clone(), value);
        }
        let result = match bad {
            Some(b) => Err(b),
            None => jsonl::parse_object(obj, dims, self.opts),
        };
        Ok(Some((line, result)))
    }
}

fn progress_bar(total: Option<u64>, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match total {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} (ETA {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bytes} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
}

/// Imports `path` (`-` = stdin) into the store. Stops at the first invalid line unless
/// `skip_invalid`; invalid lines are then listed on stderr.
pub(crate) async fn import(store: &VectorStore, path: &Path, opts: &ImportOptions) -> anyhow::Result<Summary> {
    let name = path.display().to_string();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (input, total): (Box<dyn Read + Send>, Option<u64>) = if name == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = File::open(path).with_context(|| format!("cannot open {name}"))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(f), len)
    };
    let counting = Counting { inner: input, count: count.clone() };
    let line_opts = LineOptions::default().keep_ids(opts.keep_ids);
    if opts.keep_ids {
        let n = store.count(&marketking_core::Filter::everything()).await?;
        if n > 0 {
            bail!("--keep-ids restores ids into an empty store, and this one holds {n} documents");
        }
    }
    let mut rows: Box<dyn Rows> = match detect_format(path, opts.format) {
        Format::Jsonl => Box::new(JsonlRows {
            reader: BufReader::with_capacity(1 << 16, counting),
            line: 0,
            buf: Vec::new(),
            opts: line_opts,
        }),
        Format::Csv => Box::new(CsvRows::new(counting, line_opts).with_context(|| name.clone())?),
    };

    let dims = store.dimensions();
    let pb = progress_bar(total, opts.quiet);
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut batch: Vec<NewDocument> = Vec::with_capacity(opts.batch_size);
    let mut batch_lines: (u64, u64) = (0, 0);
    let mut batch_keys: HashSet<String> = HashSet::new();

    // Reading and parsing run on their own thread, a few hundred rows ahead, while this task
    // writes batches: parsing (embeddings especially) and the database's COPY overlap. The
    // channel is bounded, so memory stays flat whatever the file size.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<Vec<Row>>>(8);
    let reader = std::thread::spawn(move || loop {
        let mut chunk = Vec::with_capacity(256);
        let mut end = false;
        while chunk.len() < 256 {
            match rows.next_row(dims) {
                Ok(Some(row)) => chunk.push(row),
                Ok(None) => {
                    end = true;
                    break;
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
        if (!chunk.is_empty() && tx.blocking_send(Ok(chunk)).is_err()) || end {
            return;
        }
    });
    let mut pending = Vec::new().into_iter();
    loop {
        let (line, row) = match pending.next() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(chunk) => {
                    pending = chunk.with_context(|| format!("{name}: after line {}", batch_lines.1))?.into_iter();
                    continue;
                }
                None => break,
            },
        };
        summary.read += 1;
        match row {
            Ok(doc) => {
                // The core rejects a key twice in one batch: write what came before, so a later
                // line with the same key updates the earlier one, whatever the batch size.
                if let Some(k) = &doc.key {
                    if !batch_keys.insert(k.clone()) {
                        commit(store, &mut batch, batch_lines, &mut summary, &name, &pb, opts.assume_new).await?;
                        batch_keys.clear();
                        batch_keys.insert(k.clone());
                    }
                }
                if batch.is_empty() {
                    batch_lines.0 = line;
                }
                batch_lines.1 = line;
                batch.push(doc);
            }
            Err(bad) if opts.skip_invalid => {
                summary.skipped += 1;
                pb.suspend(|| eprintln!("skipped {name}:{line}: {}: {}", bad.field, bad.reason));
            }
            Err(bad) => {
                pb.finish_and_clear();
                bail!(
                    "{name}:{line}: {}: {} (import stopped; {} rows committed before this line's batch, nothing after)",
                    bad.field,
                    bad.reason,
                    summary.committed()
                );
            }
        }
        if batch.len() >= opts.batch_size {
            commit(store, &mut batch, batch_lines, &mut summary, &name, &pb, opts.assume_new).await?;
            batch_keys.clear();
        }
        pb.set_position(count.load(std::sync::atomic::Ordering::Relaxed));
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        if summary.read % 256 == 0 {
            pb.set_message(format!("{} docs, {:.0} docs/s", summary.read, summary.read as f64 / secs));
        }
    }
    commit(store, &mut batch, batch_lines, &mut summary, &name, &pb, opts.assume_new).await?;
    drop(rx);
    let _ = reader.join();
    pb.finish_and_clear();
    store.analyze().await.context("ANALYZE after the import failed")?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

async fn commit(
    store: &VectorStore,
    batch: &mut Vec<NewDocument>,
    lines: (u64, u64),
    summary: &mut Summary,
    name: &str,
    pb: &ProgressBar,
    assume_new: bool,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut docs = std::mem::take(batch);
    let written = match assume_new {
        // Lines without an embedding are embedded first; then one COPY.
        true => {
            if let Err(e) = store.embed_missing(&mut docs).await {
                pb.finish_and_clear();
                return Err(anyhow::Error::new(e).context(format!(
                    "{name}:{}-{}: embedding this batch failed (import stopped; {} rows committed before it)",
                    lines.0,
                    lines.1,
                    summary.committed()
                )));
            }
            let rows = docs.iter().filter_map(|d| {
                let v = d.embedding.as_deref()?;
                let mut r = DocumentRef::new(&d.title, &d.content, v).metadata(&d.metadata);
                r.source = d.source.as_deref();
                r.key = d.key.as_deref();
                r.id = d.id;
                r.created_at = d.created_at;
                r.updated_at = d.updated_at;
                Some(r)
            });
            store.insert_new(rows).await
        }
        false => store.batch(docs).await,
    };
    match written {
        Ok(report) => {
            summary.created += report.created as u64;
            summary.updated += report.updated as u64;
            summary.unchanged += report.unchanged as u64;
            tracing::debug!(first = lines.0, last = lines.1, created = report.created, "batch committed");
            Ok(())
        }
        Err(e) => {
            pb.finish_and_clear();
            Err(anyhow::Error::new(e).context(format!(
                "{name}:{}-{}: writing this batch failed (import stopped; {} rows committed before it)",
                lines.0,
                lines.1,
                summary.committed()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(text: &[u8], dims: usize) -> Vec<Row> {
        let mut r = JsonlRows { reader: BufReader::new(text), line: 0, buf: Vec::new(), opts: LineOptions::default() };
        let mut out = Vec::new();
        while let Some(row) = r.next_row(dims).unwrap() {
            out.push(row);
        }
        out
    }

    #[test]
    fn jsonl_reports_line_numbers_and_fields() {
        let text = b"{\"title\":\"a\",\"content\":\"b\",\"id\":7}\n\n{\"title\":\"a\"}\n{bad\n\xff\xfe\n{\"title\":\"t\",\"content\":\"  \"}\n{\"title\":\"t\",\"content\":\"c\",\"embedding\":[1,2]}\n";
        let rows = rows_of(text, 3);
        let lines: Vec<u64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(lines, vec![1, 3, 4, 5, 6, 7]);
        assert!(rows[0].1.is_ok());
        let fields: Vec<String> = rows[1..].iter().map(|r| r.1.clone().unwrap_err().field).collect();
        assert_eq!(fields, vec!["content", "json", "line", "content", "embedding"]);
        assert_eq!(rows[5].1.clone().unwrap_err().reason, "expected 3 dimensions, got 2");
    }

    #[test]
    fn csv_reads_optional_json_columns() {
        let text = "title,content,source,key,metadata\nA,\"hello, world\",catalog,k1,\"{\"\"p\"\":1}\"\nB,,,,\n";
        let mut r = CsvRows::new(text.as_bytes(), LineOptions::default()).unwrap();
        let (line, first) = r.next_row(3).unwrap().unwrap();
        assert_eq!(line, 2);
        let d = first.unwrap();
        assert_eq!(d.content, "hello, world");
        assert_eq!(d.metadata, marketking_core::metadata!({"p": 1}));
        assert_eq!(d.key.as_deref(), Some("k1"));
        let (line, second) = r.next_row(3).unwrap().unwrap();
        assert_eq!((line, second.unwrap_err().field.as_str()), (3, "content"));
        assert!(r.next_row(3).unwrap().is_none());
    }
}
