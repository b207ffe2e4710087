//! The prepare-time half of Winograd F(4x4, 3x3) (the run is in `fast/winograd.rs`): the
//! filter transform `U = G g G^T`, done once per plan in f64 for base and deltas alike (the
//! transform is linear, so mixing for a level stays `U0 + sum_p c_p U_p`), and the packing of
//! the transformed filters for the micro-kernel.

use super::{round_up, Block, LANES};

/// Output tile side and input patch side.
pub(crate) const M: usize = 4;
pub(crate) const A: usize = 6;
/// Transform-domain positions.
pub(crate) const P: usize = A * A;

/// `U = G g G^T` (the plan's, shared with the GPU).
pub(crate) use crate::plan::winograd_filter as transform_filter;

/// Packs the transformed weights of one mixed array (`cout * cin * 9` values, PyTorch order)
/// as `[p][block][ci][nv * LANES]` (zero in padded lanes).
pub(crate) fn pack_filters(w: &[f32], cin: usize, cout: usize, blocks: &[Block]) -> Vec<f32> {
    let stride = cin * round_up(cout, LANES);
    let mut out = vec![0.0f32; P * stride];
    for co in 0..cout {
        let b = blocks
            .iter()
            .find(|b| co < (b.v0 + b.nv) * LANES)
            .expect("blocks cover cout");
        let (width, lane) = (b.nv * LANES, co - b.v0 * LANES);
        for ci in 0..cin {
            let u = transform_filter(&w[(co * cin + ci) * 9..][..9]);
            for (p, &v) in u.iter().enumerate() {
                out[p * stride + b.off + ci * width + lane] = v as f32;
            }
        }
    }
    out
}
