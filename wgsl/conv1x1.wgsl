// 1x1 conv, stride 1: a GEMM over flattened pixels (out[co, p] = sum_ci W[ci, co] x[ci, p]),
// with the fused weight mix and epilogue. One workgroup: 128 pixels x CO_T = 16 output
// channels; each of the 64 invocations keeps 2 pixels x 16 channels in registers.
// Staged per step: CI_T = 16 input channels x 128 pixels and the 16 x 16 weight block.
//
// Uniform: ConvUniform (wgsl/conv_weights.wgsl); the grid is 1-D over pixel blocks (pitch
// dispatch.row_pitch) x cout/16.

const TP: u32 = 128u;
const CO_T: u32 = 16u;

@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> wt: array<vec4<f32>>;

var<workgroup> xs: array<f32, CI_T * TP>;
var<workgroup> ws: array<vec4<f32>, CI_T * 4u>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tcin = prm.dims.tensor_cin;
    let plane = prm.dims.ih * prm.dims.iw;
    let cin = prm.dims.cin;
    let cout = prm.dims.cout;
    let cout16 = prm.dims.cout16;
    let p0 = linear_group(wid, prm.dispatch) * TP;
    let co0 = (wid.z + prm.dispatch.group_offset.z) * CO_T;
    let cf = mix_coefs(prm.mix);
    let noise = noise_value();
    let n_w = cin * cout16 / 4u;

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
        for (var e = lid; e < nc * TP; e += 64u) {
            let ci = ci0 + e / TP;
            let p = p0 + e % TP;
            var v = 0.0;
            if p < plane {
                v = input_or_noise(ci, tcin, ci * plane + p, noise);
            }
            xs[e] = v;
        }
        for (var e = lid; e < nc * 4u; e += 64u) {
            let g = (ci0 + e / 4u) * (cout16 / 4u) + co0 / 4u + e % 4u;
            ws[e] = mixed_weight4(g, n_w, cf);
        }
        workgroupBarrier();
        for (var cl = 0u; cl < nc; cl++) {
            let a0 = xs[cl * TP + lid];
            let a1 = xs[cl * TP + lid + 64u];
            let w0 = ws[cl * 4u];
            let w1 = ws[cl * 4u + 1u];
            let w2 = ws[cl * 4u + 2u];
            let w3 = ws[cl * 4u + 3u];
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


    let acc0 = array<vec4<f32>, 4>(s00, s01, s02, s03);
    let acc1 = array<vec4<f32>, 4>(s10, s11, s12, s13);
    let pa = p0 + lid;
    let pb = pa + 64u;
    for (var j = 0u; j < 16u; j++) {
        let co = co0 + j;
        if co < cout {
            let e = ep_vals(prm.ep, co, cout, cf);
            if pa < plane {
                store(acc0[j / 4u][j % 4u], e, co * plane + pa);
            }
            if pb < plane {
                store(acc1[j / 4u][j % 4u], e, co * plane + pb);
            }
        }
    }
}
