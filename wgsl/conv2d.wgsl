// Dense k x k conv, stride S, zero "same" padding K/2, CHW f32, fused weight mix and epilogue.
//
// One workgroup computes a tile of TW x TH output pixels x CO_T output channels. Per step it
// stages CI_T input channels of the input tile (with its halo) and the matching weight slab
// (W0 + sum_p c_p D_p, mixed here) in workgroup memory; CI_T is chosen on the Rust side so
// both stay under 16 KiB. Each of the 64 invocations keeps 2 pixels x 16 channels = 32
// accumulators in registers: per (ci, ky, kx) it reads 2 inputs and 4 vec4 weights for 32 FMAs.
//
// Weights on the GPU are laid out [P+1][cin][k*k][cout16] (cout padded to 16 with zeros), so
// a vec4 holds 4 consecutive output channels and staging reads are coalesced.
//
// Uniform: ConvUniform (wgsl/conv_weights.wgsl).

const TW: u32 = 16u;
const TH: u32 = 8u;
const CO_T: u32 = 16u;
const KK: u32 = K * K;
const IN_TW: u32 = (TW - 1u) * S + K;
const IN_TH: u32 = (TH - 1u) * S + K;
const IN_TILE: u32 = IN_TH * IN_TW;
const PAD: i32 = i32(K / 2u);

@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> wt: array<vec4<f32>>;

var<workgroup> xs: array<f32, CI_T * IN_TILE>;
var<workgroup> ws: array<vec4<f32>, CI_T * KK * 4u>;

@compute @workgroup_size(16, 4, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let tcin = prm.dims.tensor_cin;
    let ih = prm.dims.ih;
    let iw = prm.dims.iw;
    let cin = prm.dims.cin;
    let cout = prm.dims.cout;
    let oh = prm.dims.oh;
    let ow = prm.dims.ow;
    let cout16 = prm.dims.cout16;
    let g0 = prm.dispatch.group_offset;
    let ox0 = (wid.x + g0.x) * TW;
    let oy0 = (wid.y + g0.y) * TH;
    let co0 = (wid.z + g0.z) * CO_T;
    let cf = mix_coefs(prm.mix);
    let noise = noise_value();
    let ix0 = i32(ox0 * S) - PAD;
    let iy0 = i32(oy0 * S) - PAD;
    let tx = lid3.x;
    let ty = lid3.y;
    let n_w = cin * KK * cout16 / 4u; // vec4s per mixed part

    var s00 = vec4<f32>(0.0);
    var s01 = vec4<f32>(0.0);
    var s02 = vec4<f32>(0.0);
    var s03 = vec4<f32>(0.0);
    var s10 = vec4<f32>(0.0);
    var s11 = vec4<f32>(0.0);
    var s12 = vec4<f32>(0.0);
    var s13 = vec4<f32>(0.0);

    for (var ci0 = 0u; ci0 < cin; ci0 += CI_T) {
        let nc = min(CI_T, cin - ci0);
        workgroupBarrier();
        // Stage the input tile with its halo; zero outside the image (the padding).
        for (var e = lid; e < nc * IN_TILE; e += 64u) {
            let cl = e / IN_TILE;
            let r = (e / IN_TW) % IN_TH;
            let c = e % IN_TW;
            let ci = ci0 + cl;
            let gy = iy0 + i32(r);
            let gx = ix0 + i32(c);
            var v = 0.0;
            if gy >= 0 && gx >= 0 && gy < i32(ih) && gx < i32(iw) {
                v = input_or_noise(ci, tcin, (ci * ih + u32(gy)) * iw + u32(gx), noise);
            }
            xs[e] = v;
        }
        // Stage the weight slab, mixing W0 + sum_p c_p D_p on the way.
        for (var e = lid; e < nc * KK * 4u; e += 64u) {
            let cl = e / (KK * 4u);
            let t = (e / 4u) % KK;
            let q = e % 4u;
            let g = ((ci0 + cl) * KK + t) * (cout16 / 4u) + co0 / 4u + q;
            ws[e] = mixed_weight4(g, n_w, cf);
        }
        workgroupBarrier();
        for (var cl = 0u; cl < nc; cl++) {
            for (var ky = 0u; ky < K; ky++) {
                let r0 = (cl * IN_TH + ty * S + ky) * IN_TW + tx * S;
                let r1 = r0 + 4u * S * IN_TW;
                let wr = (cl * KK + ky * K) * 4u;
                for (var kx = 0u; kx < K; kx++) {
                    let a0 = xs[r0 + kx];
                    let a1 = xs[r1 + kx];
                    let wb = wr + kx * 4u;
                    let w0 = ws[wb];
                    let w1 = ws[wb + 1u];
                    let w2 = ws[wb + 2u];
                    let w3 = ws[wb + 3u];
                    s00 += a0 * w0;
                    s01 += a0 * w1;
                    s02 += a0 * w2;
                    s03 += a0 * w3;
                    s10 += a1 * w0;
                    s11 += a1 * w1;
                    s12 += a1 * w2;
                    s13 += a1 * w3;
                }
            }
        }
    }

    let ox = ox0 + tx;
    let plane = oh * ow;
    let acc0 = array<vec4<f32>, 4>(s00, s01, s02, s03);
    let acc1 = array<vec4<f32>, 4>(s10, s11, s12, s13);
    let oya = oy0 + ty;
    let oyb = oya + 4u;
    if ox < ow {
        for (var j = 0u; j < 16u; j++) {
            let co = co0 + j;
            if co < cout {
                let e = ep_vals(prm.ep, co, cout, cf);
                if oya < oh {
                    store(acc0[j / 4u][j % 4u], e, co * plane + oya * ow + ox);
                }
                if oyb < oh {
                    store(acc1[j / 4u][j % 4u], e, co * plane + oyb * ow + ox);
                }
            }
        }
    }
}
