//! Test support: an HTTP server on 127.0.0.1 with scripted failures, and
//! builders for zips and tiny ONNX models.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{Cursor, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use prost::Message;
use sha1::Digest;
use visionfleet_model::onnx::proto::{
    GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};
use visionfleet_model::{FetchPolicy, ModelSource};
use zip::ZipWriter;
use zip::write::SimpleFileOptions;

/// A scripted failure for one request.
#[derive(Clone, Debug)]
pub enum Failure {
    /// Respond with this status and an empty body.
    Status(u16),
    /// Send half the body, then close the connection.
    CutHalfway,
    /// Send a few bytes, then stop sending for a long time.
    Stall,
}

/// What the server returns for one path.
#[derive(Clone, Debug)]
pub struct Served {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: String,
    pub etag: Option<String>,
    /// Whether `Range` requests get a 206; when false they get the whole file.
    pub supports_range: bool,
    /// Failures returned by the next requests, in order, before normal responses.
    pub failures: VecDeque<Failure>,
    /// Headers added to every normal response.
    pub headers: Vec<(header::HeaderName, String)>,
}

impl Served {
    /// Serves a file with an ETag and range support.
    pub fn file(body: Vec<u8>) -> Self {
        let etag = format!("\"{}\"", hex::encode(&sha2::Sha256::digest(&body)[..8]));
        Self {
            status: 200,
            body,
            content_type: "application/zip".to_owned(),
            etag: Some(etag),
            supports_range: true,
            failures: VecDeque::new(),
            headers: Vec::new(),
        }
    }

    /// Responds with this status, content type and body.
    pub fn page(status: u16, content_type: &str, body: &str) -> Self {
        Self {
            status,
            body: body.as_bytes().to_vec(),
            content_type: content_type.to_owned(),
            etag: None,
            supports_range: false,
            failures: VecDeque::new(),
            headers: Vec::new(),
        }
    }

    pub fn failing_first(mut self, failures: impl IntoIterator<Item = Failure>) -> Self {
        self.failures.extend(failures);
        self
    }

    /// Redirects to `location`.
    pub fn redirect(location: &str) -> Self {
        let mut served = Self::page(302, "text/plain", "");
        served.headers.push((header::LOCATION, location.to_owned()));
        served
    }

    pub fn without_range_support(mut self) -> Self {
        self.supports_range = false;
        self
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub uri: String,
    pub path: String,
    pub range: Option<String>,
    pub if_none_match: Option<String>,
}

#[derive(Default)]
struct ServerState {
    routes: Mutex<HashMap<String, Served>>,
    requests: Mutex<Vec<Recorded>>,
}

/// An HTTP/1.1 server on 127.0.0.1 with a random port, stopped when dropped.
pub struct TestServer {
    pub address: std::net::SocketAddr,
    state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start() -> Self {
        let state = Arc::new(ServerState::default());
        let app = Router::new().fallback(serve).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let address = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("test server runs");
        });
        Self {
            address,
            state,
            task,
        }
    }

    /// Serves `served` at `path`, replacing any earlier route.
    pub fn route(&self, path: &str, served: Served) {
        self.state
            .routes
            .lock()
            .expect("routes lock")
            .insert(path.to_owned(), served);
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.address, path_and_query)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().expect("requests lock").clone()
    }

    pub fn request_count(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|request| request.path == path)
            .count()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(state): State<Arc<ServerState>>, uri: Uri, headers: HeaderMap) -> Response {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let path = uri.path().to_owned();
    state
        .requests
        .lock()
        .expect("requests lock")
        .push(Recorded {
            uri: uri.to_string(),
            path: path.clone(),
            range: text(header::RANGE),
            if_none_match: text(header::IF_NONE_MATCH),
        });

    let (served, failure) = {
        let mut routes = state.routes.lock().expect("routes lock");
        match routes.get_mut(&path) {
            Some(served) => {
                let failure = served.failures.pop_front();
                (served.clone(), failure)
            }
            None => return status_only(404),
        }
    };

    match failure {
        Some(Failure::Status(code)) => status_only(code),
        Some(Failure::CutHalfway) => cut_halfway(&served),
        Some(Failure::Stall) => stall(&served),
        None => answer(
            &served,
            text(header::RANGE),
            text(header::IF_RANGE),
            text(header::IF_NONE_MATCH),
        ),
    }
}

fn status_only(code: u16) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::from_u16(code).expect("valid status");
    response
}

fn answer(
    served: &Served,
    range: Option<String>,
    if_range: Option<String>,
    if_none_match: Option<String>,
) -> Response {
    if served.status != 200 {
        let mut response = Response::new(Body::from(served.body.clone()));
        *response.status_mut() = StatusCode::from_u16(served.status).expect("valid status");
        set(&mut response, header::CONTENT_TYPE, &served.content_type);
        for (name, value) in &served.headers {
            set(&mut response, name.clone(), value);
        }
        return response;
    }

    if if_none_match.is_some() && if_none_match == served.etag {
        let mut response = status_only(304);
        set_etag(&mut response, served);
        return response;
    }

    let start = range
        .as_deref()
        .and_then(|value| value.strip_prefix("bytes="))
        .and_then(|value| value.strip_suffix('-'))
        .and_then(|value| value.parse::<usize>().ok())
        .filter(|_| served.supports_range && (if_range.is_none() || if_range == served.etag));

    let mut response = match start {
        Some(start) if start < served.body.len() => {
            let mut response = Response::new(Body::from(served.body[start..].to_vec()));
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let content_range = format!(
                "bytes {start}-{}/{}",
                served.body.len() - 1,
                served.body.len()
            );
            set(&mut response, header::CONTENT_RANGE, &content_range);
            response
        }
        _ => Response::new(Body::from(served.body.clone())),
    };
    set(&mut response, header::CONTENT_TYPE, &served.content_type);
    set_etag(&mut response, served);
    response
}

fn cut_halfway(served: &Served) -> Response {
    let half = Bytes::from(served.body[..served.body.len() / 2].to_vec());
    let stream = futures::stream::unfold(0u8, move |step| {
        let half = half.clone();
        async move {
            match step {
                0 => Some((Ok::<Bytes, std::io::Error>(half), 1)),
                1 => {
                    // Let the first half reach the client before the connection closes.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((
                        Err(std::io::Error::other("connection cut by test server")),
                        2,
                    ))
                }
                _ => None,
            }
        }
    });
    streaming_response(served, Body::from_stream(stream))
}

fn stall(served: &Served) -> Response {
    let head = Bytes::from(served.body[..16.min(served.body.len())].to_vec());
    let stream = futures::stream::unfold(0u8, move |step| {
        let head = head.clone();
        async move {
            match step {
                0 => Some((Ok::<Bytes, std::io::Error>(head), 1)),
                _ => {
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    None
                }
            }
        }
    });
    streaming_response(served, Body::from_stream(stream))
}

/// Builds a 200 response whose Content-Length promises the whole file.
fn streaming_response(served: &Served, body: Body) -> Response {
    let mut response = Response::new(body);
    set(&mut response, header::CONTENT_TYPE, &served.content_type);
    set(
        &mut response,
        header::CONTENT_LENGTH,
        &served.body.len().to_string(),
    );
    set_etag(&mut response, served);
    response
}

fn set_etag(response: &mut Response, served: &Served) {
    if let Some(etag) = &served.etag {
        set(response, header::ETAG, etag);
    }
}

fn set(response: &mut Response, name: header::HeaderName, value: &str) {
    response.headers_mut().insert(
        name,
        HeaderValue::from_str(value).expect("valid header value"),
    );
}

/// Returns a policy for tests: fast retries, short timeouts, loopback allowed.
pub fn test_policy() -> FetchPolicy {
    FetchPolicy {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        max_attempts: 3,
        backoff_initial: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(50),
        ..FetchPolicy::default()
    }
}

pub fn source(url: String, sha256: Option<String>) -> ModelSource {
    ModelSource { url, sha256 }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(sha1::Sha1::digest(bytes))
}

/// A tensor value description: name, element type code, dims (`Err` for a symbolic name).
pub type TensorSpec<'a> = (&'a str, i32, &'a [Result<i64, &'a str>]);

pub const FLOAT: i32 = 1;
pub const STRING: i32 = 8;

fn tensor_value(name: &str, element_type: i32, dims: &[Result<i64, &str>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|dim| tensor_shape_proto::Dimension {
            value: Some(match dim {
                Ok(size) => tensor_shape_proto::dimension::Value::DimValue(*size),
                Err(symbol) => tensor_shape_proto::dimension::Value::DimParam((*symbol).to_owned()),
            }),
            denotation: None,
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_owned()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(element_type),
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: None,
        }),
        doc_string: None,
    }
}

/// Builds a model with one image input, a weight initializer that is also
/// listed as an input (as older exporters do), the given outputs and metadata.
pub fn model_proto(outputs: &[TensorSpec<'_>], metadata: &[(&str, &str)]) -> ModelProto {
    let weight = TensorProto {
        dims: vec![8, 3, 3, 3],
        data_type: Some(FLOAT),
        name: Some("conv1.weight".to_owned()),
        raw_data: Some(vec![0u8; 8 * 3 * 3 * 3 * 4]),
    };

    ModelProto {
        ir_version: Some(7),
        producer_name: Some("visionfleet-tests".to_owned()),
        producer_version: Some("1".to_owned()),
        domain: None,
        model_version: Some(1),
        graph: Some(GraphProto {
            name: Some("tiny".to_owned()),
            initializer: vec![weight],
            input: vec![
                tensor_value("data", FLOAT, &[Err("batch"), Ok(3), Ok(224), Ok(224)]),
                tensor_value("conv1.weight", FLOAT, &[Ok(8), Ok(3), Ok(3), Ok(3)]),
            ],
            output: outputs
                .iter()
                .map(|(name, element_type, dims)| tensor_value(name, *element_type, dims))
                .collect(),
            sparse_initializer: Vec::new(),
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(13),
        }],
        metadata_props: metadata
            .iter()
            .map(|(key, value)| StringStringEntryProto {
                key: Some((*key).to_owned()),
                value: Some((*value).to_owned()),
            })
            .collect(),
    }
}

/// Builds a classification model with `classes` scores in output `model_output`.
pub fn classifier_model(classes: i64) -> Vec<u8> {
    model_proto(
        &[("model_output", FLOAT, &[Ok(1), Ok(classes)])],
        &[("Image.BitmapPixelFormat", "Bgr8")],
    )
    .encode_to_vec()
}

/// Builds a deflated zip of `(name, content)` entries.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, content) in entries {
        writer
            .start_file(*name, SimpleFileOptions::default())
            .expect("start zip entry");
        writer.write_all(content).expect("write zip entry");
    }
    writer.finish().expect("finish zip").into_inner()
}

/// Builds the files of a Custom Vision export: manifest (with the model's SHA-1
/// unless `manifest_sha1` overrides it), labels, metadata and model.
pub fn custom_vision_files(
    model: &[u8],
    labels: &str,
    manifest_sha1: Option<&str>,
) -> Vec<(String, Vec<u8>)> {
    let sha1 = manifest_sha1.map_or_else(|| sha1_hex(model), str::to_owned);
    let manifest = serde_json::json!({
        "DomainType": "Classification",
        "Platform": "ONNX",
        "Flavor": null,
        "ExporterVersion": "2.0",
        "ExportedDate": "2024-05-01T10:00:00.0000000Z",
        "IterationId": "00000000-0000-0000-0000-000000000001",
        "ModelFileName": "model.onnx",
        "LabelFileName": "labels.txt",
        "MetadataPropsFileName": "metadata_properties.json",
        "ModelFileSHA1": sha1,
        "SchemaVersion": "1.0"
    });
    let metadata = serde_json::json!({
        "CustomVision.Metadata.Version": "1.1",
        "CustomVision.Postprocess.Method": "ClassificationMultiClass",
        "CustomVision.Preprocess.TargetWidth": "224",
        "Image.BitmapPixelFormat": "Bgr8",
        "Image.ColorSpaceGamma": "SRGB",
        "Image.NominalPixelRange": "NominalRange_0_255"
    });

    vec![
        (
            "cvexport.manifest".to_owned(),
            serde_json::to_vec_pretty(&manifest).expect("manifest JSON"),
        ),
        ("labels.txt".to_owned(), labels.as_bytes().to_vec()),
        (
            "metadata_properties.json".to_owned(),
            serde_json::to_vec_pretty(&metadata).expect("metadata JSON"),
        ),
        ("model.onnx".to_owned(), model.to_vec()),
    ]
}

/// Builds a Custom Vision export zip of a 3-class classifier.
pub fn custom_vision_zip(labels: &str) -> Vec<u8> {
    let files = custom_vision_files(&classifier_model(3), labels, None);
    let entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(name, content)| (name.as_str(), content.as_slice()))
        .collect();
    zip_of(&entries)
}

/// Runs a test body with a fresh cache folder and store.
pub fn temp_store() -> (tempfile::TempDir, visionfleet_model::ModelStore) {
    let dir = tempfile::tempdir().expect("temporary cache folder");
    let store = visionfleet_model::ModelStore::new(dir.path().join("cache"));
    (dir, store)
}
