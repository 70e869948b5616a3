//! Parsing a `--source` value into the kind of input it names, with the
//! credentials taken out of the URL and a redacted form for logs.

use std::fmt;
use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;
use url::Url;
use visionfleet_model::RedactedUrl;

use super::SourceError;
use super::credentials::Credentials;
use super::images::is_image_file;

/// RTSP lower transport, set as `rtspsrc protocols`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RtspTransport {
    /// rtspsrc's default: it offers UDP first and retries over TCP when no
    /// UDP packet arrives within 5 s (rtspsrc's `timeout` property).
    #[default]
    Auto,
    /// RTP interleaved in the RTSP TCP connection; passes NAT and firewalls.
    Tcp,
    /// RTP over UDP unicast; lowest latency, but packets may be lost.
    Udp,
}

impl RtspTransport {
    /// Returns the value of `rtspsrc protocols`, or `None` to keep its default.
    pub fn protocols(self) -> Option<&'static str> {
        match self {
            Self::Auto => None,
            Self::Tcp => Some("tcp"),
            Self::Udp => Some("udp"),
        }
    }
}

/// The kind of input a source spec names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A V4L2 device such as `/dev/video0` (or `v4l2:///dev/video0`).
    Camera,
    /// `rtsp`, `rtsps`, `rtspt` (TCP only) or `rtspu` (UDP only).
    Rtsp,
    /// `http` or `https`, usually an MJPEG `multipart/x-mixed-replace` stream.
    Http,
    /// Any other URI scheme, played by `uridecodebin`.
    OtherUri,
    /// A local video file.
    VideoFile,
    /// One image file or a folder of images.
    Images,
}

impl SourceKind {
    /// Short name used as the default `source` metric label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Camera => "camera",
            Self::Rtsp => "rtsp",
            Self::Http => "http",
            Self::OtherUri => "stream",
            Self::VideoFile => "file",
            Self::Images => "images",
        }
    }

    /// Returns whether the input is live: it produces frames in real time,
    /// may stall or drop, and is reconnected instead of ending.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Self::Camera | Self::Rtsp | Self::Http | Self::OtherUri
        )
    }
}

/// RTSP URI schemes that rtspsrc accepts, with the transport the scheme
/// fixes (`rtspt` TCP only, `rtspu` UDP only).
const RTSP_SCHEMES: [(&str, Option<RtspTransport>); 6] = [
    ("rtsp", None),
    ("rtsps", None),
    ("rtspt", Some(RtspTransport::Tcp)),
    ("rtspst", Some(RtspTransport::Tcp)),
    ("rtspu", Some(RtspTransport::Udp)),
    ("rtspsu", Some(RtspTransport::Udp)),
];

/// A parsed source: what to open, and how to print it.
///
/// `Debug` and [`SourceSpec::display`] show only the redacted form, so a
/// spec can be logged freely.
#[derive(Clone)]
pub struct SourceSpec {
    input: Input,
    display: String,
}

#[derive(Clone)]
pub(crate) enum Input {
    Camera {
        device: String,
    },
    /// `location` has no userinfo; credentials found there are in `userinfo`.
    Stream {
        kind: SourceKind,
        location: Url,
        userinfo: Option<Credentials>,
        scheme_transport: Option<RtspTransport>,
    },
    VideoFile {
        uri: Url,
    },
    Images {
        path: PathBuf,
    },
}

impl SourceSpec {
    /// Parses `spec`: a V4L2 device path, an image file, a folder of images,
    /// a video file, or a `file`, `rtsp(s|t|u)`, `http(s)`, `v4l2` or other
    /// GStreamer URI. Local paths must exist, except device paths, because
    /// a camera may be plugged in later.
    pub fn parse(spec: &str) -> Result<Self, SourceError> {
        let display = RedactedUrl::new(spec).to_string();
        let input = if spec.contains("://") {
            parse_uri(spec, &display)?
        } else {
            parse_path(Path::new(spec), &display)?
        };
        Ok(Self { input, display })
    }

    pub fn kind(&self) -> SourceKind {
        match &self.input {
            Input::Camera { .. } => SourceKind::Camera,
            Input::Stream { kind, .. } => *kind,
            Input::VideoFile { .. } => SourceKind::VideoFile,
            Input::Images { .. } => SourceKind::Images,
        }
    }

    pub fn is_live(&self) -> bool {
        self.kind().is_live()
    }

    /// Returns the spec with its password, query values and fragment
    /// replaced, safe for logs, errors and results.
    pub fn display(&self) -> &str {
        &self.display
    }

    pub(crate) fn input(&self) -> &Input {
        &self.input
    }

    /// Returns the stream URL without its userinfo.
    pub(crate) fn location(&self) -> Option<&Url> {
        match &self.input {
            Input::Stream { location, .. } => Some(location),
            _ => None,
        }
    }

    /// Returns the credentials taken from the stream URL's userinfo.
    pub(crate) fn userinfo(&self) -> Option<&Credentials> {
        match &self.input {
            Input::Stream { userinfo, .. } => userinfo.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceSpec")
            .field("kind", &self.kind())
            .field("display", &self.display)
            .finish()
    }
}

fn invalid(display: &str, message: impl Into<String>) -> SourceError {
    SourceError::InvalidSource {
        source_spec: display.to_owned(),
        message: message.into(),
    }
}

fn parse_uri(spec: &str, display: &str) -> Result<Input, SourceError> {
    let mut location = Url::parse(spec).map_err(|error| invalid(display, error.to_string()))?;
    let scheme = location.scheme().to_owned();

    if scheme == "file" {
        let path = location
            .to_file_path()
            .map_err(|()| invalid(display, "the file URI has no local path"))?;
        return parse_path(&path, display);
    }
    if scheme == "v4l2" {
        return Ok(Input::Camera {
            device: location.path().to_owned(),
        });
    }

    let userinfo = take_userinfo(&mut location, display)?;
    let rtsp_scheme = RTSP_SCHEMES.iter().find(|(name, _)| *name == scheme);
    let (kind, scheme_transport) = match (rtsp_scheme, scheme.as_str()) {
        (Some((_, transport)), _) => (SourceKind::Rtsp, *transport),
        (None, "http" | "https") => (SourceKind::Http, None),
        (None, _) => (SourceKind::OtherUri, None),
    };
    Ok(Input::Stream {
        kind,
        location,
        userinfo,
        scheme_transport,
    })
}

/// Removes the username and password from `location` and returns them
/// percent-decoded, so they reach GStreamer as element properties and
/// never as part of a URL that GStreamer may print.
fn take_userinfo(location: &mut Url, display: &str) -> Result<Option<Credentials>, SourceError> {
    if location.username().is_empty() && location.password().is_none() {
        return Ok(None);
    }

    let decode = |text: &str| percent_decode_str(text).decode_utf8_lossy().into_owned();
    let credentials = Credentials::new(
        decode(location.username()),
        decode(location.password().unwrap_or_default()),
    );

    location
        .set_username("")
        .and_then(|()| location.set_password(None))
        .map_err(|()| invalid(display, "the URL cannot carry a username"))?;
    Ok(Some(credentials))
}

fn parse_path(path: &Path, display: &str) -> Result<Input, SourceError> {
    if path.starts_with("/dev") {
        let device = path
            .to_str()
            .ok_or_else(|| invalid(display, "the device path is not valid UTF-8"))?;
        return Ok(Input::Camera {
            device: device.to_owned(),
        });
    }
    if path.is_dir() || (path.is_file() && is_image_file(path)) {
        return Ok(Input::Images {
            path: path.to_path_buf(),
        });
    }
    if !path.is_file() {
        return Err(SourceError::NotFound(path.to_path_buf()));
    }

    let absolute =
        std::path::absolute(path).map_err(|error| invalid(display, error.to_string()))?;
    let uri = Url::from_file_path(&absolute)
        .map_err(|()| invalid(display, "the path cannot be written as a file URI"))?;
    Ok(Input::VideoFile { uri })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(spec: &str) -> (SourceKind, Url, Option<Credentials>, Option<RtspTransport>) {
        match SourceSpec::parse(spec).unwrap().input {
            Input::Stream {
                kind,
                location,
                userinfo,
                scheme_transport,
            } => (kind, location, userinfo, scheme_transport),
            _ => panic!("{spec} is not a stream"),
        }
    }

    #[test]
    fn rtsp_userinfo_moves_to_credentials() {
        let (kind, location, userinfo, _) = stream("rtsp://viewer:p%40ss@10.1.2.3:554/stream1");

        assert_eq!(kind, SourceKind::Rtsp);
        assert_eq!(location.as_str(), "rtsp://10.1.2.3:554/stream1");
        let userinfo = userinfo.unwrap();
        assert_eq!(userinfo.username(), "viewer");
        assert_eq!(userinfo.password(), "p@ss");
    }

    #[test]
    fn display_masks_password_and_query() {
        let spec = SourceSpec::parse("rtsp://viewer:hunter22@cam.local/live?token=abc123").unwrap();

        assert_eq!(
            spec.display(),
            "rtsp://viewer:REDACTED@cam.local/live?token=REDACTED"
        );
        assert!(!format!("{spec:?}").contains("hunter22"));
        assert!(!format!("{spec:?}").contains("abc123"));
    }

    #[test]
    fn scheme_fixes_rtsp_transport() {
        assert_eq!(stream("rtspt://cam/live").3, Some(RtspTransport::Tcp));
        assert_eq!(stream("rtspu://cam/live").3, Some(RtspTransport::Udp));
        assert_eq!(stream("rtsps://cam/live").3, None);
    }

    #[test]
    fn kinds_from_scheme_and_path() {
        let kind = |spec: &str| SourceSpec::parse(spec).unwrap().kind();

        assert_eq!(kind("https://cam.local/mjpeg"), SourceKind::Http);
        assert_eq!(kind("srt://127.0.0.1:9000"), SourceKind::OtherUri);
        assert_eq!(kind("/dev/video0"), SourceKind::Camera);
        assert_eq!(kind("v4l2:///dev/video2"), SourceKind::Camera);
        assert_eq!(kind(env!("CARGO_MANIFEST_DIR")), SourceKind::Images);
        assert_eq!(
            kind(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")),
            SourceKind::VideoFile
        );
    }

    #[test]
    fn v4l2_uri_names_device() {
        let spec = SourceSpec::parse("v4l2:///dev/video2").unwrap();

        assert!(matches!(spec.input(), Input::Camera { device } if device == "/dev/video2"));
    }

    #[test]
    fn missing_file_reported() {
        let error = SourceSpec::parse("/nonexistent/clip.mp4").unwrap_err();

        assert!(matches!(error, SourceError::NotFound(_)), "{error}");
    }

    #[test]
    fn invalid_url_error_is_redacted() {
        let error = SourceSpec::parse("rtsp://viewer:hunter22@[bad/live").unwrap_err();

        assert!(
            matches!(error, SourceError::InvalidSource { .. }),
            "{error}"
        );
        assert!(!error.to_string().contains("hunter22"), "{error}");
    }
}
