//! The connection pool: bb8-postgres connections plus a little per-connection state.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use bb8::PooledConnection;
use bb8_postgres::PostgresConnectionManager;
use tokio::sync::Notify;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::Error;

/// Prepared statements kept per connection before the cache is emptied. Searches have at most a
/// few dozen shapes (which filters are set), the other reads one each.
const MAX_STATEMENTS: usize = 128;

/// A pooled connection that remembers the search settings last sent on it, so a search only
/// pays for `SET hnsw.ef_search ...` when the settings change (most calls use the defaults),
/// and the statements prepared on it, so a repeated query is one round trip with no parsing.
#[derive(Debug)]
pub(crate) struct PgConn {
    client: Client,
    pub(crate) search_settings: Option<String>,
    statements: HashMap<String, Statement>,
}

impl PgConn {
    /// The statement for `sql` with parameter `types`, prepared on this connection on first use.
    ///
    /// The connection runs with `plan_cache_mode = force_custom_plan`, so a cached statement is
    /// still planned with its actual parameters on every execution, as an unnamed one is: a
    /// generic plan for `ORDER BY embedding <=> $1 LIMIT $2` cannot see the limit or the table
    /// size and picks the wrong scan.
    pub(crate) async fn statement(&mut self, sql: &str, types: &[Type]) -> Result<Statement, tokio_postgres::Error> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare_typed(sql, types).await?;
        if self.statements.len() >= MAX_STATEMENTS {
            // Dropping the last handle closes the statement on the server.
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }
}

impl Deref for PgConn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// bb8-postgres's manager, wrapped to hand out [`PgConn`]s and to report connect failures.
#[derive(Debug)]
pub(crate) struct Manager {
    pub(crate) inner: PostgresConnectionManager<MakeRustlsConnect>,
    pub(crate) health: Arc<Health>,
}

impl bb8::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = Error;

    async fn connect(&self) -> Result<PgConn, Error> {
        if self.health.is_closed() {
            return Err(Error::Closed);
        }
        let connected = async {
            let client = self.inner.connect().await?;
            // No NOTICEs: the driver logs each at INFO, and the store's own statements raise
            // them by design (`CREATE TABLE IF NOT EXISTS` on every open, a query of stop
            // words only). Warnings and errors still arrive.
            client.batch_execute("SET plan_cache_mode = force_custom_plan; SET client_min_messages = warning").await?;
            Ok::<_, tokio_postgres::Error>(client)
        };
        match connected.await {
            Ok(client) => Ok(PgConn { client, search_settings: None, statements: HashMap::new() }),
            Err(e) => {
                let e = Error::from(e);
                self.health.connect_failed(&e);
                Err(e)
            }
        }
    }

    /// Cheap: no round trip. A connection whose server process was terminated (or restarted)
    /// is closed by the driver as soon as the server says so, and is then never handed out.
    async fn is_valid(&self, conn: &mut PgConn) -> Result<(), Error> {
        if conn.client.is_closed() {
            return Err(Error::unavailable("the pooled connection was closed by the server"));
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        // After close() every connection given back is dropped (and so closed), not kept.
        conn.client.is_closed() || self.health.is_closed()
    }
}

/// What the pool's connect attempts tell about the server: waiters for a connection are woken
/// when an attempt fails, so a request made while the server is down fails at once (503)
/// instead of waiting out the checkout timeout.
#[derive(Debug, Default)]
pub(crate) struct Health {
    failed: Notify,
    last_error: Mutex<Option<String>>,
    /// Set by the backend's `close`.
    closed: std::sync::atomic::AtomicBool,
}

impl Health {
    pub(crate) fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn connect_failed(&self, e: &Error) {
        tracing::debug!(error = %e, "cannot connect to PostgreSQL");
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason(e));
        self.failed.notify_waiters();
    }

    fn last_error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "cannot connect to the database".into())
    }
}

/// Why a connect failed, for the [`Error::Unavailable`] of the requests waiting on it: the
/// error's own message (not its "storage unavailable" prefix, which the waiters' error adds
/// again) and the causes the driver keeps as sources ("Connection refused"), which name no
/// password.
fn reason(e: &Error) -> String {
    match e {
        Error::Unavailable { message, .. } => crate::error::with_causes(message.clone(), std::error::Error::source(e)),
        other => crate::error::error_chain(other),
    }
}

pub(crate) type Pool = bb8::Pool<Manager>;

/// Marks the pool closed and closes its idle connections now (each checked out and given back
/// broken, so bb8 drops it); connections in use are dropped when they come back.
pub(crate) async fn close(pool: &Pool, health: &Health) {
    health.close();
    for _ in 0..pool.state().idle_connections {
        // `get` hands out an idle connection without connecting; a fresh connect would fail
        // (closed), which ends the loop early.
        match tokio::time::timeout(std::time::Duration::from_millis(100), pool.get()).await {
            Ok(Ok(conn)) => drop(conn),
            _ => break,
        }
    }
}

/// A connection from the pool, or [`Error::Unavailable`] as soon as a connect attempt made
/// while waiting fails (the server is down or refusing connections).
pub(crate) async fn checkout<'a>(pool: &'a Pool, health: &Health) -> Result<PooledConnection<'a, Manager>, Error> {
    if health.is_closed() {
        return Err(Error::Closed);
    }
    let failed = health.failed.notified();
    tokio::pin!(failed);
    // Registered before asking the pool, so a failure while the pool connects is not missed.
    failed.as_mut().enable();
    tokio::select! {
        biased;
        conn = pool.get() => Ok(conn?),
        () = &mut failed => Err(Error::unavailable(health.last_error())),
    }
}
