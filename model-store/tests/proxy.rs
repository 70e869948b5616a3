//! Proxy variables. Each case runs the fetch in a child process of this test
//! binary, because proxy variables are read from the process environment and
//! changing it inside a multi-threaded test run is not safe.

mod common;

use std::process::{Command, Output};

use common::{Served, TestServer, custom_vision_zip, source, temp_store, test_policy};

/// Variable through which the parent passes the URL to the child test.
const CHILD_URL: &str = "VISIONFLEET_MODEL_TEST_CHILD_URL";

/// Runs `child_fetches_url_from_environment` with `proxy` as the HTTP proxy.
async fn run_child(url: String, proxy: String) -> Output {
    tokio::task::spawn_blocking(move || {
        let executable = std::env::current_exe().expect("test executable path");
        Command::new(executable)
            .args([
                "--exact",
                "child_fetches_url_from_environment",
                "--include-ignored",
                "--nocapture",
            ])
            .env(CHILD_URL, url)
            .env("HTTP_PROXY", &proxy)
            .env("http_proxy", &proxy)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .expect("run child test process")
    })
    .await
    .expect("child process task")
}

fn assert_child_succeeded(output: &Output) {
    assert!(
        output.status.success(),
        "child fetch failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn remote_host_uses_proxy_variable() {
    let proxy = TestServer::start().await;
    proxy.route(
        "/exports/model.zip",
        Served::file(custom_vision_zip("a\nb\nc\n")),
    );

    let output = run_child(
        "http://models.invalid/exports/model.zip".to_owned(),
        proxy.url(""),
    )
    .await;

    assert_child_succeeded(&output);
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].uri, "http://models.invalid/exports/model.zip",
        "the proxy receives the absolute URL"
    );
}

#[tokio::test]
async fn loopback_host_bypasses_proxy() {
    let proxy = TestServer::start().await;
    let target = TestServer::start().await;
    target.route("/model.zip", Served::file(custom_vision_zip("a\nb\nc\n")));

    let output = run_child(target.url("/model.zip"), proxy.url("")).await;

    assert_child_succeeded(&output);
    assert_eq!(
        proxy.requests().len(),
        0,
        "loopback must not go through the proxy"
    );
    assert_eq!(target.request_count("/model.zip"), 1);
}

#[tokio::test]
#[ignore = "child process of the proxy tests; run by them with proxy variables set"]
async fn child_fetches_url_from_environment() {
    let url = std::env::var(CHILD_URL).expect("parent sets the URL");
    let (_dir, store) = temp_store();

    let package = store
        .fetch(&source(url, None), &test_policy())
        .await
        .expect("fetch in child process");

    assert_eq!(package.labels.map(|labels| labels.len()), Some(3));
}
