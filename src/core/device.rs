//! Run-time choice of burn device. Model code takes a `&Device` and never names a backend.

use anyhow::{bail, Result};
use burn::tensor::Device;

/// Names accepted by `--device`.
pub const DEVICE_NAMES: &str =
    "cpu (burn flex, default), wgpu (needs --features wgpu), cuda (needs --features cuda)";

/// Resolve a device name to a burn device.
pub fn device_from_name(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::default())),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(0usize)),
        other => {
            bail!("unknown or not compiled-in device `{other}`; choose one of: {DEVICE_NAMES}")
        }
    }
}

/// Fix the number of worker threads used by rayon (and so by the CPU backend's kernels).
/// Must run before any parallel work; a second call is ignored.
pub fn set_threads(threads: Option<usize>) {
    if let Some(n) = threads {
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global();
    }
}

/// True when tensors on `device` live in host memory (burn's flex backend), where the fused
/// kernels apply.
pub fn is_host(device: &Device) -> bool {
    device.clone().without_autodiff() == Device::flex()
}
