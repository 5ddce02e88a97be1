//! Paging through documents: one page at a time, or as a [`Stream`].

use futures_util::stream::{self, Stream, StreamExt, TryStreamExt};

use super::VectorStore;
use crate::document::{validate_key, Document};
use crate::error::{Error, Result};
use crate::filter::Filter;

/// Largest page a list reads at once.
pub const MAX_PAGE_SIZE: usize = 10_000;
/// Page size of [`ListOptions::default`].
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// Which documents a list returns, in what pages, with or without embeddings.
///
/// ```
/// use marketking_core::{Filter, ListOptions};
/// let opts = ListOptions::default().filter(Filter::field("source").eq("catalog")).page_size(500);
/// assert_eq!(opts.page_size, 500);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ListOptions {
    /// Keep only the documents this filter matches (default: every document).
    pub filter: Filter,
    /// Documents per page (per round trip), 1..=10000. Default 1000.
    pub page_size: usize,
    /// Return each document's embedding too.
    pub with_embedding: bool,
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions { filter: Filter::everything(), page_size: DEFAULT_PAGE_SIZE, with_embedding: false }
    }
}

impl ListOptions {
    /// Sets the filter.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Sets the page size (1..=10000).
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = n;
        self
    }

    /// Returns embeddings too.
    pub fn with_embedding(mut self, yes: bool) -> Self {
        self.with_embedding = yes;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.page_size == 0 || self.page_size > MAX_PAGE_SIZE {
            return Err(Error::invalid(
                "limit",
                format!("must be between 1 and {MAX_PAGE_SIZE}, got {}", self.page_size),
            ));
        }
        self.filter.validate()
    }
}

impl VectorStore {
    /// Documents with id greater than `after_id`, ascending, at most `limit` (1..=10000):
    /// pages through the whole store (export). See [`list_page`](Self::list_page) for a filter
    /// and [`list_stream`](Self::list_stream) for a stream.
    pub async fn list(&self, after_id: i64, limit: usize, with_embedding: bool) -> Result<Vec<Document>> {
        self.list_page(after_id, &ListOptions::default().page_size(limit).with_embedding(with_embedding)).await
    }

    /// One page: the documents `opts.filter` matches with id greater than `after_id`, ascending,
    /// at most `opts.page_size`. The next page starts after the last id of this one; a page
    /// shorter than `page_size` is the last.
    pub async fn list_page(&self, after_id: i64, opts: &ListOptions) -> Result<Vec<Document>> {
        opts.validate()?;
        self.inner.backend.list(after_id, opts.page_size, opts.with_embedding, &opts.filter).await
    }

    /// Every document `filter` matches, ascending by id, read a page at a time (see
    /// [`list_stream_with`](Self::list_stream_with) for the page size and embeddings).
    ///
    /// Documents written while the stream runs are included when their id is above the page
    /// being read; the stream is not a snapshot. An error ends it.
    pub fn list_stream(&self, filter: Filter) -> impl Stream<Item = Result<Document>> + Send + 'static {
        self.list_stream_with(ListOptions::default().filter(filter))
    }

    /// [`list_stream`](Self::list_stream) with every option.
    pub fn list_stream_with(&self, opts: ListOptions) -> impl Stream<Item = Result<Document>> + Send + 'static {
        let store = self.clone();
        // State: the last id read, or None once a short page ended the list.
        stream::try_unfold(Some(0i64), move |after| {
            let (store, opts) = (store.clone(), opts.clone());
            async move {
                let Some(after) = after else { return Ok::<_, Error>(None) };
                let page = store.list_page(after, &opts).await?;
                let next = match page.last() {
                    Some(last) if page.len() == opts.page_size => Some(last.id),
                    _ => None,
                };
                Ok(if page.is_empty() { None } else { Some((page, next)) })
            }
        })
        .map_ok(|page| stream::iter(page.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    /// Deletes the document with this caller key; [`Error::KeyNotFound`] if there is none.
    pub async fn delete_by_key(&self, key: &str) -> Result<()> {
        self.writable("delete_by_key")?;
        validate_key(key)?;
        let n = self.inner.backend.delete_where(&Filter::field("key").eq(key)).await?;
        if n == 0 {
            return Err(Error::KeyNotFound { key: key.to_string() });
        }
        self.invalidate().await;
        Ok(())
    }
}
