// Depthwise k x k conv, stride 1, zero "same" padding, fused weight mix and epilogue.
// One workgroup: a 16 x 16 pixel tile of one channel; the input tile with its halo and the
// channel's k x k mixed weights are staged in workgroup memory; each of the 64 invocations
// computes 4 pixels of one column.
//
// Weights [P+1][C][k*k] (PyTorch order). Uniform: src/gpu/ops/depthwise.rs.

struct DepthwiseDims {
    channels: u32,
    h: u32,
    w: u32,
    unused: u32,
}

struct DepthwiseUniform {
    dispatch: Dispatch,
    dims: DepthwiseDims,
    ep: EpOffsets,
    mix: LevelMix,
}

@group(0) @binding(1) var<uniform> prm: DepthwiseUniform;

const T: u32 = 16u;
const KK: u32 = K * K;
const IN_T: u32 = T + K - 1u;
const PAD: i32 = i32(K / 2u);

@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> wt: array<f32>;

var<workgroup> xs: array<f32, IN_T * IN_T>;
var<workgroup> ws: array<f32, KK>;

@compute @workgroup_size(16, 4, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let channels = prm.dims.channels;
    let h = prm.dims.h;
    let w = prm.dims.w;
    let g0 = prm.dispatch.group_offset;
    let c = wid.z + g0.z;
    let x0 = (wid.x + g0.x) * T;
    let y0 = (wid.y + g0.y) * T;
    let cf = mix_coefs(prm.mix);
    let n_w = channels * KK;

    for (var e = lid; e < IN_T * IN_T; e += 64u) {
        let gy = i32(y0 + e / IN_T) - PAD;
        let gx = i32(x0 + e % IN_T) - PAD;
        var v = 0.0;
        if gy >= 0 && gx >= 0 && gy < i32(h) && gx < i32(w) {
            v = x[(c * h + u32(gy)) * w + u32(gx)];
        }
        xs[e] = v;
    }
    for (var e = lid; e < KK; e += 64u) {
        let g = c * KK + e;
        var v = wt[g];
        for (var p = 0u; p < PW; p++) {
            v += cf[p] * wt[(p + 1u) * n_w + g];
        }
        ws[e] = v;
    }
    workgroupBarrier();

    let tx = lid3.x;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var ky = 0u; ky < K; ky++) {
        for (var kx = 0u; kx < K; kx++) {
            let wv = ws[ky * K + kx];
            for (var r = 0u; r < 4u; r++) {
                let ty = lid3.y + r * 4u;
                acc[r] += xs[(ty + ky) * IN_T + tx + kx] * wv;
            }
        }
    }
    let e = ep_vals(prm.ep, c, channels, cf);
    let ox = x0 + tx;
    if ox < w {
        for (var r = 0u; r < 4u; r++) {
            let oy = y0 + lid3.y + r * 4u;
            if oy < h {
                store(acc[r], e, (c * h + oy) * w + ox);
            }
        }
    }
}
