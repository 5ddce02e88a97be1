//! [`Filter`]s as SQL, and the two statements that take only a filter: count and delete.
//!
//! Choices made here, and why:
//! - Every value is a statement parameter, and so is every metadata path: a metadata condition
//!   is one jsonpath predicate, `metadata @@ $n::jsonpath` (or `@?` for `$exists`), whose text
//!   (path keys quoted as JSON strings, operands as JSON literals) is the parameter. Nothing a
//!   filter holds is ever written into the SQL text.
//! - The operand sits inside the jsonpath rather than in a `vars` argument: `@@` and `@?` take
//!   no variables, and they (unlike `jsonb_path_match()`) are operators a GIN index on
//!   `metadata` (`jsonb_path_ops` or `jsonb_ops`) can answer for equality; with
//!   `plan_cache_mode = force_custom_plan` the planner sees the constant path.
//! - Lax jsonpath gives the documented semantics directly: a missing key is no value, an array
//!   on the path is stepped through (one level), a comparison holds when it holds for any value
//!   or element, values of different types never compare true (`1 == "1"` is unknown).
//! - A jsonpath predicate can be NULL (unknown). Where NULL and false differ, under `NOT`, the
//!   inner condition is wrapped in `coalesce(.., false)`: SQL then agrees with the two-valued
//!   evaluation of the embedded store. (Without `NOT`, AND/OR over NULLs is false in a WHERE
//!   clause exactly when it is false with every NULL read as false.)

use tokio_postgres::types::{ToSql, Type};

use super::{with_read, with_retry, PgBackend};
use crate::error::Result;
use crate::filter::{Field, Filter, Node, Op, Operand};

/// A compiled filter: SQL text with numbered holes for its parameters.
pub(crate) struct SqlFilter {
    pieces: Vec<Piece>,
    params: Vec<(Box<dyn ToSql + Sync + Send>, Type)>,
}

enum Piece {
    Sql(String),
    Param(usize),
}

impl std::fmt::Debug for SqlFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlFilter").field("params", &self.params.len()).finish_non_exhaustive()
    }
}

impl SqlFilter {
    /// Compiles a (validated) filter.
    pub(crate) fn compile(filter: &Filter) -> Result<SqlFilter> {
        let mut out = SqlFilter { pieces: Vec::new(), params: Vec::new() };
        out.node(filter.node()?);
        Ok(out)
    }

    /// The SQL condition, with each parameter numbered by `push` (which records its value).
    pub(crate) fn render<'a>(&'a self, mut push: impl FnMut(&'a (dyn ToSql + Sync), Type) -> String) -> String {
        let mut sql = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Sql(s) => sql.push_str(s),
                Piece::Param(i) => {
                    if let Some((v, t)) = self.params.get(*i) {
                        let v: &(dyn ToSql + Sync) = v.as_ref();
                        sql.push_str(&push(v, t.clone()));
                    }
                }
            }
        }
        sql
    }

    fn sql(&mut self, s: &str) {
        match self.pieces.last_mut() {
            Some(Piece::Sql(last)) => last.push_str(s),
            _ => self.pieces.push(Piece::Sql(s.to_string())),
        }
    }

    fn param(&mut self, v: impl ToSql + Sync + Send + 'static, ty: Type) {
        self.pieces.push(Piece::Param(self.params.len()));
        self.params.push((Box::new(v), ty));
    }

    /// `metadata @@ <jsonpath>` (or another operator), the path as a parameter.
    fn jsonpath(&mut self, operator: &str, path: String) {
        self.sql(&format!("metadata {operator} "));
        self.param(path, Type::TEXT);
        self.sql("::jsonpath");
    }

    fn list(&mut self, nodes: &[Node], joiner: &str, empty: &str) {
        if nodes.is_empty() {
            self.sql(empty);
            return;
        }
        self.sql("(");
        for (i, n) in nodes.iter().enumerate() {
            if i > 0 {
                self.sql(joiner);
            }
            self.node(n);
        }
        self.sql(")");
    }

    fn node(&mut self, n: &Node) {
        match n {
            Node::And(list) => self.list(list, " AND ", "TRUE"),
            Node::Or(list) => self.list(list, " OR ", "FALSE"),
            Node::Not(inner) => {
                self.sql("NOT coalesce(");
                self.node(inner);
                self.sql(", false)");
            }
            Node::Leaf(leaf) => match &leaf.field {
                Field::Source => self.text_column("source", &leaf.op),
                Field::Key => self.text_column("key", &leaf.op),
                Field::CreatedAt => self.time_column("created_at", &leaf.op),
                Field::UpdatedAt => self.time_column("updated_at", &leaf.op),
                Field::Meta(path) => self.metadata(path, &leaf.op),
            },
        }
    }

    fn text_column(&mut self, col: &str, op: &Op) {
        let text = |o: &Operand| match o {
            Operand::Json(serde_json::Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        match op {
            Op::Eq(o) => match text(o) {
                Some(s) => {
                    self.sql(&format!("{col} = "));
                    self.param(s, Type::TEXT);
                }
                None => self.sql(&format!("{col} IS NULL")),
            },
            Op::In(list) => {
                let strings: Vec<String> = list.iter().filter_map(text).collect();
                let null = list.len() > strings.len();
                self.sql("(");
                self.sql(&format!("{col} = ANY("));
                self.param(strings, Type::TEXT_ARRAY);
                self.sql(")");
                if null {
                    self.sql(&format!(" OR {col} IS NULL"));
                }
                self.sql(")");
            }
            // Code point order, as on the embedded store (and jsonpath): the "C" collation
            // compares UTF-8 bytes.
            Op::Cmp(c, o) => match text(o) {
                Some(s) => {
                    self.sql(&format!("({col} COLLATE \"C\") {} ", c.symbol()));
                    self.param(s, Type::TEXT);
                }
                None => self.sql("FALSE"),
            },
            Op::Exists(true) => self.sql(&format!("{col} IS NOT NULL")),
            Op::Exists(false) => self.sql(&format!("{col} IS NULL")),
        }
    }

    fn time_column(&mut self, col: &str, op: &Op) {
        let time = |o: &Operand| match o {
            Operand::Time(t) => Some(*t),
            Operand::Json(_) => None,
        };
        match op {
            Op::Eq(o) => match time(o) {
                Some(t) => {
                    self.sql(&format!("{col} = "));
                    self.param(t, Type::TIMESTAMPTZ);
                }
                None => self.sql("FALSE"),
            },
            Op::In(list) => {
                let times: Vec<_> = list.iter().filter_map(time).collect();
                self.sql(&format!("{col} = ANY("));
                self.param(times, Type::TIMESTAMPTZ_ARRAY);
                self.sql(")");
            }
            Op::Cmp(c, o) => match time(o) {
                Some(t) => {
                    self.sql(&format!("{col} {} ", c.symbol()));
                    self.param(t, Type::TIMESTAMPTZ);
                }
                None => self.sql("FALSE"),
            },
            // Both columns are NOT NULL.
            Op::Exists(b) => self.sql(if *b { "TRUE" } else { "FALSE" }),
        }
    }

    fn metadata(&mut self, path: &[String], op: &Op) {
        let jp = json_path(path);
        let literal = |o: &Operand| match o {
            Operand::Json(v) => serde_json::to_string(v).unwrap_or_else(|_| "null".into()),
            Operand::Time(_) => "null".into(),
        };
        let is_null = |o: &Operand| matches!(o, Operand::Json(serde_json::Value::Null));
        // `null` also matches a missing field.
        let missing_or_null = |me: &mut Self, equal: Option<String>| {
            me.sql("(");
            if let Some(equal) = equal {
                me.jsonpath("@@", equal);
                me.sql(" OR ");
            }
            me.jsonpath("@@", format!("lax {jp} == null"));
            me.sql(" OR NOT ");
            me.jsonpath("@?", format!("lax {jp}"));
            me.sql(")");
        };
        match op {
            Op::Eq(o) if is_null(o) => missing_or_null(self, None),
            Op::Eq(o) => self.jsonpath("@@", format!("lax {jp} == {}", literal(o))),
            Op::In(list) => {
                let values: Vec<String> =
                    list.iter().filter(|o| !is_null(o)).map(|o| format!("{jp} == {}", literal(o))).collect();
                let any = (!values.is_empty()).then(|| format!("lax ({})", values.join(" || ")));
                match (list.iter().any(is_null), any) {
                    (true, any) => missing_or_null(self, any),
                    (false, Some(any)) => self.jsonpath("@@", any),
                    (false, None) => self.sql("FALSE"),
                }
            }
            Op::Cmp(c, o) => self.jsonpath("@@", format!("lax {jp} {} {}", c.symbol(), literal(o))),
            Op::Exists(b) => {
                if !*b {
                    self.sql("NOT ");
                }
                self.jsonpath("@?", format!("lax {jp}"));
            }
        }
    }
}

/// The jsonpath of a metadata path: `$."a"."b"`, each key a JSON string literal (whose escapes
/// jsonpath reads the same way).
fn json_path(path: &[String]) -> String {
    let mut s = String::from("$");
    for seg in path {
        s.push('.');
        s.push_str(&serde_json::to_string(seg).unwrap_or_else(|_| "\"\"".into()));
    }
    s
}

impl PgBackend {
    /// How many documents `filter` matches.
    pub(crate) async fn count_impl(&self, filter: &Filter) -> Result<u64> {
        let f = SqlFilter::compile(filter)?;
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> = Vec::new();
        let cond = f.render(|v, t| {
            params.push((v, t));
            format!("${}", params.len())
        });
        let sql = format!("SELECT count(*) FROM {} WHERE {cond}", self.sql.table);
        with_read!(self, None, |conn| {
            let rows = conn.query_typed(&sql, &params).await?;
            let n: i64 = rows.first().map(|r| r.try_get(0)).transpose()?.unwrap_or(0);
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    /// Deletes the documents `filter` matches, in one statement; how many.
    pub(crate) async fn delete_where_impl(&self, filter: &Filter) -> Result<u64> {
        let f = SqlFilter::compile(filter)?;
        let mut params: Vec<(&(dyn ToSql + Sync), Type)> = Vec::new();
        let cond = f.render(|v, t| {
            params.push((v, t));
            format!("${}", params.len())
        });
        let sql = format!("WITH d AS (DELETE FROM {} WHERE {cond} RETURNING 1) SELECT count(*) FROM d", self.sql.table);
        let conn = self.checkout().await?;
        crate::gate::commit_point()?;
        let rows = conn.query_typed(&sql, &params).await?;
        let n: i64 = rows.first().map(|r| r.try_get(0)).transpose()?.unwrap_or(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sql(v: serde_json::Value) -> (String, usize) {
        let f = SqlFilter::compile(&Filter::from_json(&v).unwrap()).unwrap();
        let mut n = 0;
        let s = f.render(|_, _| {
            n += 1;
            format!("${n}")
        });
        (s, n)
    }

    #[test]
    fn values_and_paths_are_parameters() {
        let (s, n) = sql(json!({"a'; DROP TABLE x; --.b": "'; DROP TABLE y; --", "source": {"$in": ["x", null]}}));
        assert!(!s.contains("DROP"), "{s}");
        assert_eq!(n, 2);
        assert_eq!(s, "(metadata @@ $1::jsonpath AND (source = ANY($2) OR source IS NULL))");
        let (s, _) = sql(json!({"$not": {"price": {"$gt": 5}}}));
        assert_eq!(s, "NOT coalesce(metadata @@ $1::jsonpath, false)");
        assert_eq!(json_path(&["a\"b".into(), "c".into()]), r#"$."a\"b"."c""#);
    }
}
