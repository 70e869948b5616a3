//! Turning an ordered device preference into the list of execution
//! providers to try, and reporting what was skipped and why.

use std::fmt;

use visionfleet_api::Accelerator;

use super::openvino::OpenVinoInventory;

/// An ONNX Runtime execution provider the agent can run a model with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecutionProvider {
    /// ONNX Runtime's OpenVINO execution provider on one OpenVINO device.
    OpenVino,
    /// ONNX Runtime's own CPU execution provider.
    Cpu,
}

impl ExecutionProvider {
    /// ONNX Runtime's name for the provider.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenVino => "OpenVINOExecutionProvider",
            Self::Cpu => "CPUExecutionProvider",
        }
    }
}

impl fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Execution providers the agent may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProviderPolicy {
    /// OpenVINO on the preferred devices, then ONNX Runtime's CPU provider
    /// for the CPU.
    #[default]
    OpenVinoFirst,
    /// Only ONNX Runtime's CPU provider, ignoring the device preference.
    /// For comparisons and for models OpenVINO cannot compile.
    CpuOnly,
}

/// One device and provider to try, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub device: Accelerator,
    pub provider: ExecutionProvider,
    /// True when the candidate is there only because CPU fallback is allowed.
    pub fallback: bool,
}

/// A preferred device the agent did not use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedDevice {
    pub device: Accelerator,
    pub provider: ExecutionProvider,
    pub reason: String,
}

impl fmt::Display for SkippedDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.device, self.reason)
    }
}

/// The candidates to try, and the preferred devices ruled out before trying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionPlan {
    pub candidates: Vec<Candidate>,
    pub skipped: Vec<SkippedDevice>,
}

/// Orders the candidates for `preference`.
///
/// Each preferred device OpenVINO lists becomes an OpenVINO candidate. A
/// preferred `CPU` is followed by ONNX Runtime's CPU provider, so a model
/// OpenVINO cannot compile still runs on the requested CPU. When
/// `allow_cpu_fallback` is set and `CPU` is not preferred, the OpenVINO CPU
/// device and then ONNX Runtime's CPU provider are appended as fallbacks.
pub fn plan(
    preference: &[Accelerator],
    allow_cpu_fallback: bool,
    policy: ProviderPolicy,
    inventory: &OpenVinoInventory,
) -> SelectionPlan {
    if policy == ProviderPolicy::CpuOnly {
        return SelectionPlan {
            candidates: vec![Candidate {
                device: Accelerator::Cpu,
                provider: ExecutionProvider::Cpu,
                fallback: false,
            }],
            skipped: Vec::new(),
        };
    }

    let mut plan = SelectionPlan {
        candidates: Vec::new(),
        skipped: Vec::new(),
    };

    for &device in dedup(preference).iter() {
        plan.add_openvino(device, false, inventory);
        if device == Accelerator::Cpu {
            plan.add_cpu_provider(false);
        }
    }

    if allow_cpu_fallback && !preference.contains(&Accelerator::Cpu) {
        plan.add_openvino(Accelerator::Cpu, true, inventory);
        plan.add_cpu_provider(true);
    }
    plan
}

impl SelectionPlan {
    fn add_openvino(&mut self, device: Accelerator, fallback: bool, inventory: &OpenVinoInventory) {
        match inventory.unavailable_reason(device) {
            None => self.candidates.push(Candidate {
                device,
                provider: ExecutionProvider::OpenVino,
                fallback,
            }),
            Some(reason) => self.skipped.push(SkippedDevice {
                device,
                provider: ExecutionProvider::OpenVino,
                reason,
            }),
        }
    }

    fn add_cpu_provider(&mut self, fallback: bool) {
        self.candidates.push(Candidate {
            device: Accelerator::Cpu,
            provider: ExecutionProvider::Cpu,
            fallback,
        });
    }
}

fn dedup(preference: &[Accelerator]) -> Vec<Accelerator> {
    let mut unique = Vec::with_capacity(preference.len());
    for device in preference {
        if !unique.contains(device) {
            unique.push(*device);
        }
    }
    unique
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu_only_openvino() -> OpenVinoInventory {
        OpenVinoInventory::Available {
            build: "2025.4.1-20426".to_owned(),
            devices: vec!["CPU".to_owned()],
        }
    }

    fn candidates(plan: &SelectionPlan) -> Vec<(Accelerator, ExecutionProvider, bool)> {
        plan.candidates
            .iter()
            .map(|candidate| (candidate.device, candidate.provider, candidate.fallback))
            .collect()
    }

    #[test]
    fn absent_gpu_falls_back_to_openvino_cpu() {
        let plan = plan(
            &[Accelerator::Gpu],
            true,
            ProviderPolicy::OpenVinoFirst,
            &cpu_only_openvino(),
        );

        assert_eq!(
            candidates(&plan),
            vec![
                (Accelerator::Cpu, ExecutionProvider::OpenVino, true),
                (Accelerator::Cpu, ExecutionProvider::Cpu, true),
            ]
        );
        assert_eq!(plan.skipped.len(), 1);
        assert_eq!(plan.skipped[0].device, Accelerator::Gpu);
    }

    #[test]
    fn no_fallback_leaves_no_candidates() {
        let plan = plan(
            &[Accelerator::Myriad, Accelerator::Gpu],
            false,
            ProviderPolicy::OpenVinoFirst,
            &cpu_only_openvino(),
        );

        assert!(plan.candidates.is_empty());
        assert_eq!(plan.skipped.len(), 2);
        assert!(
            plan.skipped[0].reason.contains("no MYRIAD plugin"),
            "{}",
            plan.skipped[0].reason
        );
    }

    #[test]
    fn preferred_cpu_is_not_fallback() {
        let plan = plan(
            &[Accelerator::Npu, Accelerator::Cpu],
            true,
            ProviderPolicy::OpenVinoFirst,
            &cpu_only_openvino(),
        );

        assert_eq!(
            candidates(&plan),
            vec![
                (Accelerator::Cpu, ExecutionProvider::OpenVino, false),
                (Accelerator::Cpu, ExecutionProvider::Cpu, false),
            ]
        );
    }

    #[test]
    fn missing_openvino_keeps_cpu_provider() {
        let inventory = OpenVinoInventory::Unavailable {
            reason: "libopenvino_c.so not found".to_owned(),
        };

        let plan = plan(
            &[Accelerator::Gpu],
            true,
            ProviderPolicy::OpenVinoFirst,
            &inventory,
        );

        assert_eq!(
            candidates(&plan),
            vec![(Accelerator::Cpu, ExecutionProvider::Cpu, true)]
        );
        assert_eq!(plan.skipped.len(), 2);
    }

    #[test]
    fn cpu_only_policy_ignores_preference() {
        let plan = plan(
            &[Accelerator::Gpu],
            false,
            ProviderPolicy::CpuOnly,
            &cpu_only_openvino(),
        );

        assert_eq!(
            candidates(&plan),
            vec![(Accelerator::Cpu, ExecutionProvider::Cpu, false)]
        );
        assert!(plan.skipped.is_empty());
    }

    #[test]
    fn repeated_devices_tried_once() {
        let plan = plan(
            &[Accelerator::Cpu, Accelerator::Cpu],
            true,
            ProviderPolicy::OpenVinoFirst,
            &cpu_only_openvino(),
        );

        assert_eq!(plan.candidates.len(), 2);
    }
}
