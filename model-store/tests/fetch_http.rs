//! Fetching over HTTP from a real server on 127.0.0.1: success, cache use,
//! each failure class, retries, resume and redaction.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{
    Failure, Served, TestServer, classifier_model, custom_vision_zip, sha256_hex, source,
    temp_store, test_policy,
};
use visionfleet_model::{CacheStatus, FetchError, FetchPolicy, ModelStore};

const LABELS: &str = "cat\ndog\nbird\n";

/// Secret query value used in signed-URL tests; it must never be printed.
const SECRET: &str = "c2VjcmV0LXNpZ25hdHVyZQ%3D%3D";

fn signed(server: &TestServer, path: &str) -> String {
    server.url(&format!(
        "{path}?sv=2022-11-02&se=2024-01-01T00%3A00%3A00Z&sp=r&sig={SECRET}"
    ))
}

fn assert_redacted(error: &FetchError) {
    let printed = format!("{error} / {error:?}");
    assert!(
        printed.contains("sig=REDACTED"),
        "error should show the redacted URL: {printed}"
    );
    assert!(
        !printed.contains(SECRET),
        "error leaks the signature: {printed}"
    );
    assert!(
        !printed.contains("c2VjcmV0"),
        "error leaks part of the signature: {printed}"
    );
}

#[tokio::test]
async fn good_zip_is_fetched_and_verified() {
    let server = TestServer::start().await;
    let zip = custom_vision_zip(LABELS);
    let digest = sha256_hex(&zip);
    server.route("/model.zip", Served::file(zip.clone()));
    let (_dir, store) = temp_store();

    let (package, report) = store
        .fetch_with_report(
            &source(server.url("/model.zip"), Some(digest.clone())),
            &test_policy(),
        )
        .await
        .expect("fetch succeeds");

    assert_eq!(package.digest, format!("sha256:{digest}"));
    assert_eq!(package.dir, store.cache_dir().join("sha256").join(&digest));
    assert_eq!(package.model_path, package.dir.join("model.onnx"));
    assert!(package.model_path.is_file());
    assert_eq!(
        package.labels,
        Some(vec!["cat".to_owned(), "dog".to_owned(), "bird".to_owned()])
    );
    let manifest = package.manifest.as_ref().expect("manifest");
    assert_eq!(manifest.platform.as_deref(), Some("ONNX"));
    assert_eq!(package.metadata["Image.BitmapPixelFormat"], "Bgr8");
    assert_eq!(package.onnx.outputs[0].name, "model_output");
    assert_eq!(report.cache, CacheStatus::Miss);
    assert_eq!(report.attempts, 1);
    assert_eq!(report.bytes_downloaded, zip.len() as u64);
    assert!(!report.resumed);
}

#[tokio::test]
async fn pinned_digest_in_cache_sends_no_request() {
    let server = TestServer::start().await;
    let zip = custom_vision_zip(LABELS);
    let digest = sha256_hex(&zip);
    server.route("/model.zip", Served::file(zip));
    let (dir, store) = temp_store();
    let model = source(server.url("/model.zip"), Some(digest.clone()));
    store
        .fetch(&model, &test_policy())
        .await
        .expect("first fetch");

    // A restarted agent: a new store over the same cache folder.
    let restarted = ModelStore::new(dir.path().join("cache"));
    let (package, report) = restarted
        .fetch_with_report(&model, &test_policy())
        .await
        .expect("second fetch");

    assert_eq!(server.request_count("/model.zip"), 1);
    assert_eq!(report.cache, CacheStatus::Hit);
    assert_eq!(report.attempts, 0);
    assert_eq!(report.bytes_downloaded, 0);
    assert_eq!(package.digest, format!("sha256:{digest}"));
}

#[tokio::test]
async fn unpinned_fetch_revalidates_with_etag() {
    let server = TestServer::start().await;
    server.route("/model.zip", Served::file(custom_vision_zip(LABELS)));
    let (_dir, store) = temp_store();
    let model = source(server.url("/model.zip"), None);
    let first = store
        .fetch(&model, &test_policy())
        .await
        .expect("first fetch");

    let (second, report) = store
        .fetch_with_report(&model, &test_policy())
        .await
        .expect("second fetch");

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1].if_none_match.is_some(),
        "second request should be conditional"
    );
    assert_eq!(report.cache, CacheStatus::Revalidated);
    assert_eq!(report.bytes_downloaded, 0);
    assert_eq!(second.digest, first.digest);
}

#[tokio::test]
async fn changed_file_is_downloaded_and_old_package_kept() {
    let server = TestServer::start().await;
    server.route("/model.zip", Served::file(custom_vision_zip(LABELS)));
    let (_dir, store) = temp_store();
    let model = source(server.url("/model.zip"), None);
    let old = store
        .fetch(&model, &test_policy())
        .await
        .expect("first fetch");

    server.route(
        "/model.zip",
        Served::file(custom_vision_zip("cat\ndog\nfish\n")),
    );
    let (new, report) = store
        .fetch_with_report(&model, &test_policy())
        .await
        .expect("second fetch");

    assert_eq!(report.cache, CacheStatus::Miss);
    assert_ne!(new.digest, old.digest);
    assert_eq!(
        new.labels.as_deref().map(|labels| labels[2].as_str()),
        Some("fish")
    );
    assert!(
        old.model_path.is_file(),
        "the earlier package stays in the cache"
    );
}

#[tokio::test]
async fn html_login_page_is_rejected() {
    let server = TestServer::start().await;
    let page = "<!DOCTYPE html><html><head><title>Sign in</title></head><body><form>...</form></body></html>";
    server.route(
        "/share",
        Served::page(200, "text/html; charset=utf-8", page),
    );
    let (_dir, store) = temp_store();

    let error = store
        .fetch(&source(signed(&server, "/share"), None), &test_policy())
        .await
        .expect_err("HTML page");

    assert_eq!(error.reason(), "HtmlPage");
    assert!(!error.is_transient());
    assert!(error.to_string().contains("/share?"), "{error}");
    assert_redacted(&error);
}

#[tokio::test]
async fn html_body_with_binary_content_type_is_rejected() {
    let server = TestServer::start().await;
    let page = "\n  <!doctype HTML><html><body>Download will start shortly</body></html>";
    server.route(
        "/download",
        Served::page(200, "application/octet-stream", page),
    );
    let (_dir, store) = temp_store();

    let error = store
        .fetch(&source(server.url("/download"), None), &test_policy())
        .await
        .expect_err("HTML body");

    assert_eq!(error.reason(), "HtmlPage");
}

#[tokio::test]
async fn expired_sas_gives_access_denied() {
    let server = TestServer::start().await;
    let body = format!(
        "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code>\
         <Message>Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.\n\
         RequestId:7d3e0c5e-001e-0041-2f3a-000000000000\nTime:2024-01-02T00:00:00.0000000Z</Message>\
         <AuthenticationErrorDetail>Signed expiry time [Mon, 01 Jan 2024 00:00:00 GMT] must be after signed start time [Tue, 02 Jan 2024 00:00:00 GMT]; sig {SECRET}</AuthenticationErrorDetail></Error>"
    );
    server.route(
        "/models/model.zip",
        Served::page(403, "application/xml", &body),
    );
    let (_dir, store) = temp_store();

    let error = store
        .fetch(
            &source(signed(&server, "/models/model.zip"), None),
            &test_policy(),
        )
        .await
        .expect_err("expired signature");

    assert_eq!(error.reason(), "AccessDenied");
    assert!(!error.is_transient());
    assert!(
        error
            .to_string()
            .contains("AuthenticationFailed: Signed expiry time"),
        "{error}"
    );
    assert_eq!(
        server.request_count("/models/model.zip"),
        1,
        "a 403 is not retried"
    );
    assert_redacted(&error);
}

#[tokio::test]
async fn missing_file_gives_not_found() {
    let server = TestServer::start().await;
    let (_dir, store) = temp_store();

    let error = store
        .fetch(
            &source(signed(&server, "/nothing.zip"), None),
            &test_policy(),
        )
        .await
        .expect_err("404");

    assert_eq!(error.reason(), "NotFound");
    assert!(!error.is_transient());
    assert_eq!(server.request_count("/nothing.zip"), 1);
    assert_redacted(&error);
}

#[tokio::test]
async fn empty_body_is_rejected() {
    let server = TestServer::start().await;
    server.route("/empty.zip", Served::page(200, "application/zip", ""));
    let (_dir, store) = temp_store();

    let error = store
        .fetch(&source(signed(&server, "/empty.zip"), None), &test_policy())
        .await
        .expect_err("empty");

    assert_eq!(error.reason(), "EmptyBody");
    assert!(!error.is_transient());
    assert_redacted(&error);
}

#[tokio::test]
async fn cut_connection_is_reported_as_transient() {
    let server = TestServer::start().await;
    let zip = custom_vision_zip(LABELS);
    server.route(
        "/model.zip",
        Served::file(zip.clone()).failing_first([Failure::CutHalfway]),
    );
    let (_dir, store) = temp_store();
    let policy = FetchPolicy {
        max_attempts: 1,
        ..test_policy()
    };

    let error = store
        .fetch(&source(signed(&server, "/model.zip"), None), &policy)
        .await
        .expect_err("cut");

    assert_eq!(error.reason(), "ConnectionCut");
    assert!(error.is_transient());
    assert!(
        error.to_string().contains(&format!("of {}", zip.len())),
        "{error}"
    );
    assert_redacted(&error);
}

#[tokio::test]
async fn cut_download_resumes_with_range() {
    let server = TestServer::start().await;
    let zip = custom_vision_zip(LABELS);
    server.route(
        "/model.zip",
        Served::file(zip.clone()).failing_first([Failure::CutHalfway]),
    );
    let (_dir, store) = temp_store();

    let (package, report) = store
        .fetch_with_report(
            &source(server.url("/model.zip"), Some(sha256_hex(&zip))),
            &test_policy(),
        )
        .await
        .expect("resumed fetch");

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].range, None);
    let range = requests[1]
        .range
        .as_deref()
        .expect("second request asks for a range");
    let offset: usize = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .expect("numeric range");
    assert!(offset > 0, "range {range}");
    assert!(offset < zip.len(), "range {range}");
    assert!(report.resumed);
    assert_eq!(report.attempts, 2);
    assert_eq!(package.digest, format!("sha256:{}", sha256_hex(&zip)));
}

#[tokio::test]
async fn server_ignoring_range_restarts_download() {
    let server = TestServer::start().await;
    let zip = custom_vision_zip(LABELS);
    let served = Served::file(zip.clone())
        .without_range_support()
        .failing_first([Failure::CutHalfway]);
    server.route("/model.zip", served);
    let (_dir, store) = temp_store();

    let (package, report) = store
        .fetch_with_report(
            &source(server.url("/model.zip"), Some(sha256_hex(&zip))),
            &test_policy(),
        )
        .await
        .expect("restarted fetch");

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1].range.is_some(),
        "the client still asks to resume"
    );
    assert!(!report.resumed, "the server sent the whole file again");
    assert_eq!(package.digest, format!("sha256:{}", sha256_hex(&zip)));
}

#[tokio::test]
async fn stalled_server_times_out() {
    let server = TestServer::start().await;
    server.route(
        "/slow.zip",
        Served::file(custom_vision_zip(LABELS)).failing_first([Failure::Stall]),
    );
    let (_dir, store) = temp_store();
    let policy = FetchPolicy {
        max_attempts: 1,
        read_timeout: Duration::from_millis(300),
        ..test_policy()
    };

    let error = store
        .fetch(&source(signed(&server, "/slow.zip"), None), &policy)
        .await
        .expect_err("stall");

    assert_eq!(error.reason(), "DownloadTimedOut");
    assert!(error.is_transient());
    assert_redacted(&error);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let server = TestServer::start().await;
    let zip = custom_vision_zip(LABELS);
    server.route(
        "/model.zip",
        Served::file(zip).failing_first([Failure::Status(503), Failure::Status(503)]),
    );
    let (_dir, store) = temp_store();

    let (_, report) = store
        .fetch_with_report(&source(server.url("/model.zip"), None), &test_policy())
        .await
        .expect("third attempt succeeds");

    assert_eq!(server.request_count("/model.zip"), 3);
    assert_eq!(report.attempts, 3);
}

#[tokio::test]
async fn persistent_server_error_stops_at_max_attempts() {
    let server = TestServer::start().await;
    let failures = [
        Failure::Status(500),
        Failure::Status(502),
        Failure::Status(503),
        Failure::Status(504),
    ];
    server.route(
        "/model.zip",
        Served::file(custom_vision_zip(LABELS)).failing_first(failures),
    );
    let (_dir, store) = temp_store();

    let error = store
        .fetch(&source(server.url("/model.zip"), None), &test_policy())
        .await
        .expect_err("5xx");

    assert_eq!(error.reason(), "ServerError");
    assert!(error.is_transient());
    assert_eq!(server.request_count("/model.zip"), 3);
}

#[tokio::test]
async fn rate_limit_is_transient() {
    let server = TestServer::start().await;
    server.route(
        "/model.zip",
        Served::file(custom_vision_zip(LABELS)).failing_first([Failure::Status(429)]),
    );
    let (_dir, store) = temp_store();
    let policy = FetchPolicy {
        max_attempts: 1,
        ..test_policy()
    };

    let error = store
        .fetch(&source(server.url("/model.zip"), None), &policy)
        .await
        .expect_err("429");

    assert_eq!(error.reason(), "RateLimited");
    assert!(error.is_transient());
}

#[tokio::test]
async fn digest_pin_mismatch_is_rejected() {
    let server = TestServer::start().await;
    let zip = custom_vision_zip(LABELS);
    server.route("/model.zip", Served::file(zip.clone()));
    let (_dir, store) = temp_store();
    let wrong_pin = "0".repeat(64);

    let error = store
        .fetch(
            &source(signed(&server, "/model.zip"), Some(wrong_pin.clone())),
            &test_policy(),
        )
        .await
        .expect_err("wrong pin");

    assert_eq!(error.reason(), "DigestMismatch");
    assert!(!error.is_transient());
    assert!(error.to_string().contains(&sha256_hex(&zip)), "{error}");
    assert!(
        !store
            .cache_dir()
            .join("sha256")
            .join(sha256_hex(&zip))
            .exists()
    );
    assert!(!store.cache_dir().join("sha256").join(wrong_pin).exists());
    assert_redacted(&error);
}

#[tokio::test]
async fn failed_update_keeps_last_good_package() {
    let server = TestServer::start().await;
    let good = custom_vision_zip(LABELS);
    let good_digest = sha256_hex(&good);
    server.route("/model.zip", Served::file(good));
    let (_dir, store) = temp_store();
    let good_source = source(server.url("/model.zip"), Some(good_digest.clone()));
    let installed = store
        .fetch(&good_source, &test_policy())
        .await
        .expect("good fetch");

    let broken = b"PK\x03\x04 this is not really a zip archive".to_vec();
    server.route("/model.zip", Served::file(broken.clone()));
    let update = source(server.url("/model.zip"), Some(sha256_hex(&broken)));
    let error = store
        .fetch(&update, &test_policy())
        .await
        .expect_err("broken update");
    assert_eq!(error.reason(), "InvalidArchive");

    let requests_before = server.request_count("/model.zip");
    let (package, report) = store
        .fetch_with_report(&good_source, &test_policy())
        .await
        .expect("rollback");
    assert_eq!(report.cache, CacheStatus::Hit);
    assert_eq!(server.request_count("/model.zip"), requests_before);
    assert_eq!(package, installed);
    assert!(package.model_path.is_file());
}

#[tokio::test]
async fn password_in_url_is_redacted() {
    let server = TestServer::start().await;
    let (_dir, store) = temp_store();
    let url = format!(
        "http://reader:hunter2-secret@{}/missing.zip",
        server.address
    );

    let error = store
        .fetch(&source(url, None), &test_policy())
        .await
        .expect_err("404");

    let printed = format!("{error} / {error:?}");
    assert!(printed.contains("reader:REDACTED@"), "{printed}");
    assert!(!printed.contains("hunter2-secret"), "{printed}");
}

#[tokio::test]
async fn redirect_to_metadata_address_is_blocked() {
    let server = TestServer::start().await;
    server.route(
        "/redirect",
        Served::redirect("http://169.254.169.254/latest/meta-data/iam/"),
    );
    let (_dir, store) = temp_store();

    let error = store
        .fetch(&source(server.url("/redirect"), None), &test_policy())
        .await
        .expect_err("blocked");

    assert_eq!(error.reason(), "BlockedAddress");
    assert!(!error.is_transient());
    assert!(error.to_string().contains("169.254.169.254"), "{error}");
}

#[tokio::test]
async fn redirect_within_loopback_is_followed() {
    let server = TestServer::start().await;
    server.route("/latest", Served::redirect("/v2/model.zip"));
    server.route("/v2/model.zip", Served::file(custom_vision_zip(LABELS)));
    let (_dir, store) = temp_store();

    let package = store
        .fetch(&source(server.url("/latest"), None), &test_policy())
        .await
        .expect("redirected fetch");

    assert!(package.model_path.is_file());
    assert_eq!(server.request_count("/v2/model.zip"), 1);
}

#[tokio::test]
async fn metadata_url_is_blocked_before_connecting() {
    let (_dir, store) = temp_store();

    let error = store
        .fetch(
            &source("http://169.254.169.254/latest/meta-data/".to_owned(), None),
            &test_policy(),
        )
        .await
        .expect_err("blocked");

    assert_eq!(error.reason(), "BlockedAddress");
}

#[tokio::test]
async fn oversized_download_is_rejected() {
    let server = TestServer::start().await;
    server.route("/model.zip", Served::file(custom_vision_zip(LABELS)));
    let (_dir, store) = temp_store();
    let policy = FetchPolicy {
        max_download_bytes: 100,
        ..test_policy()
    };

    let error = store
        .fetch(&source(server.url("/model.zip"), None), &policy)
        .await
        .expect_err("too large");

    assert_eq!(error.reason(), "DownloadTooLarge");
    assert!(!error.is_transient());
}

#[tokio::test]
async fn bare_onnx_model_is_a_package() {
    let server = TestServer::start().await;
    let model = classifier_model(5);
    server.route("/model.onnx", Served::file(model.clone()));
    let (_dir, store) = temp_store();

    let package = store
        .fetch(&source(server.url("/model.onnx"), None), &test_policy())
        .await
        .expect("bare model");

    assert_eq!(package.digest, format!("sha256:{}", sha256_hex(&model)));
    assert_eq!(package.model_path, package.dir.join("model.onnx"));
    assert_eq!(
        std::fs::read(&package.model_path).expect("model file"),
        model
    );
    assert_eq!(package.labels, None);
    assert_eq!(package.manifest, None);
    assert!(package.metadata.is_empty());
    assert_eq!(
        package.onnx.metadata_props["Image.BitmapPixelFormat"],
        "Bgr8"
    );
}

#[tokio::test]
async fn unrecognized_file_is_not_a_zip() {
    let server = TestServer::start().await;
    server.route(
        "/model.zip",
        Served::page(
            200,
            "application/octet-stream",
            "just some text, not a model\n",
        ),
    );
    let (_dir, store) = temp_store();

    let error = store
        .fetch(&source(signed(&server, "/model.zip"), None), &test_policy())
        .await
        .expect_err("not a zip");

    assert_eq!(error.reason(), "NotAZip");
    assert!(!error.is_transient());
    assert_redacted(&error);
}

#[tokio::test]
async fn local_path_and_file_url_are_fetched() {
    let (dir, store) = temp_store();
    let zip = custom_vision_zip(LABELS);
    let path = dir.path().join("export.zip");
    std::fs::File::create(&path)
        .and_then(|mut file| file.write_all(&zip))
        .expect("write zip");

    let by_path = store
        .fetch(&source(path.display().to_string(), None), &test_policy())
        .await
        .expect("path");
    let file_url = format!("file://{}", path.display());
    let (by_url, report) = store
        .fetch_with_report(&source(file_url, None), &test_policy())
        .await
        .expect("file URL");

    assert_eq!(by_path.digest, format!("sha256:{}", sha256_hex(&zip)));
    assert_eq!(by_url, by_path);
    assert_eq!(report.attempts, 0);
}

#[tokio::test]
async fn missing_local_file_gives_not_found() {
    let (dir, store) = temp_store();
    let path = dir.path().join("absent.zip");

    let error = store
        .fetch(&source(path.display().to_string(), None), &test_policy())
        .await
        .expect_err("missing");

    assert_eq!(error.reason(), "NotFound");
    assert!(!error.is_transient());
}
