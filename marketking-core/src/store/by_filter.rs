//! Count and delete by [`Filter`].

use super::VectorStore;
use crate::error::{Error, Result};
use crate::filter::Filter;

impl VectorStore {
    /// How many documents `filter` matches ([`Filter::everything`] counts them all).
    pub async fn count(&self, filter: &Filter) -> Result<u64> {
        filter.validate()?;
        self.inner.backend.count(filter).await
    }

    /// Deletes every document `filter` matches, in one transaction, and returns how many.
    ///
    /// A filter without conditions (`{}`) would delete everything, so it is refused with
    /// [`Error::InvalidInput`] on `filter`: call [`delete_all`](Self::delete_all) for that.
    pub async fn delete_by_filter(&self, filter: &Filter) -> Result<u64> {
        self.writable("delete_by_filter")?;
        filter.validate()?;
        if filter.is_empty() {
            return Err(Error::invalid(
                "filter",
                "an empty filter matches every document; to delete them all, ask for that explicitly \
                 (VectorStore::delete_all, `marketking delete --all`, HTTP `\"all\": true`)",
            ));
        }
        self.delete_matching(filter).await
    }

    /// Deletes every document; returns how many.
    pub async fn delete_all(&self) -> Result<u64> {
        self.writable("delete_all")?;
        self.delete_matching(&Filter::everything()).await
    }

    async fn delete_matching(&self, filter: &Filter) -> Result<u64> {
        let n = self.inner.backend.delete_where(filter).await?;
        if n > 0 {
            self.invalidate().await;
        }
        Ok(n)
    }
}
