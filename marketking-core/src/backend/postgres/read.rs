//! Reads: get, list, search, and the single-row update.

use chrono::{DateTime, Utc};
use pgvector::Vector;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

use super::filter_sql::SqlFilter;
use super::{with_read, with_retry, PgBackend, TableName};
use crate::document::{Document, DocumentPatch};
use crate::error::Result;
use crate::filter::Filter;

/// Columns of a document, in the order [`row_to_document`] reads them.
pub(super) const COLS: &str = "id, title, content, source, metadata, key, created_at, updated_at";

/// SQL text built once per table (the table name is validated and quoted).
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) table: String,
    pub(crate) get: String,
    pub(crate) get_emb: String,
    pub(crate) get_key: String,
    pub(crate) get_key_emb: String,
    pub(crate) list: String,
    pub(crate) list_emb: String,
    pub(crate) delete: String,
    pub(crate) ping: String,
    /// The write checkpoints table (quoted, schema-qualified).
    pub(crate) checkpoints: String,
}

impl Statements {
    pub(crate) fn new(table: &TableName) -> Self {
        let t = table.quoted();
        Statements {
            get: format!("SELECT {COLS} FROM {t} WHERE id = $1"),
            get_emb: format!("SELECT {COLS}, embedding FROM {t} WHERE id = $1"),
            get_key: format!("SELECT {COLS} FROM {t} WHERE key = $1"),
            get_key_emb: format!("SELECT {COLS}, embedding FROM {t} WHERE key = $1"),
            list: format!("SELECT {COLS} FROM {t} WHERE id > $1 ORDER BY id LIMIT $2"),
            list_emb: format!("SELECT {COLS}, embedding FROM {t} WHERE id > $1 ORDER BY id LIMIT $2"),
            delete: format!("DELETE FROM {t} WHERE id = $1"),
            ping: format!("SELECT EXISTS (SELECT 1 FROM {t})"),
            checkpoints: table.checkpoint_table(),
            table: t,
        }
    }
}

/// Reads a row selected with [`COLS`] (plus `embedding` at index 8 when `with_embedding`).
///
/// Never panics on what the server sent: a value that does not decode (say, a number written
/// into the table by another tool that `serde_json` cannot hold) is an error naming the row.
pub(crate) fn row_to_document(row: &Row, with_embedding: bool) -> Result<Document> {
    let id: i64 = row.try_get(0)?;
    let decode = |e: tokio_postgres::Error| crate::error::Error::Database {
        message: format!("cannot read document {id}"),
        code: None,
        source: Some(Box::new(e)),
    };
    Ok(Document {
        id,
        title: row.try_get(1).map_err(decode)?,
        content: row.try_get(2).map_err(decode)?,
        source: row.try_get(3).map_err(decode)?,
        metadata: row.try_get(4).map_err(decode)?,
        key: row.try_get(5).map_err(decode)?,
        created_at: row.try_get::<_, DateTime<Utc>>(6).map_err(decode)?,
        updated_at: row.try_get::<_, DateTime<Utc>>(7).map_err(decode)?,
        embedding: match with_embedding {
            true => Some(row.try_get::<_, Vector>(8).map_err(decode)?.to_vec()),
            false => None,
        },
    })
}

impl PgBackend {
    pub(crate) async fn get_impl(&self, id: i64, with_embedding: bool) -> Result<Option<Document>> {
        let sql = if with_embedding { &self.sql.get_emb } else { &self.sql.get };
        with_read!(self, None, |conn| {
            let stmt = conn.statement(sql, &[Type::INT8]).await?;
            let row = conn.query_opt(&stmt, &[&id]).await?;
            row.map(|r| row_to_document(&r, with_embedding)).transpose()
        })
    }

    pub(crate) async fn get_by_key_impl(&self, key: &str, with_embedding: bool) -> Result<Option<Document>> {
        let sql = if with_embedding { &self.sql.get_key_emb } else { &self.sql.get_key };
        with_read!(self, None, |conn| {
            let stmt = conn.statement(sql, &[Type::TEXT]).await?;
            let row = conn.query_opt(&stmt, &[&key]).await?;
            row.map(|r| row_to_document(&r, with_embedding)).transpose()
        })
    }

    pub(crate) async fn list_impl(
        &self,
        after_id: i64,
        limit: usize,
        with_embedding: bool,
        filter: &Filter,
    ) -> Result<Vec<Document>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        if filter.is_empty() {
            let sql = if with_embedding { &self.sql.list_emb } else { &self.sql.list };
            return with_read!(self, None, |conn| {
                let stmt = conn.statement(sql, &[Type::INT8, Type::INT8]).await?;
                let rows = conn.query(&stmt, &[&after_id, &limit]).await?;
                rows.iter().map(|r| row_to_document(r, with_embedding)).collect()
            });
        }
        let f = SqlFilter::compile(filter)?;
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![(&after_id, Type::INT8), (&limit, Type::INT8)];
        let cond = f.render(|v, t| {
            params.push((v, t));
            format!("${}", params.len())
        });
        let sql = format!(
            "SELECT {COLS}{} FROM {} WHERE id > $1 AND ({cond}) ORDER BY id LIMIT $2",
            if with_embedding { ", embedding" } else { "" },
            self.sql.table
        );
        let (values, types): (Vec<_>, Vec<_>) = params.into_iter().unzip();
        // Prepared (and cached: the text depends on the filter's shape, not its values), so the
        // `vector` column's type is known before rows arrive.
        with_read!(self, None, |conn| {
            let stmt = conn.statement(&sql, &types).await?;
            let rows = conn.query(&stmt, &values).await?;
            rows.iter().map(|r| row_to_document(r, with_embedding)).collect()
        })
    }

    pub(crate) async fn update_impl(
        &self,
        id: i64,
        patch: &DocumentPatch,
        embedding: Option<Vec<f32>>,
    ) -> Result<Option<Document>> {
        let mut sets = vec!["updated_at = now()".to_string()];
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![(&id, Type::INT8)];
        let source_value;
        let vector;
        let meta;
        if let Some(t) = &patch.title {
            params.push((t, Type::VARCHAR));
            sets.push(format!("title = ${}", params.len()));
        }
        if let Some(c) = &patch.content {
            params.push((c, Type::TEXT));
            sets.push(format!("content = ${}", params.len()));
        }
        if let Some(s) = &patch.source {
            source_value = s.clone();
            params.push((&source_value, Type::VARCHAR));
            sets.push(format!("source = ${}", params.len()));
        }
        if let Some(m) = &patch.metadata {
            meta = tokio_postgres::types::Json(m);
            params.push((&meta, Type::JSONB));
            sets.push(format!("metadata = ${}", params.len()));
        }
        if let Some(v) = embedding {
            vector = Vector::from(v);
            params.push((&vector, self.vector_type.clone()));
            sets.push(format!("embedding = ${}", params.len()));
        }
        let sql = format!("UPDATE {} SET {} WHERE id = $1 RETURNING {COLS}", self.sql.table, sets.join(", "));
        let conn = self.checkout().await?;
        // One statement: it commits on its own, so its commit point is before it is sent.
        crate::gate::commit_point()?;
        let rows = conn.query_typed(&sql, &params).await?;
        rows.first().map(|r| row_to_document(r, false)).transpose()
    }
}
