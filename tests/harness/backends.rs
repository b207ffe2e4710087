//! Every executor behind one enum, [`Backend`], with one entry to run a plan or a node, and
//! [`test_backends!`](crate::test_backends), which turns one case function into one `#[test]`
//! per backend, each checked against the reference (in the spirit of candle's `test_device!`).

use tunable::plan::{LevelVec, Node, Op, Plan};
use tunable::tensor::Tensor;
use tunable::testing::cpu::fast::{FastOptions, FastPlan, Kernel, Winograd};
use tunable::testing::cpu::reference;
use tunable::testing::gpu::{self as g, GpuPlan};

use super::cases::{Case, Worst};
use super::gpu::ctx;

/// An executor of lowered plans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `cpu::reference`, the oracle.
    Reference,
    /// The fast CPU executor with these options (a kernel the CPU does not run falls back to
    /// the best below it: AVX-512 to AVX2, AVX2 to the portable code).
    Fast(FastOptions),
    /// The GPU, each conv's weight mix fused into its kernel (`unfused_mix` cleared).
    GpuFused,
    /// The GPU, each conv with deltas as a mix pass plus a plain conv (`unfused_mix` set).
    GpuUnfused,
}

impl Backend {
    /// The fast CPU executor's AVX-512 GEMM kernel, Winograd where it pays (F(6x6, 3x3)).
    pub const FAST_AVX512: Backend = Backend::Fast(FastOptions {
        kernel: Kernel::Avx512,
        winograd: Winograd::Auto,
    });
    /// The AVX-512 kernel with every stride-1 3x3 conv through Winograd F(4x4, 3x3).
    pub const FAST_AVX512_WINOGRAD: Backend = Backend::Fast(FastOptions {
        kernel: Kernel::Avx512,
        winograd: Winograd::Always,
    });
    /// The fast CPU executor's AVX2 kernel, Winograd where it pays (F(6x6, 3x3)).
    pub const FAST_AVX2: Backend = Backend::Fast(FastOptions {
        kernel: Kernel::Avx2,
        winograd: Winograd::Auto,
    });
    /// The AVX2 kernel with every stride-1 3x3 conv through Winograd F(4x4, 3x3).
    pub const FAST_AVX2_WINOGRAD: Backend = Backend::Fast(FastOptions {
        kernel: Kernel::Avx2,
        winograd: Winograd::Always,
    });
    /// The portable kernel (plain Rust loops), Winograd where it pays (F(6x6, 3x3)).
    pub const FAST_PORTABLE: Backend = Backend::Fast(FastOptions {
        kernel: Kernel::Portable,
        winograd: Winograd::Auto,
    });

    /// Every backend, the reference first.
    pub const ALL: [Backend; 8] = [
        Backend::Reference,
        Backend::FAST_AVX512,
        Backend::FAST_AVX512_WINOGRAD,
        Backend::FAST_AVX2,
        Backend::FAST_AVX2_WINOGRAD,
        Backend::FAST_PORTABLE,
        Backend::GpuFused,
        Backend::GpuUnfused,
    ];

    /// A short name for messages: `reference`, `fast-avx512`, `fast-avx512-winograd`,
    /// `fast-avx2`, `fast-avx2-winograd`,
    /// `fast-portable`, `gpu-fused`, `gpu-unfused` (other fast options print in full).
    pub fn name(self) -> String {
        match self {
            Backend::Reference => "reference".into(),
            Backend::FAST_AVX512 => "fast-avx512".into(),
            Backend::FAST_AVX512_WINOGRAD => "fast-avx512-winograd".into(),
            Backend::FAST_AVX2 => "fast-avx2".into(),
            Backend::FAST_AVX2_WINOGRAD => "fast-avx2-winograd".into(),
            Backend::FAST_PORTABLE => "fast-portable".into(),
            Backend::Fast(o) => format!("fast {:?} {:?}", o.kernel, o.winograd),
            Backend::GpuFused => "gpu-fused".into(),
            Backend::GpuUnfused => "gpu-unfused".into(),
        }
    }

    pub fn is_gpu(self) -> bool {
        matches!(self, Backend::GpuFused | Backend::GpuUnfused)
    }

    /// Whether this backend can run here: the CPU ones always; the GPU ones when there is an
    /// adapter (else a skip message once; with `TUNABLE_REQUIRE_GPU=1` this panics instead).
    pub fn available(self) -> bool {
        !self.is_gpu() || ctx().is_some()
    }

    /// `plan` as this backend runs it: for the GPU, every conv's `unfused_mix` set to say which
    /// mix path it takes (other backends ignore the flag).
    fn prepared(self, plan: &Plan) -> Plan {
        let mut plan = plan.clone();
        if self.is_gpu() {
            for n in &mut plan.nodes {
                if let Op::Conv2d(c) = &mut n.op {
                    c.unfused_mix = self == Backend::GpuUnfused;
                }
            }
        }
        plan
    }

    /// Runs `plan` on `input` at `level`. Panics with the backend's error (a test plan is
    /// valid), and when the backend is not [`available`](Backend::available).
    pub fn run_plan(self, plan: &Plan, level: &LevelVec, input: &Tensor) -> Tensor {
        let plan = self.prepared(plan);
        let shapes = plan.shapes(input.shape.h, input.shape.w);
        shapes.unwrap_or_else(|e| panic!("invalid test plan on {:?}: {e}", input.shape));
        let name = self.name();
        let out = match self {
            Backend::Reference => Ok(reference::run_plan(&plan, level, input)),
            Backend::Fast(o) => FastPlan::with_options(&plan, o).and_then(|f| f.run(input, level)),
            Backend::GpuFused | Backend::GpuUnfused => {
                let ctx = ctx().unwrap_or_else(|| panic!("{name}: no GPU adapter"));
                GpuPlan::new(ctx, &plan).and_then(|gp| gp.run(input, level))
            }
        };
        out.unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Runs one node on `x` and the combine tensors `others`. The reference and the GPU run
    /// the node as it is; the fast executor takes one input tensor, so there the node must
    /// read no other tensor (make them inside a plan: `cases::op_plan`).
    pub fn run_node(self, node: &Node, level: &LevelVec, x: &Tensor, others: &[&Tensor]) -> Tensor {
        let name = self.name();
        match self {
            Backend::Reference => reference::run_node(node, level, x, others),
            Backend::Fast(_) => {
                assert!(
                    others.is_empty(),
                    "{name} runs plans of one input: make node '{}''s other tensors inside the \
                     plan (cases::op_plan) and call run_plan",
                    node.name
                );
                let mut n = node.clone();
                (n.input, n.others, n.output) = (0, vec![], 1);
                let plan = Plan {
                    in_channels: x.shape.c,
                    num_tensors: 2,
                    nodes: vec![n],
                    output: 1,
                };
                self.run_plan(&plan, level, x)
            }
            Backend::GpuFused | Backend::GpuUnfused => {
                let ctx = ctx().unwrap_or_else(|| panic!("{name}: no GPU adapter"));
                let mut n = node.clone();
                if let Op::Conv2d(c) = &mut n.op {
                    c.unfused_mix = self == Backend::GpuUnfused;
                }
                g::run_node(&ctx, &n, level, x, others).unwrap_or_else(|e| panic!("{name}: {e}"))
            }
        }
    }

    /// Runs `case` on this backend and on the reference and checks the result with `w`
    /// (the tolerance of [`Worst`]).
    pub fn check(self, w: &mut Worst, case: &Case) {
        self.check_scaled(w, case, 1.0)
    }

    /// [`Backend::check`] with the absolute tolerance times `factor` (Winograd F(6x6, 3x3):
    /// its transforms' larger constants round more).
    pub fn check_scaled(self, w: &mut Worst, case: &Case, factor: f32) {
        let got = self.run_plan(&case.plan, &case.level, &case.input);
        let want = reference::run_plan(&case.plan, &case.level, &case.input);
        let what = format!("{} [{}]", case.name, self.name());
        w.check_scaled(&what, &got, &want, case.reduction, factor);
    }
}

/// Runs `case_fn(backend, &mut worst)` as one `#[test]` per backend of [`Backend::ALL`],
/// named `case_fn::reference`, `case_fn::fast_avx512`, ..., `case_fn::gpu_unfused`; each prints
/// its largest difference from the reference. A GPU test without an adapter prints a skip
/// message and passes, unless `TUNABLE_REQUIRE_GPU=1`. `case_fn` checks its cases with
/// `backend.check(worst, &case)`. As candle's `test_device!`:
///
/// ```ignore
/// fn conv_deltas(b: Backend, w: &mut Worst) { for case in ... { b.check(w, &case) } }
/// test_backends!(conv_deltas);
/// ```
#[macro_export]
macro_rules! test_backends {
    ($case_fn:ident) => {
        mod $case_fn {
            use $crate::harness::backends::Backend;

            fn run(b: Backend) {
                if !b.available() {
                    return;
                }
                let name = format!("{} on {}", stringify!($case_fn), b.name());
                let mut w = $crate::harness::cases::Worst::new(&name);
                super::$case_fn(b, &mut w);
                w.print();
            }

            #[test]
            fn reference() {
                run(Backend::Reference)
            }
            #[test]
            fn fast_avx512() {
                run(Backend::FAST_AVX512)
            }
            #[test]
            fn fast_avx512_winograd() {
                run(Backend::FAST_AVX512_WINOGRAD)
            }
            #[test]
            fn fast_avx2() {
                run(Backend::FAST_AVX2)
            }
            #[test]
            fn fast_avx2_winograd() {
                run(Backend::FAST_AVX2_WINOGRAD)
            }
            #[test]
            fn fast_portable() {
                run(Backend::FAST_PORTABLE)
            }
            #[test]
            fn gpu_fused() {
                run(Backend::GpuFused)
            }
            #[test]
            fn gpu_unfused() {
                run(Backend::GpuUnfused)
            }
        }
    };
}
