// out = act(u[c] * a + v[c] * b) (b when MODE == 1), u and v mixed arrays evaluated at the
// level. 1-D over the C*H*W elements (256 per workgroup) on a 2-D grid.
// d0 = (channels, plane, n, unused); e0 = (u, v, unused, unused) offsets in ep; e1.z: PReLU slope.

@group(0) @binding(2) var<storage, read> x: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let channels = prm.d0.x;
    let plane = prm.d0.y;
    let n = prm.d0.z;
    let i = linear_group(wid) * 256u + lid;
    if i >= n {
        return;
    }
    let c = i / plane;
    let cf = mix_coefs();
    var v = mixed(prm.e0.x, channels, c, cf) * x[i];
    if MODE == 1u {
        v += mixed(prm.e0.y, channels, c, cf) * o1[i];
    }
    var slope = 0.0;
    if ACT == 2u {
        slope = ep[prm.e1.z + c];
    }
    y[i] = activate(v, slope);
}
