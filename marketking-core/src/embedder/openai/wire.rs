//! The wire format of `/embeddings`: request and response bodies, and what a server says when
//! it fails.

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How much of a server's error message goes into an error.
const MAX_SERVER_MESSAGE_CHARS: usize = 300;

#[derive(Serialize)]
pub(super) struct EmbeddingRequest<'a> {
    pub(super) model: &'a str,
    pub(super) input: &'a [String],
    pub(super) encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct EmbeddingResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    embedding: Vec<f32>,
    #[serde(default)]
    index: Option<usize>,
}

/// Decodes and checks a successful response: one vector per input, in input order.
pub(super) fn parse_response(
    bytes: &[u8],
    expected: usize,
    dimensions: usize,
    endpoint: &str,
    status: StatusCode,
) -> Result<Vec<Vec<f32>>> {
    let fail = |message: String| Error::Embedder { message, status: Some(status.as_u16()) };
    let response: EmbeddingResponse = serde_json::from_slice(bytes)
        .map_err(|e| fail(format!("the response from {} was not valid embeddings JSON: {e}", endpoint)))?;
    let data = response.data;
    if data.len() != expected {
        return Err(fail(format!("{} returned {} embeddings for {expected} inputs", endpoint, data.len())));
    }
    let with_index = data.iter().filter(|item| item.index.is_some()).count();
    if with_index != 0 && with_index != data.len() {
        return Err(fail(format!("{} returned some embeddings without an index", endpoint)));
    }

    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for (position, item) in data.into_iter().enumerate() {
        // Servers that omit every index return the vectors in input order.
        let index = item.index.unwrap_or(position);
        let slot = slots
            .get_mut(index)
            .ok_or_else(|| fail(format!("{} returned index {index} for {expected} inputs", endpoint)))?;
        if slot.is_some() {
            return Err(fail(format!("{} returned index {index} twice", endpoint)));
        }
        if item.embedding.len() != dimensions {
            return Err(Error::DimensionMismatch { expected: dimensions, actual: item.embedding.len() });
        }
        if item.embedding.iter().any(|x| !x.is_finite()) {
            return Err(fail(format!("{} returned a non-finite value at index {index}", endpoint)));
        }
        *slot = Some(item.embedding);
    }
    // `expected` items, each in its own slot: every slot is filled.
    slots
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| fail(format!("{} returned no embedding for index {i}", endpoint))))
        .collect()
}

/// The server's explanation from an error body, truncated: OpenAI's `{"error":{"message":..}}`,
/// `{"error":".."}` (Ollama, TEI), `{"message":..}` (vLLM) or the raw text.
pub(super) fn server_message(body: &[u8]) -> Option<String> {
    let from_json = serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| {
        let error = v.get("error");
        error
            .and_then(|e| e.get("message"))
            .and_then(|m| m.as_str())
            .or_else(|| error.and_then(|e| e.as_str()))
            .or_else(|| v.get("message").and_then(|m| m.as_str()))
            .or_else(|| v.get("detail").and_then(|m| m.as_str()))
            .map(str::to_string)
    });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return None;
    }
    Some(truncate(&text, MAX_SERVER_MESSAGE_CHARS))
}

/// OpenAI answers 429 with `insufficient_quota` when the account is out of credit.
pub(super) fn is_quota_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v.get("error").cloned()).is_some_and(|e| {
        ["code", "type"].iter().any(|k| e.get(*k).and_then(|x| x.as_str()) == Some("insufficient_quota"))
    })
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_are_extracted_and_truncated() {
        assert_eq!(
            server_message(br#"{"error":{"message":"bad key","type":"invalid_request_error"}}"#).as_deref(),
            Some("bad key")
        );
        assert_eq!(server_message(br#"{"error":"model not found"}"#).as_deref(), Some("model not found"));
        assert_eq!(server_message(b"  \n ").as_deref(), None);
        let long = "x".repeat(1000);
        assert_eq!(server_message(long.as_bytes()).unwrap().chars().count(), MAX_SERVER_MESSAGE_CHARS + 1);
    }
}
