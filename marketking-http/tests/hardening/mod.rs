//! Hostile input and faults (issue 10): bounded metric labels, readiness while PostgreSQL hangs
//! or is gone, CORS configuration, failed-key throttling, object-only JSON bodies.

mod auth;
mod bodies;
mod cors;
mod metrics;
mod readiness;
