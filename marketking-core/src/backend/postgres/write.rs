//! Batch writes: key lookup, embedding in chunks, binary COPY, all in one transaction.

use std::collections::HashMap;

use futures_util::future::try_join_all;
use pgvector::Vector;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::PgBackend;
use crate::backend::{fill_embeddings, needs_stored_vectors, plan_batch, Action, Existing};
use crate::document::{BatchReport, NewDocument};
use crate::embedder::Embedder;
use crate::error::{Error, Result};

/// Batches with up to this many keys lock each key; larger ones lock the table's keyed writes.
const MAX_KEY_LOCKS: usize = 32;

impl PgBackend {
    pub(crate) async fn write_batch_impl(
        &self,
        mut docs: Vec<NewDocument>,
        embedder: &dyn Embedder,
    ) -> Result<BatchReport> {
        let t = &self.sql.table;
        let mut conn = self.checkout().await?;
        let keys: Vec<&str> = docs.iter().filter_map(|d| d.key.as_deref()).collect();
        let with_vectors = needs_stored_vectors(&docs);
        // Prepared (and cached on the connection) before the transaction: a statement whose rows
        // hold a `vector` must have its column types resolved before it runs. Sent unprepared,
        // tokio-postgres would look the type up on the same connection while the rows are
        // still arriving, and wait forever once more rows than its buffer holds are queued.
        let select = if keys.is_empty() {
            None
        } else {
            let sql = format!(
                "SELECT id, key, title, content, source, metadata{} FROM {t} WHERE key = ANY($1) FOR UPDATE",
                if with_vectors { ", embedding" } else { "" }
            );
            Some(conn.statement(&sql, &[Type::TEXT_ARRAY]).await?)
        };
        // Dropping `tx` without commit rolls back: any error below leaves no row behind.
        let tx = conn.transaction().await?;

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
            let rows = rows?;
            for r in rows {
                existing.insert(
                    r.try_get::<_, String>(1)?,
                    Existing {
                        id: r.try_get(0)?,
                        title: r.try_get(2)?,
                        content: r.try_get(3)?,
                        source: r.try_get(4)?,
                        metadata: r.try_get(5)?,
                        embedding: match with_vectors {
                            true => Some(r.try_get::<_, Vector>(6)?.to_vec()),
                            false => None,
                        },
                    },
                );
            }
        }
        let actions = plan_batch(&docs, &existing)?;
        drop(existing);

        let inserts = actions.iter().filter(|a| **a == Action::Insert).count();
        let mut new_ids = if inserts > 0 {
            tx.query(
                "SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1::bigint, $2::bigint)",
                &[&self.sql.table, &(inserts as i64)],
            )
            .await?
            .iter()
            .map(|r| r.try_get::<_, i64>(0))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
        } else {
            Vec::new().into_iter()
        };

        let mut report = BatchReport { ids: Vec::with_capacity(docs.len()), ..Default::default() };
        for a in &actions {
            report.ids.push(match a {
                Action::Insert => {
                    report.created += 1;
                    new_ids.next().expect("one id per insert")
                }
                Action::Touch { id, changed } => {
                    if *changed {
                        report.updated += 1;
                    } else {
                        report.unchanged += 1;
                    }
                    *id
                }
                Action::Rewrite { id } => {
                    report.updated += 1;
                    *id
                }
            });
        }

        let chunk = embedder.max_batch_size().max(1);

        // 1. Existing keys: updates, pipelined on the connection, chunk by chunk.
        let update_idx: Vec<usize> = (0..docs.len())
            .filter(|&i| matches!(actions[i], Action::Rewrite { .. } | Action::Touch { changed: true, .. }))
            .collect();
        if !update_idx.is_empty() {
            let rewrite = tx
                .prepare_typed(
                    &format!(
                        "UPDATE {t} SET title = $2, content = $3, source = $4, metadata = $5, embedding = $6, \
                         updated_at = now() WHERE id = $1"
                    ),
                    &[Type::INT8, Type::VARCHAR, Type::TEXT, Type::VARCHAR, Type::JSONB, self.vector_type.clone()],
                )
                .await?;
            let touch = tx
                .prepare_typed(
                    &format!("UPDATE {t} SET source = $2, metadata = $3, updated_at = now() WHERE id = $1"),
                    &[Type::INT8, Type::VARCHAR, Type::JSONB],
                )
                .await?;
            for idx in update_idx.chunks(chunk) {
                let mut group: Vec<NewDocument> =
                    idx.iter().map(|&i| std::mem::replace(&mut docs[i], placeholder())).collect();
                let group_actions: Vec<Action> = idx.iter().map(|&i| actions[i]).collect();
                report.embedded += fill_embeddings(embedder, &mut group, &group_actions).await?;
                // A touched row keeps its stored vector (a precomputed one equal to it is not
                // written again).
                let vectors: Vec<Option<Vector>> = group
                    .iter_mut()
                    .zip(&group_actions)
                    .map(|(d, a)| match a {
                        Action::Touch { .. } => None,
                        _ => d.embedding.take().map(Vector::from),
                    })
                    .collect();
                let futures = idx.iter().zip(&group).zip(&vectors).map(|((&i, d), v)| {
                    let id = &report.ids[i];
                    let (rewrite, touch, tx) = (&rewrite, &touch, &tx);
                    async move {
                        match v {
                            Some(v) => {
                                tx.execute(rewrite, &[id, &d.title, &d.content, &d.source, &d.metadata, v]).await
                            }
                            None => tx.execute(touch, &[id, &d.source, &d.metadata]).await,
                        }
                    }
                });
                try_join_all(futures).await?;
            }
        }

        // 2. New rows: one binary COPY stream; each chunk is embedded, written and dropped,
        //    so memory holds one chunk of vectors at a time.
        if inserts > 0 {
            let sink = tx
                .copy_in(&format!(
                    "COPY {t} (id, title, content, source, metadata, key, embedding) FROM STDIN (FORMAT binary)"
                ))
                .await?;
            let types = [
                Type::INT8,
                Type::VARCHAR,
                Type::TEXT,
                Type::VARCHAR,
                Type::JSONB,
                Type::TEXT,
                self.vector_type.clone(),
            ];
            let writer = BinaryCopyInWriter::new(sink, &types);
            futures_util::pin_mut!(writer);
            let insert_idx: Vec<usize> = (0..docs.len()).filter(|&i| actions[i] == Action::Insert).collect();
            for idx in insert_idx.chunks(chunk) {
                let mut group: Vec<NewDocument> =
                    idx.iter().map(|&i| std::mem::replace(&mut docs[i], placeholder())).collect();
                let group_actions = vec![Action::Insert; group.len()];
                report.embedded += fill_embeddings(embedder, &mut group, &group_actions).await?;
                for (&i, d) in idx.iter().zip(group) {
                    let v = Vector::from(d.embedding.ok_or_else(|| Error::Storage("missing embedding".into()))?);
                    let row: [&(dyn ToSql + Sync); 7] =
                        [&report.ids[i], &d.title, &d.content, &d.source, &d.metadata, &d.key, &v];
                    writer.as_mut().write(&row).await?;
                }
            }
            writer.finish().await?;
        }
        // A caller that gave up on this write (a request timeout) is told the truth: it rolls
        // back here, or it commits and the caller waits for the answer (see `CommitGate`).
        crate::gate::commit_point()?;
        tx.commit().await?;
        Ok(report)
    }
}

/// An empty document left behind when one is moved out of the input vector.
fn placeholder() -> NewDocument {
    NewDocument {
        title: String::new(),
        content: String::new(),
        source: None,
        metadata: serde_json::Value::Null,
        key: None,
        embedding: None,
    }
}
