//! Unsafe and unusual archives served over HTTP: each is rejected with its
//! own reason, or accepted when it is a valid package layout.

mod common;

use std::io::{Cursor, Write};

use common::{
    Served, TestServer, classifier_model, custom_vision_files, sha1_hex, source, temp_store,
    test_policy, zip_of,
};
use visionfleet_model::{FetchError, FetchPolicy, ModelPackage};
use zip::ZipWriter;
use zip::write::SimpleFileOptions;

async fn fetch_zip(
    zip: Vec<u8>,
    policy: &FetchPolicy,
) -> (tempfile::TempDir, Result<ModelPackage, FetchError>) {
    let server = TestServer::start().await;
    server.route("/model.zip", Served::file(zip));
    let (dir, store) = temp_store();
    let result = store
        .fetch(&source(server.url("/model.zip"), None), policy)
        .await;
    (dir, result)
}

fn entries(files: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    files
        .iter()
        .map(|(name, content)| (name.as_str(), content.as_slice()))
        .collect()
}

/// Builds a valid export with one extra entry added by `add`.
fn export_with(add: impl FnOnce(&mut ZipWriter<Cursor<Vec<u8>>>)) -> Vec<u8> {
    let files = custom_vision_files(&classifier_model(3), "a\nb\nc\n", None);
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, content) in &files {
        writer
            .start_file(name.as_str(), SimpleFileOptions::default())
            .expect("start entry");
        writer.write_all(content).expect("write entry");
    }
    add(&mut writer);
    writer.finish().expect("finish zip").into_inner()
}

fn assert_unsafe(
    result: Result<ModelPackage, FetchError>,
    expected_reason: &str,
    expected_text: &str,
) {
    let error = result.expect_err("archive must be rejected");
    assert_eq!(error.reason(), expected_reason, "{error}");
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains(expected_text), "{error}");
}

#[tokio::test]
async fn path_traversal_entry_is_rejected() {
    let zip = export_with(|writer| {
        writer
            .start_file("../evil.sh", SimpleFileOptions::default())
            .expect("start entry");
        writer.write_all(b"#!/bin/sh\n").expect("write entry");
    });

    let (dir, result) = fetch_zip(zip, &test_policy()).await;

    assert_unsafe(result, "UnsafeArchive", "..");
    let escaped = std::fs::read_dir(dir.path().join("cache"))
        .expect("cache folder")
        .flatten()
        .any(|entry| entry.file_name() == "evil.sh");
    assert!(!escaped, "the traversal entry must not be written");
}

#[tokio::test]
async fn absolute_path_entry_is_rejected() {
    let zip = export_with(|writer| {
        writer
            .start_file(
                "/tmp/visionfleet-absolute-entry",
                SimpleFileOptions::default(),
            )
            .expect("start entry");
        writer.write_all(b"x").expect("write entry");
    });

    let (_dir, result) = fetch_zip(zip, &test_policy()).await;

    assert_unsafe(result, "UnsafeArchive", "absolute");
    assert!(!std::path::Path::new("/tmp/visionfleet-absolute-entry").exists());
}

#[tokio::test]
async fn symlink_entry_is_rejected() {
    let zip = export_with(|writer| {
        writer
            .add_symlink("passwd", "/etc/passwd", SimpleFileOptions::default())
            .expect("add symlink");
    });

    let (_dir, result) = fetch_zip(zip, &test_policy()).await;

    assert_unsafe(result, "UnsafeArchive", "symbolic link");
}

#[tokio::test]
async fn too_many_entries_are_rejected() {
    let zip = export_with(|writer| {
        for index in 0..20 {
            writer
                .start_file(format!("extra/{index}.txt"), SimpleFileOptions::default())
                .expect("start entry");
        }
    });
    let policy = FetchPolicy {
        max_entries: 10,
        ..test_policy()
    };

    let (_dir, result) = fetch_zip(zip, &policy).await;

    assert_unsafe(
        result,
        "ArchiveLimitExceeded",
        "24 entries, more than the limit of 10",
    );
}

#[tokio::test]
async fn decompression_bomb_is_rejected() {
    let zip = export_with(|writer| {
        writer
            .start_file("padding.bin", SimpleFileOptions::default())
            .expect("start entry");
        writer.write_all(&vec![0u8; 8 << 20]).expect("write entry");
    });
    assert!(
        zip.len() < 64 << 10,
        "the bomb compresses well: {} bytes",
        zip.len()
    );
    let policy = FetchPolicy {
        max_unpacked_bytes: 1 << 20,
        ..test_policy()
    };

    let (_dir, result) = fetch_zip(zip, &policy).await;

    assert_unsafe(result, "ArchiveLimitExceeded", "limit of 1048576 bytes");
}

#[tokio::test]
async fn understated_entry_size_is_caught_while_unpacking() {
    let zip = export_with(|writer| {
        writer
            .start_file("padding.bin", SimpleFileOptions::default())
            .expect("start entry");
        writer.write_all(&vec![0u8; 8 << 20]).expect("write entry");
    });
    // Make the headers claim 1 KiB, so only the decompressed byte count can tell.
    let (zip, patched) = set_uncompressed_size(zip, "padding.bin", 1024);
    assert_eq!(patched, 2, "local header and central directory record");
    let policy = FetchPolicy {
        max_unpacked_bytes: 1 << 20,
        ..test_policy()
    };

    let (_dir, result) = fetch_zip(zip, &policy).await;

    // zip 9 stops at the declared size and reports corrupt data; the store's
    // own count of decompressed bytes is the second line of defence.
    let error = result.expect_err("bomb with lying headers");
    assert!(
        matches!(error.reason(), "ArchiveLimitExceeded" | "InvalidArchive"),
        "unexpected reason {}: {error}",
        error.reason()
    );
    assert!(!error.is_transient());
}

#[tokio::test]
async fn exact_duplicate_entries_are_rejected() {
    let files = custom_vision_files(&classifier_model(3), "a\nb\nc\n", None);
    let mut files = files;
    files.push(("labelx.txt".to_owned(), b"x\ny\nz\n".to_vec()));
    // The writer refuses duplicate names, so write a distinct name and patch it.
    let zip = rename_entry(zip_of(&entries(&files)), "labelx.txt", "labels.txt");

    let (_dir, result) = fetch_zip(zip, &test_policy()).await;

    assert_unsafe(result, "UnsafeArchive", "same entry name more than once");
}

#[tokio::test]
async fn case_insensitive_duplicates_are_rejected() {
    let mut files = custom_vision_files(&classifier_model(3), "a\nb\nc\n", None);
    files.push(("Labels.TXT".to_owned(), b"x\ny\nz\n".to_vec()));

    let (_dir, result) = fetch_zip(zip_of(&entries(&files)), &test_policy()).await;

    assert_unsafe(result, "UnsafeArchive", "same path when case is ignored");
}

#[tokio::test]
async fn two_models_without_manifest_are_ambiguous() {
    let model = classifier_model(3);
    let zip = zip_of(&[
        ("model.onnx", &model),
        ("backup/model-old.onnx", &model),
        ("labels.txt", b"a\nb\nc\n"),
    ]);

    let (_dir, result) = fetch_zip(zip, &test_policy()).await;

    assert_unsafe(result, "AmbiguousModel", "model.onnx");
}

#[tokio::test]
async fn manifest_selects_among_two_models() {
    let model = classifier_model(3);
    let mut files = custom_vision_files(&model, "a\nb\nc\n", None);
    files.push(("model-fp16.onnx".to_owned(), classifier_model(7)));

    let (_dir, result) = fetch_zip(zip_of(&entries(&files)), &test_policy()).await;

    let package = result.expect("manifest names model.onnx");
    assert!(package.model_path.ends_with("model.onnx"));
    assert_eq!(
        package.onnx.outputs[0].to_string(),
        "model_output: float[1,3]"
    );
}

#[tokio::test]
async fn single_top_folder_is_unwrapped() {
    let files = custom_vision_files(&classifier_model(3), "a\nb\nc\n", None);
    let nested: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .map(|(name, content)| (format!("MyProject.ONNX/{name}"), content))
        .collect();

    let (_dir, result) = fetch_zip(zip_of(&entries(&nested)), &test_policy()).await;

    let package = result.expect("wrapped export");
    assert_eq!(package.model_path, package.dir.join("model.onnx"));
    assert!(package.manifest.is_some());
    assert_eq!(package.labels.as_ref().map(Vec::len), Some(3));
}

#[tokio::test]
async fn label_file_quirks_are_tolerated() {
    let files = custom_vision_files(
        &classifier_model(3),
        "\u{feff}scratch\r\n\r\n  dent \r\nok\r\n\r\n",
        None,
    );

    let (_dir, result) = fetch_zip(zip_of(&entries(&files)), &test_policy()).await;

    let labels = result.expect("valid export").labels.expect("labels");
    assert_eq!(
        labels,
        vec!["scratch".to_owned(), "dent".to_owned(), "ok".to_owned()]
    );
}

#[tokio::test]
async fn blank_label_file_is_rejected() {
    let files = custom_vision_files(&classifier_model(3), "\u{feff}\r\n\r\n", None);

    let (_dir, result) = fetch_zip(zip_of(&entries(&files)), &test_policy()).await;

    assert_unsafe(result, "EmptyLabels", "contains no labels");
}

#[tokio::test]
async fn manifest_sha1_mismatch_is_rejected() {
    let model = classifier_model(3);
    let wrong = sha1_hex(b"another model");
    let files = custom_vision_files(&model, "a\nb\nc\n", Some(&wrong));

    let (_dir, result) = fetch_zip(zip_of(&entries(&files)), &test_policy()).await;

    assert_unsafe(result, "ManifestDigestMismatch", &sha1_hex(&model));
}

#[tokio::test]
async fn missing_model_named_by_manifest_is_rejected() {
    let files = custom_vision_files(&classifier_model(3), "a\nb\nc\n", None);
    let without_model: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .filter(|(name, _)| name != "model.onnx")
        .collect();

    let (_dir, result) = fetch_zip(zip_of(&entries(&without_model)), &test_policy()).await;

    assert_unsafe(result, "ModelNotFound", "model.onnx");
}

#[tokio::test]
async fn tensorflow_export_is_rejected() {
    let manifest = br#"{"DomainType":"Classification","Platform":"TensorFlow","Flavor":"TensorFlowSavedModel","ModelFileName":"saved_model.pb"}"#;
    let zip = zip_of(&[
        ("cvexport.manifest", manifest),
        ("saved_model.pb", b"\x08\x01"),
        ("labels.txt", b"a\n"),
    ]);

    let (_dir, result) = fetch_zip(zip, &test_policy()).await;

    assert_unsafe(result, "UnsupportedPlatform", "TensorFlow");
}

#[tokio::test]
async fn corrupt_model_in_zip_is_rejected() {
    let zip = zip_of(&[
        ("model.onnx", b"\x08\x07\x12\xff\xff\xff\x0f"),
        ("labels.txt", b"a\n"),
    ]);

    let (_dir, result) = fetch_zip(zip, &test_policy()).await;

    assert_unsafe(result, "InvalidModel", "malformed ONNX model");
}

/// Rewrites the uncompressed size of entry `name` in its local header and
/// central directory record. Returns how many headers were changed.
fn set_uncompressed_size(mut zip: Vec<u8>, name: &str, size: u32) -> (Vec<u8>, usize) {
    // (signature, offset of uncompressed size, offset of name length, offset of name)
    let layouts: [(&[u8], usize, usize, usize); 2] =
        [(b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)];
    let mut patched = 0;

    for (signature, size_offset, name_length_offset, name_offset) in layouts {
        let mut position = 0;
        while let Some(found) = find(&zip[position..], signature) {
            let header = position + found;
            let name_length = u16::from_le_bytes([
                zip[header + name_length_offset],
                zip[header + name_length_offset + 1],
            ]) as usize;
            let name_range = header + name_offset..header + name_offset + name_length;
            if zip.get(name_range) == Some(name.as_bytes()) {
                zip[header + size_offset..header + size_offset + 4]
                    .copy_from_slice(&size.to_le_bytes());
                patched += 1;
            }
            position = header + 4;
        }
    }
    (zip, patched)
}

/// Replaces every occurrence of the entry name `from` with `to` (same length).
fn rename_entry(mut zip: Vec<u8>, from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut position = 0;
    while let Some(found) = find(&zip[position..], from.as_bytes()) {
        let start = position + found;
        zip[start..start + to.len()].copy_from_slice(to.as_bytes());
        position = start + to.len();
    }
    zip
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
