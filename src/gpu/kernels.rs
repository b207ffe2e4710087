//! Kernel variants: which WGSL file and which constants are prepended.
//! A variant is a pipeline-cache key; shapes never are (they live in each op's uniform,
//! `super::ops`).

const COMMON: &str = include_str!("../../wgsl/common.wgsl");
const EPILOGUE: &str = include_str!("../../wgsl/epilogue.wgsl");
const CONV2D: &str = include_str!("../../wgsl/conv2d.wgsl");
const CONV1X1: &str = include_str!("../../wgsl/conv1x1.wgsl");
const CONV_WEIGHTS: &str = include_str!("../../wgsl/conv_weights.wgsl");
const DEPTHWISE: &str = include_str!("../../wgsl/depthwise.wgsl");
const ELTWISE: &str = include_str!("../../wgsl/eltwise.wgsl");
const SHUFFLE: &str = include_str!("../../wgsl/shuffle.wgsl");
const MIX: &str = include_str!("../../wgsl/mix.wgsl");
const FTN: &str = include_str!("../../wgsl/ftn.wgsl");
const TEXTURE_IO: &str = include_str!("../../wgsl/texture_io.wgsl");
const TEXTURE_IN: &str = include_str!("../../wgsl/texture_in.wgsl");
const TEXTURE_OUT: &str = include_str!("../../wgsl/texture_out.wgsl");
const WINOGRAD_INPUT: &str = include_str!("../../wgsl/winograd_input.wgsl");
const WINOGRAD_GEMM: &str = include_str!("../../wgsl/winograd_gemm.wgsl");
const WINOGRAD_OUTPUT: &str = include_str!("../../wgsl/winograd_output.wgsl");

/// Floats of workgroup memory the generic conv may use for the staged input tile and weight
/// slab (15,840 bytes: under the 16,352-byte downlevel limit).
const CONV_STAGE_FLOATS: u32 = 3960;

/// Epilogue variant of a conv or depthwise kernel.
#[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct EpFlags {
    pub scale_shift: bool,
    /// 0 none, 1 ReLU, 2 PReLU.
    pub act: u8,
    pub combine: bool,
    /// Other tensors read by the combine (0..=2).
    pub others: u8,
}

impl EpFlags {
    /// Every epilogue combination (2 x 3 x 4 = 24).
    pub fn all() -> Vec<EpFlags> {
        let mut v = vec![];
        for scale_shift in [false, true] {
            for act in 0..3 {
                v.push(EpFlags {
                    scale_shift,
                    act,
                    combine: false,
                    others: 0,
                });
                for others in 0..3 {
                    v.push(EpFlags {
                        scale_shift,
                        act,
                        combine: true,
                        others,
                    });
                }
            }
        }
        v
    }
}

/// One compiled kernel variant.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kernel {
    /// k x k conv; `pw` deltas mixed into the weights while staging, `pe` in the epilogue.
    Conv2d {
        k: u8,
        stride: u8,
        pw: u8,
        pe: u8,
        ep: EpFlags,
    },
    /// 1x1 stride-1 conv (GEMM over pixels).
    Conv1x1 {
        pw: u8,
        pe: u8,
        ep: EpFlags,
    },
    Depthwise {
        k: u8,
        pw: u8,
        pe: u8,
        ep: EpFlags,
    },
    /// `act(u*a + v*b)`, `p` deltas.
    Eltwise {
        p: u8,
        has_b: bool,
        act: u8,
    },
    Shuffle {
        unshuffle: bool,
    },
    /// The unfused weight mix pass.
    MixWeights {
        p: u8,
    },
    /// One layer of the FTN transform (1: conv + PReLU, 2: conv).
    Ftn {
        layer: u8,
    },
    /// A tile of a texture into the network's input tensor (`Model::encode`).
    TextureIn {
        gray: bool,
    },
    /// The owned part of a tile of the network's output into a storage texture.
    TextureOut {
        gray: bool,
        format: TextureFormat,
    },
    /// Winograd F(4x4, 3x3), 1 of 3: input transform (src/gpu/ops/winograd.rs).
    WinogradInput,
    /// Winograd, 2 of 3: the 36 GEMMs, `pw` deltas mixed into U while staging; unrolled for
    /// `cin` input channels, `co_t` output channels per workgroup ([`winograd_gemm_co_tile`]).
    WinogradGemm {
        pw: u8,
        cin: u16,
        co_t: u8,
    },
    /// Winograd, 3 of 3: output transform and the fused epilogue (`pe` deltas).
    WinogradOutput {
        pe: u8,
        ep: EpFlags,
    },
}

/// The storage-texture formats `Model::encode` writes (and, sampled, reads).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum TextureFormat {
    Rgba8Unorm,
    Rgba16Float,
    Rgba32Float,
}

impl TextureFormat {
    pub const ALL: [TextureFormat; 3] = [
        TextureFormat::Rgba8Unorm,
        TextureFormat::Rgba16Float,
        TextureFormat::Rgba32Float,
    ];

    pub fn of(format: wgpu::TextureFormat) -> Option<TextureFormat> {
        Some(match format {
            wgpu::TextureFormat::Rgba8Unorm => TextureFormat::Rgba8Unorm,
            wgpu::TextureFormat::Rgba16Float => TextureFormat::Rgba16Float,
            wgpu::TextureFormat::Rgba32Float => TextureFormat::Rgba32Float,
            _ => return None,
        })
    }

    pub fn wgpu(self) -> wgpu::TextureFormat {
        match self {
            TextureFormat::Rgba8Unorm => wgpu::TextureFormat::Rgba8Unorm,
            TextureFormat::Rgba16Float => wgpu::TextureFormat::Rgba16Float,
            TextureFormat::Rgba32Float => wgpu::TextureFormat::Rgba32Float,
        }
    }

    fn wgsl(self) -> &'static str {
        match self {
            TextureFormat::Rgba8Unorm => "rgba8unorm",
            TextureFormat::Rgba16Float => "rgba16float",
            TextureFormat::Rgba32Float => "rgba32float",
        }
    }
}

/// What a kernel's bind group layout holds besides the level (0) and its uniform (1).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum LayoutKey {
    /// Storage buffers among bindings 2..=7.
    Buffers(StorageSet),
    /// The sampled texture (8) and the tensor written (7).
    TextureIn,
    /// The tensor read (2), the sampled texture (8, for alpha) and the storage texture (9).
    TextureOut(TextureFormat),
}

impl LayoutKey {
    /// The layout entries (binding 0 is the level ring slot, with a dynamic offset).
    pub fn entries(self) -> Vec<wgpu::BindGroupLayoutEntry> {
        let entry = |binding: u32, ty: wgpu::BindingType| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty,
            count: None,
        };
        let buffer = |binding: u32, ty: wgpu::BufferBindingType, dynamic: bool| {
            entry(
                binding,
                wgpu::BindingType::Buffer {
                    ty,
                    has_dynamic_offset: dynamic,
                    min_binding_size: None,
                },
            )
        };
        let storage = |binding: u32| {
            let read_only = StorageSet::read_only(binding);
            buffer(
                binding,
                wgpu::BufferBindingType::Storage { read_only },
                false,
            )
        };
        // Unfilterable: accepts every float format, Rgba32Float included.
        let sampled = entry(
            8,
            wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Float { filterable: false },
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            },
        );
        let mut v = vec![
            buffer(0, wgpu::BufferBindingType::Uniform, true),
            buffer(1, wgpu::BufferBindingType::Uniform, false),
        ];
        match self {
            LayoutKey::Buffers(set) => v.extend(set.bindings().map(storage)),
            LayoutKey::TextureIn => v.extend([storage(7), sampled]),
            LayoutKey::TextureOut(f) => v.extend([
                storage(2),
                sampled,
                entry(
                    9,
                    wgpu::BindingType::StorageTexture {
                        access: wgpu::StorageTextureAccess::WriteOnly,
                        format: f.wgpu(),
                        view_dimension: wgpu::TextureViewDimension::D2,
                    },
                ),
            ]),
        }
        v
    }

    /// Storage buffers and storage textures the layout binds.
    pub fn storage_counts(self) -> (u32, u32) {
        match self {
            LayoutKey::Buffers(set) => (set.count(), 0),
            LayoutKey::TextureIn => (1, 0),
            LayoutKey::TextureOut(_) => (1, 1),
        }
    }
}

/// Which storage buffers a kernel variant declares and reads, as bits over the bindings
/// 2..=7 (x, wt, ep, o1, o2, y: wgsl/common.wgsl). Each variant's bind group layout holds only
/// these, so a variant needs as many storage buffers per shader stage as it uses.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct StorageSet(pub u8);

impl StorageSet {
    pub const X: u8 = 1;
    pub const WT: u8 = 2;
    pub const EP: u8 = 4;
    pub const O1: u8 = 8;
    pub const O2: u8 = 16;
    pub const Y: u8 = 32;

    /// The binding numbers in the set, ascending (2 = x ... 7 = y).
    pub fn bindings(self) -> impl Iterator<Item = u32> {
        (0..6u32)
            .filter(move |i| self.0 & (1 << i) != 0)
            .map(|i| i + 2)
    }

    /// How many storage buffers the variant binds.
    pub fn count(self) -> u32 {
        self.0.count_ones()
    }

    /// Whether binding `b` (2..=7) is read-only.
    pub fn read_only(b: u32) -> bool {
        b != 7
    }
}

/// Input channels staged per step by the generic conv for kernel size `k` and stride `s`.
pub fn conv_ci_tile(k: u32, s: u32) -> u32 {
    let in_tile = (7 * s + k) * (15 * s + k);
    let per_ci = in_tile + k * k * 16;
    (CONV_STAGE_FLOATS / per_ci).clamp(1, 16)
}

/// Input channels staged per step by the 1x1 conv.
pub const CONV1X1_CI_TILE: u32 = 16;
// The 1x1 conv stages CI_T x 128 inputs and CI_T x 16 weights.
const _: () = assert!(CONV1X1_CI_TILE * (128 + 16) * 4 <= 16_352);

/// Output channels per workgroup of the Winograd GEMM for a layer of `cout16` (`cout` rounded
/// up to 16): all of them up to 48 (one read of V serves every channel), else the largest of
/// 48, 32, 16 that divides `cout16`.
pub fn winograd_gemm_co_tile(cout16: u32) -> u32 {
    if cout16 <= 48 {
        return cout16.max(16);
    }
    [48, 32, 16]
        .into_iter()
        .find(|&c| cout16.is_multiple_of(c))
        .unwrap_or(16)
}

/// Input channels of U the Winograd GEMM stages at once (CI_S x co_t floats of workgroup
/// memory, under the 16,352-byte downlevel limit).
fn winograd_gemm_ci_stage(cin: u32, co_t: u32) -> u32 {
    cin.min(16_352 / 4 / co_t).max(1)
}

/// The unrolled body of the Winograd GEMM for `cin` input channels (see
/// wgsl/winograd_gemm.wgsl: every `gemm_step` has literal arguments, so its reads of U are at
/// constant addresses).
fn winograd_gemm_steps(cin: u32, ci_s: u32) -> String {
    let mut s = String::from("fn gemm_steps() {\n");
    for ci0 in (0..cin).step_by(ci_s as usize) {
        let nc = ci_s.min(cin - ci0);
        if ci0 > 0 {
            s.push_str("    workgroupBarrier();\n");
        }
        s.push_str(&format!(
            "    stage_u({ci0}u, {nc}u);\n    workgroupBarrier();\n"
        ));
        for cl in 0..nc {
            s.push_str(&format!("    gemm_step({cl}u, {}u);\n", ci0 + cl));
        }
    }
    s.push_str("}\n");
    s
}

struct Consts {
    k: u32,
    s: u32,
    pw: u32,
    pe: u32,
    ep: EpFlags,
    ci_t: u32,
    mode: u32,
    /// The Winograd GEMM's unrolling: (cin, co_t).
    gemm: Option<(u32, u32)>,
}

impl Kernel {
    fn consts(&self) -> Consts {
        let mut c = Consts {
            k: 1,
            s: 1,
            pw: 0,
            pe: 0,
            ep: EpFlags::default(),
            ci_t: 1,
            mode: 0,
            gemm: None,
        };
        match *self {
            Kernel::Conv2d {
                k,
                stride,
                pw,
                pe,
                ep,
            } => {
                c.k = k as u32;
                c.s = stride as u32;
                c.pw = pw as u32;
                c.pe = pe as u32;
                c.ep = ep;
                c.ci_t = conv_ci_tile(c.k, c.s);
            }
            Kernel::Conv1x1 { pw, pe, ep } => {
                c.pw = pw as u32;
                c.pe = pe as u32;
                c.ep = ep;
                c.ci_t = CONV1X1_CI_TILE;
            }
            Kernel::Depthwise { k, pw, pe, ep } => {
                c.k = k as u32;
                c.pw = pw as u32;
                c.pe = pe as u32;
                c.ep = ep;
            }
            Kernel::Eltwise { p, has_b, act } => {
                c.pe = p as u32;
                c.ep.act = act;
                c.mode = has_b as u32;
            }
            Kernel::Shuffle { unshuffle } => c.mode = (!unshuffle) as u32,
            Kernel::MixWeights { p } => c.pw = p as u32,
            Kernel::Ftn { layer } => c.mode = layer as u32,
            Kernel::TextureIn { .. } | Kernel::TextureOut { .. } => {}
            Kernel::WinogradInput => {}
            Kernel::WinogradGemm { pw, cin, co_t } => {
                c.pw = pw as u32;
                c.gemm = Some((cin as u32, co_t as u32));
            }
            Kernel::WinogradOutput { pe, ep } => {
                c.pe = pe as u32;
                c.ep = ep;
            }
        }
        c
    }

    /// The other tensors (o1, o2) the variant's epilogue or eltwise reads: 0, 1 or 2.
    fn others_read(&self) -> u32 {
        match *self {
            Kernel::Conv2d { ep, .. }
            | Kernel::Conv1x1 { ep, .. }
            | Kernel::Depthwise { ep, .. }
            | Kernel::WinogradOutput { ep, .. }
                if ep.combine =>
            {
                ep.others.min(2) as u32
            }
            Kernel::Eltwise { has_b, .. } => has_b as u32,
            _ => 0,
        }
    }

    /// The storage buffers this variant binds.
    pub fn storage(&self) -> StorageSet {
        let xy = StorageSet::X | StorageSet::Y;
        let others = match self.others_read() {
            0 => 0,
            1 => StorageSet::O1,
            _ => StorageSet::O1 | StorageSet::O2,
        };
        StorageSet(match self {
            Kernel::Conv2d { .. } | Kernel::Conv1x1 { .. } | Kernel::Depthwise { .. } => {
                xy | StorageSet::WT | StorageSet::EP | others
            }
            Kernel::Eltwise { .. } => xy | StorageSet::EP | others,
            Kernel::Ftn { .. } => xy | StorageSet::WT | StorageSet::EP,
            Kernel::Shuffle { .. } | Kernel::MixWeights { .. } => xy,
            Kernel::WinogradInput => xy,
            Kernel::WinogradGemm { .. } => xy | StorageSet::WT,
            Kernel::WinogradOutput { .. } => xy | StorageSet::EP | others,
            Kernel::TextureIn { .. } => StorageSet::Y,
            Kernel::TextureOut { .. } => StorageSet::X,
        })
    }

    /// The layout this variant is compiled against.
    pub fn layout_key(&self) -> LayoutKey {
        match *self {
            Kernel::TextureIn { .. } => LayoutKey::TextureIn,
            Kernel::TextureOut { format, .. } => LayoutKey::TextureOut(format),
            _ => LayoutKey::Buffers(self.storage()),
        }
    }

    /// The texture kernels: their own shared part, no level, no epilogue.
    fn texture_source(&self) -> Option<String> {
        let (gray, body, head) = match *self {
            Kernel::TextureIn { gray } => (gray, TEXTURE_IN, String::new()),
            Kernel::TextureOut { gray, format } => (
                gray,
                TEXTURE_OUT,
                format!(
                    "alias Dst = texture_storage_2d<{}, write>;\nconst CLAMP: bool = {};\n",
                    format.wgsl(),
                    format == TextureFormat::Rgba8Unorm
                ),
            ),
            _ => return None,
        };
        Some(format!(
            "// variant: {self:?}\nconst GRAY: bool = {gray};\n{head}\n{TEXTURE_IO}\n{body}"
        ))
    }

    /// The declarations of o1 / o2 and their readers `other1` / `other2`: real where the
    /// variant reads them, returning 0 otherwise (so unused bindings are never declared).
    fn others_source(&self) -> String {
        let n = self.others_read();
        let mut s = String::new();
        for (i, binding) in [(1u32, 5u32), (2, 6)] {
            if i <= n {
                s.push_str(&format!(
                    "@group(0) @binding({binding}) var<storage, read> o{i}: array<f32>;\n\
                     fn other{i}(i: u32) -> f32 {{ return o{i}[i]; }}\n"
                ));
            } else {
                s.push_str(&format!("fn other{i}(i: u32) -> f32 {{ return 0.0; }}\n"));
            }
        }
        s
    }

    /// The full WGSL source of this variant: constants, shared code, kernel.
    pub fn source(&self) -> String {
        if let Some(s) = self.texture_source() {
            return s;
        }
        let c = self.consts();
        let mut s = format!(
            "// variant: {self:?}\n\
             const K: u32 = {}u;\nconst S: u32 = {}u;\nconst PW: u32 = {}u;\nconst PE: u32 = {}u;\n\
             const HAS_SS: bool = {};\nconst ACT: u32 = {}u;\nconst COMBINE: bool = {};\n\
             const N_OTHERS: u32 = {}u;\nconst CI_T: u32 = {}u;\nconst MODE: u32 = {}u;\n\n",
            c.k,
            c.s,
            c.pw,
            c.pe,
            c.ep.scale_shift,
            c.ep.act,
            c.ep.combine,
            c.ep.others,
            c.ci_t,
            c.mode
        );
        if let Some((cin, co_t)) = c.gemm {
            let ci_s = winograd_gemm_ci_stage(cin, co_t);
            s.push_str(&format!(
                "const CO_T: u32 = {co_t}u;\nconst CI_S: u32 = {ci_s}u;\n"
            ));
            s.push_str(&winograd_gemm_steps(cin, ci_s));
        }
        s.push_str(COMMON);
        let (epilogue, body) = match self {
            Kernel::Conv2d { .. } => (true, CONV2D),
            Kernel::Conv1x1 { .. } => (true, CONV1X1),
            Kernel::Depthwise { .. } => (true, DEPTHWISE),
            Kernel::Eltwise { .. } => (true, ELTWISE),
            Kernel::Shuffle { .. } => (false, SHUFFLE),
            Kernel::MixWeights { .. } => (false, MIX),
            Kernel::Ftn { .. } => (false, FTN),
            Kernel::TextureIn { .. } | Kernel::TextureOut { .. } => unreachable!("texture_source"),
            Kernel::WinogradInput => (true, WINOGRAD_INPUT),
            Kernel::WinogradGemm { .. } => (true, WINOGRAD_GEMM),
            Kernel::WinogradOutput { .. } => (true, WINOGRAD_OUTPUT),
        };
        if epilogue {
            s.push('\n');
            s.push_str(&self.others_source());
            s.push_str(EPILOGUE);
        }
        // The Winograd kernels read the conv's uniform (and `y`, `wt` from the files above).
        if matches!(
            self,
            Kernel::Conv2d { .. }
                | Kernel::Conv1x1 { .. }
                | Kernel::WinogradInput
                | Kernel::WinogradGemm { .. }
                | Kernel::WinogradOutput { .. }
        ) {
            s.push('\n');
            s.push_str(CONV_WEIGHTS);
        }
        s.push('\n');
        s.push_str(body);
        s
    }

    /// A short name for labels and error messages.
    pub fn label(&self) -> String {
        format!("{self:?}")
    }

    /// Every variant the executor can generate (the naga test validates all of them).
    pub fn all_variants() -> Vec<Kernel> {
        let mut v = vec![];
        // (pw, pe): fused mix (pw = pe = P) or unfused (pw = 0, pe = P).
        let mixes: Vec<(u8, u8)> = (0..=4u8)
            .map(|p| (p, p))
            .chain((1..=4u8).map(|p| (0, p)))
            .collect();
        for ep in EpFlags::all() {
            for &(pw, pe) in &mixes {
                for k in [1u8, 3, 5, 7] {
                    for stride in [1u8, 2] {
                        v.push(Kernel::Conv2d {
                            k,
                            stride,
                            pw,
                            pe,
                            ep,
                        });
                    }
                    v.push(Kernel::Depthwise { k, pw, pe, ep });
                }
                v.push(Kernel::Conv1x1 { pw, pe, ep });
                if pw == pe {
                    v.push(Kernel::WinogradOutput { pe, ep });
                }
            }
        }
        v.push(Kernel::WinogradInput);
        for pw in 0..=4u8 {
            for (cin, co_t) in [(1u16, 16u8), (13, 16), (48, 48), (48, 32), (130, 48)] {
                v.push(Kernel::WinogradGemm { pw, cin, co_t });
            }
        }
        for p in 0..=4u8 {
            for has_b in [false, true] {
                for act in 0..3 {
                    v.push(Kernel::Eltwise { p, has_b, act });
                }
            }
            v.push(Kernel::MixWeights { p });
        }
        v.push(Kernel::Shuffle { unshuffle: true });
        v.push(Kernel::Shuffle { unshuffle: false });
        v.push(Kernel::Ftn { layer: 1 });
        v.push(Kernel::Ftn { layer: 2 });
        for gray in [false, true] {
            v.push(Kernel::TextureIn { gray });
            for format in TextureFormat::ALL {
                v.push(Kernel::TextureOut { gray, format });
            }
        }
        v
    }
}

/// One dispatch of a possibly split grid: workgroup offset and count per dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub offset: [u32; 3],
    pub count: [u32; 3],
}

/// Splits a grid of workgroups into dispatches of at most `max` per dimension.
pub fn split_grid(grid: [u32; 3], max: u32) -> Vec<Piece> {
    let max = max.max(1);
    let ranges = |n: u32| -> Vec<(u32, u32)> {
        (0..n.div_ceil(max))
            .map(|i| (i * max, (n - i * max).min(max)))
            .collect()
    };
    let mut v = vec![];
    if grid.contains(&0) {
        return v;
    }
    for &(oz, cz) in &ranges(grid[2]) {
        for &(oy, cy) in &ranges(grid[1]) {
            for &(ox, cx) in &ranges(grid[0]) {
                v.push(Piece {
                    offset: [ox, oy, oz],
                    count: [cx, cy, cz],
                });
            }
        }
    }
    v
}

/// Lays `groups` workgroups of a 1-D kernel on a 2-D grid: (x, y) and the row pitch.
pub fn grid_1d(groups: u32, max: u32) -> ([u32; 2], u32) {
    let nx = groups.clamp(1, max.max(1));
    ([nx, groups.div_ceil(nx)], nx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_grid_covers_every_workgroup_once() {
        for grid in [[1, 1, 1], [5, 3, 7], [7, 1, 1], [1, 9, 2], [300, 2, 1]] {
            for max in [1, 2, 3, 1000] {
                let mut seen = std::collections::HashSet::new();
                for Piece { offset, count } in split_grid(grid, max) {
                    assert!(count.iter().all(|&c| c >= 1 && c <= max));
                    for z in 0..count[2] {
                        for y in 0..count[1] {
                            for x in 0..count[0] {
                                assert!(seen.insert([offset[0] + x, offset[1] + y, offset[2] + z]));
                            }
                        }
                    }
                }
                assert_eq!(seen.len() as u32, grid.iter().product::<u32>());
                assert!(seen.iter().all(|p| (0..3).all(|d| p[d] < grid[d])));
            }
        }
    }

    #[test]
    fn grid_1d_fits_the_limit_and_covers_all_groups() {
        for groups in [1u32, 2, 7, 65535, 65536, 1 << 24] {
            for max in [1u32, 2, 65535] {
                let ([x, y], pitch) = grid_1d(groups, max);
                assert!(x <= max && x == pitch);
                assert!(x as u64 * y as u64 >= groups as u64);
                assert!((x as u64) * (y as u64 - 1) < groups as u64);
            }
        }
    }

    #[test]
    fn winograd_gemm_groups_divide_the_channels_and_fit_in_workgroup_memory() {
        for cout16 in (16..=512).step_by(16) {
            let co_t = winograd_gemm_co_tile(cout16);
            assert!(
                [16, 32, 48].contains(&co_t) && cout16 % co_t == 0,
                "{cout16}: {co_t}"
            );
            assert!(co_t == cout16.min(48) || cout16 > 48, "{cout16}: {co_t}");
            for cin in [1, 13, 48, 85, 86, 300, 512] {
                let ci_s = winograd_gemm_ci_stage(cin, co_t);
                assert!(ci_s >= 1 && ci_s <= cin && ci_s * co_t * 4 <= 16_352);
                let steps = winograd_gemm_steps(cin, ci_s);
                assert_eq!(steps.matches("    gemm_step(").count() as u32, cin);
                assert_eq!(steps.matches("stage_u(").count() as u32, cin.div_ceil(ci_s));
            }
        }
    }

    #[test]
    fn conv_tiles_fit_in_workgroup_memory() {
        for k in [1, 3, 5, 7] {
            for s in [1, 2] {
                let ci = conv_ci_tile(k, s);
                let floats = ci * ((7 * s + k) * (15 * s + k) + k * k * 16);
                assert!(floats * 4 <= 16_352, "k {k} s {s}: {} bytes", floats * 4);
            }
        }
    }
}
