//! Where the tests' PostgreSQL (with pgvector) and Redis are, in this order:
//!
//! 1. `DATABASE_URL` / `REDIS_URL` when set;
//! 2. otherwise, when a Docker daemon answers, a `pgvector/pgvector` and a `redis` container
//!    started once per test binary by testcontainers (and removed when it exits);
//! 3. otherwise the local services on their standard ports (`scripts/services.sh` starts
//!    them), so a machine without Docker, like this project's CI, still runs every test.
//!
//! ```no_run
//! let url = marketking_testkit::database_url();
//! # let _ = url;
//! ```

use std::sync::OnceLock;

use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::redis::Redis;
use testcontainers_modules::testcontainers::runners::SyncRunner;
use testcontainers_modules::testcontainers::{Container, ImageExt};

/// The local PostgreSQL the project's scripts set up.
pub const LOCAL_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The local Redis.
pub const LOCAL_REDIS_URL: &str = "redis://127.0.0.1:6379/0";

/// The PostgreSQL + pgvector URL for tests.
pub fn database_url() -> String {
    from_env("DATABASE_URL")
        .unwrap_or_else(|| containers().map_or_else(|| LOCAL_DATABASE_URL.into(), |c| c.pg_url.clone()))
}

/// The Redis URL for tests.
pub fn redis_url() -> String {
    from_env("REDIS_URL")
        .unwrap_or_else(|| containers().map_or_else(|| LOCAL_REDIS_URL.into(), |c| c.redis_url.clone()))
}

fn from_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The started containers (kept alive for the whole test binary).
struct Containers {
    _pg: Container<Postgres>,
    _redis: Container<Redis>,
    pg_url: String,
    redis_url: String,
}

/// True when a Docker daemon may answer: `DOCKER_HOST` is set or the default socket exists.
fn docker_present() -> bool {
    from_env("DOCKER_HOST").is_some() || std::path::Path::new("/var/run/docker.sock").exists()
}

fn containers() -> Option<&'static Containers> {
    static STARTED: OnceLock<Option<Containers>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            if !docker_present() {
                return None;
            }
            // The blocking runner drives its own runtime: start it on a thread of its own, as
            // the caller may be inside a tokio test.
            std::thread::spawn(start).join().ok().flatten()
        })
        .as_ref()
}

fn start() -> Option<Containers> {
    let pg = Postgres::default()
        .with_db_name("test")
        .with_user("postgres")
        .with_password("postgres")
        .with_name("pgvector/pgvector")
        .with_tag("pg17")
        .start();
    let pg = match pg {
        Ok(c) => c,
        Err(e) => {
            eprintln!("marketking-testkit: Docker did not start pgvector/pgvector ({e}); using the local services");
            return None;
        }
    };
    let redis = match Redis::default().with_tag("7-alpine").start() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("marketking-testkit: Docker did not start redis ({e}); using the local services");
            return None;
        }
    };
    let pg_url =
        format!("postgres://postgres:postgres@{}:{}/test", pg.get_host().ok()?, pg.get_host_port_ipv4(5432).ok()?);
    let redis_url = format!("redis://{}:{}/0", redis.get_host().ok()?, redis.get_host_port_ipv4(6379).ok()?);
    Some(Containers { _pg: pg, _redis: redis, pg_url, redis_url })
}
