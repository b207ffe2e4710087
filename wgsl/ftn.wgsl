// The FTN filter-to-filter transform (reference::ftn_transform), run once at load. A filter
// [cout, cin, k, k] is seen as cout images of cin channels and k x k pixels; one layer of
// grouped 1x1 conv per dispatch: MODE 1 = conv1x1(w1, b1) then PReLU, MODE 2 = conv1x1(w2, b2).
// One invocation per output value, 1-D on a 2-D grid.
// Uniform: src/gpu/ops/ftn.rs; ep holds the layer's bias at bias_at and the PReLU slopes at
// slope_at (slope_len of them: 1 shared or one per channel).

struct FtnDims {
    cout: u32,
    cin: u32,
    kk: u32,
    group_size: u32,
    len: u32,
    slope_len: u32,
    bias_at: u32,
    slope_at: u32,
}

struct FtnUniform {
    dispatch: Dispatch,
    dims: FtnDims,
}

@group(0) @binding(1) var<uniform> prm: FtnUniform;

@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> wt: array<f32>;
@group(0) @binding(4) var<storage, read> ep: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_group(wid, prm.dispatch) * 256u + lid;
    if i >= prm.dims.len {
        return;
    }
    let cin = prm.dims.cin;
    let kk = prm.dims.kk;
    let gs = prm.dims.group_size;
    let f = i / (cin * kk);
    let o = (i / kk) % cin;
    let px = i % kk;
    let g = o / gs;
    let src = f * cin * kk + g * gs * kk + px;
    var acc = ep[prm.dims.bias_at + o];
    for (var j = 0u; j < gs; j++) {
        acc += wt[o * gs + j] * x[src + j * kk];
    }
    if MODE == 1u && acc < 0.0 {
        var s = ep[prm.dims.slope_at];
        if prm.dims.slope_len > 1u {
            s = ep[prm.dims.slope_at + o];
        }
        acc *= s;
    }
    y[i] = acc;
}
