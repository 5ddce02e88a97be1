//! [`CommitGate`]: certainty about a write that its caller gave up on.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

const OPEN: u8 = 0;
const CANCELLED: u8 = 1;
const COMMITTING: u8 = 2;

tokio::task_local! {
    static GATE: CommitGate;
}

/// Makes giving up on a write exact: after [`cancel`](CommitGate::cancel) returns true, no
/// write made inside [`scope`](CommitGate::scope) commits; when it returns false, a write
/// already passed its point of no return and the caller should wait for its result.
///
/// Dropping a write's future is not enough for that: the write may be past its commit on the
/// server (or on a blocking thread) and still be applied, after its caller answered "cancelled".
/// The HTTP service runs every request in a gate and answers a timeout only when `cancel`
/// succeeded, so a client that retries a timed-out write never writes it twice.
///
/// ```
/// use marketking_core::CommitGate;
///
/// # async fn run(store: marketking_core::VectorStore) {
/// let gate = CommitGate::new();
/// let write = gate.scope(store.create(marketking_core::NewDocument::new("t", "c")));
/// tokio::select! {
///     done = write => { done.ok(); }
///     _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
///         // true: the document was not (and will not be) written.
///         let cancelled = gate.cancel();
///         # let _ = cancelled;
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct CommitGate(Arc<AtomicU8>);

impl CommitGate {
    /// An open gate.
    pub fn new() -> Self {
        CommitGate::default()
    }

    /// Runs `fut` under this gate: every write it makes through a [`VectorStore`](crate::VectorStore)
    /// checks the gate just before committing.
    pub async fn scope<F: Future>(&self, fut: F) -> F::Output {
        GATE.scope(self.clone(), fut).await
    }

    /// Cancels the writes of the scope that have not reached their commit. True when nothing
    /// of the scope will be committed from now on; false when a write already started
    /// committing (its result is coming: wait for it).
    pub fn cancel(&self) -> bool {
        match self.0.compare_exchange(OPEN, CANCELLED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => true,
            Err(state) => state == CANCELLED,
        }
    }

    /// True once [`cancel`](CommitGate::cancel) succeeded.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire) == CANCELLED
    }

    /// The gate of the current task's scope, if any.
    pub(crate) fn current() -> Option<CommitGate> {
        GATE.try_with(CommitGate::clone).ok()
    }

    /// The point of no return of a write: Ok to commit, or [`Error::Cancelled`].
    pub(crate) fn enter_commit(&self) -> Result<()> {
        match self.0.compare_exchange(OPEN, COMMITTING, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Ok(()),
            Err(COMMITTING) => Ok(()),
            Err(_) => Err(Error::Cancelled),
        }
    }

    /// Fails with [`Error::Cancelled`] once the gate is cancelled (for long writes to stop early).
    pub(crate) fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::Cancelled);
        }
        Ok(())
    }
}

/// The commit point of a write made in async code: checks the current task's gate, if any.
pub(crate) fn commit_point() -> Result<()> {
    CommitGate::current().map_or(Ok(()), |g| g.enter_commit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancel_wins_before_the_commit_point_and_loses_after_it() {
        let gate = CommitGate::new();
        assert!(gate.scope(async { commit_point() }).await.is_ok(), "an open gate lets the write commit");
        assert!(!gate.cancel(), "once a write is committing, cancelling is refused");

        let gate = CommitGate::new();
        assert!(gate.cancel());
        let err = gate.scope(async { commit_point() }).await.unwrap_err();
        assert!(matches!(err, Error::Cancelled), "{err}");
        assert!(commit_point().is_ok(), "outside a scope there is no gate");
    }
}
