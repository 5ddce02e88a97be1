//! Read replicas: PostgreSQL streaming-replication standbys that serve searches and reads.
//!
//! Choices made here, and why:
//! - **One pool per replica**, built like the primary's, so a replica that goes away fails
//!   only its own checkouts, at once.
//! - **Lag is measured in time, from WAL positions.** Every [`SAMPLE_EVERY`] the primary's
//!   insert position is read and kept with its time; each replica's replay position is read
//!   too. A replica that has replayed what the primary had written at time `t` is at most
//!   `now - t` behind, so its lag is `now - t` for the latest such sample, and 0 when it has
//!   replayed the latest sample (an idle primary never makes its replicas "lag"). A replica
//!   over `max_lag` is skipped until it catches up.
//! - **Read-your-writes by position.** After a write the store reads the primary's insert
//!   position (it is past the write's commit record) and keeps the highest one as the floor of
//!   its later reads: a read goes to a replica whose sampled replay position is at the floor,
//!   else (after asking the chosen replica once, which is current) to the primary. The replay
//!   position only grows, so a sampled one is a safe lower bound.
//! - **A replica that fails** a read is retried on the primary at once; one that cannot be
//!   reached is taken out of rotation for [`RETRY_AFTER`] and comes back when a sample of it
//!   succeeds. No read fails because a replica did.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bb8::PooledConnection;
use tokio_postgres::types::PgLsn;

use super::pool::{self, Health, Manager, Pool};
use crate::backend::{ReplicaStats, ReplicationStats};
use crate::error::{Error, Result};
use crate::position::WritePosition;

/// How often the primary's position and every replica's replay position are sampled.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// How long a replica that could not be reached stays out of rotation before a sample may
/// bring it back.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// A sample waits this long for an answer.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(2);

/// The read routing of a store with replicas.
#[derive(Debug)]
pub(crate) struct Replicas {
    members: Vec<Replica>,
    next: AtomicUsize,
    max_lag: Duration,
    /// The highest position this store wrote at (0: none yet); reads see at least it.
    session_floor: AtomicU64,
    /// Reads served by the primary because no replica could.
    primary_reads: AtomicU64,
    /// The primary's insert positions with their times, oldest first.
    history: Mutex<VecDeque<(Instant, u64)>>,
    /// Set by `close`.
    closed: AtomicBool,
    /// The primary's system identifier: a standby of another cluster never enters rotation.
    system_id: Option<i64>,
}

#[derive(Debug)]
struct Replica {
    name: String,
    pool: Pool,
    health: Arc<Health>,
    /// Sampled replay position (0: unknown).
    replayed: AtomicU64,
    /// Sampled lag in ms (`u64::MAX`: unknown).
    lag_ms: AtomicU64,
    /// Out of rotation until this many ms after `Replicas::epoch` (0: in).
    down_until_ms: AtomicU64,
    reads: AtomicU64,
    failed_reads: AtomicU64,
    reason: Mutex<Option<String>>,
}

/// A connection to a replica, checked out for one read.
pub(crate) struct ReplicaConn<'a> {
    pub(crate) conn: PooledConnection<'a, Manager>,
    pub(crate) index: usize,
}

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Replicas {
    /// `members`: each replica's display name, pool and health.
    pub(crate) fn new(members: Vec<(String, Pool, Arc<Health>)>, max_lag: Duration, system_id: Option<i64>) -> Self {
        let _ = epoch();
        Replicas {
            members: members
                .into_iter()
                .map(|(name, pool, health)| Replica {
                    name,
                    pool,
                    health,
                    replayed: AtomicU64::new(0),
                    lag_ms: AtomicU64::new(u64::MAX),
                    down_until_ms: AtomicU64::new(0),
                    reads: AtomicU64::new(0),
                    failed_reads: AtomicU64::new(0),
                    reason: Mutex::new(Some("not sampled yet".into())),
                })
                .collect(),
            next: AtomicUsize::new(0),
            max_lag,
            session_floor: AtomicU64::new(0),
            primary_reads: AtomicU64::new(0),
            history: Mutex::new(VecDeque::new()),
            closed: AtomicBool::new(false),
            system_id,
        }
    }

    /// Raises the floor of this store's reads to `position` (after one of its writes).
    pub(crate) fn wrote_at(&self, position: u64) {
        // After `primary_only` (a position that could not be read), any position read later is
        // past that write too.
        let _ = self.session_floor.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| {
            Some(if f == u64::MAX { position } else { f.max(position) })
        });
    }

    /// Sends every read to the primary until the next recorded write: used when a write's
    /// position could not be read.
    pub(crate) fn primary_only(&self) {
        self.session_floor.store(u64::MAX, Ordering::SeqCst);
    }

    /// Where this store's last write is (`None`: none yet, or unknown).
    pub(crate) fn write_position(&self) -> Option<WritePosition> {
        let floor = self.session_floor.load(Ordering::SeqCst);
        (floor != 0 && floor != u64::MAX).then_some(WritePosition::from_u64(floor))
    }

    /// A replica connection for a read that must see `floor` (and this store's own writes),
    /// or `None`: the read goes to the primary.
    pub(crate) async fn checkout(&self, floor: Option<u64>) -> Option<ReplicaConn<'_>> {
        if self.closed.load(Ordering::SeqCst) || self.members.is_empty() {
            return None;
        }
        let floor = floor.unwrap_or(0).max(self.session_floor.load(Ordering::SeqCst));
        let max_lag = u64::try_from(self.max_lag.as_millis()).unwrap_or(u64::MAX);
        let now = now_ms();
        let n = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // Replicas in rotation: those with the floor first, then one that may have it by now.
        let mut behind = None;
        for i in 0..n {
            let index = (start + i) % n;
            let Some(r) = self.members.get(index) else { continue };
            if r.down_until_ms.load(Ordering::Relaxed) > now || r.lag_ms.load(Ordering::Relaxed) > max_lag {
                continue;
            }
            if r.replayed.load(Ordering::SeqCst) >= floor {
                if let Some(conn) = self.connect(index).await {
                    return Some(conn);
                }
            } else if behind.is_none() && floor != u64::MAX {
                behind = Some(index);
            }
        }
        // None has the floor by its last sample: ask one whether it has it now (one round trip
        // on the connection the read would use), else the primary serves the read.
        let index = behind?;
        let conn = self.connect(index).await?;
        let replayed = match replay_position(&conn.conn).await {
            Ok(Some(p)) => p,
            Ok(None) => return None,
            Err(e) => {
                self.failed(index, &e);
                return None;
            }
        };
        let r = self.members.get(index)?;
        r.replayed.fetch_max(replayed, Ordering::SeqCst);
        (replayed >= floor).then_some(conn)
    }

    async fn connect(&self, index: usize) -> Option<ReplicaConn<'_>> {
        let r = self.members.get(index)?;
        match pool::checkout(&r.pool, &r.health).await {
            Ok(conn) => Some(ReplicaConn { conn, index }),
            Err(e) => {
                self.failed(index, &e);
                None
            }
        }
    }

    /// The read on replica `index` succeeded.
    pub(crate) fn served(&self, index: usize) {
        if let Some(r) = self.members.get(index) {
            r.reads.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The read on replica `index` failed with `e` (its connection is given back); the caller
    /// retries it on the primary.
    pub(crate) fn read_failed(&self, index: usize, e: &Error) {
        if let Some(r) = self.members.get(index) {
            r.failed_reads.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(error = %e, "read failed on a replica; served by the primary");
        if e.is_unavailable() {
            self.failed(index, e);
        }
    }

    /// A read the primary served.
    pub(crate) fn primary_read(&self) {
        self.primary_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes replica `index` out of rotation for [`RETRY_AFTER`].
    fn failed(&self, index: usize, e: &Error) {
        let Some(r) = self.members.get(index) else { return };
        let until = now_ms().saturating_add(u64::try_from(RETRY_AFTER.as_millis()).unwrap_or(1000));
        if r.down_until_ms.swap(until, Ordering::SeqCst) <= now_ms() {
            tracing::warn!(replica = %r.name, error = %e, "read replica out of rotation; reads go to the primary");
        }
        r.lag_ms.store(u64::MAX, Ordering::Relaxed);
        *r.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    /// Figures for `stats`.
    pub(crate) fn stats(&self) -> ReplicationStats {
        let max_lag = u64::try_from(self.max_lag.as_millis()).unwrap_or(u64::MAX);
        let now = now_ms();
        let replicas = self
            .members
            .iter()
            .map(|r| {
                let lag = r.lag_ms.load(Ordering::Relaxed);
                let down = r.down_until_ms.load(Ordering::Relaxed) > now;
                let mut reason = r.reason.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if reason.is_none() && lag > max_lag {
                    reason = Some(format!("replay lag {lag} ms is over the bound ({max_lag} ms)"));
                }
                let replayed = r.replayed.load(Ordering::Relaxed);
                ReplicaStats {
                    name: r.name.clone(),
                    in_rotation: !down && lag <= max_lag,
                    lag_ms: (lag != u64::MAX).then_some(lag),
                    replayed: (replayed != 0).then_some(WritePosition::from_u64(replayed)),
                    reads: r.reads.load(Ordering::Relaxed),
                    failed_reads: r.failed_reads.load(Ordering::Relaxed),
                    reason,
                }
            })
            .collect();
        ReplicationStats {
            replicas,
            primary_reads: self.primary_reads.load(Ordering::Relaxed),
            max_lag_ms: max_lag,
            write_position: self.write_position(),
        }
    }

    /// Stops sampling and closes every replica's connections.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for r in &self.members {
            pool::close(&r.pool, &r.health).await;
        }
    }

    /// One sample: the primary's insert position (when `primary` answers), then every replica's
    /// replay position and lag.
    pub(crate) async fn sample(&self, primary: Option<u64>) {
        let now = Instant::now();
        let newest = {
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(p) = primary {
                h.push_back((now, p));
            }
            // Keep enough history to tell any lag up to twice the bound.
            let keep = self.max_lag.saturating_mul(2).max(Duration::from_secs(2));
            while h.len() > 2 && h.front().is_some_and(|(t, _)| now.duration_since(*t) > keep) {
                h.pop_front();
            }
            h.back().copied()
        };
        let samples = self.members.iter().map(|r| async move {
            let read = async {
                let conn = pool::checkout(&r.pool, &r.health).await?;
                let row = conn
                    .query_one(
                        "SELECT pg_last_wal_replay_lsn(), (SELECT system_identifier FROM pg_control_system())",
                        &[],
                    )
                    .await?;
                let lsn: Option<PgLsn> = row.try_get(0)?;
                let system_id: i64 = row.try_get(1)?;
                if self.system_id.is_some_and(|id| id != system_id) {
                    return Err(Error::storage(format!(
                        "is a server of another cluster (system identifier {system_id}), not a replica of the primary"
                    )));
                }
                Ok(lsn.map(u64::from))
            };
            match tokio::time::timeout(SAMPLE_TIMEOUT, read).await {
                Ok(result) => result,
                Err(_) => Err(Error::unavailable(format!(
                    "no answer within {} ms to the replay position query",
                    SAMPLE_TIMEOUT.as_millis()
                ))),
            }
        });
        let results = futures_util::future::join_all(samples).await;
        for (index, result) in results.into_iter().enumerate() {
            let Some(r) = self.members.get(index) else { continue };
            match result {
                Ok(Some(replayed)) => {
                    r.replayed.fetch_max(replayed, Ordering::SeqCst);
                    let replayed = r.replayed.load(Ordering::SeqCst);
                    let lag = self.lag_of(replayed, newest, now);
                    r.lag_ms.store(u64::try_from(lag.as_millis()).unwrap_or(u64::MAX - 1), Ordering::Relaxed);
                    if r.down_until_ms.swap(0, Ordering::SeqCst) > 0 {
                        tracing::info!(replica = %r.name, "read replica back in rotation");
                    }
                    *r.reason.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                Ok(None) => {
                    // Promoted, or pointed at a primary by mistake: it no longer follows the
                    // primary, so what it holds may differ.
                    r.lag_ms.store(u64::MAX, Ordering::Relaxed);
                    let reason = "is not a standby (not in recovery): promoted, or not a replica";
                    let previous = r.reason.lock().unwrap_or_else(|p| p.into_inner()).replace(reason.into());
                    if previous.as_deref() != Some(reason) {
                        tracing::warn!(replica = %r.name, reason, "read replica out of rotation; reads go to the primary");
                    }
                }
                Err(e) => self.failed(index, &e),
            }
        }
    }

    /// The lag of a replica that replayed up to `replayed`.
    fn lag_of(&self, replayed: u64, newest: Option<(Instant, u64)>, now: Instant) -> Duration {
        match newest {
            None => Duration::ZERO,
            Some((_, p)) if replayed >= p => Duration::ZERO,
            Some(_) => {
                let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
                match h.iter().rev().find(|(_, p)| *p <= replayed) {
                    Some((t, _)) => now.duration_since(*t),
                    // Behind every kept sample: at least as old as the oldest.
                    None => {
                        h.front().map_or(Duration::MAX, |(t, _)| now.duration_since(*t)).saturating_add(SAMPLE_EVERY)
                    }
                }
            }
        }
    }
}

/// The replay position of the standby behind `conn`; `None` when it is not a standby.
async fn replay_position(conn: &tokio_postgres::Client) -> Result<Option<u64>> {
    let row = conn.query_one("SELECT pg_last_wal_replay_lsn()", &[]).await?;
    let lsn: Option<PgLsn> = row.try_get(0)?;
    Ok(lsn.map(u64::from))
}

/// The system identifier of the server behind `conn` (shared by a primary and its standbys).
pub(crate) async fn system_id(conn: &tokio_postgres::Client) -> Result<i64> {
    Ok(conn.query_one("SELECT system_identifier FROM pg_control_system()", &[]).await?.try_get(0)?)
}

/// The primary's insert position: past the commit record of every write that has returned.
pub(crate) async fn insert_position(conn: &tokio_postgres::Client) -> Result<u64> {
    let row = conn.query_one("SELECT pg_current_wal_insert_lsn()", &[]).await?;
    let lsn: PgLsn = row.try_get(0)?;
    Ok(u64::from(lsn))
}

/// Samples until the store is dropped or closed: the primary's position through `primary`,
/// then every replica.
pub(crate) async fn sampler(replicas: Weak<Replicas>, primary: Pool, health: Arc<Health>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(replicas) = replicas.upgrade() else { return };
        if replicas.closed.load(Ordering::SeqCst) {
            return;
        }
        let position = async {
            let conn = pool::checkout(&primary, &health).await?;
            insert_position(&conn).await
        };
        let position = match tokio::time::timeout(SAMPLE_TIMEOUT, position).await {
            Ok(Ok(p)) => Some(p),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot read the primary's write position");
                None
            }
            Err(_) => None,
        };
        replicas.sample(position).await;
    }
}
