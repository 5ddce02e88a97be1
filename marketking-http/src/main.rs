//! `marketking-http`: the REST service. Minimal for now: it opens the store from the
//! environment and serves `GET /healthz` and `GET /v1/stats`.

use std::net::SocketAddr;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use marketking_core::VectorStore;

/// MarketKing HTTP service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to bind.
    #[arg(long, env = "MARKETKING_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
}

async fn stats(State(store): State<VectorStore>) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let s = store.stats().await.map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(serde_json::to_value(s).unwrap_or_default()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args = Args::parse();
    let store = VectorStore::builder().from_env()?.build().await.context("opening the store")?;
    let app = Router::new().route("/healthz", get(|| async { "ok" })).route("/v1/stats", get(stats)).with_state(store);
    let listener = tokio::net::TcpListener::bind(args.bind).await.with_context(|| format!("binding {}", args.bind))?;
    tracing::info!(addr = %args.bind, "listening");
    axum::serve(listener, app).await?;
    Ok(())
}
