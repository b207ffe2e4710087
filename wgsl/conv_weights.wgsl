// Shared by the two conv kernels (conv2d, conv1x1): their uniform (src/gpu/ops/conv.rs), and
// their weights, bound as `wt: array<vec4<f32>>`: (PW + 1) parts, W0 then the deltas D_p,
// `n_w` vec4s each.

struct ConvDims {
    tensor_cin: u32, // channels of the input tensor (without the virtual noise channel)
    ih: u32,
    iw: u32,
    cin: u32,        // input channels of the weights, the noise channel included
    cout: u32,
    oh: u32,
    ow: u32,
    cout16: u32,     // cout rounded up to 16: the weight layout's channel stride
}

// The FFDNet-style virtual input channel: offset + dot(gain, level) inside the image.
struct NoiseChannel {
    gain: vec4<f32>,
    offset: f32,
}

struct ConvUniform {
    dispatch: Dispatch,
    dims: ConvDims,
    ep: EpOffsets,
    mix: LevelMix,
    noise: NoiseChannel,
}

@group(0) @binding(1) var<uniform> prm: ConvUniform;

fn noise_value() -> f32 {
    return prm.noise.offset + dot(prm.noise.gain, level);
}

// The mixed weights W0 + sum_p c_p D_p at vec4 `g`, in the CPU reference's order: this is the
// fused level mix, done while a workgroup stages its weight slab.
fn mixed_weight4(g: u32, n_w: u32, cf: vec4<f32>) -> vec4<f32> {
    var w = wt[g];
    for (var p = 0u; p < PW; p++) {
        w += cf[p] * wt[(p + 1u) * n_w + g];
    }
    return w;
}

// Input channel `ci` at flat index `i` of the tensor, or the virtual noise channel past the
// tensor's `tcin` channels.
fn input_or_noise(ci: u32, tcin: u32, i: u32, noise: f32) -> f32 {
    if ci < tcin {
        return x[i];
    }
    return noise;
}
