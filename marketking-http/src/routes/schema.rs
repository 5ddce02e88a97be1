//! The input rules of the store, written into the published OpenAPI document so that what the
//! schema allows is what the server accepts (and the other way round).
//!
//! utoipa's derive says types, lengths and ranges; what it cannot say, and what depends on the
//! store (the vector size), is added here to the JSON of `/openapi.json`: no NUL characters
//! where PostgreSQL cannot store them, "not blank" with the whitespace the store trims, metadata
//! as objects whose keys and strings hold no NUL at any depth, vectors with the store's length,
//! value range and a value away from zero, and exactly one of `query` and `vector`.

use serde_json::{json, Map, Value};

use super::dto::{VECTOR_PEAK_MIN, VECTOR_VALUE_MAX};

/// No NUL character (PostgreSQL text and jsonb cannot hold one; the store refuses them).
const NO_NUL: &str = r"^[^\u0000]*$";

/// At least one character that is not whitespace, and no NUL. Whitespace is Unicode
/// `White_Space`, the set Rust's `str::trim` removes (which the store uses to refuse blank
/// text), spelled out because `\s` differs between regex engines.
const NOT_BLANK_NO_NUL: &str =
    r"^[^\u0000]*[^\u0000\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$";

/// At least one character that is not whitespace (as above); NUL allowed (a query is only
/// embedded, never stored).
const NOT_BLANK: &str = r"[^\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

/// Fills in the rules on `spec`, the JSON of [`ApiDoc`](super::ApiDoc), for a store of `dims`
/// dimensions.
pub(crate) fn complete(spec: &mut Value, dims: usize) {
    if let Some(schemas) = spec.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        add_metadata_schemas(schemas);
        add_filter_schemas(schemas);
        // Each kind of index takes only its own parameters (serde's deny_unknown_fields on the
        // tagged enum), which utoipa does not publish.
        if let Some(kinds) = schemas.get_mut("IndexBody").and_then(|s| s.get_mut("oneOf")).and_then(Value::as_array_mut)
        {
            for kind in kinds.iter_mut().filter_map(Value::as_object_mut) {
                kind.insert("additionalProperties".into(), json!(false));
            }
        }
        for (schema, field, filter_ref) in [
            ("SearchBody", "filter", "Filter"),
            ("CountBody", "filter", "Filter"),
            ("DeleteByFilterBody", "filter", "Filter"),
        ] {
            if let Some(p) = property(schemas, schema, field) {
                let description = p.remove("description");
                p.clear();
                let r = json!({"$ref": format!("#/components/schemas/{filter_ref}")});
                if schema == "DeleteByFilterBody" {
                    p.insert("allOf".into(), json!([r]));
                } else {
                    p.insert("anyOf".into(), json!([r, {"type": "null"}]));
                }
                if let Some(d) = description {
                    p.insert("description".into(), d);
                }
            }
        }
        if let Some(del) = schemas.get_mut("DeleteByFilterBody").and_then(Value::as_object_mut) {
            // `{}` deletes everything and needs `"all": true`.
            del.insert(
                "anyOf".into(),
                json!([
                    {"required": ["all"], "properties": {"all": {"const": true}}},
                    {"properties": {"filter": {"minProperties": 1}}},
                ]),
            );
        }
        for (schema, field, pattern) in [
            ("NewDocumentBody", "title", NOT_BLANK_NO_NUL),
            ("NewDocumentBody", "content", NOT_BLANK_NO_NUL),
            ("NewDocumentBody", "source", NO_NUL),
            ("NewDocumentBody", "key", NO_NUL),
            ("UpsertDocumentBody", "title", NOT_BLANK_NO_NUL),
            ("UpsertDocumentBody", "content", NOT_BLANK_NO_NUL),
            ("UpsertDocumentBody", "source", NO_NUL),
            ("PatchBody", "title", NOT_BLANK_NO_NUL),
            ("PatchBody", "content", NOT_BLANK_NO_NUL),
            ("PatchBody", "source", NO_NUL),
            ("SearchBody", "query", NOT_BLANK),
        ] {
            if let Some(p) = property(schemas, schema, field) {
                p.insert("pattern".into(), pattern.into());
            }
        }
        for schema in ["NewDocumentBody", "UpsertDocumentBody", "PatchBody", "SearchBody"] {
            if let Some(p) = property(schemas, schema, "metadata") {
                let description = p.remove("description");
                p.clear();
                // The search option is containment: no operator keys (`$lt`), which belong in `filter`.
                let r = if schema == "SearchBody" { "MetadataContainment" } else { "Metadata" };
                p.insert("anyOf".into(), json!([{"$ref": format!("#/components/schemas/{r}")}, {"type": "null"}]));
                if let Some(d) = description {
                    p.insert("description".into(), d);
                }
            }
        }
        if let Some(p) = property(schemas, "TuneBody", "query_texts") {
            p.insert("items".into(), json!({"type": "string", "minLength": 1, "pattern": NOT_BLANK}));
        }
        if let Some(p) = property(schemas, "SearchBody", "sources") {
            p.insert("items".into(), json!({"type": "string", "minLength": 1, "maxLength": 255, "pattern": NO_NUL}));
        }
        for (schema, field) in
            [("SearchBody", "vector"), ("NewDocumentBody", "embedding"), ("UpsertDocumentBody", "embedding")]
        {
            if let Some(p) = property(schemas, schema, field) {
                vector_rules(p, dims);
            }
        }
        if let Some(search) = schemas.get_mut("SearchBody").and_then(Value::as_object_mut) {
            // Exactly one of the two; each is nullable, and null counts as absent. A vector
            // query ranks by vector only: its `mode` is absent, null or "vector".
            search.insert(
                "anyOf".into(),
                json!([
                    {"required": ["query"], "properties": {"query": {"type": "string"}, "vector": {"type": "null"}}},
                    {"required": ["vector"], "properties": {"vector": {"type": "array"}, "query": {"type": "null"},
                        "mode": {"anyOf": [{"const": "vector"}, {"type": "null"}]}}},
                ]),
            );
        }
    }
    for (path, name, pattern) in [
        ("/v1/search", "q", NOT_BLANK),
        ("/v1/search", "source", NO_NUL),
        ("/v1/documents/by-key/{key}", "key", NO_NUL),
    ] {
        for param in parameters(spec, path, name) {
            param.insert("pattern".into(), pattern.into());
        }
    }
    for param in parameters(spec, "/v1/documents/by-key/{key}", "key") {
        param.insert("minLength".into(), 1.into());
        param.insert("maxLength".into(), 512.into());
    }
}

/// `Metadata`: an object whose keys and string values hold no NUL, at any depth.
/// `MetadataContainment` (the search option): the same without keys starting with `$`.
fn add_metadata_schemas(schemas: &mut Map<String, Value>) {
    let no_dollar = r"^([^$\u0000][^\u0000]*)?$";
    schemas.insert(
        "MetadataContainment".into(),
        json!({
            "description": "A JSON object the documents' metadata must contain; no key starts with $ (operators go in `filter`), no NUL.",
            "type": "object",
            "propertyNames": {"pattern": no_dollar},
            "additionalProperties": {"$ref": "#/components/schemas/MetadataContainmentValue"},
        }),
    );
    schemas.insert(
        "MetadataContainmentValue".into(),
        json!({
            "anyOf": [
                {"type": "string", "pattern": NO_NUL},
                {"type": ["number", "boolean", "null"]},
                {"type": "array", "items": {"$ref": "#/components/schemas/MetadataContainmentValue"}},
                {"$ref": "#/components/schemas/MetadataContainment"},
            ],
        }),
    );
    schemas.insert(
        "Metadata".into(),
        json!({
            "description": "A JSON object; no key or string in it, at any depth, holds a NUL character.",
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": "#/components/schemas/MetadataValue"},
        }),
    );
    schemas.insert(
        "MetadataValue".into(),
        json!({
            "description": "Any JSON value without NUL characters in its keys and strings.",
            "anyOf": [
                {"type": "string", "pattern": NO_NUL},
                {"type": ["number", "boolean", "null"]},
                {"type": "array", "items": {"$ref": "#/components/schemas/MetadataValue"}},
                {"$ref": "#/components/schemas/Metadata"},
            ],
        }),
    );
}

/// The filter language (`marketking_core::Filter`), as precisely as JSON Schema can say it:
/// the operators and their operand types per field, reserved names, path syntax, no NUL. Not
/// expressible, and checked by the server (400): at most 16 levels and 256 nodes.
fn add_filter_schemas(schemas: &mut Map<String, Value>) {
    let r = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    // A metadata path: keys separated by single dots, the first not starting with `$`, at most
    // 16 keys after an optional `metadata.` prefix.
    let path = r"^(metadata\.)?[^$.\u0000][^.\u0000]*(\.[^.\u0000]+){0,15}$";
    let text = json!({"type": "string", "pattern": NO_NUL});
    let condition = |scalar: Value, ordered: Value| {
        json!({"anyOf": [
            scalar.clone(),
            {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": false,
                "properties": {
                    "$eq": scalar, "$ne": scalar,
                    "$gt": ordered, "$gte": ordered, "$lt": ordered, "$lte": ordered,
                    "$in": {"type": "array", "maxItems": marketking_core::MAX_FILTER_IN_VALUES, "items": scalar},
                    "$nin": {"type": "array", "maxItems": marketking_core::MAX_FILTER_IN_VALUES, "items": scalar},
                    "$exists": {"type": "boolean"},
                },
            },
        ]})
    };
    let meta_scalar = json!({"anyOf": [text, {"type": ["number", "boolean", "null"]}]});
    let meta_ordered = json!({"anyOf": [text, {"type": "number"}]});
    let text_scalar = json!({"anyOf": [text, {"type": "null"}]});
    let time = json!({"type": "string", "format": "date-time"});
    schemas.insert("MetadataCondition".into(), condition(meta_scalar, meta_ordered));
    schemas.insert("TextCondition".into(), condition(text_scalar, text.clone()));
    schemas.insert("TimeCondition".into(), condition(time.clone(), time));
    let list = json!({"type": "array", "minItems": 1, "items": r("NestedFilter")});
    schemas.insert(
        "Filter".into(),
        json!({
            "description": "A filter: {\"field\": value} (equality) or {\"field\": {\"$op\": operand}} with $eq $ne \
                $gt $gte $lt $lte $in $nin $exists; several keys must all hold; $and and $or take arrays of filters, \
                $not one filter. Fields: source, key, created_at, updated_at, or a dotted metadata path (prefix \
                `metadata.` optional, required for metadata keys named like a field). {} matches everything.",
            "type": "object",
            "properties": {
                "$and": list, "$or": list, "$not": r("NestedFilter"),
                "source": r("TextCondition"), "key": r("TextCondition"),
                "created_at": r("TimeCondition"), "updated_at": r("TimeCondition"),
                "id": false, "title": false, "content": false, "embedding": false, "metadata": false,
            },
            "patternProperties": {path: r("MetadataCondition")},
            "additionalProperties": false,
        }),
    );
    // `$ref` beside `minProperties`, which OpenAPI 3.1 (JSON Schema 2020-12) reads as both
    // applying, like `allOf: [$ref]`. Not `allOf`: Swagger UI 5 cannot resolve an `allOf`
    // element that refers back to an enclosing schema and shows "Elements in allOf must be
    // objects" on /docs (swagger-api/swagger-client#3858).
    schemas.insert(
        "NestedFilter".into(),
        json!({"description": "A filter with at least one key.", "$ref": "#/components/schemas/Filter", "minProperties": 1}),
    );
}

/// What the store accepts in a vector: its length, the range of each value, and at least one
/// value away from zero (JSON Schema's `contains`, OpenAPI 3.1).
fn vector_rules(p: &mut Map<String, Value>, dims: usize) {
    p.insert("minItems".into(), dims.into());
    p.insert("maxItems".into(), dims.into());
    p.insert(
        "items".into(),
        json!({"type": "number", "format": "float", "minimum": -VECTOR_VALUE_MAX, "maximum": VECTOR_VALUE_MAX}),
    );
    p.insert("contains".into(), json!({"anyOf": [{"minimum": VECTOR_PEAK_MIN}, {"maximum": -VECTOR_PEAK_MIN}]}));
}

fn property<'a>(schemas: &'a mut Map<String, Value>, schema: &str, field: &str) -> Option<&'a mut Map<String, Value>> {
    schemas.get_mut(schema)?.get_mut("properties")?.get_mut(field)?.as_object_mut()
}

/// The parameters called `name` of every operation on `path`.
fn parameters<'a>(spec: &'a mut Value, path: &str, name: &str) -> Vec<&'a mut Map<String, Value>> {
    let Some(item) = spec.get_mut("paths").and_then(|p| p.get_mut(path)).and_then(Value::as_object_mut) else {
        return Vec::new();
    };
    item.values_mut()
        .filter_map(|op| op.get_mut("parameters").and_then(Value::as_array_mut))
        .flatten()
        .filter(|param| param.get("name").and_then(Value::as_str) == Some(name))
        .filter_map(|param| param.get_mut("schema").and_then(Value::as_object_mut))
        .collect()
}
