//! Which nodes run which agent variant.
//!
//! Each preferred accelerator gets its own DaemonSet, so that its pods can
//! request that device's plugin resource: a pod that requests a resource its
//! node lacks never schedules. Variant `i` runs on the nodes that match the
//! VisionModel's selector, have device `i`, and have none of the devices
//! preferred before it. The CPU variant, when the spec allows it, takes the
//! nodes that have none of the preferred devices.

use k8s_openapi::api::core::v1::{
    NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use visionfleet_api::{Accelerator, AcceleratorSpec};

use crate::accelerators::{AcceleratorMapping, DeviceMapping};

/// One agent DaemonSet's device and node set.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    /// Device the variant's nodes have.
    pub device: Accelerator,

    /// Label and resource of that device; `None` for the CPU.
    pub mapping: Option<DeviceMapping>,

    /// Node requirements, ANDed.
    pub requirements: Vec<NodeSelectorRequirement>,
}

/// Splits the selected nodes into one variant per usable device, in preference order.
pub fn variants(
    selector: &LabelSelector,
    accelerator: &AcceleratorSpec,
    mapping: &AcceleratorMapping,
) -> Vec<Variant> {
    let base = selector_requirements(selector);
    let mut earlier: Vec<&DeviceMapping> = Vec::new();
    let mut variants = Vec::new();

    for &device in &accelerator.preference {
        let Some(device_mapping) = mapping.get(device) else {
            // The CPU is on every node, so no device after it is ever used.
            variants.push(cpu_variant(&base, &earlier));
            return variants;
        };

        let mut requirements = base.clone();
        requirements.extend(earlier.iter().map(|other| lacks(other)));
        requirements.push(has(device_mapping));
        variants.push(Variant {
            device,
            mapping: Some(device_mapping.clone()),
            requirements,
        });
        earlier.push(device_mapping);
    }

    if accelerator.allow_cpu_fallback {
        variants.push(cpu_variant(&base, &earlier));
    }
    variants
}

/// Returns the node affinity that places a variant's pods, or `None` for a
/// variant that runs on every node. An empty node selector term would match
/// no node at all, so it is left out instead.
pub fn node_affinity(variant: &Variant) -> Option<NodeAffinity> {
    if variant.requirements.is_empty() {
        return None;
    }

    Some(NodeAffinity {
        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(variant.requirements.clone()),
                ..NodeSelectorTerm::default()
            }],
        }),
        ..NodeAffinity::default()
    })
}

fn cpu_variant(base: &[NodeSelectorRequirement], earlier: &[&DeviceMapping]) -> Variant {
    let mut requirements = base.to_vec();
    requirements.extend(earlier.iter().map(|other| lacks(other)));

    Variant {
        device: Accelerator::Cpu,
        mapping: None,
        requirements,
    }
}

/// Translates a label selector into node selector requirements. The two use
/// the same operators (`In`, `NotIn`, `Exists`, `DoesNotExist`), and a
/// `matchLabels` entry is an `In` with one value.
fn selector_requirements(selector: &LabelSelector) -> Vec<NodeSelectorRequirement> {
    let labels =
        selector
            .match_labels
            .iter()
            .flatten()
            .map(|(key, value)| NodeSelectorRequirement {
                key: key.clone(),
                operator: "In".to_owned(),
                values: Some(vec![value.clone()]),
            });

    let expressions = selector
        .match_expressions
        .iter()
        .flatten()
        .map(|expression| NodeSelectorRequirement {
            key: expression.key.clone(),
            operator: expression.operator.clone(),
            values: expression
                .values
                .clone()
                .filter(|values| !values.is_empty()),
        });

    labels.chain(expressions).collect()
}

fn has(device: &DeviceMapping) -> NodeSelectorRequirement {
    match &device.node_label_value {
        Some(value) => requirement(&device.node_label, "In", Some(value)),
        None => requirement(&device.node_label, "Exists", None),
    }
}

/// A node lacks a device when its label is missing or has another value;
/// `NotIn` matches both.
fn lacks(device: &DeviceMapping) -> NodeSelectorRequirement {
    match &device.node_label_value {
        Some(value) => requirement(&device.node_label, "NotIn", Some(value)),
        None => requirement(&device.node_label, "DoesNotExist", None),
    }
}

fn requirement(key: &str, operator: &str, value: Option<&String>) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.to_owned(),
        operator: operator.to_owned(),
        values: value.map(|value| vec![value.clone()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(yaml: &str) -> LabelSelector {
        serde_norway::from_str(yaml).unwrap()
    }

    fn accelerator(yaml: &str) -> AcceleratorSpec {
        serde_norway::from_str(yaml).unwrap()
    }

    fn rendered(variant: &Variant) -> Vec<String> {
        variant
            .requirements
            .iter()
            .map(|requirement| {
                format!(
                    "{} {} {}",
                    requirement.key,
                    requirement.operator,
                    requirement.values.clone().unwrap_or_default().join(",")
                )
                .trim_end()
                .to_owned()
            })
            .collect()
    }

    #[test]
    fn cpu_only_uses_selector() {
        let variants = variants(
            &selector(
                "matchLabels: {site: plant-7}\nmatchExpressions:\n- {key: zone, operator: NotIn, values: [a]}\n- {key: camera, operator: Exists}",
            ),
            &AcceleratorSpec::default(),
            &AcceleratorMapping::default(),
        );

        assert_eq!(variants.len(), 1);
        assert_eq!(variants[0].device, Accelerator::Cpu);
        assert_eq!(
            rendered(&variants[0]),
            ["site In plant-7", "zone NotIn a", "camera Exists"]
        );
    }

    #[test]
    fn empty_selector_runs_on_every_node() {
        let variants = variants(
            &LabelSelector::default(),
            &AcceleratorSpec::default(),
            &AcceleratorMapping::default(),
        );

        assert_eq!(variants.len(), 1);
        assert!(variants[0].requirements.is_empty());
        assert_eq!(node_affinity(&variants[0]), None);
    }

    #[test]
    fn each_device_excludes_earlier_ones() {
        let variants = variants(
            &selector("matchLabels: {site: plant-7}"),
            &accelerator("preference: [MYRIAD, GPU, CPU]"),
            &AcceleratorMapping::default(),
        );

        let devices: Vec<_> = variants.iter().map(|variant| variant.device).collect();
        assert_eq!(
            devices,
            [Accelerator::Myriad, Accelerator::Gpu, Accelerator::Cpu]
        );
        assert_eq!(
            rendered(&variants[1]),
            [
                "site In plant-7",
                "feature.node.kubernetes.io/usb-ff_03e7_2485.present NotIn true",
                "intel.feature.node.kubernetes.io/gpu In true",
            ]
        );
        assert_eq!(
            rendered(&variants[2]),
            [
                "site In plant-7",
                "feature.node.kubernetes.io/usb-ff_03e7_2485.present NotIn true",
                "intel.feature.node.kubernetes.io/gpu NotIn true",
            ]
        );
    }

    #[test]
    fn fallback_adds_cpu_variant() {
        let with = variants(
            &LabelSelector::default(),
            &accelerator("preference: [GPU]"),
            &AcceleratorMapping::default(),
        );
        let without = variants(
            &LabelSelector::default(),
            &accelerator("preference: [GPU]\nallowCpuFallback: false"),
            &AcceleratorMapping::default(),
        );

        assert_eq!(
            with.iter()
                .map(|variant| variant.device)
                .collect::<Vec<_>>(),
            [Accelerator::Gpu, Accelerator::Cpu]
        );
        assert_eq!(
            without
                .iter()
                .map(|variant| variant.device)
                .collect::<Vec<_>>(),
            [Accelerator::Gpu]
        );
    }

    #[test]
    fn devices_after_cpu_unused() {
        let variants = variants(
            &LabelSelector::default(),
            &accelerator("preference: [CPU, GPU]"),
            &AcceleratorMapping::default(),
        );

        assert_eq!(variants.len(), 1);
        assert_eq!(variants[0].device, Accelerator::Cpu);
        assert!(variants[0].requirements.is_empty());
    }

    #[test]
    fn label_without_value_uses_exists() {
        let mut mapping_file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut mapping_file, b"NPU: {nodeLabel: example.com/npu}\n")
            .unwrap();
        let mapping = AcceleratorMapping::from_file(mapping_file.path()).unwrap();

        let variants = variants(
            &LabelSelector::default(),
            &accelerator("preference: [NPU, CPU]"),
            &mapping,
        );

        assert_eq!(rendered(&variants[0]), ["example.com/npu Exists"]);
        assert_eq!(rendered(&variants[1]), ["example.com/npu DoesNotExist"]);
    }
}
