//! A model package on disk: an Azure Custom Vision ONNX export or a bare model.
//!
//! A Custom Vision export zip contains `model.onnx`, `labels.txt` (one class per
//! line, in output order), `metadata_properties.json` (preprocessing hints
//! such as `Image.BitmapPixelFormat`) and `cvexport.manifest`, a JSON file
//! that names the other three and records the SHA-1 of the model:
//!
//! ```json
//! {
//!   "DomainType": "Classification", "Platform": "ONNX", "Flavor": null,
//!   "ExporterVersion": "2.0", "ExportedDate": "2019-10-09T22:15:46Z",
//!   "IterationId": "1206e4db-…", "ModelFileName": "model.onnx",
//!   "LabelFileName": "labels.txt", "MetadataPropsFileName": "metadata_properties.json",
//!   "ModelFileSHA1": "264fec21bdb4b0125966c9a51dbec7e35b5cd3d5", "SchemaVersion": "1.0"
//! }
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};
use sha1::{Digest, Sha1};

use crate::onnx::{OnnxError, OnnxSignature};

/// File name of the Custom Vision export manifest.
pub const MANIFEST_FILE: &str = "cvexport.manifest";
/// Label file used when the manifest names none.
pub const DEFAULT_LABEL_FILE: &str = "labels.txt";
/// Metadata file used when the manifest names none.
pub const DEFAULT_METADATA_FILE: &str = "metadata_properties.json";
/// File name given to a bare ONNX model in the cache.
pub const BARE_MODEL_FILE: &str = "model.onnx";

/// A verified model package in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelPackage {
    /// `sha256:<hex>` of the downloaded file, the zip or the bare model.
    pub digest: String,
    /// The package folder, `<cache>/sha256/<hex>`.
    pub dir: PathBuf,
    /// The ONNX model inside `dir`.
    pub model_path: PathBuf,
    /// Class labels in output order, when the package has a label file.
    pub labels: Option<Vec<String>>,
    /// The Custom Vision manifest, when the package has one.
    pub manifest: Option<CustomVisionManifest>,
    /// The entries of `metadata_properties.json`, empty when absent.
    pub metadata: BTreeMap<String, String>,
    /// The model's inputs, outputs and `metadata_props`.
    pub onnx: OnnxSignature,
}

impl ModelPackage {
    /// Loads and checks the package unpacked in `dir`.
    ///
    /// The model file is the one the manifest names, or else the only `.onnx`
    /// file in the folder. When the manifest records `ModelFileSHA1`, the
    /// model's SHA-1 must match it. This reads the whole model once, so
    /// call it from a blocking context.
    pub fn load(dir: &Path, digest: String) -> Result<Self, PackageError> {
        let manifest = read_manifest(dir)?;
        if let Some(platform) = manifest
            .as_ref()
            .and_then(|manifest| manifest.platform.as_deref())
            && !platform.eq_ignore_ascii_case("onnx")
        {
            return Err(PackageError::UnsupportedPlatform {
                platform: platform.to_owned(),
            });
        }

        let model_path = locate_model(dir, manifest.as_ref())?;
        if let Some(expected) = manifest
            .as_ref()
            .and_then(|manifest| manifest.model_file_sha1.as_deref())
        {
            verify_sha1(&model_path, expected)?;
        }

        let label_name = manifest
            .as_ref()
            .and_then(|manifest| manifest.label_file_name.as_deref());
        let labels = match named_or_default(dir, label_name, DEFAULT_LABEL_FILE, "LabelFileName")? {
            Some(path) => Some(read_labels(&path)?),
            None => None,
        };

        let metadata_name = manifest
            .as_ref()
            .and_then(|manifest| manifest.metadata_props_file_name.as_deref());
        let metadata = match named_or_default(
            dir,
            metadata_name,
            DEFAULT_METADATA_FILE,
            "MetadataPropsFileName",
        )? {
            Some(path) => read_metadata(&path)?,
            None => BTreeMap::new(),
        };

        let onnx = OnnxSignature::read(&model_path).map_err(PackageError::Model)?;

        Ok(Self {
            digest,
            dir: dir.to_owned(),
            model_path,
            labels,
            manifest,
            metadata,
            onnx,
        })
    }

    /// Returns the hexadecimal sha256 without the `sha256:` prefix.
    pub fn digest_hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }

    /// Returns the same package with its paths moved from `self.dir` to `dir`.
    pub(crate) fn relocated(mut self, dir: &Path) -> Self {
        if let Ok(relative) = self.model_path.strip_prefix(&self.dir) {
            self.model_path = dir.join(relative);
        }
        self.dir = dir.to_owned();
        self
    }
}

/// `cvexport.manifest` of a Custom Vision export. Every field is optional
/// because exporter versions differ; values that are numbers in some exports
/// are kept as their JSON text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomVisionManifest {
    /// `Classification` or `ObjectDetection`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub domain_type: Option<String>,
    /// Export platform; this crate accepts only `ONNX`.
    #[serde(default, deserialize_with = "lenient_string")]
    pub platform: Option<String>,
    /// Export flavor, such as `OnnxFloat16`; `null` for the default float32 export.
    #[serde(default, deserialize_with = "lenient_string")]
    pub flavor: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub exporter_version: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub exported_date: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub iteration_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub model_file_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub label_file_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub metadata_props_file_name: Option<String>,
    /// SHA-1 of the model file, as hexadecimal.
    #[serde(default, rename = "ModelFileSHA1", deserialize_with = "lenient_string")]
    pub model_file_sha1: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub schema_version: Option<String>,
}

impl CustomVisionManifest {
    /// Parses the manifest text, tolerating a UTF-8 byte order mark.
    pub fn parse(text: &str) -> Result<Self, PackageError> {
        serde_json::from_str(strip_bom(text))
            .map_err(|source| PackageError::InvalidManifest { source })
    }
}

/// Reads a JSON scalar as text: strings as they are, numbers and booleans as
/// their JSON form, `null` as `None`.
fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(match value {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(text)) => Some(text),
        Some(other) => Some(other.to_string()),
    })
}

/// Error from loading an unpacked package.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    #[error("{MANIFEST_FILE} is not valid JSON: {source}")]
    InvalidManifest {
        #[source]
        source: serde_json::Error,
    },

    #[error(
        "{MANIFEST_FILE} field {field} = {value:?} is not a plain relative path inside the package"
    )]
    UnsafeManifestPath { field: &'static str, value: String },

    #[error(
        "{MANIFEST_FILE} declares platform {platform:?}; only ONNX exports are supported: export the model as ONNX"
    )]
    UnsupportedPlatform { platform: String },

    #[error("the package has no ONNX model{}", missing_name_suffix(.named))]
    ModelNotFound { named: Option<String> },

    #[error("the package has several ONNX models ({}) and no {MANIFEST_FILE} naming one", .candidates.join(", "))]
    AmbiguousModel { candidates: Vec<String> },

    #[error("{MANIFEST_FILE} field {field} names {name:?}, which is missing from the package")]
    MissingFile { field: &'static str, name: String },

    #[error("SHA-1 of {} is {actual}, but {MANIFEST_FILE} records {expected}", .file.display())]
    ModelDigestMismatch {
        file: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("label file {} is not valid UTF-8", .file.display())]
    InvalidLabels { file: PathBuf },

    #[error("label file {} contains no labels", .file.display())]
    EmptyLabels { file: PathBuf },

    #[error("metadata file {} is not a JSON object of strings: {source}", .file.display())]
    InvalidMetadata {
        file: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("invalid ONNX model: {0}")]
    Model(#[source] OnnxError),

    #[error("I/O error on {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl PackageError {
    /// Returns whether trying again can help, which is true only for I/O errors.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Io { .. } => true,
            Self::Model(source) => source.is_transient(),
            _ => false,
        }
    }

    /// Returns a stable CamelCase word for condition reasons and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidManifest { .. } | Self::UnsafeManifestPath { .. } => "InvalidManifest",
            Self::UnsupportedPlatform { .. } => "UnsupportedPlatform",
            Self::ModelNotFound { .. } => "ModelNotFound",
            Self::AmbiguousModel { .. } => "AmbiguousModel",
            Self::MissingFile { .. } => "MissingPackageFile",
            Self::ModelDigestMismatch { .. } => "ManifestDigestMismatch",
            Self::InvalidLabels { .. } => "InvalidLabels",
            Self::EmptyLabels { .. } => "EmptyLabels",
            Self::InvalidMetadata { .. } => "InvalidMetadata",
            Self::Model(source) if source.is_transient() => "CacheIoFailed",
            Self::Model(_) => "InvalidModel",
            Self::Io { .. } => "CacheIoFailed",
        }
    }

    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

fn missing_name_suffix(named: &Option<String>) -> String {
    named
        .as_ref()
        .map(|name| format!(": {MANIFEST_FILE} names {name:?}, which is missing"))
        .unwrap_or_default()
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

fn read_manifest(dir: &Path) -> Result<Option<CustomVisionManifest>, PackageError> {
    let path = dir.join(MANIFEST_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => CustomVisionManifest::parse(&text).map(Some),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) if error.kind() == io::ErrorKind::InvalidData => {
            Err(PackageError::InvalidManifest {
                source: serde::de::Error::custom("the file is not valid UTF-8"),
            })
        }
        Err(error) => Err(PackageError::io(&path, error)),
    }
}

/// Finds the model: the manifest's `ModelFileName`, or else the only `.onnx` file.
fn locate_model(
    dir: &Path,
    manifest: Option<&CustomVisionManifest>,
) -> Result<PathBuf, PackageError> {
    if let Some(name) = manifest.and_then(|manifest| manifest.model_file_name.as_deref()) {
        let path = package_path(dir, name, "ModelFileName")?;
        if !path.is_file() {
            return Err(PackageError::ModelNotFound {
                named: Some(name.to_owned()),
            });
        }
        return Ok(path);
    }

    let mut candidates = Vec::new();
    collect_onnx_files(dir, &mut candidates)?;
    candidates.sort();

    match candidates.len() {
        0 => Err(PackageError::ModelNotFound { named: None }),
        1 => Ok(candidates.remove(0)),
        _ => {
            let names = candidates
                .iter()
                .map(|path| path.strip_prefix(dir).unwrap_or(path).display().to_string())
                .collect();
            Err(PackageError::AmbiguousModel { candidates: names })
        }
    }
}

/// Collects regular files ending in `.onnx` (any case) below `dir`, without
/// following symbolic links.
fn collect_onnx_files(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), PackageError> {
    let entries = fs::read_dir(dir).map_err(|error| PackageError::io(dir, error))?;
    for entry in entries {
        let entry = entry.map_err(|error| PackageError::io(dir, error))?;
        let path = entry.path();
        let file_type = entry
            .file_type()
            .map_err(|error| PackageError::io(&path, error))?;

        if file_type.is_dir() {
            collect_onnx_files(&path, found)?;
        } else if file_type.is_file() && has_onnx_extension(&path) {
            found.push(path);
        }
    }
    Ok(())
}

fn has_onnx_extension(path: &Path) -> bool {
    path.extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("onnx"))
}

/// Joins a file name from the manifest to `dir`, accepting only plain
/// relative paths, because the manifest comes from the downloaded archive.
fn package_path(dir: &Path, name: &str, field: &'static str) -> Result<PathBuf, PackageError> {
    let relative = Path::new(name);
    let plain = !name.is_empty()
        && relative
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
    if !plain {
        return Err(PackageError::UnsafeManifestPath {
            field,
            value: name.to_owned(),
        });
    }
    Ok(dir.join(relative))
}

/// Resolves an optional file: the name from the manifest, which must exist,
/// or else `default` when that file exists.
fn named_or_default(
    dir: &Path,
    named: Option<&str>,
    default: &str,
    field: &'static str,
) -> Result<Option<PathBuf>, PackageError> {
    if let Some(name) = named {
        let path = package_path(dir, name, field)?;
        if !path.is_file() {
            return Err(PackageError::MissingFile {
                field,
                name: name.to_owned(),
            });
        }
        return Ok(Some(path));
    }

    let path = dir.join(default);
    Ok(path.is_file().then_some(path))
}

fn verify_sha1(model_path: &Path, expected: &str) -> Result<(), PackageError> {
    let mut file = File::open(model_path).map_err(|error| PackageError::io(model_path, error))?;
    let mut hasher = Sha1::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let count = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(PackageError::io(model_path, error)),
        };
        hasher.update(&buffer[..count]);
    }

    let actual = hex::encode(hasher.finalize());
    if !actual.eq_ignore_ascii_case(expected.trim()) {
        return Err(PackageError::ModelDigestMismatch {
            file: model_path.to_owned(),
            expected: expected.trim().to_ascii_lowercase(),
            actual,
        });
    }
    Ok(())
}

fn read_labels(path: &Path) -> Result<Vec<String>, PackageError> {
    let bytes = fs::read(path).map_err(|error| PackageError::io(path, error))?;
    let text = String::from_utf8(bytes).map_err(|_| PackageError::InvalidLabels {
        file: path.to_owned(),
    })?;
    parse_labels(&text).ok_or_else(|| PackageError::EmptyLabels {
        file: path.to_owned(),
    })
}

/// Parses a label file: one label per line, trimmed, with a UTF-8 byte order
/// mark, CRLF line ends and blank lines tolerated. Returns `None` when no
/// label remains.
pub fn parse_labels(text: &str) -> Option<Vec<String>> {
    let labels: Vec<String> = strip_bom(text)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    (!labels.is_empty()).then_some(labels)
}

fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>, PackageError> {
    let bytes = fs::read(path).map_err(|error| PackageError::io(path, error))?;
    let text = String::from_utf8_lossy(&bytes);
    parse_metadata(&text).map_err(|source| PackageError::InvalidMetadata {
        file: path.to_owned(),
        source,
    })
}

/// Parses `metadata_properties.json`: a JSON object whose values are kept as
/// text. Custom Vision writes every value as a string, including numbers and
/// lists such as `"[0.0, 0.0, 0.0]"`. Other JSON values are kept in JSON form.
pub fn parse_metadata(text: &str) -> Result<BTreeMap<String, String>, serde_json::Error> {
    let object: BTreeMap<String, serde_json::Value> = serde_json::from_str(strip_bom(text))?;
    Ok(object
        .into_iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(text) => (key, text),
            other => (key, other.to_string()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_tolerate_bom_crlf_and_blank_lines() {
        let labels = parse_labels("\u{feff}cat\r\n\r\n  dog \r\nbird\n\n");
        assert_eq!(
            labels,
            Some(vec!["cat".to_owned(), "dog".to_owned(), "bird".to_owned()])
        );
    }

    #[test]
    fn blank_label_file_is_rejected() {
        assert_eq!(parse_labels("\u{feff}\r\n \n"), None);
    }

    #[test]
    fn manifest_reads_real_keys() {
        let manifest = CustomVisionManifest::parse(
            "\u{feff}{\"DomainType\":\"ObjectDetection\",\"Platform\":\"ONNX\",\"Flavor\":null,\
             \"ExporterVersion\":2.0,\"ModelFileName\":\"model.onnx\",\"LabelFileName\":\"labels.txt\",\
             \"MetadataPropsFileName\":\"metadata_properties.json\",\"ModelFileSHA1\":\"abc\",\"Extra\":1}",
        )
        .expect("valid manifest");
        assert_eq!(manifest.domain_type.as_deref(), Some("ObjectDetection"));
        assert_eq!(manifest.flavor, None);
        assert_eq!(manifest.exporter_version.as_deref(), Some("2.0"));
        assert_eq!(
            manifest.metadata_props_file_name.as_deref(),
            Some("metadata_properties.json")
        );
        assert_eq!(manifest.model_file_sha1.as_deref(), Some("abc"));
    }

    #[test]
    fn metadata_values_become_text() {
        let metadata = parse_metadata(
            r#"{"Image.BitmapPixelFormat":"Bgr8","CustomVision.Preprocess.TargetWidth":320}"#,
        )
        .expect("valid metadata");
        assert_eq!(metadata["Image.BitmapPixelFormat"], "Bgr8");
        assert_eq!(metadata["CustomVision.Preprocess.TargetWidth"], "320");
    }

    #[test]
    fn manifest_paths_must_stay_inside() {
        let dir = Path::new("/cache/pkg");
        assert!(package_path(dir, "model.onnx", "ModelFileName").is_ok());
        assert!(package_path(dir, "sub/model.onnx", "ModelFileName").is_ok());
        assert!(package_path(dir, "../model.onnx", "ModelFileName").is_err());
        assert!(package_path(dir, "/etc/passwd", "ModelFileName").is_err());
        assert!(package_path(dir, "./model.onnx", "ModelFileName").is_err());
    }
}
