//! Batch writes: key lookup under locks, updates and one binary COPY, in one transaction.
//!
//! Vectors are computed by the store before this runs, so no lock is held while an embedder
//! works: the transaction lasts as long as the database writes do.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::future::try_join_all;
use pgvector::Vector;
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::Row;

use super::copy::{CopyRows, Field};
use super::{with_retry, PgBackend};
use crate::backend::Written;
use crate::document::{BatchReport, DocumentRef, Metadata, NewDocument};
use crate::error::{Error, Result};
use crate::plan::{missing_vectors, needs_stored_vectors, plan_batch, stamps, Action, Existing};

/// The pooled connections run with `plan_cache_mode = force_custom_plan` (right for searches,
/// see `pool.rs`), but the full-text trigger's statement (`text_len` from the new row's
/// `tsvector`) was then planned again for every row written: 2.2 s of server CPU on a
/// 100k-row COPY that takes ~9 s in all (measured against raw COPY on a connection with the
/// server's default). A write transaction sets the default back for its own duration.
const GENERIC_PLANS_IN_TRIGGERS: &str = "SET LOCAL plan_cache_mode = auto";

/// Batches with up to this many keys lock each key; larger ones lock the table's keyed writes.
const MAX_KEY_LOCKS: usize = 32;
/// Updates in flight at once on the connection (pipelined).
const UPDATES_IN_FLIGHT: usize = 64;

impl PgBackend {
    /// `SELECT ... WHERE key = ANY($1)`, with `FOR UPDATE` inside a write.
    fn existing_sql(&self, with_vectors: bool, for_update: bool) -> String {
        format!(
            "SELECT id, key, title, content, source, metadata, updated_at{} FROM {} WHERE key = ANY($1){}",
            if with_vectors { ", embedding" } else { "" },
            self.sql.table,
            if for_update { " FOR UPDATE" } else { "" }
        )
    }

    pub(crate) async fn existing_impl(&self, keys: &[String], with_vectors: bool) -> Result<HashMap<String, Existing>> {
        let sql = self.existing_sql(with_vectors, false);
        with_retry!(self, |conn| {
            let stmt = conn.statement(&sql, &[Type::TEXT_ARRAY]).await?;
            existing_rows(&conn.query(&stmt, &[&keys]).await?, with_vectors)
        })
    }

    /// `COPY` of new rows, every column the store writes.
    fn copy_sql(&self) -> String {
        format!(
            "COPY {} (id, title, content, source, metadata, key, embedding, created_at, updated_at) \
             FROM STDIN (FORMAT binary)",
            self.sql.table
        )
    }

    /// [`VectorStore::insert_new`](crate::VectorStore::insert_new): validated rows whose keys and
    /// ids the caller asserts are new, in one transaction: one query for the ids, one binary
    /// COPY from the caller's buffers. No lock, no lookup: a key or id that is taken fails the
    /// COPY on the unique index ([`Error::Conflict`] naming it) and nothing is written.
    pub(crate) async fn insert_new_impl(&self, rows: &[DocumentRef<'_>]) -> Result<BatchReport> {
        let mut conn = self.checkout().await?;
        let tx = conn.transaction().await?;
        tx.batch_execute(GENERIC_PLANS_IN_TRIGGERS).await?;
        let need = rows.iter().filter(|r| r.id.is_none()).count();
        // One round trip: the transaction's time (every row's created_at / updated_at, as the
        // columns' defaults would give) and the ids the sequence hands out.
        let ids_sql = "SELECT now(), ARRAY(SELECT nextval(pg_get_serial_sequence($1, 'id')) \
                       FROM generate_series(1::bigint, $2::bigint))";
        let head = tx.query_one(ids_sql, &[&self.sql.table, &(need as i64)]).await?;
        let now: DateTime<Utc> = head.try_get(0)?;
        let mut new_ids = head.try_get::<_, Vec<i64>>(1)?.into_iter();
        // Only the columns some row sets: the others take the table's defaults (NULL, `{}`,
        // `now()`: the transaction's time, as `now` above), which the server fills in faster
        // than it decodes the same values (measured: 0.3-0.6 s per 100k rows at 1536 dims).
        let has = |f: &dyn Fn(&DocumentRef<'_>) -> bool| rows.iter().any(f);
        let (with_source, with_metadata, with_key) =
            (has(&|r| r.source.is_some()), has(&|r| r.metadata.is_some()), has(&|r| r.key.is_some()));
        let with_times = has(&|r| r.created_at.is_some() || r.updated_at.is_some());
        let mut columns = vec!["id", "title", "content", "embedding"];
        for (on, name) in [(with_source, "source"), (with_metadata, "metadata"), (with_key, "key")] {
            if on {
                columns.push(name);
            }
        }
        if with_times {
            columns.extend(["created_at", "updated_at"]);
        }
        let sql = format!("COPY {} ({}) FROM STDIN (FORMAT binary)", self.sql.table, columns.join(", "));
        let empty = Metadata::new();
        let mut report = BatchReport { ids: Vec::with_capacity(rows.len()), ..Default::default() };
        let mut given_max: Option<i64> = None;
        let mut copy = CopyRows::start(&tx, &sql).await?;
        for r in rows {
            let id = match r.id {
                Some(id) => {
                    given_max = given_max.max(Some(id));
                    id
                }
                None => new_ids.next().ok_or_else(|| Error::storage("the sequence gave too few ids"))?,
            };
            let meta = Json(r.metadata.unwrap_or(&empty));
            // As `plan::stamps`: restored times, else the write's (a restored updated_at alone
            // gets a created_at no later than it).
            let updated = r.updated_at.unwrap_or(now);
            let created = r.created_at.unwrap_or_else(|| updated.min(now));
            let mut fields = Vec::with_capacity(columns.len());
            fields.extend([
                Field::Value(&id, &Type::INT8),
                Field::Value(&r.title, &Type::VARCHAR),
                Field::Value(&r.content, &Type::TEXT),
                Field::Vector(r.embedding),
            ]);
            if with_source {
                fields.push(Field::Value(&r.source, &Type::VARCHAR));
            }
            if with_metadata {
                fields.push(Field::Value(&meta, &Type::JSONB));
            }
            if with_key {
                fields.push(Field::Value(&r.key, &Type::TEXT));
            }
            if with_times {
                fields.extend([Field::Value(&created, &Type::TIMESTAMPTZ), Field::Value(&updated, &Type::TIMESTAMPTZ)]);
            }
            copy.row(&fields).await?;
            report.ids.push(id);
        }
        copy.finish().await?;
        report.created = rows.len();
        if let Some(max) = given_max {
            tx.query_typed(
                "SELECT setval(s::regclass, GREATEST($2, COALESCE(pg_sequence_last_value(s::regclass), 0))) \
                 FROM pg_get_serial_sequence($1, 'id') AS s",
                &[(&self.sql.table, Type::TEXT), (&max, Type::INT8)],
            )
            .await?;
        }
        crate::gate::commit_point()?;
        tx.commit().await?;
        Ok(report)
    }

    /// The report a checkpoint recorded, when the batch it names has committed.
    pub(crate) async fn checkpoint_impl(&self, name: &str) -> Result<Option<BatchReport>> {
        let sql = format!(
            "SELECT report FROM {} WHERE table_name = $1 AND name = $2 AND report IS NOT NULL",
            self.sql.checkpoints
        );
        let row =
            with_retry!(self, |conn| conn.query_opt(&sql, &[&self.table.table, &name]).await.map_err(Error::from))?;
        row.map(|r| checkpoint_report(r.try_get(0)?)).transpose()
    }

    /// Deletes the checkpoints whose names start with `prefix`; how many.
    pub(crate) async fn forget_checkpoints_impl(&self, prefix: &str) -> Result<u64> {
        let sql = format!("DELETE FROM {} WHERE table_name = $1 AND left(name, length($2)) = $2", self.sql.checkpoints);
        let conn = self.checkout().await?;
        Ok(conn.execute(&sql, &[&self.table.table, &prefix]).await?)
    }

    pub(crate) async fn write_batch_impl(&self, docs: Vec<NewDocument>, checkpoint: Option<&str>) -> Result<Written> {
        let t = &self.sql.table;
        let mut conn = self.checkout().await?;
        let keys: Vec<&str> = docs.iter().filter_map(|d| d.key.as_deref()).collect();
        let with_vectors = needs_stored_vectors(&docs);
        // Prepared (and cached on the connection) before the transaction: a statement whose rows
        // hold a `vector` must have its column types resolved before it runs. Sent unprepared,
        // tokio-postgres would look the type up on the same connection while the rows are
        // still arriving, and wait forever once more rows than its buffer holds are queued.
        let select = match keys.is_empty() {
            true => None,
            false => Some(conn.statement(&self.existing_sql(with_vectors, true), &[Type::TEXT_ARRAY]).await?),
        };
        // Dropping `tx` without commit rolls back: any error below leaves no row behind.
        let tx = conn.transaction().await?;
        tx.batch_execute(GENERIC_PLANS_IN_TRIGGERS).await?;
        if let Some(name) = checkpoint {
            // The checkpoint's row first: a second writer of the same batch waits here on the
            // primary key until this transaction ends, then finds the row (committed: the batch
            // is written, its report is answered) or inserts it (rolled back: it writes).
            let claimed = tx
                .query_opt(
                    &format!(
                        "INSERT INTO {} (table_name, name) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1",
                        self.sql.checkpoints
                    ),
                    &[&self.table.table, &name],
                )
                .await?;
            if claimed.is_none() {
                let row = tx
                    .query_one(
                        &format!("SELECT report FROM {} WHERE table_name = $1 AND name = $2", self.sql.checkpoints),
                        &[&self.table.table, &name],
                    )
                    .await?;
                return Ok(Written::Replayed(checkpoint_report(row.try_get(0)?)?));
            }
        }

        let mut existing = HashMap::new();
        if let Some(select) = select {
            // A concurrent upsert of the same keys must wait for us instead of racing. Row locks
            // (FOR UPDATE) cover keys that exist; keys that do not exist yet have no row to lock,
            // and two writers would both insert one and the second would fail on the unique
            // index. So advisory locks first, scoped to this transaction and namespaced by table:
            // a small batch takes the table's lock shared plus one lock per key (in one sorted
            // order, so overlapping batches cannot deadlock); a large batch takes the table's
            // lock exclusively instead, so the server's lock table (sized by
            // max_locks_per_transaction) is never asked for thousands of entries.
            let namespace = format!("marketking:keys:{t}");
            let batch_namespace = format!("marketking:batch:{t}");
            let per_key = keys.len() <= MAX_KEY_LOCKS;
            let table_lock = if per_key {
                "SELECT pg_advisory_xact_lock_shared(hashtext($1), 0)"
            } else {
                "SELECT pg_advisory_xact_lock(hashtext($1), 0)"
            };
            // Each query sends its request on the first poll and `join3` polls in order, so the
            // statements run in this order in one round trip, and the SELECT takes its snapshot
            // once the locks are held: it sees rows a previous holder committed.
            let (table_locked, keys_locked, rows) = futures_util::future::join3(
                tx.query_typed(table_lock, &[(&batch_namespace, Type::TEXT)]),
                async {
                    if !per_key {
                        return Ok(Vec::new());
                    }
                    tx.query_typed(
                        "SELECT count(pg_advisory_xact_lock(hashtext($2), h)) FROM \
                         (SELECT DISTINCT hashtext(k) AS h FROM unnest($1::text[]) AS k ORDER BY h) AS s",
                        &[(&keys, Type::TEXT_ARRAY), (&namespace, Type::TEXT)],
                    )
                    .await
                },
                tx.query(&select, &[&keys]),
            )
            .await;
            table_locked?;
            keys_locked?;
            existing = existing_rows(&rows?, with_vectors)?;
        }
        let actions = plan_batch(&docs, &existing)?;
        drop(existing);
        let missing = missing_vectors(&docs, &actions);
        if !missing.is_empty() {
            return Ok(Written::NeedVectors(docs, missing));
        }

        // Restored ids must be free (checked under the batch's locks, in its snapshot).
        let given: Vec<i64> =
            docs.iter().zip(&actions).filter(|(_, a)| **a == Action::Insert).filter_map(|(d, _)| d.id).collect();
        if !given.is_empty() {
            let taken = tx
                .query_typed(
                    &format!("SELECT id FROM {t} WHERE id = ANY($1) ORDER BY id LIMIT 1"),
                    &[(&given, Type::INT8_ARRAY)],
                )
                .await?;
            if let Some(row) = taken.first() {
                let id: i64 = row.try_get(0)?;
                return Err(Error::Conflict { reason: format!("id {id} is already taken") });
            }
        }
        let inserts = docs.iter().zip(&actions).filter(|(d, a)| **a == Action::Insert && d.id.is_none()).count();
        // The transaction's start time, which `now()` and the columns' defaults would give: rows
        // without restored times get it, so a batch keeps one time whatever the client's clock.
        let stamp = tx.query_one("SELECT now()", &[]).await?;
        let now: DateTime<Utc> = stamp.try_get(0)?;
        let new_ids: Vec<i64> = if inserts > 0 {
            tx.query(
                "SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1::bigint, $2::bigint)",
                &[&self.sql.table, &(inserts as i64)],
            )
            .await?
            .iter()
            .map(|r| r.try_get::<_, i64>(0))
            .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let (report, rows) = report_and_rows(docs, &actions, new_ids)?;

        // 1. Existing keys: updates, pipelined on the connection.
        if !rows.updates.is_empty() {
            let rewrite = tx
                .prepare_typed(
                    &format!(
                        "UPDATE {t} SET title = $2, content = $3, source = $4, metadata = $5, embedding = $6, \
                         updated_at = $7 WHERE id = $1"
                    ),
                    &[
                        Type::INT8,
                        Type::VARCHAR,
                        Type::TEXT,
                        Type::VARCHAR,
                        Type::JSONB,
                        self.vector_type.clone(),
                        Type::TIMESTAMPTZ,
                    ],
                )
                .await?;
            let touch = tx
                .prepare_typed(
                    &format!("UPDATE {t} SET source = $2, metadata = $3, updated_at = $4 WHERE id = $1"),
                    &[Type::INT8, Type::VARCHAR, Type::JSONB, Type::TIMESTAMPTZ],
                )
                .await?;
            for chunk in rows.updates.chunks(UPDATES_IN_FLIGHT) {
                try_join_all(chunk.iter().map(|(id, d, v)| {
                    let (rewrite, touch, tx) = (&rewrite, &touch, &tx);
                    async move {
                        let meta = Json(&d.metadata);
                        let (_, updated) = stamps(d, now);
                        match v {
                            // A touched row keeps its stored vector.
                            Some(v) => {
                                tx.execute(rewrite, &[id, &d.title, &d.content, &d.source, &meta, v, &updated]).await
                            }
                            None => tx.execute(touch, &[id, &d.source, &meta, &updated]).await,
                        }
                    }
                }))
                .await?;
            }
        }

        // 2. New rows: one binary COPY stream.
        if !rows.inserts.is_empty() {
            let mut copy = CopyRows::start(&tx, &self.copy_sql()).await?;
            for (id, d, v) in &rows.inserts {
                let (created, updated) = stamps(d, now);
                copy.row(&insert_fields(
                    id,
                    &d.title,
                    &d.content,
                    &d.source,
                    &Json(&d.metadata),
                    &d.key,
                    v.as_slice(),
                    &created,
                    &updated,
                ))
                .await?;
            }
            copy.finish().await?;
        }
        // Restored ids bypass the sequence: move it past them, so later inserts cannot collide.
        if let Some(max) = given.iter().max() {
            tx.query_typed(
                "SELECT setval(s::regclass, GREATEST($2, COALESCE(pg_sequence_last_value(s::regclass), 0))) \
                 FROM pg_get_serial_sequence($1, 'id') AS s",
                &[(&self.sql.table, Type::TEXT), (max, Type::INT8)],
            )
            .await?;
        }
        // A caller that gave up on this write (a request timeout) is told the truth: it rolls
        // back here, or it commits and the caller waits for the answer (see `CommitGate`).
        if let Some(name) = checkpoint {
            tx.execute(
                &format!("UPDATE {} SET report = $3 WHERE table_name = $1 AND name = $2", self.sql.checkpoints),
                &[&self.table.table, &name, &Json(&report)],
            )
            .await?;
        }
        crate::gate::commit_point()?;
        tx.commit().await?;
        Ok(Written::Done(report))
    }
}

/// A checkpoint's stored report (`NULL` only inside the transaction that wrote it).
fn checkpoint_report(value: Option<serde_json::Value>) -> Result<BatchReport> {
    let value = value.ok_or_else(|| Error::storage("a checkpoint has no report"))?;
    serde_json::from_value(value).map_err(|e| Error::storage(format!("a checkpoint's report is unreadable: {e}")))
}

/// The fields of one new row, in [`PgBackend::copy_sql`]'s column order.
#[allow(clippy::too_many_arguments)]
fn insert_fields<'a>(
    id: &'a i64,
    title: &'a (dyn ToSql + Sync),
    content: &'a (dyn ToSql + Sync),
    source: &'a (dyn ToSql + Sync),
    metadata: &'a (dyn ToSql + Sync),
    key: &'a (dyn ToSql + Sync),
    embedding: &'a [f32],
    created: &'a DateTime<Utc>,
    updated: &'a DateTime<Utc>,
) -> [Field<'a>; 9] {
    [
        Field::Value(id, &Type::INT8),
        Field::Value(title, &Type::VARCHAR),
        Field::Value(content, &Type::TEXT),
        Field::Value(source, &Type::VARCHAR),
        Field::Value(metadata, &Type::JSONB),
        Field::Value(key, &Type::TEXT),
        Field::Vector(embedding),
        Field::Value(created, &Type::TIMESTAMPTZ),
        Field::Value(updated, &Type::TIMESTAMPTZ),
    ]
}

/// Rows read with [`PgBackend::existing_sql`], by key.
fn existing_rows(rows: &[Row], with_vectors: bool) -> Result<HashMap<String, Existing>> {
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<_, String>(1)?,
                Existing {
                    id: r.try_get(0)?,
                    title: r.try_get(2)?,
                    content: r.try_get(3)?,
                    source: r.try_get(4)?,
                    metadata: r.try_get(5)?,
                    updated_at: r.try_get(6)?,
                    embedding: match with_vectors {
                        true => Some(r.try_get::<_, Vector>(7)?.to_vec()),
                        false => None,
                    },
                },
            ))
        })
        .collect()
}

/// The rows a planned batch writes: updates by id (with the new vector, or none for a touch)
/// and inserts with their new ids.
#[derive(Default)]
struct Rows {
    updates: Vec<(i64, NewDocument, Option<Vector>)>,
    inserts: Vec<(i64, NewDocument, Vector)>,
}

/// The report (ids in input order, counts) and the rows to write, consuming the documents.
fn report_and_rows(docs: Vec<NewDocument>, actions: &[Action], new_ids: Vec<i64>) -> Result<(BatchReport, Rows)> {
    let mut report = BatchReport { ids: Vec::with_capacity(docs.len()), ..Default::default() };
    let mut rows = Rows::default();
    let mut new_ids = new_ids.into_iter();
    for (mut d, a) in docs.into_iter().zip(actions) {
        match *a {
            Action::Insert => {
                let id = match d.id {
                    Some(id) => id,
                    None => new_ids.next().ok_or_else(|| Error::storage("the sequence gave too few ids"))?,
                };
                let v =
                    d.embedding.take().ok_or_else(|| Error::storage("a new row reached the write without a vector"))?;
                report.created += 1;
                report.ids.push(id);
                rows.inserts.push((id, d, Vector::from(v)));
            }
            Action::Touch { id, changed } => {
                report.ids.push(id);
                if changed {
                    report.updated += 1;
                    rows.updates.push((id, d, None));
                } else {
                    report.unchanged += 1;
                }
            }
            Action::Rewrite { id } => {
                let v =
                    d.embedding.take().ok_or_else(|| Error::storage("a rewrite reached the write without a vector"))?;
                report.updated += 1;
                report.ids.push(id);
                rows.updates.push((id, d, Some(Vector::from(v))));
            }
        }
    }
    Ok((report, rows))
}
