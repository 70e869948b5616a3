//! Logs and cache files of a fetch through a signed URL never contain the
//! signature.
//!
//! This test has a binary of its own because it captures logs with a
//! thread-local tracing subscriber. Tracing caches each call site's interest
//! globally, so tests logging on other threads can make the capture miss lines.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Failure, Served, TestServer, custom_vision_zip, source, temp_store, test_policy};

const LABELS: &str = "cat\ndog\nbird\n";

/// Secret query value of the signed URL, which must never be printed.
const SECRET: &str = "c2VjcmV0LXNpZ25hdHVyZQ%3D%3D";

fn signed(server: &TestServer, path: &str) -> String {
    server.url(&format!(
        "{path}?sv=2022-11-02&se=2024-01-01T00%3A00%3A00Z&sp=r&sig={SECRET}"
    ))
}

#[tokio::test]
async fn logs_and_cache_files_never_contain_secret() {
    let output = Arc::new(Mutex::new(Vec::new()));
    let writer = LogBuffer(output.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = TestServer::start().await;
    let served = Served::file(custom_vision_zip(LABELS))
        .failing_first([Failure::Status(503), Failure::CutHalfway]);
    server.route("/model.zip", served);
    let (_dir, store) = temp_store();
    store
        .fetch(&source(signed(&server, "/model.zip"), None), &test_policy())
        .await
        .expect("fetch with retries");
    let _ = store
        .fetch(
            &source(signed(&server, "/absent.zip"), None),
            &test_policy(),
        )
        .await;

    let logs = String::from_utf8(output.lock().expect("log buffer").clone()).expect("UTF-8 logs");
    assert!(logs.contains("Retrying model download"), "{logs}");
    assert!(logs.contains("Finished model download"), "{logs}");
    assert!(logs.contains("sig=REDACTED"), "{logs}");
    assert!(!logs.contains(SECRET), "logs leak the signature:\n{logs}");

    for entry in walk(store.cache_dir()) {
        if entry.is_file()
            && entry
                .extension()
                .is_some_and(|extension| extension == "json")
        {
            let text = std::fs::read_to_string(&entry).expect("read cache file");
            assert!(
                !text.contains(SECRET),
                "{} leaks the signature",
                entry.display()
            );
        }
        assert!(
            !entry.to_string_lossy().contains("c2VjcmV0"),
            "file name leaks the signature"
        );
    }
}

#[derive(Clone)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}
