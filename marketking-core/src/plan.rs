//! The write plan: what a batch does to each of its documents, given the stored rows of its
//! keys. Decided by the store before it embeds (from an unlocked read), and checked again by the
//! backend under its locks, so a concurrent writer can never make a batch write a stale plan.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::document::NewDocument;
use crate::error::{Error, Result};

/// A stored document's fields that decide what an upsert does.
#[derive(Debug, Clone)]
pub(crate) struct Existing {
    pub(crate) id: i64,
    pub(crate) title: String,
    pub(crate) content: String,
    pub(crate) source: Option<String>,
    pub(crate) metadata: Value,
    /// The stored last-change time: a restore that brings the same time changes nothing.
    pub(crate) updated_at: DateTime<Utc>,
    /// The stored vector: read only when the batch brings precomputed vectors for existing
    /// keys, to tell an unchanged vector from a new one.
    pub(crate) embedding: Option<Vec<f32>>,
}

/// Whether a batch needs the stored vectors of its keys (see [`Existing::embedding`]).
pub(crate) fn needs_stored_vectors(docs: &[NewDocument]) -> bool {
    docs.iter().any(|d| d.key.is_some() && d.embedding.is_some())
}

/// What to do with one input document of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// New row.
    Insert,
    /// Existing key, same text (and, for a precomputed vector, the same vector): keep the
    /// stored vector, maybe update source/metadata.
    Touch { id: i64, changed: bool },
    /// Existing key, new text or a different precomputed vector: rewrite with a new vector.
    Rewrite { id: i64 },
}

/// Decides the action for each document, given the existing rows of the batch's keys.
/// Rejects a key used twice in one batch.
pub(crate) fn plan_batch(docs: &[NewDocument], existing: &HashMap<String, Existing>) -> Result<Vec<Action>> {
    let mut seen = HashSet::new();
    docs.iter()
        .map(|d| {
            let Some(key) = &d.key else { return Ok(Action::Insert) };
            if !seen.insert(key.as_str()) {
                return Err(Error::Conflict { reason: format!("key {key:?} appears more than once in the batch") });
            }
            if let (Some(want), Some(e)) = (d.id, existing.get(key)) {
                if want != e.id {
                    return Err(Error::Conflict {
                        reason: format!("key {key:?} is stored under id {}, not the id {want} given", e.id),
                    });
                }
            }
            Ok(match existing.get(key) {
                None => Action::Insert,
                Some(e)
                    if e.title == d.title
                        && e.content == d.content
                        && d.embedding.as_ref().is_none_or(|v| e.embedding.as_ref() == Some(v)) =>
                {
                    Action::Touch {
                        id: e.id,
                        changed: e.source != d.source
                            || e.metadata.as_object() != Some(&d.metadata)
                            || d.updated_at.is_some_and(|u| u != e.updated_at),
                    }
                }
                Some(e) => Action::Rewrite { id: e.id },
            })
        })
        .collect()
}

/// The creation and last-change times a write stores for `doc`: the ones it carries (a
/// restore), else the time of the write. A document that brings only `updated_at` is created
/// then too, unless that is in the future.
#[cfg(any(feature = "postgres", feature = "embedded"))]
pub(crate) fn stamps(doc: &NewDocument, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let updated = doc.updated_at.unwrap_or(now);
    let created = doc.created_at.unwrap_or_else(|| updated.min(now));
    (created, updated)
}

/// The documents that `actions` write with a new vector but that have none yet: all of them
/// before the store embeds, and, under the backend's locks, those whose stored row changed
/// since the store planned (rare; the store then embeds them and tries again).
pub(crate) fn missing_vectors(docs: &[NewDocument], actions: &[Action]) -> Vec<usize> {
    docs.iter()
        .zip(actions)
        .enumerate()
        .filter(|(_, (d, a))| d.embedding.is_none() && !matches!(a, Action::Touch { .. }))
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plan_detects_unchanged_changed_and_duplicates() {
        let mut existing = HashMap::new();
        existing.insert(
            "a".to_string(),
            Existing {
                id: 1,
                title: "t".into(),
                content: "c".into(),
                source: None,
                metadata: json!({}),
                updated_at: Utc::now(),
                embedding: Some(vec![0.6, 0.8]),
            },
        );
        let same = NewDocument::new("t", "c").with_key("a");
        let meta = NewDocument::new("t", "c").with_key("a").with_source("s");
        let text = NewDocument::new("t", "c2").with_key("a");
        let fresh = NewDocument::new("t", "c").with_key("b");
        assert_eq!(
            plan_batch(std::slice::from_ref(&same), &existing).unwrap(),
            vec![Action::Touch { id: 1, changed: false }]
        );
        assert_eq!(plan_batch(&[meta], &existing).unwrap(), vec![Action::Touch { id: 1, changed: true }]);
        assert_eq!(plan_batch(&[text], &existing).unwrap(), vec![Action::Rewrite { id: 1 }]);
        assert_eq!(plan_batch(&[fresh], &existing).unwrap(), vec![Action::Insert]);
        // A precomputed vector equal to the stored one keeps the row; a different one rewrites.
        let same_vector = NewDocument::new("t", "c").with_key("a").with_embedding(vec![0.6, 0.8]);
        let new_vector = NewDocument::new("t", "c").with_key("a").with_embedding(vec![0.8, 0.6]);
        assert_eq!(plan_batch(&[same_vector], &existing).unwrap(), vec![Action::Touch { id: 1, changed: false }]);
        assert_eq!(plan_batch(&[new_vector], &existing).unwrap(), vec![Action::Rewrite { id: 1 }]);
        let err = plan_batch(&[same.clone(), same], &existing).unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
    }
}
