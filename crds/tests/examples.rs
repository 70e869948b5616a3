//! Every VisionModel in `examples/` parses and passes the operator's checks.
//! The end-to-end tests apply the same files to a real kube-apiserver.

#![allow(clippy::unwrap_used, reason = "test helpers panic on broken fixtures")]

use std::path::PathBuf;

use serde::Deserialize;
use visionfleet_api::VisionModel;
use visionfleet_api::validation::validate;

fn example_models() -> Vec<(PathBuf, VisionModel)> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut models = Vec::new();

    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|extension| extension != "yaml") {
            continue;
        }

        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_norway::Deserializer::from_str(&text) {
            let value = serde_norway::Value::deserialize(document).unwrap();
            if value.get("kind").and_then(|kind| kind.as_str()) == Some("VisionModel") {
                let model: VisionModel = serde_norway::from_value(value).unwrap();
                models.push((path.clone(), model));
            }
        }
    }
    models
}

#[test]
fn examples_pass_validation() {
    let models = example_models();
    assert!(
        models.len() >= 3,
        "expected at least 3 example VisionModels, found {}",
        models.len()
    );

    for (path, model) in models {
        if let Err(error) = validate(&model.spec) {
            panic!("{}: {error}", path.display());
        }
    }
}
