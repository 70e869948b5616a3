//! Node files the spec names: a video file or image folder, File sinks and a
//! `file://` model. The agent container sees the node's folders under
//! [`mounts::NODE`], so they can never clash with the container's own
//! mounts, such as a source file in the node's `/var/lib/visionfleet`.

use std::collections::BTreeMap;
use std::path::Path;

use url::Url;
use visionfleet_api::{SinkKind, VisionModelSpec};

use super::mounts;

/// One node folder mounted into the agent container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFolder {
    /// Absolute path on the node.
    pub host_path: String,
    /// Path of the same folder inside the container.
    pub mount_path: String,
    /// Whether the agent only reads it: false when a File sink writes there.
    pub read_only: bool,
}

/// Returns the path inside the agent container of a node path.
pub fn in_container(node_path: &str) -> String {
    format!("{}{node_path}", mounts::NODE)
}

/// Returns the node path of a `file:` model URL, decoded as the model store
/// reads it, or `None` for other schemes.
pub fn model_file(url: &str) -> Option<String> {
    let url = Url::parse(url).ok().filter(|url| url.scheme() == "file")?;
    let path = url.to_file_path().ok()?;
    Some(path.display().to_string())
}

/// Returns the node folders the agent needs, one per distinct folder and
/// sorted by path. A folder that a File sink writes to is mounted writable.
pub fn node_folders(spec: &VisionModelSpec) -> Vec<NodeFolder> {
    let mut folders: BTreeMap<String, bool> = BTreeMap::new();
    let mut add = |path: &str, read_only: bool| {
        let folder = parent_folder(path);
        let entry = folders.entry(folder).or_insert(read_only);
        *entry = *entry && read_only;
    };

    if let Some(file) = &spec.source.file {
        add(file, true);
    }
    // NOTE: a file:// URL inside a urlFrom Secret is not mounted, because
    // its value never reaches the pod spec.
    if let Some(model) = spec.model.url.as_deref().and_then(model_file) {
        add(&model, true);
    }
    let sink_paths = spec
        .output
        .sinks
        .iter()
        .filter(|sink| sink.kind == SinkKind::File)
        .filter_map(|sink| sink.path.as_deref());
    for path in sink_paths {
        add(path, false);
    }

    folders
        .into_iter()
        .map(|(host_path, read_only)| NodeFolder {
            mount_path: in_container(&host_path),
            host_path,
            read_only,
        })
        .collect()
}

/// Returns the folder of a file. A source may also name an image folder,
/// and then its parent, which contains it, is mounted.
fn parent_folder(path: &str) -> String {
    Path::new(path)
        .parent()
        .map(|parent| parent.display().to_string())
        .filter(|parent| !parent.is_empty())
        .unwrap_or_else(|| "/".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> VisionModelSpec {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn source_file_in_cache_folder_gets_own_mount() {
        let spec = spec(
            "model: {url: 'https://models.example.com/a.zip'}\nsource: {file: /var/lib/visionfleet/line-3.mp4}",
        );

        let folders = node_folders(&spec);

        assert_eq!(
            folders,
            [NodeFolder {
                host_path: "/var/lib/visionfleet".to_owned(),
                mount_path: "/host/var/lib/visionfleet".to_owned(),
                read_only: true,
            }]
        );
    }

    #[test]
    fn sink_folder_shared_with_source_is_writable() {
        let spec = spec(
            "model: {url: 'file:///data/models/a.zip'}\nsource: {file: /data/line-3.mp4}\noutput:\n  sinks:\n  - {type: File, path: /data/results.jsonl}\n  - {type: File, path: /data/out/more.jsonl}\n  - {type: Stdout}",
        );

        let folders = node_folders(&spec);

        let summary: Vec<(&str, &str, bool)> = folders
            .iter()
            .map(|folder| {
                (
                    folder.host_path.as_str(),
                    folder.mount_path.as_str(),
                    folder.read_only,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("/data", "/host/data", false),
                ("/data/models", "/host/data/models", true),
                ("/data/out", "/host/data/out", false),
            ]
        );
    }

    #[test]
    fn streams_need_no_node_folder() {
        let spec = spec(
            "model: {url: 'https://models.example.com/a.zip'}\nsource: {url: 'rtsp://camera:554/s'}",
        );

        assert!(node_folders(&spec).is_empty());
    }

    #[test]
    fn model_file_url_gives_path() {
        let cases = [
            ("file:///data/a.zip", Some("/data/a.zip")),
            ("file:/data/a.zip", Some("/data/a.zip")),
            ("file://localhost/data/a.zip", Some("/data/a.zip")),
            ("file:///data/line%203.zip", Some("/data/line 3.zip")),
            ("https://models.example.com/a.zip", None),
        ];

        for (url, path) in cases {
            assert_eq!(model_file(url).as_deref(), path, "{url}");
        }
    }
}
