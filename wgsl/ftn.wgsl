// The FTN filter-to-filter transform (reference::ftn_transform), run once at load. A filter
// [cout, cin, k, k] is seen as cout images of cin channels and k x k pixels; one layer of
// grouped 1x1 conv per dispatch: MODE 1 = conv1x1(w1, b1) then PReLU, MODE 2 = conv1x1(w2, b2).
// One invocation per output value, 1-D on a 2-D grid.
// d0 = (cout, cin, k*k, channels per group), d1 = (n, slope length, unused, unused);
// ep holds the bias at e0.x and the PReLU slope at e1.z.

@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> wt: array<f32>;
@group(0) @binding(4) var<storage, read> ep: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_group(wid) * 256u + lid;
    if i >= prm.d1.x {
        return;
    }
    let cin = prm.d0.y;
    let kk = prm.d0.z;
    let gs = prm.d0.w;
    let f = i / (cin * kk);
    let o = (i / kk) % cin;
    let px = i % kk;
    let g = o / gs;
    let src = f * cin * kk + g * gs * kk + px;
    var acc = ep[prm.e0.x + o];
    for (var j = 0u; j < gs; j++) {
        acc += wt[o * gs + j] * x[src + j * kk];
    }
    if MODE == 1u && acc < 0.0 {
        var s = ep[prm.e1.z];
        if prm.d1.y > 1u {
            s = ep[prm.e1.z + o];
        }
        acc *= s;
    }
    y[i] = acc;
}
