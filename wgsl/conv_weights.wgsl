// Shared by the two conv kernels (conv2d, conv1x1), which bind their weights as
// `wt: array<vec4<f32>>`: (PW + 1) parts, W0 then the deltas D_p, `n_w` vec4s each.

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
