//! Discovery of the devices the OpenVINO runtime beside ONNX Runtime can use.
//!
//! ONNX Runtime's OpenVINO execution provider does not list OpenVINO's
//! devices through ONNX Runtime's API, so the agent queries OpenVINO itself.
//! It loads the OpenVINO C library (`libopenvino_c.so`) that the
//! onnxruntime-openvino wheel ships next to `libonnxruntime.so`. Then it
//! calls `ov_core_get_available_devices`, the same call the execution
//! provider makes when it checks a requested device.

use std::fmt;
use std::path::{Path, PathBuf};

use visionfleet_api::Accelerator;

/// File name of the OpenVINO C library on Linux.
const OPENVINO_C_LIBRARY: &str = "libopenvino_c.so";

/// First OpenVINO release without the MYRIAD plugin for the Intel Neural
/// Compute Stick 2; 2022.3 was the last release that had it.
const MYRIAD_REMOVED_IN: OpenVinoVersion = OpenVinoVersion {
    year: 2023,
    minor: 0,
};

/// Version and devices that OpenVINO reported on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenVinoInventory {
    /// OpenVINO loaded and listed its devices.
    Available {
        /// OpenVINO's build number, such as `2025.4.1-20426-82bbf0292c5-releases/2025/4`.
        build: String,
        /// Device names as OpenVINO spells them: `CPU`, `GPU`, `GPU.1`, `NPU`.
        devices: Vec<String>,
    },
    /// OpenVINO could not be loaded or queried.
    Unavailable { reason: String },
}

/// The year and minor release of an OpenVINO build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpenVinoVersion {
    pub year: u32,
    pub minor: u32,
}

impl fmt::Display for OpenVinoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.year, self.minor)
    }
}

impl OpenVinoVersion {
    /// Parses the leading `YEAR.MINOR` of an OpenVINO build number.
    pub fn parse(build: &str) -> Option<Self> {
        let mut parts = build.split(['.', '-']);
        let year = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self { year, minor })
    }
}

impl OpenVinoInventory {
    /// Loads OpenVINO's C library from `library_dir` (or, when it is not
    /// there, from where `openvino-finder` looks: `OPENVINO_INSTALL_DIR`,
    /// `INTEL_OPENVINO_DIR`, `LD_LIBRARY_PATH`) and lists its devices.
    ///
    /// OpenVINO's GPU and NPU plugins report a device only when its driver
    /// is installed and the device node is accessible.
    pub fn probe(library_dir: &Path) -> Self {
        match probe_devices(library_dir) {
            Ok((build, devices)) => Self::Available { build, devices },
            Err(reason) => Self::Unavailable { reason },
        }
    }

    /// Device names OpenVINO listed, empty when it is unavailable.
    pub fn devices(&self) -> &[String] {
        match self {
            Self::Available { devices, .. } => devices,
            Self::Unavailable { .. } => &[],
        }
    }

    /// OpenVINO's build number, when it loaded.
    pub fn build(&self) -> Option<&str> {
        match self {
            Self::Available { build, .. } => Some(build),
            Self::Unavailable { .. } => None,
        }
    }

    /// Returns whether OpenVINO listed `accelerator`. `GPU` matches `GPU.0`,
    /// `GPU.1` and so on, as OpenVINO numbers several GPUs.
    pub fn has(&self, accelerator: Accelerator) -> bool {
        let name = accelerator.as_str();
        self.devices().iter().any(|device| {
            device == name
                || device
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
    }

    /// Explains why `accelerator` cannot be used with this OpenVINO, or
    /// returns `None` when OpenVINO listed it.
    pub fn unavailable_reason(&self, accelerator: Accelerator) -> Option<String> {
        let (build, devices) = match self {
            Self::Unavailable { reason } => {
                return Some(format!("OpenVINO is not available: {reason}"));
            }
            Self::Available { build, devices } => (build, devices),
        };

        let version = OpenVinoVersion::parse(build);
        if accelerator == Accelerator::Myriad
            && version.is_some_and(|version| version >= MYRIAD_REMOVED_IN)
        {
            return Some(format!(
                "OpenVINO {build} has no MYRIAD plugin: Intel removed the Neural Compute Stick 2 (MYRIAD) \
                 plugin in OpenVINO {MYRIAD_REMOVED_IN}, so this runtime cannot drive an NCS2"
            ));
        }

        if self.has(accelerator) {
            return None;
        }
        Some(format!(
            "OpenVINO {build} lists no {accelerator} device (found: {})",
            list_or_none(devices)
        ))
    }

    /// Returns a short description for logs: `OpenVINO 2025.4.1 devices CPU` or the
    /// reason OpenVINO is unavailable.
    pub fn summary(&self) -> String {
        match self {
            Self::Available { build, devices } => {
                format!("OpenVINO {build} devices: {}", list_or_none(devices))
            }
            Self::Unavailable { reason } => format!("OpenVINO unavailable: {reason}"),
        }
    }
}

fn list_or_none(devices: &[String]) -> String {
    if devices.is_empty() {
        "none".to_owned()
    } else {
        devices.join(", ")
    }
}

fn probe_devices(library_dir: &Path) -> Result<(String, Vec<String>), String> {
    load_c_library(library_dir)?;

    let build = openvino::version().build_number;
    let core = openvino::Core::new()
        .map_err(|error| format!("failed to create an OpenVINO core: {error}"))?;
    let devices = core
        .available_devices()
        .map_err(|error| format!("failed to list OpenVINO devices: {error}"))?
        .iter()
        .map(|device| device.as_ref().to_owned())
        .collect();
    Ok((build, devices))
}

fn load_c_library(library_dir: &Path) -> Result<(), String> {
    let beside_ort: PathBuf = library_dir.join(OPENVINO_C_LIBRARY);
    if beside_ort.exists() {
        return openvino_sys::library::load_from(beside_ort.clone())
            .map_err(|error| format!("failed to load {}: {error}", beside_ort.display()));
    }

    openvino_sys::library::load().map_err(|error| {
        format!(
            "{OPENVINO_C_LIBRARY} is not in {} and was not found elsewhere: {error}",
            library_dir.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(build: &str, devices: &[&str]) -> OpenVinoInventory {
        OpenVinoInventory::Available {
            build: build.to_owned(),
            devices: devices.iter().map(|device| (*device).to_owned()).collect(),
        }
    }

    #[test]
    fn version_parses_build_number() {
        let version = OpenVinoVersion::parse("2025.4.1-20426-82bbf0292c5-releases/2025/4");

        assert_eq!(
            version,
            Some(OpenVinoVersion {
                year: 2025,
                minor: 4
            })
        );
    }

    #[test]
    fn myriad_missing_since_2023() {
        let reason = inventory("2025.4.1-20426", &["CPU"])
            .unavailable_reason(Accelerator::Myriad)
            .unwrap();

        assert!(
            reason.contains("OpenVINO 2025.4.1-20426 has no MYRIAD plugin"),
            "{reason}"
        );
        assert!(reason.contains("2023.0"), "{reason}");
    }

    #[test]
    fn myriad_usable_on_2022_3() {
        let inventory = inventory("2022.3.0-9052", &["CPU", "MYRIAD"]);

        assert_eq!(inventory.unavailable_reason(Accelerator::Myriad), None);
    }

    #[test]
    fn numbered_gpu_counts_as_gpu() {
        let inventory = inventory("2025.4.1", &["CPU", "GPU.0", "GPU.1"]);

        assert!(inventory.has(Accelerator::Gpu));
        assert!(!inventory.has(Accelerator::Npu));
    }

    #[test]
    fn absent_device_reason_lists_found() {
        let reason = inventory("2025.4.1", &["CPU"])
            .unavailable_reason(Accelerator::Gpu)
            .unwrap();

        assert_eq!(reason, "OpenVINO 2025.4.1 lists no GPU device (found: CPU)");
    }
}
