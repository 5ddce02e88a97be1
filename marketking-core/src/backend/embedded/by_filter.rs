//! Count and delete by [`Filter`]: the filter runs over the memory index (the same rows and
//! evaluation as a filtered search); a delete then removes the matching ids in one transaction.

use rusqlite::TransactionBehavior;

use super::file::Shared;
use crate::error::Result;
use crate::filter::Filter;
use crate::gate::CommitGate;

impl Shared {
    /// How many documents `filter` matches.
    pub(super) fn count(&self, filter: &Filter) -> Result<u64> {
        let node = filter.node()?;
        self.refresh()?;
        let mem = self.mem();
        Ok(mem.rows.iter().filter(|r| node.matches(&r.fields())).count() as u64)
    }

    /// Deletes the documents `filter` matches in one transaction, then from memory.
    pub(super) fn delete_where(&self, filter: &Filter, gate: Option<&CommitGate>) -> Result<u64> {
        let node = filter.node()?;
        // Lock order: the connection before the memory index. Holding the connection keeps
        // every other writer out until the memory index is updated.
        let mut conn = self.conn();
        let ids: Vec<i64> = {
            let mem = self.mem();
            mem.ids.iter().zip(&mem.rows).filter(|(_, r)| node.matches(&r.fields())).map(|(id, _)| *id).collect()
        };
        if ids.is_empty() {
            return Ok(0);
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM documents WHERE id = ?1")?;
            for (n, id) in ids.iter().enumerate() {
                if n % 1024 == 1023 {
                    gate.map_or(Ok(()), CommitGate::check)?;
                }
                stmt.execute([id])?;
            }
        }
        gate.map_or(Ok(()), CommitGate::enter_commit)?;
        self.forget_codes();
        tx.commit()?;
        let mut mem = self.mem_mut();
        for id in &ids {
            mem.remove(*id);
        }
        Ok(ids.len() as u64)
    }
}
