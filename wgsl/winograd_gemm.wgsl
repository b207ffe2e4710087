// Winograd F(4x4, 3x3), step 2 of 3: 36 GEMMs, one per transform-domain position,
//   M[pos][co][tile] = sum_ci U[pos][ci][co] V[pos][ci][tile],
// with the level mix U = U(W0) + sum_p c_p U(D_p) fused into the staging of U (the filter
// transform is linear, so the transformed basis is stored once, at upload).
//
// One workgroup computes 64 tiles x 4 positions x CO_T = 16 output channels: invocation
// (slot = lid % 16, position lid / 16) keeps tiles slot + 16 i (i < 4) x 16 channels in
// registers: per input channel 4 loads of V and 4 vec4 of U for 64 FMAs. 64 tiles per
// workgroup, not 256, so that a 32x32 layer (64 tiles; the 48-channel denoiser's body at a
// 64x64 input) fills its workgroups. Only U is staged in workgroup memory (4 positions x CI_T
// channels x 16, mixed on the way): V is read by one invocation only, so staging it (as the
// first version, 2 tiles x 16 staged like conv1x1.wgsl, did) buys no reuse.
//
// U on the GPU is laid out [PW + 1][36][cin][cout16] (zero padding channels). The grid is
// 1-D over blocks of 64 tiles (pitch dispatch.row_pitch) x (9 * cout16 / 16),
// z = position group * groups + g. Uniform: ConvUniform (wgsl/conv_weights.wgsl); x is V,
// y is M.

const TP: u32 = 64u;
const CO_T: u32 = 16u;
const POS_T: u32 = 4u;

@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> wt: array<vec4<f32>>;

var<workgroup> ws: array<vec4<f32>, POS_T * CI_T * 4u>;

@compute @workgroup_size(64, 1, 1)
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
    let slot = lid % 16u;
    let pl = lid / 16u;
    let pos = pos0 + pl;
    // This invocation's 4 tiles, clamped into the tensor (tiles past nt are not stored).
    let vbase = pos * cin * nt;
    let va = vbase + min(t0 + slot, nt - 1u);
    let vb = vbase + min(t0 + slot + 16u, nt - 1u);
    let vc = vbase + min(t0 + slot + 32u, nt - 1u);
    let vd = vbase + min(t0 + slot + 48u, nt - 1u);

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

    for (var ci0 = 0u; ci0 < cin; ci0 += CI_T) {
        let nc = min(CI_T, cin - ci0);
        workgroupBarrier();
        // ws[(position * CI_T + channel) * 4 + q]
        for (var e = lid; e < POS_T * CI_T * 4u; e += 64u) {
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
            let a0 = x[va + row];
            let a1 = x[vb + row];
            let a2 = x[vc + row];
            let a3 = x[vd + row];
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
        }
    }

    let m_base = pos * cout * nt;
    let acc0 = array<vec4<f32>, 4>(s00, s01, s02, s03);
    let acc1 = array<vec4<f32>, 4>(s10, s11, s12, s13);
    let acc2 = array<vec4<f32>, 4>(s20, s21, s22, s23);
    let acc3 = array<vec4<f32>, 4>(s30, s31, s32, s33);
    for (var j = 0u; j < 16u; j++) {
        let co = co0 + j;
        if co < cout {
            let row = m_base + co * nt + t0 + slot;
            if t0 + slot + 0u < nt {
                y[row + 0u] = acc0[j / 4u][j % 4u];
            }
            if t0 + slot + 16u < nt {
                y[row + 16u] = acc1[j / 4u][j % 4u];
            }
            if t0 + slot + 32u < nt {
                y[row + 32u] = acc2[j / 4u][j % 4u];
            }
            if t0 + slot + 48u < nt {
                y[row + 48u] = acc3[j / 4u][j % 4u];
            }
        }
    }
}
