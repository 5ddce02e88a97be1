//! Embedder wrapper that counts calls for `stats`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::embedder::Embedder;
use crate::error::Result;

/// Embedder counters as seen by one store.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbedderStats {
    /// `embed` calls made.
    pub calls: u64,
    /// Texts sent.
    pub texts: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Total time spent in calls, in milliseconds.
    pub total_ms: f64,
}

#[derive(Debug)]
pub(crate) struct Counted {
    pub(crate) inner: Arc<dyn Embedder>,
    calls: AtomicU64,
    texts: AtomicU64,
    errors: AtomicU64,
    micros: AtomicU64,
}

impl Counted {
    pub(crate) fn new(inner: Arc<dyn Embedder>) -> Self {
        Counted {
            inner,
            calls: AtomicU64::new(0),
            texts: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            micros: AtomicU64::new(0),
        }
    }

    pub(crate) fn snapshot(&self) -> EmbedderStats {
        EmbedderStats {
            calls: self.calls.load(Ordering::Relaxed),
            texts: self.texts.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            total_ms: self.micros.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}

#[async_trait]
impl Embedder for Counted {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let start = Instant::now();
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.texts.fetch_add(texts.len() as u64, Ordering::Relaxed);
        let r = self.inner.embed(texts).await;
        self.micros.fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
        if r.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn max_batch_size(&self) -> usize {
        self.inner.max_batch_size()
    }
    fn query_instruction(&self) -> Option<&str> {
        self.inner.query_instruction()
    }
}
