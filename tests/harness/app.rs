//! A wgpu adapter and device created the way an application creates them, for the tests of
//! `Engine::from_wgpu` and `Model::encode`.

use tunable::wgpu;
use tunable::Engine;

use super::require_gpu;

/// The adapter an application would pick (its own instance, its own request), or None with a
/// skip message; with TUNABLE_REQUIRE_GPU=1 a missing adapter fails the test.
pub fn app_adapter() -> Option<wgpu::Adapter> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    match pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    })) {
        Ok(a) => {
            let i = a.get_info();
            eprintln!(
                "app adapter: {} ({:?}, {:?})",
                i.name, i.backend, i.device_type
            );
            Some(a)
        }
        Err(e) => {
            if require_gpu() {
                panic!("TUNABLE_REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            eprintln!("skipping: no GPU adapter ({e})");
            None
        }
    }
}

/// The app's device, created with exactly `limits` and no feature.
pub fn app_device(adapter: &wgpu::Adapter, limits: wgpu::Limits) -> (wgpu::Device, wgpu::Queue) {
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("the app's device"),
        required_features: wgpu::Features::empty(),
        required_limits: limits,
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::default(),
        trace: wgpu::Trace::Off,
    }))
    .expect("the adapter gives a device with these limits")
}

/// An engine on a new app device with `limits`.
pub fn engine_on(adapter: &wgpu::Adapter, limits: wgpu::Limits) -> tunable::Result<Engine> {
    let (device, queue) = app_device(adapter, limits);
    Engine::from_wgpu(adapter, device, queue)
}
