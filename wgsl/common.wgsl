// Shared by every kernel. The Rust side prepends the variant constants:
//   K, S        kernel size and stride (conv, depthwise)
//   PW          weight deltas mixed while staging weights (0 when the weights were pre-mixed)
//   PE          deltas of the epilogue / eltwise vectors
//   HAS_SS      per-channel scale/shift; ACT: 0 none, 1 ReLU, 2 PReLU
//   COMBINE     u*y + v1*o1 (+ v2*o2); N_OTHERS: how many other tensors (0..2)
//   CI_T        input channels staged per step (conv); MODE: kernel-specific switch

// One uniform per dispatch piece. d0..d1 are kernel-specific sizes, d2.xyz the workgroup
// offset of this piece (split dispatches), d2.w the row pitch of 1-D kernels laid on a 2-D grid.
// e0/e1: offsets (in floats) of the mixed vectors in the epilogue buffer:
// e0 = (bias, scale, shift, u), e1 = (v1, v2, prelu slope, unused).
struct Params {
    d0: vec4<u32>,
    d1: vec4<u32>,
    d2: vec4<u32>,
    e0: vec4<u32>,
    e1: vec4<u32>,
    coef_off: vec4<f32>,
    coef_gain: array<vec4<f32>, 4>,
    noise_gain: vec4<f32>,
    noise_off: vec4<f32>,
}

// The model's level vector: the only thing that changes when the user turns the knob.
@group(0) @binding(0) var<uniform> level: vec4<f32>;
@group(0) @binding(1) var<uniform> prm: Params;

// The mix coefficients c_p = offset_p + dot(gain_p, level) (unused p are 0).
fn mix_coefs() -> vec4<f32> {
    let l = level;
    return prm.coef_off + vec4<f32>(
        dot(prm.coef_gain[0], l),
        dot(prm.coef_gain[1], l),
        dot(prm.coef_gain[2], l),
        dot(prm.coef_gain[3], l),
    );
}

// The virtual noise channel's value inside the image (FFDNet): an affine function of the level.
fn noise_value() -> f32 {
    return prm.noise_off.x + dot(prm.noise_gain, level);
}

// Linear workgroup index of 1-D kernels laid out on a 2-D grid.
fn linear_group(wg: vec3<u32>) -> u32 {
    return (wg.y + prm.d2.y) * prm.d2.w + wg.x + prm.d2.x;
}
