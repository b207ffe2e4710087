//! Every WGSL kernel variant the executor can generate is parsed and validated by naga and
//! translated to SPIR-V, MSL, HLSL and GLSL, so a shader that would fail on Vulkan, Metal,
//! DX12 or GL fails here first (no GPU needed).

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use rayon::prelude::*;
use tunable::testing::gpu::kernels::Kernel;

fn check(kernel: &Kernel) -> Result<(), String> {
    let src = kernel.source();
    let module = naga::front::wgsl::parse_str(&src).map_err(|e| e.emit_to_string(&src))?;
    let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .map_err(|e| e.emit_to_string(&src))?;

    let spv_out = spv::write_vec(&module, &info, &spv::Options::default(), None)
        .map_err(|e| format!("spv: {e}"))?;
    if spv_out.is_empty() {
        return Err("spv: empty".into());
    }

    let mut msl_src = String::new();
    let pipeline = msl::PipelineOptions::default();
    let (msl_text, _) = msl::write_string(&module, &info, &msl::Options::default(), &pipeline)
        .map_err(|e| format!("msl: {e}"))?;
    msl_src.push_str(&msl_text);

    let mut hlsl_src = String::new();
    let hlsl_opts = hlsl::Options::default();
    let hlsl_pipeline = hlsl::PipelineOptions::default();
    let mut w = hlsl::Writer::new(&mut hlsl_src, &hlsl_opts, &hlsl_pipeline);
    w.write(&module, &info, None)
        .map_err(|e| format!("hlsl: {e}"))?;

    let mut glsl_src = String::new();
    let glsl_opts = glsl::Options {
        version: glsl::Version::Embedded {
            version: 310,
            is_webgl: false,
        },
        ..Default::default()
    };
    let pipeline = glsl::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: "main".into(),
        multiview: None,
    };
    let mut w = glsl::Writer::new(
        &mut glsl_src,
        &module,
        &info,
        &glsl_opts,
        &pipeline,
        naga::proc::BoundsCheckPolicies::default(),
    )
    .map_err(|e| format!("glsl: {e}"))?;
    w.write().map_err(|e| format!("glsl: {e}"))?;
    Ok(())
}

#[test]
fn every_kernel_variant_validates_and_translates() {
    let t = std::time::Instant::now();
    let variants = Kernel::all_variants();
    let failures: Vec<String> = variants
        .par_iter()
        .filter_map(|k| check(k).err().map(|e| format!("{k:?}:\n{e}")))
        .collect();
    println!(
        "naga: {} variants validated and written as SPIR-V, MSL, HLSL, GLSL in {:.1?}",
        variants.len(),
        t.elapsed()
    );
    if !failures.is_empty() {
        panic!(
            "{} of {} variants failed; first:\n{}",
            failures.len(),
            variants.len(),
            failures[0]
        );
    }
}
