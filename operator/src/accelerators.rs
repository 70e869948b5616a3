//! Node labels and device-plugin resources of each inference device: the
//! label that marks nodes having it, and the resource an agent requests to reach it.
//!
//! The defaults follow the usual Intel setup on K3s. Node Feature Discovery
//! labels USB devices as `feature.node.kubernetes.io/usb-<class>_<vendor>_<device>.present`,
//! and an NCS2 stick is vendor 03e7 (Intel Movidius), device 2485, class ff,
//! before its firmware boots. The Intel device plugins for Kubernetes label
//! GPU and NPU nodes and expose `gpu.intel.com/i915` and `npu.intel.com/accel`.
//! Clusters that label nodes otherwise pass their own mapping to the operator
//! (`--accelerator-mapping`, filled from the Helm values).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use visionfleet_api::Accelerator;

/// Node label and device-plugin resource of one device.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceMapping {
    /// Label key that nodes having the device carry.
    pub node_label: String,

    /// Value the label must have; any value counts when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_label_value: Option<String>,

    /// Extended resource an agent requests (one unit) to be given the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

/// Mapping of every accelerator except the CPU, which every node has.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AcceleratorMapping(BTreeMap<Accelerator, DeviceMapping>);

/// Failure to read an accelerator mapping file.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("cannot read accelerator mapping {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },

    #[error("accelerator mapping {path} is invalid: {source}")]
    Parse {
        path: String,
        source: serde_norway::Error,
    },

    #[error("accelerator mapping {path} maps CPU, which every node has: remove that entry")]
    MapsCpu { path: String },
}

impl Default for AcceleratorMapping {
    fn default() -> Self {
        Self(BTreeMap::from([
            (
                Accelerator::Myriad,
                DeviceMapping {
                    node_label: "feature.node.kubernetes.io/usb-ff_03e7_2485.present".to_owned(),
                    node_label_value: Some("true".to_owned()),
                    resource: None,
                },
            ),
            (
                Accelerator::Gpu,
                DeviceMapping {
                    node_label: "intel.feature.node.kubernetes.io/gpu".to_owned(),
                    node_label_value: Some("true".to_owned()),
                    resource: Some("gpu.intel.com/i915".to_owned()),
                },
            ),
            (
                Accelerator::Npu,
                DeviceMapping {
                    node_label: "intel.feature.node.kubernetes.io/npu".to_owned(),
                    node_label_value: Some("true".to_owned()),
                    resource: Some("npu.intel.com/accel".to_owned()),
                },
            ),
        ]))
    }
}

impl AcceleratorMapping {
    /// Reads a mapping from a YAML file such as
    /// `GPU: {nodeLabel: gpu.example.com/present, resource: gpu.intel.com/i915}`.
    /// Devices the file leaves out keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, MappingError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| MappingError::Read {
            path: shown.clone(),
            source,
        })?;
        let overrides: BTreeMap<Accelerator, DeviceMapping> = serde_norway::from_str(&text)
            .map_err(|source| MappingError::Parse {
                path: shown.clone(),
                source,
            })?;

        if overrides.contains_key(&Accelerator::Cpu) {
            return Err(MappingError::MapsCpu { path: shown });
        }

        let mut mapping = Self::default();
        mapping.0.extend(overrides);
        Ok(mapping)
    }

    /// Returns the mapping of a device, or `None` for the CPU.
    pub fn get(&self, device: Accelerator) -> Option<&DeviceMapping> {
        self.0.get(&device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_every_accelerator_but_cpu() {
        let mapping = AcceleratorMapping::default();

        for device in [Accelerator::Myriad, Accelerator::Gpu, Accelerator::Npu] {
            assert!(mapping.get(device).is_some(), "{device}");
        }
        assert!(mapping.get(Accelerator::Cpu).is_none());
    }

    #[test]
    fn file_overrides_one_device() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            "GPU:\n  nodeLabel: example.com/igpu\n  resource: example.com/gpu\n",
        )
        .unwrap();

        let mapping = AcceleratorMapping::from_file(file.path()).unwrap();

        assert_eq!(
            mapping.get(Accelerator::Gpu).unwrap().node_label,
            "example.com/igpu"
        );
        assert_eq!(
            mapping.get(Accelerator::Gpu).unwrap().node_label_value,
            None
        );
        assert_eq!(
            mapping.get(Accelerator::Myriad),
            AcceleratorMapping::default().get(Accelerator::Myriad)
        );
    }

    #[test]
    fn file_mapping_cpu_rejected() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "CPU: {nodeLabel: x}\n").unwrap();

        let error = AcceleratorMapping::from_file(file.path()).unwrap_err();

        assert!(matches!(error, MappingError::MapsCpu { .. }), "{error}");
    }
}
