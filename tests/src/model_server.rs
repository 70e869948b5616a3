//! An HTTP server on 127.0.0.1 that serves model files, standing in for
//! the blob store or web server a real fleet downloads models from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::task::JoinHandle;

/// Response the server sends for one path.
#[derive(Clone, Debug)]
pub enum Served {
    /// The file, with `application/zip` or `application/octet-stream`.
    File(Bytes),
    /// A login page with status 200, as a misconfigured share returns.
    HtmlPage,
    /// Status 404.
    NotFound,
}

#[derive(Default)]
struct Files {
    served: RwLock<BTreeMap<String, Served>>,
    requests: AtomicU64,
}

/// A running model server. Dropping it stops the server.
pub struct ModelServer {
    address: SocketAddr,
    files: Arc<Files>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for ModelServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ModelServer")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl ModelServer {
    /// Starts a server on an ephemeral port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let files = Arc::new(Files::default());
        let app = Router::new()
            .route("/{*path}", get(serve))
            .with_state(Arc::clone(&files));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;

        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "Model server stopped");
            }
        });
        Ok(Self {
            address,
            files,
            task,
        })
    }

    /// Sets the response for `path` (without a leading slash).
    pub fn set(&self, path: &str, served: Served) {
        self.files
            .served
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(path.to_owned(), served);
    }

    /// Returns the URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.address)
    }

    /// Returns the number of requests the server has served.
    pub fn requests(&self) -> u64 {
        self.files.requests.load(Ordering::Relaxed)
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(files): State<Arc<Files>>, Path(path): Path<String>) -> Response {
    files.requests.fetch_add(1, Ordering::Relaxed);
    let served = files
        .served
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&path)
        .cloned();

    match served {
        Some(Served::File(bytes)) => {
            let content_type = if path.ends_with(".zip") {
                "application/zip"
            } else {
                "application/octet-stream"
            };
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        Some(Served::HtmlPage) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!DOCTYPE html><html><body><form>Sign in to continue</form></body></html>",
        )
            .into_response(),
        Some(Served::NotFound) | None => StatusCode::NOT_FOUND.into_response(),
    }
}
