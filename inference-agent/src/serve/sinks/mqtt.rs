//! The MQTT result sink: one QoS 1 message per result of interest, capped by
//! a token bucket, sent by a background task that reconnects on its own.
//!
//! The frame loop only queues messages ([`AsyncClient::try_publish`] never
//! waits), so an unreachable broker costs dropped messages, never frames.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::rate::TokenBucket;
use crate::metrics::Metrics;
use crate::serve::config::MqttSpec;
use crate::serve::redact::Redactor;

/// Messages queued while the broker is unreachable; further ones are
/// dropped and counted as `queue_full`. At the default cap of 10 messages
/// a minute this keeps the last ten minutes.
const QUEUE_CAPACITY: usize = 100;

/// Keep-alive interval; the broker drops the session after 1.5 times this
/// without a packet.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// Largest MQTT packet sent or accepted: room for a result with a few
/// thousand detections.
const MAX_PACKET_BYTES: usize = 1 << 20;

/// First delay before reconnecting; it doubles up to [`RECONNECT_MAX`].
const RECONNECT_INITIAL: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// How long a closed sink may take to send its disconnect before its task
/// is stopped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Failure to set up an MQTT sink.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error(
        "no usable root certificate found for mqtts; install ca-certificates or set SSL_CERT_FILE"
    )]
    NoRootCertificates,

    #[error("failed to configure TLS for mqtts: {0}")]
    Tls(String),
}

/// A connection to one broker and topic.
#[derive(Debug)]
pub struct MqttSink {
    client: AsyncClient,
    topic: String,
    bucket: TokenBucket,
    metrics: Metrics,
    closed: Arc<AtomicBool>,
    event_loop: JoinHandle<()>,
    runtime: Handle,
}

impl MqttSink {
    /// Starts the client's background task on `runtime`; the connection is
    /// made there, so this returns at once.
    pub fn start(
        spec: &MqttSpec,
        messages_per_minute: u32,
        metrics: Metrics,
        redactor: Redactor,
        runtime: &Handle,
    ) -> Result<Self, MqttError> {
        let mut options = MqttOptions::new(&spec.client_id, &spec.host, spec.port);
        options
            .set_keep_alive(KEEP_ALIVE)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        if let Some(credentials) = &spec.credentials {
            options.set_credentials(&credentials.username, &credentials.password);
        }
        if spec.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls_config()?,
            )));
        }

        let (client, event_loop) = AsyncClient::new(options, QUEUE_CAPACITY);
        let closed = Arc::new(AtomicBool::new(false));
        let task = runtime.spawn(drive(
            event_loop,
            EventContext {
                metrics: metrics.clone(),
                redactor,
                broker: spec.display.clone(),
                closed: closed.clone(),
            },
        ));

        tracing::info!(
            broker = %spec.display,
            topic = %spec.topic,
            messages_per_minute,
            "MQTT sink started"
        );
        Ok(Self {
            client,
            topic: spec.topic.clone(),
            bucket: TokenBucket::new(messages_per_minute, Instant::now()),
            metrics,
            closed,
            event_loop: task,
            runtime: runtime.clone(),
        })
    }

    /// Queues `line` as one QoS 1 message, unless the rate cap or a full
    /// queue drops it.
    pub fn publish(&mut self, line: &[u8]) {
        if !self.bucket.try_take(Instant::now()) {
            self.metrics.observe_mqtt_dropped("rate_cap");
            return;
        }
        if self
            .client
            .try_publish(&self.topic, QoS::AtLeastOnce, false, line.to_vec())
            .is_err()
        {
            self.metrics.observe_mqtt_dropped("queue_full");
        }
    }
}

impl Drop for MqttSink {
    /// Sends a disconnect, and stops the background task once it is sent or
    /// after [`CLOSE_GRACE`].
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();

        let task = self.event_loop.abort_handle();
        self.runtime.spawn(async move {
            tokio::time::sleep(CLOSE_GRACE).await;
            task.abort();
        });
    }
}

struct EventContext {
    metrics: Metrics,
    redactor: Redactor,
    broker: String,
    closed: Arc<AtomicBool>,
}

/// Polls the client's event loop forever: it connects, sends the queued
/// messages, and after a failure waits and connects again.
async fn drive(mut event_loop: EventLoop, context: EventContext) {
    let mut delay = RECONNECT_INITIAL;
    let mut connected = false;
    let mut last_error: Option<String> = None;

    loop {
        match event_loop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(broker = %context.broker, "Connected to the MQTT broker");
                connected = true;
                last_error = None;
                delay = RECONNECT_INITIAL;
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => context.metrics.observe_mqtt_sent(),
            Ok(Event::Outgoing(Outgoing::Disconnect)) if context.closed.load(Ordering::Relaxed) => {
                return;
            }
            Ok(_) => {}
            Err(error) => {
                if context.closed.load(Ordering::Relaxed) {
                    return;
                }
                let message = context.redactor.redact(&error.to_string());
                if connected || last_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(
                        broker = %context.broker,
                        error = %message,
                        retry_in_s = delay.as_secs(),
                        "MQTT broker unreachable; reconnecting in the background"
                    );
                }
                connected = false;
                last_error = Some(message);

                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RECONNECT_MAX);
            }
        }
    }
}

/// Builds a TLS client config that trusts the system's root certificates
/// (`SSL_CERT_FILE` and `SSL_CERT_DIR` override their location).
// rustls 0.23.48 deprecates the ring provider because it lacks post-quantum
// key exchange; the workspace builds rustls with ring as its only provider.
#[allow(deprecated)]
fn tls_config() -> Result<Arc<rustls::ClientConfig>, MqttError> {
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        tracing::warn!(%error, "Failed to load a system root certificate");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        return Err(MqttError::NoRootCertificates);
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| MqttError::Tls(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
