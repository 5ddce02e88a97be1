//! The connection pool: bb8-postgres connections plus a little per-connection state.

use std::ops::{Deref, DerefMut};

use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

/// A pooled connection that remembers the search settings last sent on it, so a search only
/// pays for `SET hnsw.ef_search ...` when the settings change (most calls use the defaults).
#[derive(Debug)]
pub(crate) struct PgConn {
    client: Client,
    pub(crate) search_settings: Option<String>,
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
        Ok(PgConn { client, search_settings: None })
    }

    async fn is_valid(&self, conn: &mut PgConn) -> Result<(), Self::Error> {
        self.0.is_valid(&mut conn.client).await
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        self.0.has_broken(&mut conn.client)
    }
}

pub(crate) type Pool = bb8::Pool<Manager>;
