// The unfused weight mix (the baseline of the fused conv): out = W0 + sum_p c_p D_p over a
// mixed array of (PW + 1) parts of n values, written once per run before a plain (PW = 0) conv.
// Uniform: src/gpu/ops/mix.rs.

struct MixUniform {
    dispatch: Dispatch,
    len: u32, // values per part
    unused0: u32,
    unused1: u32,
    unused2: u32,
    mix: LevelMix,
}

@group(0) @binding(1) var<uniform> prm: MixUniform;

@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n = prm.len;
    let i = linear_group(wid, prm.dispatch) * 256u + lid;
    if i >= n {
        return;
    }
    let cf = mix_coefs(prm.mix);
    var v = x[i];
    for (var p = 0u; p < PW; p++) {
        v += cf[p] * x[(p + 1u) * n + i];
    }
    y[i] = v;
}
