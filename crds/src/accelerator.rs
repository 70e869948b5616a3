//! Inference devices of ONNX Runtime's OpenVINO execution provider.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An inference device, spelled as OpenVINO names it.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum Accelerator {
    /// Intel Neural Compute Stick 2 (Movidius Myriad X VPU) on USB.
    #[serde(rename = "MYRIAD")]
    Myriad,
    /// Intel integrated or discrete GPU.
    #[serde(rename = "GPU")]
    Gpu,
    /// Intel NPU (Core Ultra and later).
    #[serde(rename = "NPU")]
    Npu,
    /// The host CPU.
    #[serde(rename = "CPU")]
    Cpu,
}

impl Accelerator {
    /// Every device, in the order the documentation lists them.
    pub const ALL: [Accelerator; 4] = [Self::Myriad, Self::Gpu, Self::Npu, Self::Cpu];

    /// Returns the OpenVINO device name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Myriad => "MYRIAD",
            Self::Gpu => "GPU",
            Self::Npu => "NPU",
            Self::Cpu => "CPU",
        }
    }
}

impl fmt::Display for Accelerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device name that is not one of `MYRIAD`, `GPU`, `NPU` and `CPU`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown accelerator {0:?}: expected one of MYRIAD, GPU, NPU, CPU")]
pub struct UnknownAccelerator(pub String);

impl FromStr for Accelerator {
    type Err = UnknownAccelerator;

    /// Parses the exact documented spelling. Command-line and annotation
    /// input should be trimmed first; case is not folded, so that the same
    /// spellings work in the CRD, the CLI and the config file.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|device| device.as_str() == name)
            .ok_or_else(|| UnknownAccelerator(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_spellings() {
        for device in Accelerator::ALL {
            assert_eq!(device.as_str().parse::<Accelerator>(), Ok(device));
        }
    }

    #[test]
    fn rejects_other_spellings() {
        for name in ["myriad", "Gpu", "VPU", "NCS2", ""] {
            let error = name.parse::<Accelerator>().unwrap_err();
            assert!(
                error.to_string().contains("MYRIAD, GPU, NPU, CPU"),
                "{error}"
            );
        }
    }

    #[test]
    fn serializes_as_openvino_name() {
        let json = serde_json::to_string(&[Accelerator::Myriad, Accelerator::Cpu]).unwrap();
        assert_eq!(json, r#"["MYRIAD","CPU"]"#);
    }
}
