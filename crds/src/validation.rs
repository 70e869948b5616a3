//! Checks of a VisionModel spec that its OpenAPI schema cannot express.
//!
//! Kubernetes 1.20 has no CEL validation rules, so everything that relates
//! two fields, or parses a value, is checked here by the operator, which
//! reports the result as the `Degraded` condition with reason `InvalidSpec`.

use std::collections::HashSet;
use std::fmt;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::visionmodel::{OutputSink, SinkKind, SourceSpec, VisionModelSpec};

/// One invalid field of a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, such as `spec.source.maxFps`.
    pub field: String,

    /// Problem found, in a sentence fragment.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every invalid field of a spec, in field order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid VisionModel spec: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InvalidSpec(pub Vec<FieldError>);

/// Checks a spec and returns every problem at once, so a user fixes them in one edit.
pub fn validate(spec: &VisionModelSpec) -> Result<(), InvalidSpec> {
    let mut errors = Errors::default();

    check_model(spec, &mut errors);
    check_accelerator(spec, &mut errors);
    check_source(&spec.source, &mut errors);
    check_inference(spec, &mut errors);
    check_output(spec, &mut errors);
    check_rollout(&spec.rollout.max_unavailable, &mut errors);

    errors.into_result()
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn into_result(self) -> Result<(), InvalidSpec> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(InvalidSpec(self.0))
        }
    }
}

fn check_model(spec: &VisionModelSpec, errors: &mut Errors) {
    let model = &spec.model;

    match (&model.url, &model.url_from) {
        (None, None) => errors.add("spec.model", "set url or urlFrom"),
        (Some(_), Some(_)) => errors.add("spec.model", "set only one of url and urlFrom"),
        (Some(url), None) => {
            if let Err(message) = check_url(url, &["http", "https", "file"]) {
                errors.add("spec.model.url", message);
            }
        }
        (None, Some(_)) => {}
    }

    if let Some(sha256) = &model.sha256
        && !is_lower_hex_sha256(sha256)
    {
        errors.add("spec.model.sha256", "must be 64 lowercase hex digits");
    }

    if let Some(labels) = &model.labels {
        check_unique_names("spec.model.labels", labels, errors);
    }
}

fn check_accelerator(spec: &VisionModelSpec, errors: &mut Errors) {
    let preference = &spec.accelerator.preference;

    if preference.is_empty() {
        errors.add("spec.accelerator.preference", "list at least one device");
    }

    let mut seen = HashSet::new();
    for device in preference {
        if !seen.insert(device) {
            errors.add(
                "spec.accelerator.preference",
                format!("{device} is listed twice"),
            );
        }
    }
}

fn check_source(source: &SourceSpec, errors: &mut Errors) {
    let set = [&source.camera, &source.url, &source.file]
        .iter()
        .filter(|field| field.is_some())
        .count();
    if set != 1 {
        errors.add(
            "spec.source",
            format!("set exactly one of camera, url and file ({set} are set)"),
        );
    }

    if let Some(url) = &source.url {
        match check_url(url, &["rtsp", "rtsps", "rtspt", "http", "https"]) {
            Err(message) => errors.add("spec.source.url", message),
            Ok(parsed) if !parsed.username().is_empty() || parsed.password().is_some() => errors.add(
                "spec.source.url",
                "must not contain a user or password: put them in a Secret named by credentialsSecret",
            ),
            Ok(_) => {}
        }
    }

    if !(source.max_fps.is_finite() && source.max_fps > 0.0) {
        errors.add(
            "spec.source.maxFps",
            format!("must be greater than 0, got {}", source.max_fps),
        );
    }

    if let Some(annotation) = &source.node_override_annotation
        && !is_qualified_name(annotation)
    {
        errors.add(
            "spec.source.nodeOverrideAnnotation",
            format!(
                "{annotation:?} is not a valid annotation key such as visionfleet.dev/camera-url"
            ),
        );
    }
}

fn check_inference(spec: &VisionModelSpec, errors: &mut Errors) {
    let threshold = spec.inference.confidence_threshold;
    if !(0.0..=1.0).contains(&threshold) {
        errors.add(
            "spec.inference.confidenceThreshold",
            format!("must be between 0 and 1, got {threshold}"),
        );
    }

    check_unique_names(
        "spec.inference.objectsOfInterest",
        &spec.inference.objects_of_interest,
        errors,
    );
}

fn check_output(spec: &VisionModelSpec, errors: &mut Errors) {
    if spec.output.messages_per_minute == 0 {
        errors.add("spec.output.messagesPerMinute", "must be at least 1");
    }

    for (index, sink) in spec.output.sinks.iter().enumerate() {
        check_sink(&format!("spec.output.sinks[{index}]"), sink, errors);
    }
}

fn check_sink(field: &str, sink: &OutputSink, errors: &mut Errors) {
    match sink.kind {
        SinkKind::Stdout => {}
        SinkKind::File => match &sink.path {
            Some(path) if path.starts_with('/') => {}
            _ => errors.add(
                format!("{field}.path"),
                "a File sink needs an absolute path",
            ),
        },
        SinkKind::Mqtt => match &sink.url {
            None => errors.add(format!("{field}.url"), "an Mqtt sink needs a broker url"),
            Some(url) => {
                if let Err(message) = check_url(url, &["mqtt", "mqtts"]) {
                    errors.add(format!("{field}.url"), message);
                }
            }
        },
    }
}

fn check_rollout(max_unavailable: &IntOrString, errors: &mut Errors) {
    let field = "spec.rollout.maxUnavailable";

    match max_unavailable {
        IntOrString::Int(count) if *count < 0 => errors.add(field, "must not be negative"),
        IntOrString::Int(_) => {}
        IntOrString::String(text) => match text.strip_suffix('%').map(str::parse::<u32>) {
            Some(Ok(percent)) if percent <= 100 => {}
            _ => errors.add(
                field,
                format!("{text:?} is neither a count nor a percentage such as \"25%\""),
            ),
        },
    }
}

fn check_url(text: &str, schemes: &[&str]) -> Result<url::Url, String> {
    let parsed = url::Url::parse(text).map_err(|error| format!("not a valid URL: {error}"))?;

    if !schemes.contains(&parsed.scheme()) {
        return Err(format!(
            "scheme {:?} is not one of {}",
            parsed.scheme(),
            schemes.join(", ")
        ));
    }
    Ok(parsed)
}

fn check_unique_names(field: &str, names: &[String], errors: &mut Errors) {
    let mut seen = HashSet::new();

    for name in names {
        if name.trim().is_empty() {
            errors.add(field, "entries must not be empty");
        } else if !seen.insert(name.as_str()) {
            errors.add(field, format!("{name:?} is listed twice"));
        }
    }
}

fn is_lower_hex_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks a Kubernetes qualified name: an optional DNS subdomain prefix and a
/// `/`, then a name of at most 63 alphanumerics, `-`, `_` and `.`.
fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };

    let name_ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
        && name
            .bytes()
            .next()
            .is_some_and(|byte| byte.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|byte| byte.is_ascii_alphanumeric());

    let prefix_ok = prefix.is_none_or(|prefix| {
        (1..=253).contains(&prefix.len())
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|byte| {
                        byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-'
                    })
            })
    });

    name_ok && prefix_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::visionmodel::VisionModel;

    fn spec(yaml: &str) -> VisionModelSpec {
        let model: VisionModel = serde_norway::from_str(yaml).unwrap();
        model.spec
    }

    const VALID: &str = r#"
apiVersion: visionfleet.dev/v1alpha1
kind: VisionModel
metadata: {name: defects, namespace: plant-7}
spec:
  model:
    url: https://models.example.com/defects.zip
  source:
    url: rtsp://10.0.4.21:554/stream1
"#;

    fn fields(result: Result<(), InvalidSpec>) -> Vec<String> {
        result
            .unwrap_err()
            .0
            .into_iter()
            .map(|error| error.field)
            .collect()
    }

    #[test]
    fn minimal_spec_is_valid() {
        assert_eq!(validate(&spec(VALID)), Ok(()));
    }

    #[test]
    fn model_needs_exactly_one_location() {
        let mut neither = spec(VALID);
        neither.model.url = None;
        assert_eq!(fields(validate(&neither)), ["spec.model"]);

        let mut both = spec(VALID);
        both.model.url_from = Some(crate::SecretKeyRef {
            name: "model".into(),
            key: "url".into(),
        });
        assert_eq!(fields(validate(&both)), ["spec.model"]);
    }

    #[test]
    fn model_url_needs_known_scheme() {
        let mut spec = spec(VALID);
        spec.model.url = Some("ftp://models.example.com/a.zip".into());

        let error = validate(&spec).unwrap_err();

        assert_eq!(error.0[0].field, "spec.model.url");
        assert!(error.0[0].message.contains("\"ftp\""), "{error}");
    }

    #[test]
    fn source_needs_exactly_one_kind() {
        let mut two = spec(VALID);
        two.source.camera = Some("/dev/video0".into());

        assert_eq!(fields(validate(&two)), ["spec.source"]);
    }

    #[test]
    fn source_url_rejects_inline_password() {
        let mut spec = spec(VALID);
        spec.source.url = Some("rtsp://admin:hunter2@10.0.4.21/stream".into());

        let error = validate(&spec).unwrap_err();

        assert_eq!(error.0[0].field, "spec.source.url");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn max_fps_must_be_positive() {
        for fps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut spec = spec(VALID);
            spec.source.max_fps = fps;
            assert_eq!(fields(validate(&spec)), ["spec.source.maxFps"], "fps {fps}");
        }
    }

    #[test]
    fn threshold_outside_unit_range_rejected() {
        let mut spec = spec(VALID);
        spec.inference.confidence_threshold = 1.5;

        assert_eq!(
            fields(validate(&spec)),
            ["spec.inference.confidenceThreshold"]
        );
    }

    #[test]
    fn duplicate_accelerator_rejected() {
        let spec = spec(&format!(
            "{VALID}  accelerator:\n    preference: [GPU, CPU, GPU]\n"
        ));

        assert_eq!(fields(validate(&spec)), ["spec.accelerator.preference"]);
    }

    #[test]
    fn sinks_need_their_settings() {
        let spec = spec(&format!(
            "{VALID}  output:\n    sinks:\n    - type: File\n    - type: Mqtt\n    - type: Mqtt\n      url: http://broker\n"
        ));

        assert_eq!(
            fields(validate(&spec)),
            [
                "spec.output.sinks[0].path",
                "spec.output.sinks[1].url",
                "spec.output.sinks[2].url"
            ]
        );
    }

    #[test]
    fn max_unavailable_forms() {
        for (value, valid) in [
            (IntOrString::Int(2), true),
            (IntOrString::String("10%".into()), true),
            (IntOrString::String("100%".into()), true),
            (IntOrString::Int(-1), false),
            (IntOrString::String("101%".into()), false),
            (IntOrString::String("ten".into()), false),
            (IntOrString::String("5".into()), false),
        ] {
            let mut spec = spec(VALID);
            spec.rollout.max_unavailable = value.clone();
            assert_eq!(validate(&spec).is_ok(), valid, "{value:?}");
        }
    }

    #[test]
    fn override_annotation_must_be_key() {
        for (key, valid) in [
            ("visionfleet.dev/camera-url", true),
            ("camera", true),
            ("Bad Key/x", false),
            ("visionfleet.dev/", false),
            ("-camera", false),
        ] {
            let mut spec = spec(VALID);
            spec.source.node_override_annotation = Some(key.into());
            assert_eq!(validate(&spec).is_ok(), valid, "{key}");
        }
    }

    #[test]
    fn reports_every_problem_at_once() {
        let mut spec = spec(VALID);
        spec.model.sha256 = Some("ABC".into());
        spec.inference.objects_of_interest = vec!["person".into(), "person".into()];
        spec.output.messages_per_minute = 0;

        assert_eq!(
            fields(validate(&spec)),
            [
                "spec.model.sha256",
                "spec.inference.objectsOfInterest",
                "spec.output.messagesPerMinute"
            ]
        );
    }
}
