//! The Winograd F(4x4, 3x3) filter transform `U = G g G^T`, shared by the fast CPU executor
//! (`cpu/fast/prep/winograd_filter.rs`) and the GPU (`gpu/ops/winograd.rs`): both transform
//! base and deltas once, in f64 (the transform is linear, so mixing for a level stays
//! `U0 + sum_p c_p U_p`). It lives here because neither executor may import the other.

/// Input patch side and transform-domain positions of F(4x4, 3x3).
pub const WINOGRAD_PATCH: usize = 6;
pub const WINOGRAD_POSITIONS: usize = WINOGRAD_PATCH * WINOGRAD_PATCH;

/// `G` of F(4, 3).
pub const WINOGRAD_G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// `U = G g G^T` of one row-major 3x3 filter, row-major 6x6 (pos = row * 6 + column).
pub fn winograd_filter(g: &[f32]) -> [f64; WINOGRAD_POSITIONS] {
    const N: usize = WINOGRAD_PATCH;
    let g_ = &WINOGRAD_G;
    let mut t = [[0.0f64; 3]; N];
    for (ti, gi) in t.iter_mut().zip(g_) {
        for (c, v) in ti.iter_mut().enumerate() {
            *v = (0..3).map(|r| gi[r] * g[r * 3 + c] as f64).sum();
        }
    }
    let mut u = [0.0f64; WINOGRAD_POSITIONS];
    for i in 0..N {
        for j in 0..N {
            u[i * N + j] = (0..3).map(|c| t[i][c] * g_[j][c]).sum();
        }
    }
    u
}
