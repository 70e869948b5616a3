//! Helpers of the `serve` tests: the agent binary on a config folder laid
//! out like a Kubernetes ConfigMap volume, HTTP on 127.0.0.1, and the
//! peers (a file server, mosquitto, Prometheus) started by the test and
//! stopped by PID.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::common;

/// How long any wait in these tests may take before the test fails. Model
/// compilation and a Prometheus scrape cycle fit many times over.
pub const WAIT: Duration = Duration::from_secs(90);

/// Polls `check` every 100 ms until it returns `Ok`, and panics with
/// `what` and the last observation after [`WAIT`].
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!(
                    "timed out after {} s waiting for {what}; last seen: {last}",
                    WAIT.as_secs()
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Returns `sha256:<hex>` of a file, as the agent reports digests.
pub fn digest_of(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("fixture readable");
    format!("sha256:{}", hex_string(&Sha256::digest(&bytes)))
}

/// Returns the bare hex sha256 of a file, as the config pins it.
pub fn sha256_hex(path: &Path) -> String {
    digest_of(path).trim_start_matches("sha256:").to_owned()
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Returns a port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port on 127.0.0.1")
}

/// The fixtures the serve tests use, or `None` after the skip message.
#[derive(Debug, Clone)]
pub struct Fixtures {
    /// Face detector: label `face` on two of the video's photos.
    pub face_model: PathBuf,
    /// Image orientation classifier, for a second digest.
    pub orientation_model: PathBuf,
    /// 8 s of photos at 10 frames per second, 640 x 480.
    pub video: PathBuf,
    /// The same eight photos as PNG files.
    pub frames: PathBuf,
}

impl Fixtures {
    pub fn load() -> Option<Self> {
        common::ort_dylib_path()?;
        Some(Self {
            face_model: common::asset("models/customvision/face-detection-s1.zip")?,
            orientation_model: common::asset("models/customvision/orientation-classification.zip")?,
            video: common::asset("video/photos-10fps.mp4")?,
            frames: common::asset("frames")?,
        })
    }
}

/// Returns an AgentConfig as JSON, with every section the tests change.
pub fn agent_config(model: Value, source: Value, sinks: Value) -> Value {
    json!({
        "apiVersion": "visionfleet.dev/v1alpha1",
        "kind": "AgentConfig",
        "visionModel": {"namespace": "plant-7", "name": "line-3"},
        "model": model,
        "accelerator": {"preference": ["CPU"], "allowCpuFallback": true},
        "source": source,
        "inference": {"confidenceThreshold": 0.5},
        "output": {"sinks": sinks, "messagesPerMinute": 600},
    })
}

/// Returns a local model pinned to its sha256.
pub fn file_model(path: &Path) -> Value {
    json!({"url": path.to_str().expect("UTF-8 path"), "sha256": sha256_hex(path)})
}

/// Returns a video file or image folder source without a rate cap.
pub fn file_source(path: &Path) -> Value {
    json!({"file": path.to_str().expect("UTF-8 path"), "maxFps": 1000.0})
}

/// A config folder laid out as the kubelet writes a ConfigMap volume:
/// `agent-config.json` links to `..data/agent-config.json`, and `..data`
/// links to a timestamped folder that an update replaces atomically.
#[derive(Debug)]
pub struct ConfigDir {
    root: TempDir,
    version: u32,
}

impl ConfigDir {
    pub fn new(config: &Value) -> Self {
        let root = tempfile::tempdir().expect("config folder");
        let mut dir = Self { root, version: 0 };
        dir.update(config);
        std::os::unix::fs::symlink("..data/agent-config.json", dir.path())
            .expect("config file link");
        dir
    }

    /// Returns the config file path the agent reads.
    pub fn path(&self) -> PathBuf {
        self.root.path().join("agent-config.json")
    }

    /// Writes `config` into a new folder and swaps `..data` to it.
    pub fn update(&mut self, config: &Value) {
        self.version += 1;
        let folder = format!(
            "..2026_01_01_00_00_0{}.v{}",
            self.version % 10,
            self.version
        );
        let target = self.root.path().join(&folder);
        std::fs::create_dir(&target).expect("config version folder");
        let text = serde_json::to_string_pretty(config).expect("config JSON");
        std::fs::write(target.join("agent-config.json"), text).expect("config written");

        let staging = self.root.path().join("..data_tmp");
        std::os::unix::fs::symlink(&folder, &staging).expect("staging link");
        std::fs::rename(&staging, self.root.path().join("..data")).expect("..data swapped");
    }
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.text()))
    }
}

/// Sends `GET path` over HTTP/1.1 and reads the whole response.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<Response, String> {
    let mut stream = TcpStream::connect(addr).map_err(|error| error.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|error| error.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|error| error.to_string())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|error| error.to_string())?;

    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| format!("no header end in {:?}", String::from_utf8_lossy(&raw)))?;
    let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status in {headers:?}"))?;
    let mut body = raw[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|window| window == b"\r\n") else {
            return body;
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return body;
        }
        let start = line_end + 2;
        body.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// One running `visionfleet-agent serve`, killed when dropped.
#[derive(Debug)]
pub struct Agent {
    child: Child,
    pub addr: SocketAddr,
    stdout: PathBuf,
    stderr: PathBuf,
    _scratch: TempDir,
}

impl Agent {
    /// Starts the agent on `config` with `env` added; the HTTP server
    /// listens on a free port of 127.0.0.1.
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Self {
        let ort = common::ort_dylib_path().expect("ONNX Runtime is present");
        let scratch = tempfile::tempdir().expect("scratch folder");
        let stdout = scratch.path().join("stdout.jsonl");
        let stderr = scratch.path().join("stderr.log");
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-model-cache");

        let mut command = Command::new(env!("CARGO_BIN_EXE_visionfleet-agent"));
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--http-addr", "127.0.0.1:0"])
            .arg("--cache-dir")
            .arg(scratch.path().join("models"))
            .arg("--compile-cache-dir")
            .arg(&cache)
            .args(["--config-poll-interval", "0.5", "--stall-timeout", "2"])
            // One inference thread, so compiling a new model leaves a core
            // to the frames of the serving one on a small machine.
            .args(["--threads", "1"])
            .env("ORT_DYLIB_PATH", ort)
            .env("RUST_LOG", "info,ort=warn")
            .env_remove("NODE_NAME")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("the agent starts");

        let addr = wait_for("the agent's HTTP address in its log", || {
            let log = std::fs::read_to_string(&stderr).unwrap_or_default();
            log.lines()
                .filter(|line| line.contains("Serving HTTP"))
                .find_map(|line| {
                    let start = line.find("addr=")? + "addr=".len();
                    line[start..].split_whitespace().next()?.parse().ok()
                })
                .ok_or(log)
        });
        Self {
            child,
            addr,
            stdout,
            stderr,
            _scratch: scratch,
        }
    }

    pub fn get(&self, path: &str) -> Response {
        http_get(self.addr, path).unwrap_or_else(|error| panic!("GET {path} failed: {error}"))
    }

    /// Returns every result line written to stdout so far.
    pub fn results(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        text.lines()
            .filter(|line| line.ends_with('}'))
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|error| panic!("stdout line is not JSON ({error}): {line}"))
            })
            .collect()
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Returns the value of the sample `series` (name and labels exactly as
    /// the text format writes them) from `/metrics`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.get("/metrics").text(), series)
    }

    /// Sends SIGTERM and waits for the agent to exit.
    pub fn stop(mut self) -> ExitStatus {
        terminate(&mut self.child)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that `results` come from the model `old_digest` first, then,
/// after one switch, only from `new_digest`.
pub fn assert_one_model_switch(results: &[Value], old_digest: &str, new_digest: &str) {
    let digests: Vec<&str> = results
        .iter()
        .map(|result| result["model_digest"].as_str().expect("a model digest"))
        .collect();
    let switch = digests
        .iter()
        .position(|digest| *digest == new_digest)
        .expect("results of the new model");

    assert!(switch > 0, "the first model served first");
    assert!(digests[..switch].iter().all(|digest| *digest == old_digest));
    assert!(digests[switch..].iter().all(|digest| *digest == new_digest));
}

/// Returns the value of one series in Prometheus text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// Sends SIGTERM to `child` by PID and waits for it.
pub fn terminate(child: &mut Child) -> ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM {} failed", child.id());
    child.wait().expect("the process exits")
}

/// A loopback HTTP server with fixed responses by path; a request whose
/// path is not listed gets 404. The query string is compared too, so a
/// test can require a signature.
#[derive(Debug)]
pub struct FileServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub requests: Arc<AtomicU64>,
}

/// One fixed response.
#[derive(Debug, Clone)]
pub struct Route {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl FileServer {
    pub fn start(routes: BTreeMap<String, Route>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("file server binds");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("file server address");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let routes = Arc::new(routes);

        let thread = {
            let stop = stop.clone();
            let requests = requests.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            requests.fetch_add(1, Ordering::Relaxed);
                            serve_one(stream, &routes);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        Self {
            addr,
            stop,
            thread: Some(thread),
            requests,
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_one(stream: TcpStream, routes: &BTreeMap<String, Route>) {
    let _ = stream.set_nonblocking(false);
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(clone) => clone,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header == "\r\n" => break,
            Ok(_) => {}
        }
    }

    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let not_found = Route {
        status: 404,
        content_type: "text/plain",
        body: b"not found".to_vec(),
    };
    let route = routes.get(target).unwrap_or(&not_found);
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        route.status,
        route.content_type,
        route.body.len()
    );
    let _ = stream.write_all(&route.body);
}

/// A mosquitto broker on 127.0.0.1, stopped by PID when dropped.
#[derive(Debug)]
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl Mosquitto {
    /// Starts a broker on `port`; with `login`, only that user may connect.
    pub fn start(port: u16, login: Option<(&str, &str)>) -> Self {
        Self::start_with_tls(port, login, None)
    }

    /// Starts a broker on `port`, and with `tls` a second listener for
    /// `mqtts` on `tls.0` with the server certificate of `tls.1`.
    pub fn start_with_tls(
        port: u16,
        login: Option<(&str, &str)>,
        tls: Option<(u16, &TestCertificates)>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("mosquitto folder");
        // Started as root, mosquitto switches to the user `mosquitto`, which
        // cannot read files in the test's private folder; naming the current
        // user keeps it. For other users the setting has no effect.
        let user = Command::new("id").arg("-un").output().expect("id runs");
        let user = String::from_utf8_lossy(&user.stdout).trim().to_owned();
        let mut config = format!("listener {port} 127.0.0.1\npersistence false\nuser {user}\n");
        match login {
            None => config.push_str("allow_anonymous true\n"),
            Some((user, password)) => {
                let password_file = dir.path().join("passwords");
                let status = Command::new("mosquitto_passwd")
                    .arg("-b")
                    .arg("-c")
                    .arg(&password_file)
                    .args([user, password])
                    .status()
                    .expect("mosquitto_passwd runs");
                assert!(status.success(), "mosquitto_passwd failed");
                config.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\n",
                    password_file.display()
                ));
            }
        }
        if let Some((tls_port, certificates)) = tls {
            config.push_str(&format!(
                "listener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                certificates.server_certificate.display(),
                certificates.server_key.display()
            ));
        }
        let config_path = dir.path().join("mosquitto.conf");
        std::fs::write(&config_path, config).expect("mosquitto config");

        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("mosquitto.log")).expect("log file"))
            .spawn()
            .expect("mosquitto starts (Debian package mosquitto)");
        let ports = [Some(port), tls.map(|(tls_port, _)| tls_port)];
        for port in ports.into_iter().flatten() {
            wait_for("mosquitto to accept connections", || {
                TcpStream::connect(("127.0.0.1", port))
                    .map(drop)
                    .map_err(|error| error.to_string())
            });
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// A test certificate authority and a server certificate for 127.0.0.1 it
/// signed, made with the `openssl` command and valid for one day.
#[derive(Debug)]
pub struct TestCertificates {
    pub ca_certificate: PathBuf,
    pub server_certificate: PathBuf,
    pub server_key: PathBuf,
    _dir: TempDir,
}

impl TestCertificates {
    pub fn create() -> Self {
        let dir = tempfile::tempdir().expect("certificate folder");
        let path = |name: &str| dir.path().join(name);
        let extensions = path("server.ext");
        std::fs::write(
            &extensions,
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("extension file");

        let steps: [Vec<&str>; 3] = [
            vec![
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=VisionFleet test CA",
            ],
            vec![
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
            ],
            vec!["x509", "-req", "-days", "1", "-CAcreateserial"],
        ];
        let files: [Vec<(&str, PathBuf)>; 3] = [
            vec![("-keyout", path("ca.key")), ("-out", path("ca.pem"))],
            vec![
                ("-keyout", path("server.key")),
                ("-out", path("server.csr")),
            ],
            vec![
                ("-in", path("server.csr")),
                ("-CA", path("ca.pem")),
                ("-CAkey", path("ca.key")),
                ("-extfile", extensions.clone()),
                ("-out", path("server.pem")),
            ],
        ];
        for (step, files) in steps.iter().zip(files) {
            let mut command = Command::new("openssl");
            command
                .args(step)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            for (flag, file) in files {
                command.arg(flag).arg(file);
            }
            let status = command.status().expect("openssl runs");
            assert!(status.success(), "openssl {step:?} failed");
        }

        Self {
            ca_certificate: path("ca.pem"),
            server_certificate: path("server.pem"),
            server_key: path("server.key"),
            _dir: dir,
        }
    }
}

/// A message a subscriber received.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Value,
    pub at: Instant,
}

/// An MQTT subscriber on its own thread, collecting every message.
pub struct Subscriber {
    pub messages: Arc<Mutex<Vec<Received>>>,
    client: rumqttc::Client,
    thread: Option<JoinHandle<()>>,
}

impl Subscriber {
    /// Connects to the broker on `port` and subscribes to `filter`; returns
    /// once the broker acknowledged the subscription.
    pub fn start(port: u16, filter: &str, login: Option<(&str, &str)>) -> Self {
        let mut options = rumqttc::MqttOptions::new(
            format!("test-subscriber-{}", std::process::id()),
            "127.0.0.1",
            port,
        );
        options.set_keep_alive(Duration::from_secs(10));
        if let Some((user, password)) = login {
            options.set_credentials(user, password);
        }
        let (client, mut connection) = rumqttc::Client::new(options, 100);
        client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .expect("subscribe queued");

        let messages = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_sender, subscribed) = std::sync::mpsc::channel();
        let thread = {
            let messages = messages.clone();
            std::thread::spawn(move || {
                for event in connection.iter() {
                    match event {
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                            let _ = subscribed_sender.send(());
                        }
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish))) => {
                            let payload =
                                serde_json::from_slice(&publish.payload).unwrap_or(Value::Null);
                            messages.lock().expect("messages lock").push(Received {
                                topic: publish.topic.clone(),
                                payload,
                                at: Instant::now(),
                            });
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            })
        };
        subscribed
            .recv_timeout(WAIT)
            .expect("the broker acknowledges the subscription");
        Self {
            messages,
            client,
            thread: Some(thread),
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.messages.lock().expect("messages lock").clone()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Prometheus scraping one target every second, stopped by PID when dropped.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl Prometheus {
    pub fn start(target: SocketAddr, job: &str) -> Self {
        let dir = tempfile::tempdir().expect("Prometheus folder");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("Prometheus config");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("address");

        let child = Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).expect("log file"))
            .spawn()
            .expect("Prometheus starts (Debian package prometheus)");
        wait_for("Prometheus to be ready", || {
            http_get(addr, "/-/ready").and_then(|response| {
                (response.status == 200)
                    .then_some(())
                    .ok_or_else(|| response.text())
            })
        });
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Runs an instant query and returns its result vector.
    pub fn query(&self, query: &str) -> Vec<Value> {
        let encoded: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
        let response = self.get(&format!("/api/v1/query?query={encoded}"));
        let body = response.json();
        assert_eq!(body["status"], "success", "{body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn get(&self, path: &str) -> Response {
        http_get(self.addr, path).unwrap_or_else(|error| panic!("GET {path} failed: {error}"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}
