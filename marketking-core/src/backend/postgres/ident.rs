//! Table names from configuration: validated, then always quoted in SQL.

use crate::error::{Error, Result};

/// A validated `[schema.]table` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableName {
    pub(crate) schema: Option<String>,
    pub(crate) table: String,
}

/// The one identifier quoting of the crate: `"name"`, inner quotes doubled. Validation of table
/// names forbids quotes, but quoting must never depend on it.
pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn valid_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 48
}

impl TableName {
    /// Accepts `table` or `schema.table`, each an identifier of ASCII letters, digits and `_`
    /// that starts with a letter or `_`, at most 48 bytes (so derived index names fit in 63).
    pub(crate) fn parse(s: &str) -> Result<Self> {
        let err = || {
            Error::config(
                "table",
                format!(
                    "{s:?} is not a valid table name: use letters, digits and _ (not starting with a digit), \
                     at most 48 characters, optionally schema.table"
                ),
            )
        };
        let mut parts = s.split('.');
        let (schema, table) = match (parts.next(), parts.next(), parts.next()) {
            (Some(t), None, _) => (None, t),
            (Some(sc), Some(t), None) => (Some(sc), t),
            _ => return Err(err()),
        };
        if !valid_ident(table) || schema.is_some_and(|sc| !valid_ident(sc)) {
            return Err(err());
        }
        Ok(TableName { schema: schema.map(str::to_string), table: table.to_string() })
    }

    /// `"schema"."table"` or `"table"`.
    pub(crate) fn quoted(&self) -> String {
        self.in_schema(&self.table)
    }

    /// `"schema"."name"` or `"name"`: a relation in the table's schema (an index, say).
    pub(crate) fn in_schema(&self, name: &str) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", quote_ident(s), quote_ident(name)),
            None => quote_ident(name),
        }
    }

    /// `"schema"`, when the table has one.
    pub(crate) fn quoted_schema(&self) -> Option<String> {
        self.schema.as_deref().map(quote_ident)
    }

    /// A quoted, unqualified name for a relation next to the table, e.g. its index
    /// (`CREATE INDEX` puts an index in its table's schema and takes no schema in the name).
    pub(crate) fn sibling(&self, suffix: &str) -> String {
        quote_ident(&format!("{}_{suffix}", self.table))
    }

    /// The metadata table, in the same schema.
    pub(crate) fn meta_table(&self) -> String {
        self.in_schema("marketking_meta")
    }

    /// The write checkpoints table (see [`VectorStore::batch_once`](crate::VectorStore::batch_once)),
    /// in the same schema.
    pub(crate) fn checkpoint_table(&self) -> String {
        self.in_schema("marketking_checkpoints")
    }

    /// `schema.table` as the user wrote it.
    pub(crate) fn display(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.table),
            None => self.table.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_quotes() {
        assert_eq!(TableName::parse("embeddings").unwrap().quoted(), "\"embeddings\"");
        assert_eq!(TableName::parse("app.Docs_2").unwrap().quoted(), "\"app\".\"Docs_2\"");
        assert_eq!(TableName::parse("app.docs").unwrap().sibling("embedding_idx"), "\"docs_embedding_idx\"");
    }

    #[test]
    fn rejects_injection_and_junk() {
        for bad in ["", "1abc", "a-b", "a b", "x\"; drop table y; --", "a.b.c", ".a", "a.", &"x".repeat(49)] {
            let e = TableName::parse(bad).unwrap_err();
            assert!(matches!(e, Error::Config { ref field, .. } if field == "table"), "{bad}: {e}");
        }
    }
}
