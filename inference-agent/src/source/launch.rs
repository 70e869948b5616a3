//! The GStreamer pipeline of each input kind, written as a `gst-launch-1.0`
//! description and then given the settings a description must not hold:
//! credentials, and the filter that keeps only an RTSP camera's video.
//!
//! Every pipeline ends in `videoconvert ! video/x-raw,format=RGB ! appsink
//! name=frames`. Live inputs decode with `decodebin`:
//!
//! - V4L2: `v4l2src device=... ! decodebin`, so raw and MJPEG cameras work.
//! - RTSP: `rtspsrc latency=... ! decodebin`, with `protocols` set for a
//!   fixed transport.
//! - HTTP: `souphttpsrc is-live=true do-timestamp=true ! decodebin`;
//!   decodebin plugs `multipartdemux ! jpegdec` for an MJPEG stream, and
//!   the demuxer is set to `single-stream`. `uridecodebin` would add a
//!   buffering `queue2`, which only adds latency.
//! - Files and other URIs: `uridecodebin`.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::credentials::Credentials;
use super::spec::{Input, RtspTransport, SourceKind, SourceSpec};
use super::{SourceError, SourceOptions};

/// Frames queued in the appsink when every frame is delivered.
const EVERY_FRAME_QUEUE: u32 = 4;

/// Name of the input element that receives credentials.
const SOURCE_ELEMENT: &str = "source";

/// Name of the appsink.
const SINK_ELEMENT: &str = "frames";

/// Queueing policy of the appsink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Keeps every frame: the decoder waits while the queue is full. For
    /// files read as fast as the model allows.
    Every,
    /// Keeps only the newest frame, as fast as the input produces them. For
    /// live inputs, so a slow model never builds up latency.
    Newest,
    /// Keeps only the newest frame, released at the video's own rate, so a
    /// file is replayed like a camera.
    NewestRealtime,
}

/// Writes the pipeline description of `spec`. It contains no credentials,
/// but a URL in it may carry query tokens, so log
/// [`SourceSpec::display`] instead.
pub(crate) fn describe(
    spec: &SourceSpec,
    options: &SourceOptions,
    delivery: Delivery,
) -> Result<String, SourceError> {
    let input = match spec.input() {
        // NOTE: no V4L2 device exists on the machines that run the tests,
        // so only this description is tested, not a capture.
        Input::Camera { device } => format!("v4l2src device={} ! decodebin", quote(device)),
        Input::Stream {
            kind: SourceKind::Rtsp,
            location,
            scheme_transport,
            ..
        } => {
            let transport = rtsp_transport(spec, *scheme_transport, options.rtsp_transport)?;
            rtsp_input(location.as_str(), transport, options)
        }
        Input::Stream {
            kind: SourceKind::Http,
            location,
            ..
        } => format!(
            "souphttpsrc name={SOURCE_ELEMENT} location={} is-live=true do-timestamp=true ! decodebin",
            quote(location.as_str()),
        ),
        Input::Stream { location, .. } => uridecodebin(location.as_str()),
        Input::VideoFile { uri } => uridecodebin(uri.as_str()),
        Input::Images { .. } => {
            return Err(SourceError::InvalidSource {
                source_spec: spec.display().to_owned(),
                message: "images are read directly, not through GStreamer".to_owned(),
            });
        }
    };
    Ok(format!(
        "{input} ! videoconvert ! video/x-raw,format=RGB ! {}",
        appsink(delivery)
    ))
}

/// Builds the pipeline of `spec` in the NULL state and returns it with its
/// appsink.
pub(crate) fn build(
    spec: &SourceSpec,
    options: &SourceOptions,
    delivery: Delivery,
    credentials: Option<&Credentials>,
) -> Result<(gst::Pipeline, gst_app::AppSink), SourceError> {
    let pipeline_error = |message: String| SourceError::Pipeline {
        uri: spec.display().to_owned(),
        message,
    };
    let description = describe(spec, options, delivery)?;

    let pipeline = gst::parse::launch(&description)
        .map_err(|error| {
            pipeline_error(format!(
                "{error}; install the GStreamer plugins that provide it \
                 (gstreamer1.0-plugins-base, -good, -bad and gstreamer1.0-libav)"
            ))
        })?
        .downcast::<gst::Pipeline>()
        .map_err(|_| pipeline_error("the description is not a pipeline".to_owned()))?;
    let appsink = pipeline
        .by_name(SINK_ELEMENT)
        .and_then(|element| element.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| pipeline_error("the pipeline has no appsink".to_owned()))?;

    if let Some(source) = pipeline.by_name(SOURCE_ELEMENT) {
        configure_source(&source, credentials);
    }
    pipeline.connect_deep_element_added(|_, _, element| configure_autoplugged(element));
    Ok((pipeline, appsink))
}

/// Configures elements that `decodebin` adds. A `multipartdemux` gets
/// `single-stream=true`, because otherwise it never signals that all its
/// pads exist, and decodebin holds the first frames back until its queue
/// overflows, several seconds into an MJPEG stream.
fn configure_autoplugged(element: &gst::Element) {
    let is_multipart_demuxer = element
        .factory()
        .is_some_and(|factory| factory.name() == "multipartdemux");
    if is_multipart_demuxer {
        element.set_property("single-stream", true);
    }
}

/// Sets credentials on the input element and, for RTSP, skips every stream
/// but video, so a camera's audio track is never set up.
fn configure_source(source: &gst::Element, credentials: Option<&Credentials>) {
    let factory = source
        .factory()
        .map(|factory| factory.name().to_string())
        .unwrap_or_default();

    match factory.as_str() {
        "rtspsrc" => {
            set_credentials(source, credentials);
            source.connect("select-stream", false, |values| {
                let caps = values
                    .get(2)
                    .and_then(|value| value.get::<gst::Caps>().ok());
                Some(is_video_stream(caps.as_ref()).to_value())
            });
        }
        "souphttpsrc" => set_credentials(source, credentials),
        "uridecodebin" => {
            let credentials = credentials.cloned();
            source.connect("source-setup", false, move |values| {
                if let Some(element) = values
                    .get(1)
                    .and_then(|value| value.get::<gst::Element>().ok())
                {
                    set_credentials(&element, credentials.as_ref());
                }
                None
            });
        }
        _ => {}
    }
}

fn set_credentials(element: &gst::Element, credentials: Option<&Credentials>) {
    let Some(credentials) = credentials else {
        return;
    };
    if element.has_property("user-id") && element.has_property("user-pw") {
        element.set_property("user-id", credentials.username());
        element.set_property("user-pw", credentials.password());
    }
}

/// Accepts an SDP stream whose `media` is `video`, and one without caps.
fn is_video_stream(caps: Option<&gst::Caps>) -> bool {
    let Some(structure) = caps.and_then(|caps| caps.structure(0)) else {
        return true;
    };
    structure
        .get::<&str>("media")
        .map(|media| media == "video")
        .unwrap_or(true)
}

// NOTE: rtsps:// is not tested here. rtspsrc validates the server's
// certificate against the system's trusted roots by default, so a camera
// with a self-signed certificate fails the TLS handshake.
fn rtsp_input(location: &str, transport: RtspTransport, options: &SourceOptions) -> String {
    let latency_ms = options.rtsp_latency.as_millis().min(u128::from(u32::MAX));
    let tcp_timeout_us = options.open_timeout.as_micros().min(u128::from(u64::MAX));
    let protocols = transport
        .protocols()
        .map(|protocols| format!(" protocols={protocols}"))
        .unwrap_or_default();
    format!(
        "rtspsrc name={SOURCE_ELEMENT} location={} latency={latency_ms} drop-on-latency=true \
         tcp-timeout={tcp_timeout_us}{protocols} ! decodebin",
        quote(location)
    )
}

fn uridecodebin(uri: &str) -> String {
    format!("uridecodebin name={SOURCE_ELEMENT} uri={}", quote(uri))
}

fn appsink(delivery: Delivery) -> String {
    let (max_buffers, drop, sync) = match delivery {
        Delivery::Every => (EVERY_FRAME_QUEUE, false, false),
        Delivery::Newest => (1, true, false),
        Delivery::NewestRealtime => (1, true, true),
    };
    format!("appsink name={SINK_ELEMENT} max-buffers={max_buffers} drop={drop} sync={sync}")
}

/// Combines the transport a URL scheme fixes (`rtspt`, `rtspu`) with the
/// configured one; rtspsrc would fail at SETUP on a contradiction.
fn rtsp_transport(
    spec: &SourceSpec,
    scheme: Option<RtspTransport>,
    configured: RtspTransport,
) -> Result<RtspTransport, SourceError> {
    match (scheme, configured) {
        (None, configured) => Ok(configured),
        (Some(scheme), RtspTransport::Auto) => Ok(scheme),
        (Some(scheme), configured) if scheme == configured => Ok(configured),
        (Some(scheme), configured) => Err(SourceError::InvalidSource {
            source_spec: spec.display().to_owned(),
            message: format!(
                "the URL scheme allows only {scheme:?} transport but {configured:?} was requested"
            ),
        }),
    }
}

/// Quotes a property value for a launch description.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn description(spec: &str, options: &SourceOptions, delivery: Delivery) -> String {
        describe(&SourceSpec::parse(spec).unwrap(), options, delivery).unwrap()
    }

    #[test]
    fn camera_description_decodes_any_format() {
        let text = description("/dev/video0", &SourceOptions::default(), Delivery::Newest);

        assert_eq!(
            text,
            "v4l2src device=\"/dev/video0\" ! decodebin ! videoconvert ! video/x-raw,format=RGB \
             ! appsink name=frames max-buffers=1 drop=true sync=false"
        );
    }

    #[test]
    fn rtsp_description_sets_transport_and_latency() {
        let options = SourceOptions {
            rtsp_transport: RtspTransport::Tcp,
            rtsp_latency: Duration::from_millis(150),
            open_timeout: Duration::from_secs(5),
            ..SourceOptions::default()
        };

        let text = description(
            "rtsp://viewer:hunter22@cam.local/live",
            &options,
            Delivery::Newest,
        );

        assert_eq!(
            text,
            "rtspsrc name=source location=\"rtsp://cam.local/live\" latency=150 drop-on-latency=true \
             tcp-timeout=5000000 protocols=tcp ! decodebin ! videoconvert ! video/x-raw,format=RGB \
             ! appsink name=frames max-buffers=1 drop=true sync=false"
        );
    }

    #[test]
    fn rtspt_scheme_forces_tcp() {
        let text = description(
            "rtspt://cam.local/live",
            &SourceOptions::default(),
            Delivery::Newest,
        );

        assert!(text.contains("protocols=tcp"), "{text}");
    }

    #[test]
    fn contradicting_transport_rejected() {
        let options = SourceOptions {
            rtsp_transport: RtspTransport::Udp,
            ..SourceOptions::default()
        };
        let spec = SourceSpec::parse("rtspt://cam.local/live").unwrap();

        let error = describe(&spec, &options, Delivery::Newest).unwrap_err();

        assert!(
            matches!(error, SourceError::InvalidSource { .. }),
            "{error}"
        );
    }

    #[test]
    fn http_description_is_live_and_timestamped() {
        let text = description(
            "http://127.0.0.1:8080/mjpeg",
            &SourceOptions::default(),
            Delivery::Newest,
        );

        assert!(
            text.starts_with(
                "souphttpsrc name=source location=\"http://127.0.0.1:8080/mjpeg\" is-live=true \
                 do-timestamp=true ! decodebin"
            ),
            "{text}"
        );
    }

    #[test]
    fn file_replay_syncs_to_clock() {
        let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");

        let every = description(spec, &SourceOptions::default(), Delivery::Every);
        let replay = description(spec, &SourceOptions::default(), Delivery::NewestRealtime);

        assert!(
            every.starts_with("uridecodebin name=source uri=\"file:///"),
            "{every}"
        );
        assert!(
            every.ends_with("max-buffers=4 drop=false sync=false"),
            "{every}"
        );
        assert!(
            replay.ends_with("max-buffers=1 drop=true sync=true"),
            "{replay}"
        );
    }

    #[test]
    fn quotes_are_escaped() {
        assert_eq!(quote(r#"/dev/my "cam"\0"#), r#""/dev/my \"cam\"\\0""#);
    }
}
