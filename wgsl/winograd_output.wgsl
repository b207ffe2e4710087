// Winograd F(4x4, 3x3), step 3 of 3: the output transform Y = A^T M A of every tile's 6x6
// block of M (M[pos][co][tile], from wgsl/winograd_gemm.wgsl), then the fused epilogue
// (wgsl/epilogue.wgsl: bias, scale/shift, activation, combine), stored once per pixel.
//
// One invocation: one (tile, output channel). The grid is 1-D over blocks of 64 tiles (pitch
// dispatch.row_pitch) x cout. Uniform: ConvUniform (wgsl/conv_weights.wgsl); x is M.

@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> wt: array<vec4<f32>>;

// A^T of F(4, 3) applied to 6 values.
fn at6(m: array<f32, 6>) -> array<f32, 4> {
    let a = m[1] + m[2];
    let b = m[1] - m[2];
    let c = m[3] + m[4];
    let d = m[3] - m[4];
    return array<f32, 4>(m[0] + a + c, b + 2.0 * d, a + 4.0 * c, b + 8.0 * d + m[5]);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let cout = prm.dims.cout;
    let oh = prm.dims.oh;
    let ow = prm.dims.ow;
    let tiles_w = (ow + 3u) / 4u;
    let nt = tiles_w * ((oh + 3u) / 4u);
    let t = linear_group(wid, prm.dispatch) * 64u + lid;
    let co = wid.z + prm.dispatch.group_offset.z;
    if t >= nt {
        return;
    }
    let cf = mix_coefs(prm.mix);
    let pos_stride = cout * nt;
    let base = co * nt + t;
    // Rows first: u[r][.] = A^T M[r][.].
    var u: array<array<f32, 4>, 6>;
    for (var r = 0u; r < 6u; r++) {
        var row: array<f32, 6>;
        for (var c = 0u; c < 6u; c++) {
            row[c] = x[(r * 6u + c) * pos_stride + base];
        }
        u[r] = at6(row);
    }
    let e = ep_vals(prm.ep, co, cout, cf);
    let oy0 = (t / tiles_w) * 4u;
    let ox0 = (t % tiles_w) * 4u;
    let plane = oh * ow;
    // Then columns: Y[.][j] = A^T u[.][j].
    for (var j = 0u; j < 4u; j++) {
        let ox = ox0 + j;
        let col = at6(array<f32, 6>(u[0][j], u[1][j], u[2][j], u[3][j], u[4][j], u[5][j]));
        for (var i = 0u; i < 4u; i++) {
            let oy = oy0 + i;
            if ox < ow && oy < oh {
                store(col[i], e, co * plane + oy * ow + ox);
            }
        }
    }
}
