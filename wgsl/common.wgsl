// Shared by every kernel. The Rust side prepends the variant constants:
//   K, S        kernel size and stride (conv, depthwise)
//   PW          weight deltas mixed while staging weights (0 when the weights were pre-mixed)
//   PE          deltas of the epilogue / eltwise vectors
//   HAS_SS      per-channel scale/shift; ACT: 0 none, 1 ReLU, 2 PReLU
//   COMBINE     u*y + v1*o1 (+ v2*o2); N_OTHERS: how many other tensors (0..2)
//   CI_T        input channels staged per step (conv); MODE: kernel-specific switch

// Each kernel declares its own uniform at binding 1 (`prm`, a struct named after the kernel
// with the field names of its Rust twin in src/gpu/ops/), starting with a Dispatch:
// the workgroup offset of this piece (split dispatches) and the row pitch of 1-D kernels
// laid on a 2-D grid.
struct Dispatch {
    group_offset: vec3<u32>,
    row_pitch: u32,
}

// The mix coefficients c_p = offset_p + dot(gain_p, level) of up to 4 deltas (unused p are 0).
struct LevelMix {
    offset: vec4<f32>,
    gain: array<vec4<f32>, 4>,
}

// The model's level vector: the only thing that changes when the user turns the knob.
@group(0) @binding(0) var<uniform> level: vec4<f32>;

// The mix coefficients at the current level.
fn mix_coefs(m: LevelMix) -> vec4<f32> {
    let l = level;
    return m.offset + vec4<f32>(
        dot(m.gain[0], l),
        dot(m.gain[1], l),
        dot(m.gain[2], l),
        dot(m.gain[3], l),
    );
}

// Linear workgroup index of 1-D kernels laid out on a 2-D grid.
fn linear_group(wg: vec3<u32>, d: Dispatch) -> u32 {
    return (wg.y + d.group_offset.y) * d.row_pitch + wg.x + d.group_offset.x;
}
