//! The agent's HTTP server.
//!
//! - `GET /results/latest`: the last result, as the sinks receive it.
//! - `GET /snapshot.jpg`: the last inferred frame with its predictions drawn.
//! - `GET /metrics`: Prometheus metrics.
//! - `GET /healthz`: 200 while the frame loop makes progress (liveness).
//! - `GET /readyz`: 200 while a model is loaded and frames arrive within
//!   the stall timeout, else 503; the JSON body names the reason and the
//!   last error either way (readiness).

use std::net::SocketAddr;
use std::sync::Arc;

use ab_glyph::FontArc;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::snapshot;
use super::state::AgentState;
use crate::metrics::Metrics;

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// Failure to start the HTTP server.
#[derive(Debug, thiserror::Error)]
#[error("failed to listen for HTTP on {addr}: {source}")]
pub struct HttpError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// State shared by the handlers.
#[derive(Debug, Clone)]
pub struct HttpContext {
    pub state: Arc<AgentState>,
    pub metrics: Metrics,
    pub font: Option<FontArc>,
}

/// Binds `addr` and serves until the returned task is aborted.
pub async fn start(
    addr: SocketAddr,
    context: HttpContext,
) -> Result<(SocketAddr, JoinHandle<()>), HttpError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| HttpError { addr, source })?;

    let app = Router::new()
        .route("/results/latest", get(latest_result))
        .route("/snapshot.jpg", get(snapshot_jpeg))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(context);
    let server = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "HTTP server stopped");
        }
    });

    tracing::info!(addr = %bound, "Serving HTTP");
    Ok((bound, server))
}

async fn latest_result(State(context): State<HttpContext>) -> Response {
    match context.state.latest_result() {
        Some(line) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, JSON)],
            line.to_vec(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, TEXT)],
            "No result yet\n",
        )
            .into_response(),
    }
}

async fn snapshot_jpeg(State(context): State<HttpContext>) -> Response {
    let Some(snapshot) = context.state.snapshot() else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, TEXT)],
            "No frame yet\n",
        )
            .into_response();
    };

    let font = context.font.clone();
    let rendered =
        tokio::task::spawn_blocking(move || snapshot::render_jpeg(&snapshot, font.as_ref())).await;
    match rendered {
        Ok(Ok(jpeg)) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response()
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "Failed to encode the snapshot");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, TEXT)],
                "Failed to encode the snapshot\n",
            )
                .into_response()
        }
        Err(error) => {
            tracing::error!(%error, "Rendering the snapshot panicked");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn metrics(State(context): State<HttpContext>) -> Response {
    context
        .metrics
        .set_inference_ready(context.state.readiness().ready);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        context.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(context): State<HttpContext>) -> Response {
    match context.state.liveness() {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, TEXT)],
            "ok\n".to_owned(),
        )
            .into_response(),
        Err(message) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, TEXT)],
            format!("{message}\n"),
        )
            .into_response(),
    }
}

/// Body of `/readyz`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReadyBody {
    ready: bool,
    reason: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    /// The pod's last error: a failed model swap shows here while the
    /// previous model keeps the agent ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
}

async fn readyz(State(context): State<HttpContext>) -> Response {
    let readiness = context.state.readiness();
    let model = context.state.model();
    let body = ReadyBody {
        ready: readiness.ready,
        reason: readiness.reason,
        message: readiness.message,
        model_digest: model.as_ref().map(|model| model.digest.clone()),
        device: model.map(|model| model.device),
        last_error: context.state.last_error().map(|error| error.to_string()),
    };

    let status = if body.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    match serde_json::to_vec(&body) {
        Ok(json) => (status, [(header::CONTENT_TYPE, JSON)], json).into_response(),
        Err(error) => {
            tracing::error!(%error, "Failed to serialise /readyz");
            status.into_response()
        }
    }
}
