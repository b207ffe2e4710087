//! Winograd F(4x4, 3x3) for stride-1 3x3 convs (Lavin & Gray 2016:
//! `Y = A^T [(G g G^T) . (B^T d B)] A`): 36 products per 4x4 output tile and (cin, cout) pair
//! instead of 144, in three kernels over two scratch buffers:
//!
//! 1. wgsl/winograd_input.wgsl: `V[pos][ci][tile] = (B^T d B)` of each 6x6 input patch (zero
//!    padding 1 and the virtual noise channel handled as the direct conv does);
//! 2. wgsl/winograd_gemm.wgsl: `M[pos][co][tile] = sum_ci U[pos][ci][co] V[pos][ci][tile]`,
//!    with the level mix fused into the staging of U: the filter transform is linear, so
//!    `U(W0 + sum c_p D_p) = U(W0) + sum c_p U(D_p)`, and the transformed basis is computed once
//!    here at upload (in f64). The knob stays one uniform write;
//! 3. wgsl/winograd_output.wgsl: `A^T M A` per tile and the fused epilogue.
//!
//! The uniform is the direct conv's `ConvUniform` (the tile counts follow from `oh`, `ow`).
//!
//! **When it runs** (the rule, also in docs/ARCHITECTURE.md): a conv with k = 3 and stride 1
//! whose weights have at least [`MIN_CHANNELS`] input and output channels (fewer channels and
//! the transforms cost more than the GEMM saves) and at most [`MAX_CHANNELS_IN`] input channels
//! (the GEMM is unrolled over them), and whose scratch buffers `V` and `M`
//! (36 x channels x tiles floats each, about 2.25x the input and output tensors) fit in one
//! storage binding (as must U, 4x the direct conv's weights); otherwise the direct conv (wgsl/conv2d.wgsl), which stays the path of every
//! other shape and the oracle the tests compare with. `TUNABLE_GPU_WINOGRAD=0` forces the
//! direct conv everywhere, `=1` forces Winograd on every stride-1 3x3 conv whatever its channels.

use std::cell::Cell;

use super::conv::ConvUniform;
use super::{mix, u32_of, upload_floats, Bindings, Launch, LevelMix, NodeIo, Uniform, STORAGE};
use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::kernels::{grid_1d, winograd_gemm_co_tile, EpFlags, Kernel};
use crate::plan::{winograd_filter, Conv2d, Shape};

/// Output tile side, input patch side and transform-domain positions of F(4x4, 3x3).
const TILE: usize = 4;
const PATCH: usize = 6;
const POS: usize = PATCH * PATCH;

/// Fewest input and output channels for which the rule picks Winograd.
pub const MIN_CHANNELS: usize = 8;

/// Most input channels Winograd takes: the GEMM is unrolled over them (one step per channel).
pub const MAX_CHANNELS_IN: usize = 512;

/// Which conv path stride-1 3x3 convs take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WinogradMode {
    /// The rule in the module docs.
    Auto,
    /// Always the direct conv.
    Never,
    /// Winograd for every stride-1 3x3 conv (whatever its channels).
    Always,
}

thread_local! {
    static FORCED: Cell<Option<WinogradMode>> = const { Cell::new(None) };
}

/// Runs `f` with plans uploaded on this thread taking `mode` (tests and benches compare the
/// two paths this way; a thread-local so that tests running in parallel do not see it).
pub fn with_mode<R>(mode: WinogradMode, f: impl FnOnce() -> R) -> R {
    let before = FORCED.with(|c| c.replace(Some(mode)));
    let r = f();
    FORCED.with(|c| c.set(before));
    r
}

/// The mode of this thread: [`with_mode`]'s, else `TUNABLE_GPU_WINOGRAD` (`0` never, `1`
/// always, anything else or unset the rule).
pub fn mode() -> WinogradMode {
    if let Some(m) = FORCED.with(|c| c.get()) {
        return m;
    }
    match std::env::var("TUNABLE_GPU_WINOGRAD")
        .as_deref()
        .map(str::trim)
    {
        Ok("0") => WinogradMode::Never,
        Ok("1") => WinogradMode::Always,
        _ => WinogradMode::Auto,
    }
}

/// Whether the rule (and the mode) sends conv `c` to Winograd, sizes permitting.
pub fn picks(c: &Conv2d, mode: WinogradMode) -> bool {
    c.k == 3
        && c.stride == 1
        && c.cin <= MAX_CHANNELS_IN
        && match mode {
            WinogradMode::Auto => c.cin >= MIN_CHANNELS && c.cout >= MIN_CHANNELS,
            WinogradMode::Never => false,
            WinogradMode::Always => true,
        }
}

/// 4x4 output tiles of an `oh` x `ow` output.
fn tiles(o: Shape) -> usize {
    o.h.div_ceil(TILE) * o.w.div_ceil(TILE)
}

/// Bytes of the scratch buffers V and M for a conv of `cin` -> `cout` channels writing `o`.
pub fn scratch_bytes(cin: usize, cout: usize, o: Shape) -> [u64; 2] {
    let t = (POS * tiles(o)) as u64 * 4;
    [t * cin as u64, t * cout as u64]
}

/// Bytes of the transformed weights (4x those of the direct conv: 36 values per 9); over one
/// binding, the conv stays direct.
pub fn weight_bytes(c: &Conv2d, cout16: usize) -> u64 {
    ((c.mix.deltas() + 1) * POS * c.cin * cout16) as u64 * 4
}

/// The transformed weights of every part (W0, then the deltas), laid out
/// `[P+1][36][cin][cout16]` (zero padding channels) for the GEMM's vec4 staging.
fn transformed_layout(c: &Conv2d, cout16: usize) -> Vec<f32> {
    let part = POS * c.cin * cout16;
    let n = c.weight_len();
    let mut u = vec![0.0f32; (c.mix.deltas() + 1) * part];
    for (src, dst) in c.weight.chunks_exact(n).zip(u.chunks_exact_mut(part)) {
        for co in 0..c.cout {
            for ci in 0..c.cin {
                let t = winograd_filter(&src[(co * c.cin + ci) * 9..][..9]);
                for (pos, &v) in t.iter().enumerate() {
                    dst[(pos * c.cin + ci) * cout16 + co] = v as f32;
                }
            }
        }
    }
    u
}

/// The Winograd side of a conv: its two level-dependent kernels and the transformed weights.
pub(crate) struct WinogradOp {
    gemm: Kernel,
    output: Kernel,
    /// Unfused baseline: the mix pass over U and the buffer it writes U(level) into.
    unfused: Option<(Kernel, wgpu::Buffer)>,
    u: wgpu::Buffer,
    mix: LevelMix,
    /// Floats per part of U.
    part_len: u32,
}

impl WinogradOp {
    pub(crate) fn upload(
        ctx: &GpuContext,
        name: &str,
        c: &Conv2d,
        cout16: usize,
        ep: EpFlags,
    ) -> Result<WinogradOp> {
        let deltas = c.mix.deltas();
        let u = transformed_layout(c, cout16);
        let part = u.len() / (deltas + 1);
        let unfused = c.unfused_mix && deltas > 0;
        let gemm = Kernel::WinogradGemm {
            pw: if unfused { 0 } else { deltas as u8 },
            cin: c.cin as u16, // at most MAX_CHANNELS_IN (`picks`)
            co_t: winograd_gemm_co_tile(cout16 as u32) as u8,
        };
        let output = Kernel::WinogradOutput {
            pe: deltas as u8,
            ep,
        };
        for k in [Kernel::WinogradInput, gemm, output] {
            ctx.pipeline(k)?;
        }
        let unfused = if unfused {
            let mk = Kernel::MixWeights { p: deltas as u8 };
            ctx.pipeline(mk)?;
            let mixed = ctx.create_buffer(&format!("{name}.mixed_u"), part as u64 * 4, STORAGE)?;
            Some((mk, mixed))
        } else {
            None
        };
        Ok(WinogradOp {
            gemm,
            output,
            unfused,
            u: upload_floats(ctx, name, "winograd weight", &u)?,
            mix: LevelMix::of(&c.mix),
            part_len: u32_of(part, "weights")?,
        })
    }

    /// The launches on `io` with the uniform `u` (shapes filled in), if `io` brought scratch
    /// buffers large enough (`scratch_bytes`); `false` leaves the conv to the direct path.
    pub(crate) fn launches(
        &self,
        io: &NodeIo,
        u: ConvUniform,
        ep: &wgpu::Buffer,
        max: u32,
        out: &mut Vec<Launch>,
    ) -> bool {
        let need = scratch_bytes(u.dims.cin as usize, u.dims.cout as usize, io.output);
        let [v, m] = match io.scratch.as_slice() {
            [v, m, ..] if v.size() >= need[0] && m.size() >= need[1] => [v.clone(), m.clone()],
            _ => return false,
        };
        let weights = match &self.unfused {
            Some((mk, mixed)) => {
                out.push(mix::launch(
                    *mk,
                    self.mix,
                    self.part_len,
                    self.u.clone(),
                    mixed.clone(),
                    max,
                ));
                mixed.clone()
            }
            None => self.u.clone(),
        };
        let blocks = |n: usize, per: usize| {
            let (g, pitch) = grid_1d((n.div_ceil(per)) as u32, max);
            let mut u = u;
            u.dispatch.row_pitch = pitch;
            (g, u)
        };
        let t = tiles(io.output);
        let (g, ui) = blocks(t, 64);
        out.push(Launch {
            kernel: Kernel::WinogradInput,
            uniform: Uniform::new(ui),
            grid: [g[0], g[1], u.dims.cin],
            bind: Bindings {
                x: Some(io.x.clone()),
                y: Some(v.clone()),
                ..Default::default()
            },
        });
        // One position x 64 tiles x co_t output channels per workgroup.
        let co_t = match self.gemm {
            Kernel::WinogradGemm { co_t, .. } => co_t as u32,
            _ => unreachable!("the GEMM kernel"),
        };
        let (g, ug) = blocks(t, 64);
        out.push(Launch {
            kernel: self.gemm,
            uniform: Uniform::new(ug),
            grid: [g[0], g[1], POS as u32 * (u.dims.cout16 / co_t)],
            bind: Bindings {
                x: Some(v),
                wt: Some(weights),
                y: Some(m.clone()),
                ..Default::default()
            },
        });
        let (g, uo) = blocks(t, 64);
        out.push(Launch {
            kernel: self.output,
            uniform: Uniform::new(uo),
            grid: [g[0], g[1], u.dims.cout],
            bind: Bindings {
                x: Some(m),
                ep: Some(ep.clone()),
                o1: io.other(0),
                o2: io.other(1),
                y: Some(io.y.clone()),
                ..Default::default()
            },
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::WINOGRAD_G as G;

    /// The filter transform against a 1-D check: F(4, 3) on a row of 6 inputs gives the 4
    /// outputs of the 3-tap correlation (A^T [(G g) . (B^T d)]).
    #[test]
    fn f43_transforms_compute_a_correlation() {
        let g = [0.3f64, -1.2, 0.7];
        let d = [1.0f64, -2.0, 0.5, 3.0, -0.25, 1.5];
        let gg: Vec<f64> = G
            .iter()
            .map(|r| r[0] * g[0] + r[1] * g[1] + r[2] * g[2])
            .collect();
        let bt = [
            4.0 * d[0] - 5.0 * d[2] + d[4],
            -4.0 * d[1] - 4.0 * d[2] + d[3] + d[4],
            4.0 * d[1] - 4.0 * d[2] - d[3] + d[4],
            -2.0 * d[1] - d[2] + 2.0 * d[3] + d[4],
            2.0 * d[1] - d[2] - 2.0 * d[3] + d[4],
            4.0 * d[1] - 5.0 * d[3] + d[5],
        ];
        let m: Vec<f64> = gg.iter().zip(&bt).map(|(a, b)| a * b).collect();
        let y = [
            m[0] + m[1] + m[2] + m[3] + m[4],
            m[1] - m[2] + 2.0 * (m[3] - m[4]),
            m[1] + m[2] + 4.0 * (m[3] + m[4]),
            m[1] - m[2] + 8.0 * (m[3] - m[4]) + m[5],
        ];
        for (i, yi) in y.iter().enumerate() {
            let want: f64 = (0..3).map(|k| g[k] * d[i + k]).sum();
            assert!((yi - want).abs() < 1e-12, "output {i}: {yi} vs {want}");
        }
        // And the 2-D filter transform is the outer product of the 1-D one.
        let g2: Vec<f32> = (0..9).map(|i| (i as f32 * 0.37).sin()).collect();
        let u = winograd_filter(&g2);
        let col = |c: usize| -> Vec<f64> {
            G.iter()
                .map(|r| (0..3).map(|k| r[k] * g2[k * 3 + c] as f64).sum())
                .collect()
        };
        for i in 0..6 {
            let row: Vec<f64> = (0..3).map(|c| col(c)[i]).collect();
            for j in 0..6 {
                let want: f64 = (0..3).map(|c| G[j][c] * row[c]).sum();
                assert!((u[i * 6 + j] - want).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn modes_pick_only_stride_1_3x3() {
        let conv = |cin, cout, k, stride| Conv2d {
            cin,
            cout,
            k,
            stride,
            mix: Default::default(),
            weight: vec![],
            epilogue: crate::plan::Epilogue {
                bias: vec![],
                scale_shift: None,
                act: crate::plan::Activation::None,
                combine: None,
            },
            noise_channel: None,
            unfused_mix: false,
        };
        assert!(picks(&conv(48, 48, 3, 1), WinogradMode::Auto));
        assert!(!picks(&conv(3, 48, 3, 1), WinogradMode::Auto));
        assert!(picks(&conv(3, 1, 3, 1), WinogradMode::Always));
        assert!(!picks(&conv(48, 48, 3, 2), WinogradMode::Always));
        assert!(!picks(&conv(48, 48, 5, 1), WinogradMode::Always));
        assert!(!picks(&conv(48, 48, 3, 1), WinogradMode::Never));
        assert!(picks(
            &conv(MAX_CHANNELS_IN, 48, 3, 1),
            WinogradMode::Always
        ));
        assert!(!picks(
            &conv(MAX_CHANNELS_IN + 1, 48, 3, 1),
            WinogradMode::Always
        ));
    }
}
