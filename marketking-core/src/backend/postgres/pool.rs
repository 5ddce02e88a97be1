//! The connection pool: bb8-postgres connections plus a little per-connection state.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};

use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

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

/// bb8-postgres's manager, wrapped to hand out [`PgConn`]s.
#[derive(Debug)]
pub(crate) struct Manager(pub(crate) PostgresConnectionManager<MakeRustlsConnect>);

impl bb8::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<PgConn, Self::Error> {
        let client = self.0.connect().await?;
        client.batch_execute("SET plan_cache_mode = force_custom_plan").await?;
        Ok(PgConn { client, search_settings: None, statements: HashMap::new() })
    }

    async fn is_valid(&self, conn: &mut PgConn) -> Result<(), Self::Error> {
        self.0.is_valid(&mut conn.client).await
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        self.0.has_broken(&mut conn.client)
    }
}

pub(crate) type Pool = bb8::Pool<Manager>;
