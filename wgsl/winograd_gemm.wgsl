// Winograd F(4x4, 3x3), step 2 of 3: 36 GEMMs, one per transform-domain position,
//   M[pos][co][tile] = sum_ci U[pos][ci][co] V[pos][ci][tile],
// with the level mix U = U(W0) + sum_p c_p U(D_p) fused into the staging of U (the filter
// transform is linear, so the transformed basis is stored once, at upload).
//
// One workgroup (32 invocations) computes 64 tiles x 4 positions x CO_T = 16 output channels:
// invocation (slot = lid % 8, position lid / 8) keeps tiles slot + 8 i (i < 8) x 16 channels
// in registers: per input channel 8 loads of V and 4 vec4 of U for 128 FMAs. On a software
// adapter (Mesa's lavapipe) every load whose offset is not a constant or push constant is a
// loop over the SIMD lanes, so the FMAs per scalar loaded set the speed: 5.3 here, 3.2 with
// 4 tiles per invocation (the previous version, about 7 % slower on the whole network at
// 128x128 on lavapipe). Tried and dropped: vec4 loads of V from rows padded to 4 tiles (8
// tiles x 8 channels; 20 % slower: lavapipe's vector load is still one branch per component
// and lane), staging all 48 input channels at once (no change). 64 tiles per workgroup, not
// 256, so that a 32x32 layer (64 tiles; the 48-channel denoiser's body at a 64x64 input)
// fills its workgroups. Only U is staged in workgroup memory (4 positions x CI_T channels x
// 16, mixed on the way): V is read by one invocation only, so staging it buys no reuse.
//
// U on the GPU is laid out [PW + 1][36][cin][cout16] (zero padding channels). The grid is
// 1-D over blocks of 64 tiles (pitch dispatch.row_pitch) x (9 * cout16 / 16),
// z = position group * groups + g. Uniform: ConvUniform (wgsl/conv_weights.wgsl); x is V,
// y is M.

const TP: u32 = 64u;
const CO_T: u32 = 16u;
const POS_T: u32 = 4u;
const SLOTS: u32 = 8u;
const WG: u32 = 32u;

@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> wt: array<vec4<f32>>;

var<workgroup> ws: array<vec4<f32>, POS_T * CI_T * 4u>;

@compute @workgroup_size(32, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let cin = prm.dims.cin;
    let cout = prm.dims.cout;
    let cout16 = prm.dims.cout16;
    let nt = ((prm.dims.ow + 3u) / 4u) * ((prm.dims.oh + 3u) / 4u);
    let groups = cout16 / CO_T;
    let z = wid.z + prm.dispatch.group_offset.z;
    let pos0 = (z / groups) * POS_T;
    let co0 = (z % groups) * CO_T;
    let t0 = linear_group(wid, prm.dispatch) * TP;
    let cf = mix_coefs(prm.mix);
    let n_w = 36u * cin * cout16 / 4u; // vec4s per mixed part
    let slot = lid % SLOTS;
    let pl = lid / SLOTS;
    let pos = pos0 + pl;
    // This invocation's tiles, clamped into the tensor (tiles past nt are not stored).
    let vbase = pos * cin * nt;
    let v0 = vbase + min(t0 + slot + 0u, nt - 1u);
    let v1 = vbase + min(t0 + slot + 8u, nt - 1u);
    let v2 = vbase + min(t0 + slot + 16u, nt - 1u);
    let v3 = vbase + min(t0 + slot + 24u, nt - 1u);
    let v4 = vbase + min(t0 + slot + 32u, nt - 1u);
    let v5 = vbase + min(t0 + slot + 40u, nt - 1u);
    let v6 = vbase + min(t0 + slot + 48u, nt - 1u);
    let v7 = vbase + min(t0 + slot + 56u, nt - 1u);

    var s00 = vec4<f32>(0.0);
    var s01 = vec4<f32>(0.0);
    var s02 = vec4<f32>(0.0);
    var s03 = vec4<f32>(0.0);
    var s10 = vec4<f32>(0.0);
    var s11 = vec4<f32>(0.0);
    var s12 = vec4<f32>(0.0);
    var s13 = vec4<f32>(0.0);
    var s20 = vec4<f32>(0.0);
    var s21 = vec4<f32>(0.0);
    var s22 = vec4<f32>(0.0);
    var s23 = vec4<f32>(0.0);
    var s30 = vec4<f32>(0.0);
    var s31 = vec4<f32>(0.0);
    var s32 = vec4<f32>(0.0);
    var s33 = vec4<f32>(0.0);
    var s40 = vec4<f32>(0.0);
    var s41 = vec4<f32>(0.0);
    var s42 = vec4<f32>(0.0);
    var s43 = vec4<f32>(0.0);
    var s50 = vec4<f32>(0.0);
    var s51 = vec4<f32>(0.0);
    var s52 = vec4<f32>(0.0);
    var s53 = vec4<f32>(0.0);
    var s60 = vec4<f32>(0.0);
    var s61 = vec4<f32>(0.0);
    var s62 = vec4<f32>(0.0);
    var s63 = vec4<f32>(0.0);
    var s70 = vec4<f32>(0.0);
    var s71 = vec4<f32>(0.0);
    var s72 = vec4<f32>(0.0);
    var s73 = vec4<f32>(0.0);

    for (var ci0 = 0u; ci0 < cin; ci0 += CI_T) {
        let nc = min(CI_T, cin - ci0);
        workgroupBarrier();
        // ws[(position * CI_T + channel) * 4 + q]
        for (var e = lid; e < POS_T * CI_T * 4u; e += WG) {
            let cl = (e / 4u) % CI_T;
            if cl < nc {
                let p = pos0 + e / (CI_T * 4u);
                let g = (p * cin + ci0 + cl) * (cout16 / 4u) + co0 / 4u + e % 4u;
                ws[e] = mixed_weight4(g, n_w, cf);
            }
        }
        workgroupBarrier();
        let wb = pl * CI_T * 4u;
        for (var cl = 0u; cl < nc; cl++) {
            let w0 = ws[wb + cl * 4u];
            let w1 = ws[wb + cl * 4u + 1u];
            let w2 = ws[wb + cl * 4u + 2u];
            let w3 = ws[wb + cl * 4u + 3u];
            let row = (ci0 + cl) * nt;
            let a0 = x[v0 + row];
            let a1 = x[v1 + row];
            let a2 = x[v2 + row];
            let a3 = x[v3 + row];
            let a4 = x[v4 + row];
            let a5 = x[v5 + row];
            let a6 = x[v6 + row];
            let a7 = x[v7 + row];
            s00 += a0 * w0;
            s01 += a0 * w1;
            s02 += a0 * w2;
            s03 += a0 * w3;
            s10 += a1 * w0;
            s11 += a1 * w1;
            s12 += a1 * w2;
            s13 += a1 * w3;
            s20 += a2 * w0;
            s21 += a2 * w1;
            s22 += a2 * w2;
            s23 += a2 * w3;
            s30 += a3 * w0;
            s31 += a3 * w1;
            s32 += a3 * w2;
            s33 += a3 * w3;
            s40 += a4 * w0;
            s41 += a4 * w1;
            s42 += a4 * w2;
            s43 += a4 * w3;
            s50 += a5 * w0;
            s51 += a5 * w1;
            s52 += a5 * w2;
            s53 += a5 * w3;
            s60 += a6 * w0;
            s61 += a6 * w1;
            s62 += a6 * w2;
            s63 += a6 * w3;
            s70 += a7 * w0;
            s71 += a7 * w1;
            s72 += a7 * w2;
            s73 += a7 * w3;
        }
    }

    let m_base = pos * cout * nt;
    let acc0 = array<vec4<f32>, 4>(s00, s01, s02, s03);
    let acc1 = array<vec4<f32>, 4>(s10, s11, s12, s13);
    let acc2 = array<vec4<f32>, 4>(s20, s21, s22, s23);
    let acc3 = array<vec4<f32>, 4>(s30, s31, s32, s33);
    let acc4 = array<vec4<f32>, 4>(s40, s41, s42, s43);
    let acc5 = array<vec4<f32>, 4>(s50, s51, s52, s53);
    let acc6 = array<vec4<f32>, 4>(s60, s61, s62, s63);
    let acc7 = array<vec4<f32>, 4>(s70, s71, s72, s73);
    for (var j = 0u; j < 16u; j++) {
        let co = co0 + j;
        if co < cout {
            let row = m_base + co * nt + t0 + slot;
            if t0 + slot + 0u < nt {
                y[row + 0u] = acc0[j / 4u][j % 4u];
            }
            if t0 + slot + 8u < nt {
                y[row + 8u] = acc1[j / 4u][j % 4u];
            }
            if t0 + slot + 16u < nt {
                y[row + 16u] = acc2[j / 4u][j % 4u];
            }
            if t0 + slot + 24u < nt {
                y[row + 24u] = acc3[j / 4u][j % 4u];
            }
            if t0 + slot + 32u < nt {
                y[row + 32u] = acc4[j / 4u][j % 4u];
            }
            if t0 + slot + 40u < nt {
                y[row + 40u] = acc5[j / 4u][j % 4u];
            }
            if t0 + slot + 48u < nt {
                y[row + 48u] = acc6[j / 4u][j % 4u];
            }
            if t0 + slot + 56u < nt {
                y[row + 56u] = acc7[j / 4u][j % 4u];
            }
        }
    }
}
