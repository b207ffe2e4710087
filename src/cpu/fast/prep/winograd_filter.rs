//! The prepare-time half of Winograd F(4x4, 3x3) and F(6x6, 3x3) (the run is in
//! `fast/winograd.rs`): the filter transform `U = G g G^T`, done once per plan in f64 for base
//! and deltas alike (the transform is linear, so mixing for a level stays
//! `U0 + sum_p c_p U_p`), and the packing of the transformed filters for the micro-kernel.

use super::{round_up, Block, LANES};

/// The output tile of a Winograd conv: F(4x4, 3x3) (36 products per 16 outputs) or
/// F(6x6, 3x3) (64 per 36: a fifth fewer multiply-adds, filters 64/36 as large, and about
/// ten times the rounding error of F(4x4), still far below 8-bit steps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tiling {
    F4,
    F6,
}

impl Tiling {
    /// Output tile side.
    pub(crate) const fn m(self) -> usize {
        match self {
            Tiling::F4 => 4,
            Tiling::F6 => 6,
        }
    }
    /// Input patch side.
    pub(crate) const fn a(self) -> usize {
        self.m() + 2
    }
    /// Transform-domain positions.
    pub(crate) const fn p(self) -> usize {
        self.a() * self.a()
    }
    /// `U = G g G^T` of one row-major 3x3 filter, row-major `a x a`.
    fn transform(self, g: &[f32]) -> Vec<f64> {
        match self {
            Tiling::F4 => crate::plan::winograd_filter(g).to_vec(),
            Tiling::F6 => transform_f6(g),
        }
    }
}

/// `G` of F(6, 3) (interpolation points 0, +-1, +-2, +-1/2, infinity; the `B^T` and `A^T`
/// that go with it are in `fast/winograd.rs`).
const G6: [[f64; 3]; 8] = [
    [1.0, 0.0, 0.0],
    [-2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0],
    [-2.0 / 9.0, 2.0 / 9.0, -2.0 / 9.0],
    [1.0 / 90.0, 1.0 / 45.0, 2.0 / 45.0],
    [1.0 / 90.0, -1.0 / 45.0, 2.0 / 45.0],
    [32.0 / 45.0, 16.0 / 45.0, 8.0 / 45.0],
    [32.0 / 45.0, -16.0 / 45.0, 8.0 / 45.0],
    [0.0, 0.0, 1.0],
];

fn transform_f6(g: &[f32]) -> Vec<f64> {
    const N: usize = 8;
    let mut t = [[0.0f64; 3]; N];
    for (ti, gi) in t.iter_mut().zip(&G6) {
        for (c, v) in ti.iter_mut().enumerate() {
            *v = (0..3).map(|r| gi[r] * g[r * 3 + c] as f64).sum();
        }
    }
    let mut u = vec![0.0f64; N * N];
    for i in 0..N {
        for j in 0..N {
            u[i * N + j] = (0..3).map(|c| t[i][c] * G6[j][c]).sum();
        }
    }
    u
}

/// Packs the transformed weights of one mixed array (`cout * cin * 9` values, PyTorch order)
/// as `[p][block][ci][nv * LANES]` (zero in padded lanes).
pub(crate) fn pack_filters(
    w: &[f32],
    cin: usize,
    cout: usize,
    blocks: &[Block],
    tiling: Tiling,
) -> Vec<f32> {
    let stride = cin * round_up(cout, LANES);
    let mut out = vec![0.0f32; tiling.p() * stride];
    for co in 0..cout {
        let b = blocks
            .iter()
            .find(|b| co < (b.v0 + b.nv) * LANES)
            .expect("blocks cover cout");
        let (width, lane) = (b.nv * LANES, co - b.v0 * LANES);
        for ci in 0..cin {
            let u = tiling.transform(&w[(co * cin + ci) * 9..][..9]);
            for (p, &v) in u.iter().enumerate() {
                out[p * stride + b.off + ci * width + lane] = v as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `A^T [U . (B^T d B)] A` of F(6, 3) in f64 equals the direct 3x3 correlation: checks `G6`
    /// against the `B^T` / `A^T` written out here in full (the run's are factored).
    #[test]
    fn f6_transform_reproduces_the_correlation() {
        const BT: [[f64; 8]; 8] = [
            [1.0, 0.0, -5.25, 0.0, 5.25, 0.0, -1.0, 0.0],
            [0.0, 1.0, 1.0, -4.25, -4.25, 1.0, 1.0, 0.0],
            [0.0, -1.0, 1.0, 4.25, -4.25, -1.0, 1.0, 0.0],
            [0.0, 0.5, 0.25, -2.5, -1.25, 2.0, 1.0, 0.0],
            [0.0, -0.5, 0.25, 2.5, -1.25, -2.0, 1.0, 0.0],
            [0.0, 2.0, 4.0, -2.5, -5.0, 0.5, 1.0, 0.0],
            [0.0, -2.0, 4.0, 2.5, -5.0, -0.5, 1.0, 0.0],
            [0.0, -1.0, 0.0, 5.25, 0.0, -5.25, 0.0, 1.0],
        ];
        const AT: [[f64; 8]; 6] = [
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
            [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 0.0],
            [0.0, 1.0, 1.0, 4.0, 4.0, 0.25, 0.25, 0.0],
            [0.0, 1.0, -1.0, 8.0, -8.0, 0.125, -0.125, 0.0],
            [0.0, 1.0, 1.0, 16.0, 16.0, 0.0625, 0.0625, 0.0],
            [0.0, 1.0, -1.0, 32.0, -32.0, 0.03125, -0.03125, 1.0],
        ];
        let g: Vec<f32> = (0..9).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
        let d: Vec<f64> = (0..64)
            .map(|i| ((i * 13 % 17) as f64 - 8.0) / 5.0)
            .collect();
        let u = transform_f6(&g);
        // B^T d B
        let mut v = [[0.0f64; 8]; 8];
        for i in 0..8 {
            for j in 0..8 {
                v[i][j] = (0..8)
                    .flat_map(|r| (0..8).map(move |c| (r, c)))
                    .map(|(r, c)| BT[i][r] * d[r * 8 + c] * BT[j][c])
                    .sum();
            }
        }
        for y in 0..6 {
            for x in 0..6 {
                let wino: f64 = (0..8)
                    .flat_map(|i| (0..8).map(move |j| (i, j)))
                    .map(|(i, j)| AT[y][i] * u[i * 8 + j] * v[i][j] * AT[x][j])
                    .sum();
                let direct: f64 = (0..9)
                    .map(|t| g[t] as f64 * d[(y + t / 3) * 8 + x + t % 3])
                    .sum();
                assert!(
                    (wino - direct).abs() < 1e-9,
                    "({y}, {x}): {wino} vs {direct}"
                );
            }
        }
    }
}
