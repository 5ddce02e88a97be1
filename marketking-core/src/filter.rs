//! The typed filter language: its JSON form (as MongoDB and Chroma users write it), the Rust
//! builder, validation with the path of every error, and the evaluation in Rust (the embedded
//! store). PostgreSQL compiles the same tree to SQL (`backend/postgres/filter_sql.rs`).
//!
//! A [`Filter`] keeps the JSON it was written as (its serialised form, and part of cached result
//! keys) next to the checked tree that backends run; both are built together, so a filter that
//! exists has been checked, and an invalid one carries its first error until it is used.
//! The semantics are documented in `docs/filters.md`, which is [`Filter`]'s documentation.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

use crate::document::Document;
use crate::error::{Error, Result};

/// Deepest nesting of filter objects (`$and`, `$or`, `$not` each add a level; the root is 1).
pub const MAX_FILTER_DEPTH: usize = 16;
/// Most nodes in one filter: every filter object and every condition counts.
pub const MAX_FILTER_NODES: usize = 256;
/// Most values in one `$in` or `$nin` list.
pub const MAX_FILTER_IN_VALUES: usize = 1024;
/// Most segments of a dotted metadata path.
pub const MAX_FILTER_PATH_SEGMENTS: usize = 16;

/// Top-level names that are not filterable fields: they are refused instead of being taken as
/// metadata keys, so they can become built-in fields later. `metadata.NAME` reaches a metadata
/// key of that name.
const RESERVED: [&str; 5] = ["id", "title", "content", "embedding", "metadata"];

/// A filter on documents: conditions on metadata paths and on the built-in fields `source`,
/// `key`, `created_at` and `updated_at`, combined with `$and`, `$or` and `$not`.
///
/// Written as JSON ([`Filter::from_json`], or serde) or with the builder:
///
/// ```
/// use marketking_core::Filter;
/// use serde_json::json;
///
/// let f = Filter::field("price").lt(100).and(Filter::field("tags").is_in(["sale", "new"]));
/// assert!(f.validate().is_ok());
/// let same = Filter::from_json(&json!({"$and": [{"price": {"$lt": 100}}, {"tags": {"$in": ["sale", "new"]}}]}))?;
/// assert_eq!(f, same);
/// // Errors name the path.
/// let bad = Filter::from_json(&json!({"$and": [{"a": 1}, {"price": {"$lt": [1]}}]})).unwrap_err();
/// assert!(bad.to_string().contains("filter.$and[1].price.$lt"));
/// # Ok::<(), marketking_core::Error>(())
/// ```
///
#[doc = include_str!("../docs/filters.md")]
#[derive(Debug, Clone)]
pub struct Filter {
    /// The JSON form, as written (or as the builder wrote it).
    json: Value,
    /// The checked tree, or the first error (field path, reason).
    plan: std::result::Result<Node, (String, String)>,
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.json == other.json
    }
}

impl Filter {
    /// Reads a filter from its JSON form; errors are [`Error::InvalidInput`] naming the path from
    /// `filter` (for example `filter.$and[1].price.$lt`).
    pub fn from_json(json: &Value) -> Result<Filter> {
        Self::from_json_at("filter", json)
    }

    /// [`from_json`](Self::from_json) with another root name in error paths.
    pub fn from_json_at(root: &str, json: &Value) -> Result<Filter> {
        let f = Filter::unchecked(json.clone(), root);
        f.validate_at(root)?;
        Ok(f)
    }

    /// Parses the JSON text of a filter (the CLI's `--filter`).
    pub fn parse(text: &str) -> Result<Filter> {
        let json: Value =
            serde_json::from_str(text).map_err(|e| Error::invalid("filter", format!("is not valid JSON: {e}")))?;
        Filter::from_json(&json)
    }

    /// The filter that matches every document (`{}`).
    pub fn everything() -> Filter {
        Filter::unchecked(Value::Object(Map::new()), "filter")
    }

    /// Starts a condition on a field: a built-in name (`source`, `key`, `created_at`,
    /// `updated_at`) or a dotted metadata path (`price`, `dims.width`, `metadata.source`).
    pub fn field(path: impl Into<String>) -> FieldCondition {
        FieldCondition { path: path.into() }
    }

    /// Documents matching every one of `filters` (`$and`; at least one).
    pub fn all(filters: impl IntoIterator<Item = Filter>) -> Filter {
        let list: Vec<Value> = filters.into_iter().map(|f| f.json).collect();
        Filter::unchecked(one_key("$and", Value::Array(list)), "filter")
    }

    /// Documents matching at least one of `filters` (`$or`; at least one).
    pub fn any(filters: impl IntoIterator<Item = Filter>) -> Filter {
        let list: Vec<Value> = filters.into_iter().map(|f| f.json).collect();
        Filter::unchecked(one_key("$or", Value::Array(list)), "filter")
    }

    /// Documents not matching `filter` (`$not`).
    #[allow(clippy::should_implement_trait)]
    pub fn not(filter: Filter) -> Filter {
        Filter::unchecked(one_key("$not", filter.json), "filter")
    }

    /// This filter and `other` (`$and`; an `$and` on the left is extended).
    pub fn and(self, other: Filter) -> Filter {
        self.combine("$and", other)
    }

    /// This filter or `other` (`$or`; an `$or` on the left is extended).
    pub fn or(self, other: Filter) -> Filter {
        self.combine("$or", other)
    }

    fn combine(self, op: &str, other: Filter) -> Filter {
        let mut json = self.json;
        if let Some(Value::Array(list)) = json.as_object_mut().filter(|o| o.len() == 1).and_then(|o| o.get_mut(op)) {
            list.push(other.json);
            return Filter::unchecked(json, "filter");
        }
        Filter::unchecked(one_key(op, Value::Array(vec![json, other.json])), "filter")
    }

    /// The JSON form.
    pub fn to_json(&self) -> &Value {
        &self.json
    }

    /// True for a filter without any condition (`{}`): it matches every document.
    /// (`{"$and": [{}]}` counts as empty too: an `$and` of empty filters.)
    pub fn is_empty(&self) -> bool {
        fn empty(n: &Node) -> bool {
            matches!(n, Node::And(list) if list.iter().all(empty))
        }
        self.plan.as_ref().is_ok_and(empty)
    }

    /// Checks the filter: unknown operators, wrong operand types, bad paths, too deep or too
    /// large filters are [`Error::InvalidInput`] naming the path (`filter.$and[1].price.$lt`).
    pub fn validate(&self) -> Result<()> {
        self.validate_at("filter")
    }

    fn validate_at(&self, root: &str) -> Result<()> {
        match &self.plan {
            Ok(_) => Ok(()),
            Err((field, reason)) => {
                // Paths are recorded from `filter`; another root replaces that first word.
                let field = match field.strip_prefix("filter") {
                    Some(rest) if root != "filter" => format!("{root}{rest}"),
                    _ => field.clone(),
                };
                Err(Error::InvalidInput { field, reason: reason.clone() })
            }
        }
    }

    /// Whether a document with these fields matches (false for an invalid filter).
    pub fn matches(&self, fields: FilterFields<'_>) -> bool {
        self.plan.as_ref().is_ok_and(|n| n.matches(&fields))
    }

    /// Whether a stored document matches.
    pub fn matches_document(&self, doc: &Document) -> bool {
        self.matches(FilterFields::from(doc))
    }

    /// The checked tree (backends get validated filters).
    #[cfg_attr(not(any(feature = "postgres", feature = "embedded")), allow(dead_code))]
    pub(crate) fn node(&self) -> Result<&Node> {
        self.validate()?;
        self.plan.as_ref().map_err(|_| Error::invalid("filter", "invalid"))
    }

    fn unchecked(json: Value, root: &str) -> Filter {
        let mut budget = MAX_FILTER_NODES;
        let plan = parse_filter(&json, root, 1, &mut budget);
        Filter { json, plan }
    }
}

impl Serialize for Filter {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Filter, D::Error> {
        let json = Value::deserialize(d)?;
        Filter::from_json(&json).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "utoipa")]
impl utoipa::PartialSchema for Filter {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .description(Some(
                "A filter: `{\"field\": value}` (equality), `{\"field\": {\"$op\": operand}}` with $eq $ne $gt $gte $lt \
                 $lte $in $nin $exists, combined with $and, $or (arrays of filters) and $not (a filter). Fields are \
                 source, key, created_at, updated_at, or dotted metadata paths (`metadata.` prefix optional).",
            ))
            .into()
    }
}

#[cfg(feature = "utoipa")]
impl utoipa::ToSchema for Filter {}

/// The fields of a document that a filter reads.
#[derive(Debug, Clone, Copy)]
pub struct FilterFields<'a> {
    /// The source.
    pub source: Option<&'a str>,
    /// The caller key.
    pub key: Option<&'a str>,
    /// The metadata object.
    pub metadata: &'a Value,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl<'a> From<&'a Document> for FilterFields<'a> {
    fn from(d: &'a Document) -> Self {
        FilterFields {
            source: d.source.as_deref(),
            key: d.key.as_deref(),
            metadata: &d.metadata,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// A condition being built on one field: finish it with an operator.
#[derive(Debug, Clone)]
pub struct FieldCondition {
    path: String,
}

impl FieldCondition {
    fn op(self, op: &str, operand: Value) -> Filter {
        Filter::unchecked(one_key(&self.path, one_key(op, operand)), "filter")
    }

    /// Equal to `value` (`$eq`; a scalar: string, number, boolean or null).
    pub fn eq(self, value: impl Into<Value>) -> Filter {
        self.op("$eq", value.into())
    }

    /// Not equal to `value` (`$ne`; true when the field is missing).
    pub fn ne(self, value: impl Into<Value>) -> Filter {
        self.op("$ne", value.into())
    }

    /// Greater than `value` (`$gt`; a number or a string; an RFC 3339 time for dates).
    pub fn gt(self, value: impl Into<Value>) -> Filter {
        self.op("$gt", value.into())
    }

    /// Greater than or equal to `value` (`$gte`).
    pub fn gte(self, value: impl Into<Value>) -> Filter {
        self.op("$gte", value.into())
    }

    /// Less than `value` (`$lt`).
    pub fn lt(self, value: impl Into<Value>) -> Filter {
        self.op("$lt", value.into())
    }

    /// Less than or equal to `value` (`$lte`).
    pub fn lte(self, value: impl Into<Value>) -> Filter {
        self.op("$lte", value.into())
    }

    /// Equal to one of `values` (`$in`).
    pub fn is_in<V: Into<Value>>(self, values: impl IntoIterator<Item = V>) -> Filter {
        self.op("$in", Value::Array(values.into_iter().map(Into::into).collect()))
    }

    /// Equal to none of `values` (`$nin`; true when the field is missing).
    pub fn not_in<V: Into<Value>>(self, values: impl IntoIterator<Item = V>) -> Filter {
        self.op("$nin", Value::Array(values.into_iter().map(Into::into).collect()))
    }

    /// Present (`true`) or absent (`false`) (`$exists`; a metadata value `null` is present).
    pub fn exists(self, present: bool) -> Filter {
        self.op("$exists", Value::Bool(present))
    }
}

fn one_key(k: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert(k.to_string(), v);
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// The checked tree.

/// A checked filter.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// All of them (an empty list matches everything).
    And(Vec<Node>),
    /// At least one of them.
    Or(Vec<Node>),
    /// Not this one.
    Not(Box<Node>),
    /// A condition on one field.
    Leaf(Leaf),
}

/// A field and what its value must be.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub(crate) field: Field,
    pub(crate) op: Op,
}

/// A filterable field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Field {
    Source,
    Key,
    CreatedAt,
    UpdatedAt,
    /// A metadata path, one key per segment.
    Meta(Vec<String>),
}

/// A positive condition (`$ne` and `$nin` are `Not` of `Eq` and `In`).
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Eq(Operand),
    In(Vec<Operand>),
    Cmp(Cmp, Operand),
    Exists(bool),
}

/// An ordering comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Cmp {
    pub(crate) fn holds(self, o: Ordering) -> bool {
        match self {
            Cmp::Gt => o == Ordering::Greater,
            Cmp::Gte => o != Ordering::Less,
            Cmp::Lt => o == Ordering::Less,
            Cmp::Lte => o != Ordering::Greater,
        }
    }

    /// The SQL and jsonpath operator.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Gte => ">=",
            Cmp::Lt => "<",
            Cmp::Lte => "<=",
        }
    }
}

/// A checked operand: a JSON scalar (metadata, `source`, `key`) or an instant (dates).
#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Json(Value),
    Time(DateTime<Utc>),
}

type Parsed<T> = std::result::Result<T, (String, String)>;

fn err<T>(path: &str, reason: impl Into<String>) -> Parsed<T> {
    Err((path.to_string(), reason.into()))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn take_node(path: &str, budget: &mut usize) -> Parsed<()> {
    if *budget == 0 {
        return err(path, format!("the filter has more than {MAX_FILTER_NODES} nodes (filter objects and conditions)"));
    }
    *budget -= 1;
    Ok(())
}

/// Parses a filter object at `path`, `depth` levels deep.
fn parse_filter(v: &Value, path: &str, depth: usize, budget: &mut usize) -> Parsed<Node> {
    if depth > MAX_FILTER_DEPTH {
        return err(path, format!("filters nest at most {MAX_FILTER_DEPTH} levels deep"));
    }
    take_node(path, budget)?;
    let Value::Object(map) = v else {
        return err(path, format!("must be a filter object, got {}", type_name(v)));
    };
    if depth > 1 && map.is_empty() {
        return err(path, "must hold at least one condition (only the whole filter may be {})");
    }
    let mut parts = Vec::with_capacity(map.len());
    for (k, val) in map {
        let at = format!("{path}.{k}");
        match k.as_str() {
            "$and" | "$or" => {
                let Value::Array(list) = val else {
                    return err(&at, format!("needs an array of filters, got {}", type_name(val)));
                };
                if list.is_empty() {
                    return err(&at, "needs at least one filter");
                }
                let nodes = list
                    .iter()
                    .enumerate()
                    .map(|(i, f)| parse_filter(f, &format!("{at}[{i}]"), depth + 1, budget))
                    .collect::<Parsed<Vec<_>>>()?;
                parts.push(if k == "$and" { Node::And(nodes) } else { Node::Or(nodes) });
            }
            "$not" => parts.push(Node::Not(Box::new(parse_filter(val, &at, depth + 1, budget)?))),
            op if op.starts_with('$') => {
                return err(
                    &at,
                    "unknown operator: a filter's keys are $and, $or, $not or field names (field operators such as \
                     $eq go inside a field: {\"price\": {\"$lt\": 100}})",
                )
            }
            name => {
                let field = parse_field(name, &at)?;
                parse_conditions(&field, val, &at, budget, &mut parts)?;
            }
        }
    }
    Ok(match parts.len() {
        1 => parts.pop().unwrap_or(Node::And(Vec::new())),
        _ => Node::And(parts),
    })
}

/// Resolves a field name: built-ins by name, `metadata.` prefix or any other name for metadata.
fn parse_field(name: &str, path: &str) -> Parsed<Field> {
    match name {
        "source" => return Ok(Field::Source),
        "key" => return Ok(Field::Key),
        "created_at" => return Ok(Field::CreatedAt),
        "updated_at" => return Ok(Field::UpdatedAt),
        _ => {}
    }
    let meta = match name.strip_prefix("metadata.") {
        Some(rest) => rest,
        None if RESERVED.contains(&name) => {
            return err(
                path,
                format!(
                    "{name:?} is not a filterable field (fields: source, key, created_at, updated_at, or a metadata \
                     path; write metadata.{name} for a metadata key of that name)"
                ),
            )
        }
        None => name,
    };
    if name.contains('\0') {
        return err(path, "field names must not contain NUL characters");
    }
    let segments: Vec<String> = meta.split('.').map(str::to_string).collect();
    if segments.iter().any(String::is_empty) {
        return err(path, "a metadata path is keys separated by single dots, none of them empty (a.b.c)");
    }
    if segments.len() > MAX_FILTER_PATH_SEGMENTS {
        return err(path, format!("a metadata path has at most {MAX_FILTER_PATH_SEGMENTS} segments"));
    }
    Ok(Field::Meta(segments))
}

/// Parses the value of a field: a scalar (equality) or an object of operators (all must hold).
fn parse_conditions(field: &Field, v: &Value, path: &str, budget: &mut usize, out: &mut Vec<Node>) -> Parsed<()> {
    let Value::Object(ops) = v else {
        take_node(path, budget)?;
        if matches!(v, Value::Array(_)) {
            return err(
                path,
                "an array is not a value to compare with: use {\"$in\": [...]} for any of several values",
            );
        }
        let operand = parse_scalar(field, v, path, true)?;
        out.push(Node::Leaf(Leaf { field: field.clone(), op: Op::Eq(operand) }));
        return Ok(());
    };
    if ops.is_empty() {
        return err(path, "needs a value or an operator object such as {\"$gt\": 1}");
    }
    for (op, operand) in ops {
        let at = format!("{path}.{op}");
        take_node(&at, budget)?;
        let leaf = |op| Node::Leaf(Leaf { field: field.clone(), op });
        let node = match op.as_str() {
            "$eq" => leaf(Op::Eq(parse_scalar(field, operand, &at, true)?)),
            "$ne" => Node::Not(Box::new(leaf(Op::Eq(parse_scalar(field, operand, &at, true)?)))),
            "$gt" | "$gte" | "$lt" | "$lte" => {
                let cmp = match op.as_str() {
                    "$gt" => Cmp::Gt,
                    "$gte" => Cmp::Gte,
                    "$lt" => Cmp::Lt,
                    _ => Cmp::Lte,
                };
                leaf(Op::Cmp(cmp, parse_ordered(field, operand, &at)?))
            }
            "$in" | "$nin" => {
                let Value::Array(list) = operand else {
                    return err(&at, format!("needs an array of values, got {}", type_name(operand)));
                };
                if list.len() > MAX_FILTER_IN_VALUES {
                    return err(&at, format!("takes at most {MAX_FILTER_IN_VALUES} values, got {}", list.len()));
                }
                let values = list
                    .iter()
                    .enumerate()
                    .map(|(i, x)| parse_scalar(field, x, &format!("{at}[{i}]"), true))
                    .collect::<Parsed<Vec<_>>>()?;
                let node = leaf(Op::In(values));
                if op == "$in" {
                    node
                } else {
                    Node::Not(Box::new(node))
                }
            }
            "$exists" => match operand {
                Value::Bool(b) => leaf(Op::Exists(*b)),
                other => return err(&at, format!("needs true or false, got {}", type_name(other))),
            },
            "$not" => {
                return err(&at, "$not takes a whole filter at the filter level: {\"$not\": {\"price\": {\"$gt\": 1}}}")
            }
            _ => {
                return err(
                    &at,
                    if op.starts_with('$') {
                        "unknown operator (field operators: $eq $ne $gt $gte $lt $lte $in $nin $exists)"
                    } else {
                        "an object value must hold operators such as {\"$gt\": 1}; write a nested field as a dotted \
                         path (a.b)"
                    },
                )
            }
        };
        out.push(node);
    }
    Ok(())
}

/// An equality operand: a scalar of the field's type.
fn parse_scalar(field: &Field, v: &Value, path: &str, null_ok: bool) -> Parsed<Operand> {
    match field {
        Field::Source | Field::Key => match v {
            Value::String(s) => no_nul(s, path).map(|()| Operand::Json(v.clone())),
            Value::Null if null_ok => Ok(Operand::Json(Value::Null)),
            other => err(
                path,
                format!("{} is text: compare it with a string or null, got {}", name(field), type_name(other)),
            ),
        },
        Field::CreatedAt | Field::UpdatedAt => parse_time(field, v, path),
        Field::Meta(_) => match v {
            Value::String(s) => no_nul(s, path).map(|()| Operand::Json(v.clone())),
            Value::Null | Value::Bool(_) | Value::Number(_) => Ok(Operand::Json(v.clone())),
            other => err(path, format!("needs a string, number, boolean or null, got {}", type_name(other))),
        },
    }
}

/// An ordering operand: a number or a string (metadata), a string (`source`, `key`), an instant.
fn parse_ordered(field: &Field, v: &Value, path: &str) -> Parsed<Operand> {
    match (field, v) {
        (Field::CreatedAt | Field::UpdatedAt, _) => parse_time(field, v, path),
        (Field::Meta(_), Value::Number(_)) => Ok(Operand::Json(v.clone())),
        (_, Value::String(s)) => no_nul(s, path).map(|()| Operand::Json(v.clone())),
        (Field::Meta(_), other) => err(path, format!("needs a number or a string, got {}", type_name(other))),
        (_, other) => err(path, format!("{} is text: compare it with a string, got {}", name(field), type_name(other))),
    }
}

fn parse_time(field: &Field, v: &Value, path: &str) -> Parsed<Operand> {
    let Value::String(s) = v else {
        return err(
            path,
            format!(
                "{} is a time: compare it with an RFC 3339 string such as 2024-06-01T00:00:00Z, got {}",
                name(field),
                type_name(v)
            ),
        );
    };
    // The same reading as the `created_after` option (serde's), truncated to the stored
    // precision (microseconds) so both backends compare the same instant.
    let t: DateTime<Utc> = serde_json::from_value(Value::String(s.clone())).map_err(|_| {
        (
            path.to_string(),
            format!("{} is a time: {s:?} is not an RFC 3339 time such as 2024-06-01T00:00:00Z", name(field)),
        )
    })?;
    let micros = t.timestamp_micros();
    DateTime::from_timestamp_micros(micros)
        .map(Operand::Time)
        .ok_or_else(|| (path.to_string(), "time out of range".to_string()))
}

fn no_nul(s: &str, path: &str) -> Parsed<()> {
    if s.contains('\0') {
        return err(path, "must not contain NUL characters");
    }
    Ok(())
}

fn name(field: &Field) -> &'static str {
    match field {
        Field::Source => "source",
        Field::Key => "key",
        Field::CreatedAt => "created_at",
        Field::UpdatedAt => "updated_at",
        Field::Meta(_) => "metadata",
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation in Rust: the embedded store's semantics, which PostgreSQL's SQL mirrors.

impl Node {
    pub(crate) fn matches(&self, f: &FilterFields<'_>) -> bool {
        match self {
            Node::And(list) => list.iter().all(|n| n.matches(f)),
            Node::Or(list) => list.iter().any(|n| n.matches(f)),
            Node::Not(n) => !n.matches(f),
            Node::Leaf(leaf) => leaf.matches(f),
        }
    }
}

impl Leaf {
    fn matches(&self, f: &FilterFields<'_>) -> bool {
        match &self.field {
            Field::Source => text_matches(f.source, &self.op),
            Field::Key => text_matches(f.key, &self.op),
            Field::CreatedAt => time_matches(f.created_at, &self.op),
            Field::UpdatedAt => time_matches(f.updated_at, &self.op),
            Field::Meta(path) => meta_matches(f.metadata, path, &self.op),
        }
    }
}

fn operand_str(o: &Operand) -> Option<&str> {
    match o {
        Operand::Json(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn is_null(o: &Operand) -> bool {
    matches!(o, Operand::Json(Value::Null))
}

fn text_matches(value: Option<&str>, op: &Op) -> bool {
    let eq = |o: &Operand| match operand_str(o) {
        Some(s) => value == Some(s),
        None => value.is_none() && is_null(o),
    };
    match op {
        Op::Eq(o) => eq(o),
        Op::In(list) => list.iter().any(eq),
        Op::Cmp(c, o) => match (value, operand_str(o)) {
            (Some(v), Some(s)) => c.holds(v.cmp(s)),
            _ => false,
        },
        Op::Exists(b) => value.is_some() == *b,
    }
}

fn time_matches(value: DateTime<Utc>, op: &Op) -> bool {
    let eq = |o: &Operand| matches!(o, Operand::Time(t) if *t == value);
    match op {
        Op::Eq(o) => eq(o),
        Op::In(list) => list.iter().any(eq),
        Op::Cmp(c, Operand::Time(t)) => c.holds(value.cmp(t)),
        Op::Cmp(_, _) => false,
        Op::Exists(b) => *b,
    }
}

/// The values a metadata path reaches, as PostgreSQL's lax jsonpath `$."a"."b"` finds them: a
/// key step reads the key of an object, and of each object directly inside an array.
pub(crate) fn path_values<'a>(root: &'a Value, path: &[String]) -> Vec<&'a Value> {
    let mut cur = vec![root];
    for seg in path {
        let mut next = Vec::new();
        for v in cur {
            match v {
                Value::Object(m) => next.extend(m.get(seg)),
                Value::Array(items) => {
                    next.extend(items.iter().filter_map(|e| e.as_object().and_then(|m| m.get(seg))));
                }
                _ => {}
            }
        }
        cur = next;
    }
    cur
}

/// The values a comparison looks at: each value reached, or the elements of an array reached.
fn compared<'a>(reached: &[&'a Value]) -> Vec<&'a Value> {
    let mut out = Vec::with_capacity(reached.len());
    for &v in reached {
        match v {
            Value::Array(items) => out.extend(items.iter()),
            other => out.push(other),
        }
    }
    out
}

fn meta_matches(metadata: &Value, path: &[String], op: &Op) -> bool {
    let reached = path_values(metadata, path);
    let values = compared(&reached);
    let eq = |o: &Operand| match o {
        // null also matches a missing field (as in MongoDB).
        Operand::Json(Value::Null) => reached.is_empty() || values.iter().any(|v| v.is_null()),
        Operand::Json(x) => values.iter().any(|v| json_scalar_eq(v, x)),
        Operand::Time(_) => false,
    };
    match op {
        Op::Eq(o) => eq(o),
        Op::In(list) => list.iter().any(eq),
        Op::Cmp(c, Operand::Json(x)) => values.iter().any(|v| json_order(v, x).is_some_and(|o| c.holds(o))),
        Op::Cmp(_, _) => false,
        Op::Exists(b) => reached.is_empty() != *b,
    }
}

/// Equality of two JSON scalars of the same type (numbers by value: `1 == 1.0`).
fn json_scalar_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_cmp(x, y) == Ordering::Equal,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

/// Order of two numbers or two strings (code point order); `None` across types.
fn json_order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Some(number_cmp(x, y)),
        (Value::String(x), Value::String(y)) => Some(x.as_str().cmp(y.as_str())),
        _ => None,
    }
}

/// Exact order of two JSON numbers, integers and floats mixed (PostgreSQL compares numerics).
pub(crate) fn number_cmp(a: &Number, b: &Number) -> Ordering {
    match (int_of(a), int_of(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(x), None) => int_float_cmp(x, b.as_f64().unwrap_or(0.0)),
        (None, Some(y)) => int_float_cmp(y, a.as_f64().unwrap_or(0.0)).reverse(),
        (None, None) => a.as_f64().unwrap_or(0.0).partial_cmp(&b.as_f64().unwrap_or(0.0)).unwrap_or(Ordering::Equal),
    }
}

fn int_of(n: &Number) -> Option<i128> {
    n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
}

/// Exact order of an integer and a finite float.
fn int_float_cmp(i: i128, f: f64) -> Ordering {
    // -0.0 equals 0 (total_cmp would order them).
    let f = if f == 0.0 { 0.0 } else { f };
    let t = f.trunc();
    // Beyond ±2^100 no i64/u64 can compare equal: the float's sign and size decide.
    if t >= 1.0e30 {
        return Ordering::Less;
    }
    if t <= -1.0e30 {
        return Ordering::Greater;
    }
    let ti = t as i128;
    match i.cmp(&ti) {
        Ordering::Equal => {
            let frac = f - t;
            if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(v: Value) -> Filter {
        Filter::from_json(&v).unwrap()
    }

    fn field_of(e: Error) -> String {
        match e {
            Error::InvalidInput { field, .. } => field,
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    fn row(meta: Value) -> (Value, DateTime<Utc>) {
        (meta, DateTime::from_timestamp(1_700_000_000, 0).unwrap())
    }

    fn hit(filter: &Filter, meta: &Value, t: DateTime<Utc>) -> bool {
        filter.matches(FilterFields {
            source: Some("catalog"),
            key: None,
            metadata: meta,
            created_at: t,
            updated_at: t,
        })
    }

    #[test]
    fn errors_name_the_path() {
        let cases = [
            (json!({"$and": [{"a": 1}, {"price": {"$lt": [1]}}]}), "filter.$and[1].price.$lt"),
            (json!({"price": {"$foo": 1}}), "filter.price.$foo"),
            (json!({"$nor": []}), "filter.$nor"),
            (json!({"tags": {"$in": "x"}}), "filter.tags.$in"),
            (json!({"tags": {"$in": [1, [2]]}}), "filter.tags.$in[1]"),
            (json!({"created_at": {"$lt": "yesterday"}}), "filter.created_at.$lt"),
            (json!({"created_at": {"$gt": 5}}), "filter.created_at.$gt"),
            (json!({"source": 5}), "filter.source"),
            (json!({"a..b": 1}), "filter.a..b"),
            (json!({"id": 1}), "filter.id"),
            (json!({"a": {"b": 1}}), "filter.a.b"),
            (json!({"a": [1]}), "filter.a"),
            (json!({"a": {}}), "filter.a"),
            (json!({"$or": []}), "filter.$or"),
            (json!({"$or": [{"a": 1}, {}]}), "filter.$or[1]"),
            (json!({"$not": {}}), "filter.$not"),
            (json!({"$not": [1]}), "filter.$not"),
            (json!({"a": {"$exists": 1}}), "filter.a.$exists"),
            (json!({"a": "x\u{0}"}), "filter.a"),
            (json!([1]), "filter"),
        ];
        for (json, path) in cases {
            assert_eq!(field_of(Filter::from_json(&json).unwrap_err()), path, "{json}");
        }
        // Too deep and too large.
        let mut deep = json!({"a": 1});
        for _ in 0..MAX_FILTER_DEPTH {
            deep = json!({"$not": deep});
        }
        assert!(field_of(Filter::from_json(&deep).unwrap_err()).starts_with("filter.$not.$not"));
        let wide: Vec<Value> = (0..MAX_FILTER_NODES).map(|i| json!({format!("k{i}"): i})).collect();
        assert_eq!(field_of(Filter::from_json(&json!({"$or": wide})).unwrap_err()), "filter.$or[127].k127");
        assert!(Filter::from_json(&json!({"a": {"$in": vec![1; MAX_FILTER_IN_VALUES + 1]}})).is_err());
        // The root name can be changed.
        assert_eq!(
            field_of(Filter::from_json_at("body.filter", &json!({"a": {"$x": 1}})).unwrap_err()),
            "body.filter.a.$x"
        );
    }

    #[test]
    fn builder_equals_json_and_invalid_builders_fail_validation() {
        let b = Filter::field("price")
            .gte(10)
            .and(Filter::field("price").lt(100))
            .and(Filter::not(Filter::field("sold").exists(true)));
        assert_eq!(
            b.to_json(),
            &json!({"$and": [{"price": {"$gte": 10}}, {"price": {"$lt": 100}}, {"$not": {"sold": {"$exists": true}}}]})
        );
        assert!(b.validate().is_ok());
        let bad = Filter::field("a").eq(1).or(Filter::field("created_at").lt("soon"));
        assert_eq!(field_of(bad.validate().unwrap_err()), "filter.$or[1].created_at.$lt");
        assert!(!hit(&bad, &json!({"a": 1}), Utc::now()), "an invalid filter matches nothing");
        assert!(Filter::everything().is_empty());
        assert!(f(json!({})).is_empty());
        // serde round trip.
        let s = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<Filter>(&s).unwrap(), b);
        assert!(serde_json::from_str::<Filter>(r#"{"a":{"$gt":[]}}"#)
            .unwrap_err()
            .to_string()
            .contains("filter.a.$gt"));
    }

    #[test]
    fn semantics() {
        let (m, t) = row(json!({"price": 10, "f": 1.5, "s": "10", "n": null, "tags": ["red", "big"], "dims": {"w": 3},
                                "items": [{"sku": "a"}, {"sku": "b"}], "deep": [[1]], "flag": true}));
        let yes = |v: Value| assert!(hit(&f(v.clone()), &m, t), "should match: {v}");
        let no = |v: Value| assert!(!hit(&f(v.clone()), &m, t), "should not match: {v}");
        yes(json!({"price": 10}));
        yes(json!({"price": 10.0}));
        no(json!({"price": "10"}));
        no(json!({"s": 10}));
        yes(json!({"s": "10"}));
        yes(json!({"price": {"$gt": 9.5, "$lte": 10}}));
        no(json!({"s": {"$gt": 5}}));
        yes(json!({"s": {"$gt": "05"}}));
        yes(json!({"f": {"$gt": 1}}));
        no(json!({"f": {"$lt": 1.5}}));
        // Missing fields: $ne and $nin are true, comparisons false, null matches.
        yes(json!({"missing": {"$ne": 1}}));
        yes(json!({"missing": {"$nin": [1]}}));
        no(json!({"missing": {"$gt": 1}}));
        no(json!({"missing": {"$lt": 1}}));
        yes(json!({"missing": null}));
        yes(json!({"n": null}));
        no(json!({"price": null}));
        yes(json!({"price": {"$ne": null}}));
        no(json!({"n": {"$ne": null}}));
        yes(json!({"n": {"$exists": true}}));
        no(json!({"missing": {"$exists": true}}));
        yes(json!({"$not": {"missing": {"$gt": 1}}}));
        // Arrays: any element.
        yes(json!({"tags": "red"}));
        yes(json!({"tags": {"$in": ["x", "big"]}}));
        no(json!({"tags": {"$nin": ["x", "big"]}}));
        no(json!({"tags": {"$ne": "red"}}));
        yes(json!({"tags": {"$gt": "c"}}));
        no(json!({"deep": 1}));
        yes(json!({"items.sku": "b"}));
        yes(json!({"dims.w": {"$gte": 3}}));
        yes(json!({"metadata.dims.w": 3}));
        no(json!({"dims.w.x": 3}));
        yes(json!({"flag": true}));
        no(json!({"flag": 1}));
        // Logic.
        yes(json!({"$or": [{"price": 1}, {"tags": "red"}]}));
        no(json!({"$and": [{"price": 10}, {"tags": "blue"}]}));
        yes(json!({"price": 10, "tags": "big"}));
        // Built-ins.
        yes(json!({"source": "catalog"}));
        yes(json!({"source": {"$gte": "cat", "$lt": "catz"}}));
        yes(json!({"key": null}));
        no(json!({"key": {"$exists": true}}));
        yes(json!({"key": {"$ne": "x"}}));
        yes(json!({"created_at": "2023-11-14T22:13:20Z"}));
        yes(json!({"created_at": "2023-11-14T23:13:20+01:00"}));
        no(json!({"created_at": {"$gt": "2023-11-14T22:13:20Z"}}));
        yes(json!({"updated_at": {"$lt": "2023-11-14T22:13:20.000001Z"}}));
    }

    #[test]
    fn numbers_compare_exactly() {
        let n = |v: Value| match v {
            Value::Number(n) => n,
            _ => unreachable!(),
        };
        assert_eq!(number_cmp(&n(json!(9007199254740993u64)), &n(json!(9007199254740992.0))), Ordering::Greater);
        assert_eq!(number_cmp(&n(json!(1)), &n(json!(1.0))), Ordering::Equal);
        assert_eq!(number_cmp(&n(json!(0)), &n(json!(-0.0))), Ordering::Equal);
        assert_eq!(number_cmp(&n(json!(2)), &n(json!(1.5))), Ordering::Greater);
        assert_eq!(number_cmp(&n(json!(-2)), &n(json!(-1.5))), Ordering::Less);
        assert_eq!(number_cmp(&n(json!(u64::MAX)), &n(json!(1e300))), Ordering::Less);
        assert_eq!(number_cmp(&n(json!(i64::MIN)), &n(json!(-1e300))), Ordering::Greater);
    }
}
