// out = act(u[c] * a + v[c] * b) (b when MODE == 1), u and v mixed arrays evaluated at the
// level. 1-D over the C*H*W elements (256 per workgroup) on a 2-D grid.
// Uniform: src/gpu/ops/eltwise.rs; `gains` are offsets (in floats) in the `ep` buffer.

struct EltwiseDims {
    channels: u32,
    plane: u32,
    len: u32,
    unused: u32,
}

struct EltwiseGains {
    u: u32,
    v: u32,
    slope: u32,
    unused: u32,
}

struct EltwiseUniform {
    dispatch: Dispatch,
    dims: EltwiseDims,
    gains: EltwiseGains,
    mix: LevelMix,
}

@group(0) @binding(1) var<uniform> prm: EltwiseUniform;

@group(0) @binding(2) var<storage, read> x: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let channels = prm.dims.channels;
    let plane = prm.dims.plane;
    let n = prm.dims.len;
    let i = linear_group(wid, prm.dispatch) * 256u + lid;
    if i >= n {
        return;
    }
    let c = i / plane;
    let cf = mix_coefs(prm.mix);
    var v = mixed(prm.gains.u, channels, c, cf) * x[i];
    if MODE == 1u {
        v += mixed(prm.gains.v, channels, c, cf) * other1(i);
    }
    var slope = 0.0;
    if ACT == 2u {
        slope = ep[prm.gains.slope + c];
    }
    y[i] = activate(v, slope);
}
