// The unfused weight mix (the baseline of the fused conv): out = W0 + sum_p c_p D_p over a
// mixed array of (PW + 1) parts of n values, written once per run before a plain (PW = 0) conv.
// d0 = (n, unused, unused, unused).

@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n = prm.d0.x;
    let i = linear_group(wid) * 256u + lid;
    if i >= n {
        return;
    }
    let cf = mix_coefs();
    var v = x[i];
    for (var p = 0u; p < PW; p++) {
        v += cf[p] * x[(p + 1u) * n + i];
    }
    y[i] = v;
}
