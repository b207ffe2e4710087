// Winograd F(4x4, 3x3), step 1 of 3: the input transform V = B^T d B of every 6x6 input patch
// d (stride 4, zero padding 1; the virtual noise channel is `noise` inside the image and 0 in
// the padding, as in the direct conv), written as V[pos][ci][tile] for the GEMM
// (wgsl/winograd_gemm.wgsl), whose 64 invocations read 64 consecutive tiles of one (pos, ci).
//
// One invocation: one (tile, input channel). The grid is 1-D over blocks of 64 tiles (pitch
// dispatch.row_pitch) x cin. Uniform: ConvUniform (wgsl/conv_weights.wgsl); x is the input
// tensor, y is V.

@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> wt: array<vec4<f32>>;

// B^T of F(4, 3) applied to 6 values.
fn bt6(d: array<f32, 6>) -> array<f32, 6> {
    let a = d[4] - 4.0 * d[2];
    let b = d[3] - 4.0 * d[1];
    let c = d[4] - d[2];
    let e = 2.0 * (d[3] - d[1]);
    return array<f32, 6>(
        4.0 * d[0] - 5.0 * d[2] + d[4],
        a + b,
        a - b,
        c + e,
        c - e,
        4.0 * d[1] - 5.0 * d[3] + d[5],
    );
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tcin = prm.dims.tensor_cin;
    let ih = prm.dims.ih;
    let iw = prm.dims.iw;
    let cin = prm.dims.cin;
    let tiles_w = (prm.dims.ow + 3u) / 4u;
    let nt = tiles_w * ((prm.dims.oh + 3u) / 4u);
    let t = linear_group(wid, prm.dispatch) * 64u + lid;
    let ci = wid.z + prm.dispatch.group_offset.z;
    if t >= nt {
        return;
    }
    let noise = noise_value();
    let y0 = i32((t / tiles_w) * 4u) - 1;
    let x0 = i32((t % tiles_w) * 4u) - 1;
    // Columns first: u[r][j] = (B^T d)[r][j].
    var u: array<array<f32, 6>, 6>;
    for (var j = 0; j < 6; j++) {
        var col: array<f32, 6>;
        let gx = x0 + j;
        for (var r = 0; r < 6; r++) {
            let gy = y0 + r;
            var v = 0.0;
            if gy >= 0 && gx >= 0 && gy < i32(ih) && gx < i32(iw) {
                v = input_or_noise(ci, tcin, (ci * ih + u32(gy)) * iw + u32(gx), noise);
            }
            col[r] = v;
        }
        let b = bt6(col);
        for (var r = 0; r < 6; r++) {
            u[r][j] = b[r];
        }
    }
    // Then rows: V[r][.] = B^T u[r][.], stored at pos r * 6 + c.
    let pos_stride = cin * nt;
    for (var r = 0u; r < 6u; r++) {
        let v = bt6(u[r]);
        for (var c = 0u; c < 6u; c++) {
            y[(r * 6u + c) * pos_stride + ci * nt + t] = v[c];
        }
    }
}
