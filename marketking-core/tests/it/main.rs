//! Integration tests against the real PostgreSQL + pgvector and Redis of the machine
//! (`DATABASE_URL`, `REDIS_URL`; defaults are the local services). A missing service fails the
//! tests; nothing is skipped.
#![allow(missing_docs, unreachable_pub)]

mod cache;
mod common;
mod conformance;
mod faults;
mod filters;
mod hot_paths;
mod hybrid;
mod jobs;
mod postgres;
mod transfer;
