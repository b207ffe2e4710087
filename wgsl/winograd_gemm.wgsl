// Winograd F(4x4, 3x3), step 2 of 3: 36 GEMMs, one per transform-domain position,
//   M[pos][co][tile] = sum_ci U[pos][ci][co] V[pos][ci][tile],
// with the level mix U = U(W0) + sum_p c_p U(D_p) fused into the staging of U (the filter
// transform is linear, so the transformed basis is stored once, at upload).
//
// One workgroup (64 invocations) computes one position x 64 tiles x CO_T (16, 32 or 48)
// output channels; invocation lid keeps tile t0 + lid x CO_T channels in registers. The whole
// workgroup shares its position and channels, so every read of U from workgroup memory has an
// address that is a constant: the unrolled steps (`gemm_steps`, generated for this variant's
// input channels by src/gpu/kernels.rs) are straight-line code, each `gemm_step(cl, ci)` with
// literal arguments. Why: on a software adapter (Mesa's lavapipe) a load whose address is not
// provably uniform is a loop over the SIMD lanes with a branch per lane, while a constant
// address outside any loop or branch is one scalar load and a broadcast. Per input channel an
// invocation then does one per-lane load (V) for CO_T FMAs; the previous kernel (4 positions x
// 8 tiles x 16 channels per invocation, U read in a loop) did 24 per-lane loads per 128 FMAs.
// Workgroup memory holds U for CI_S input channels x CO_T (mixed on the way in, by a loop: the
// staging loads are per-lane either way).
//
// U on the GPU is laid out [PW + 1][36][cin][cout16] (zero padding channels). The grid is
// 1-D over blocks of 64 tiles (pitch dispatch.row_pitch) x (36 * cout16 / CO_T),
// z = position * groups + g. Uniform: ConvUniform (wgsl/conv_weights.wgsl); x is V, y is M.

const CO4: u32 = CO_T / 4u;

@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> wt: array<vec4<f32>>;

var<workgroup> ws: array<vec4<f32>, CI_S * CO4>;

// Per invocation: its accumulators (only the first CO4 are used), its tile's first V index,
// the tile count, and what staging needs.
var<private> a0: vec4<f32>;
var<private> a1: vec4<f32>;
var<private> a2: vec4<f32>;
var<private> a3: vec4<f32>;
var<private> a4: vec4<f32>;
var<private> a5: vec4<f32>;
var<private> a6: vec4<f32>;
var<private> a7: vec4<f32>;
var<private> a8: vec4<f32>;
var<private> a9: vec4<f32>;
var<private> a10: vec4<f32>;
var<private> a11: vec4<f32>;
var<private> v_at: u32;
var<private> n_tiles: u32;
var<private> lid_p: u32;
var<private> u_row0: u32;
var<private> n_w: u32;
var<private> cf: vec4<f32>;

// U of input channels ci0 .. ci0 + nc into ws[cl * CO4 + q], mixed.
fn stage_u(ci0: u32, nc: u32) {
    let row = prm.dims.cout16 / 4u;
    for (var e = lid_p; e < nc * CO4; e += 64u) {
        let cl = e / CO4;
        ws[e] = mixed_weight4(u_row0 + (ci0 + cl) * row + e % CO4, n_w, cf);
    }
}

// One input channel: ws row cl (a literal at every call), V row ci.
fn gemm_step(cl: u32, ci: u32) {
    let v = x[v_at + ci * n_tiles];
    let b = cl * CO4;
    a0 += v * ws[b];
    a1 += v * ws[b + 1u];
    a2 += v * ws[b + 2u];
    a3 += v * ws[b + 3u];
    if CO4 > 4u {
        a4 += v * ws[b + 4u];
        a5 += v * ws[b + 5u];
        a6 += v * ws[b + 6u];
        a7 += v * ws[b + 7u];
    }
    if CO4 > 8u {
        a8 += v * ws[b + 8u];
        a9 += v * ws[b + 9u];
        a10 += v * ws[b + 10u];
        a11 += v * ws[b + 11u];
    }
}

// Channels j0 .. j0 + 3 of this invocation's tile into M.
fn store4(a: vec4<f32>, j0: u32, row0: u32, co0: u32, t: u32) {
    for (var q = 0u; q < 4u; q++) {
        let co = co0 + j0 + q;
        if co < prm.dims.cout && t < n_tiles {
            y[row0 + co * n_tiles + t] = a[q];
        }
    }
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let cin = prm.dims.cin;
    let nt = ((prm.dims.ow + 3u) / 4u) * ((prm.dims.oh + 3u) / 4u);
    let groups = prm.dims.cout16 / CO_T;
    let z = wid.z + prm.dispatch.group_offset.z;
    let pos = z / groups;
    let co0 = (z % groups) * CO_T;
    let t = linear_group(wid, prm.dispatch) * 64u + lid;
    n_tiles = nt;
    lid_p = lid;
    cf = mix_coefs(prm.mix);
    n_w = 36u * cin * prm.dims.cout16 / 4u; // vec4s per mixed part
    u_row0 = pos * cin * (prm.dims.cout16 / 4u) + co0 / 4u;
    // Tiles past nt read the last tile and are not stored.
    v_at = pos * cin * nt + min(t, nt - 1u);

    gemm_steps();

    let row0 = pos * prm.dims.cout * nt;
    store4(a0, 0u, row0, co0, t);
    store4(a1, 4u, row0, co0, t);
    store4(a2, 8u, row0, co0, t);
    store4(a3, 12u, row0, co0, t);
    if CO4 > 4u {
        store4(a4, 16u, row0, co0, t);
        store4(a5, 20u, row0, co0, t);
        store4(a6, 24u, row0, co0, t);
        store4(a7, 28u, row0, co0, t);
    }
    if CO4 > 8u {
        store4(a8, 32u, row0, co0, t);
        store4(a9, 36u, row0, co0, t);
        store4(a10, 40u, row0, co0, t);
        store4(a11, 44u, row0, co0, t);
    }
}
