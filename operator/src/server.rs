//! The operator's HTTP server: `/metrics`, `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// State the endpoints report.
#[derive(Debug, Clone)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    /// True once this replica leads and its watches have synced.
    pub ready: Arc<AtomicBool>,
}

/// Serves the endpoints until the process ends.
pub async fn serve(address: SocketAddr, health: Health) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health);

    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "Serving metrics and health endpoints");
    axum::serve(listener, app).await
}

async fn metrics(State(health): State<Health>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        health.metrics.render(),
    )
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    if health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not leading or caches not synced",
        )
    }
}
