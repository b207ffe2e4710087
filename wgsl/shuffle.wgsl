// Pixel unshuffle (MODE 0) and pixel shuffle (MODE 1) by 2, PyTorch channel order:
// unshuffle: out[c*4 + dy*2 + dx, y, x] = in[c, 2y + dy, 2x + dx]; shuffle is its inverse.
// One invocation per output value, 1-D on a 2-D grid.
// Uniform: src/gpu/ops/shuffle.rs.

struct ShuffleDims {
    ic: u32,
    ih: u32,
    iw: u32,
    len: u32, // values of the output
    oc: u32,
    oh: u32,
    ow: u32,
    unused: u32,
}

struct ShuffleUniform {
    dispatch: Dispatch,
    dims: ShuffleDims,
}

@group(0) @binding(1) var<uniform> prm: ShuffleUniform;

@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_group(wid, prm.dispatch) * 256u + lid;
    if i >= prm.dims.len {
        return;
    }
    let ih = prm.dims.ih;
    let iw = prm.dims.iw;
    let oh = prm.dims.oh;
    let ow = prm.dims.ow;
    let oc = i / (oh * ow);
    let oy = (i / ow) % oh;
    let ox = i % ow;
    var src = 0u;
    if MODE == 0u {
        let c = oc / 4u;
        let dy = (oc % 4u) / 2u;
        let dx = oc % 2u;
        src = (c * ih + 2u * oy + dy) * iw + 2u * ox + dx;
    } else {
        let ic = oc * 4u + (oy % 2u) * 2u + ox % 2u;
        src = (ic * ih + oy / 2u) * iw + ox / 2u;
    }
    y[i] = x[src];
}
