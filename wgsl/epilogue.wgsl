// The fused epilogue (plan::Epilogue), shared by conv2d, conv1x1 and depthwise:
//   y = acc + bias[c]; y = y * scale[c] + shift[c]; y = act(y); y = u[c] * y + v1[c] * o1 + v2[c] * o2
// Every vector is a mixed array ((PE + 1) * n floats) evaluated here at the level.

// Offsets (in floats) of the vectors in `ep` (src/gpu/ops/epilogue.rs): bias to v2 are mixed
// arrays, slope the PReLU slopes (one per channel).
struct EpOffsets {
    bias: u32,
    scale: u32,
    shift: u32,
    u: u32,
    v1: u32,
    v2: u32,
    slope: u32,
    unused: u32,
}

@group(0) @binding(4) var<storage, read> ep: array<f32>;
// o1 and o2 (bindings 5 and 6) are declared by the Rust side only in the variants that read
// them, behind other1() / other2(): a kernel binds only the buffers it uses, so a device with 4
// storage buffers per stage runs every variant without combine tensors (src/gpu/kernels.rs).
@group(0) @binding(7) var<storage, read_write> y: array<f32>;

struct EpVals {
    bias: f32,
    scale: f32,
    shift: f32,
    slope: f32,
    u: f32,
    v1: f32,
    v2: f32,
}

// base[c] + sum_p cf[p] * delta_p[c] of the mixed array at `off` with `n` values per part.
fn mixed(off: u32, n: u32, c: u32, cf: vec4<f32>) -> f32 {
    var v = ep[off + c];
    for (var p = 0u; p < PE; p++) {
        v += cf[p] * ep[off + (p + 1u) * n + c];
    }
    return v;
}

fn ep_vals(o: EpOffsets, c: u32, n: u32, cf: vec4<f32>) -> EpVals {
    var e = EpVals(0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0);
    e.bias = mixed(o.bias, n, c, cf);
    if HAS_SS {
        e.scale = mixed(o.scale, n, c, cf);
        e.shift = mixed(o.shift, n, c, cf);
    }
    if ACT == 2u {
        e.slope = ep[o.slope + c];
    }
    if COMBINE {
        e.u = mixed(o.u, n, c, cf);
        if N_OTHERS >= 1u {
            e.v1 = mixed(o.v1, n, c, cf);
        }
        if N_OTHERS >= 2u {
            e.v2 = mixed(o.v2, n, c, cf);
        }
    }
    return e;
}

fn activate(v: f32, slope: f32) -> f32 {
    if ACT == 1u {
        return max(v, 0.0);
    }
    if ACT == 2u {
        return select(v * slope, v, v >= 0.0);
    }
    return v;
}

// Applies the epilogue to one accumulated value and stores it at `idx`.
fn store(acc: f32, e: EpVals, idx: u32) {
    var v = acc + e.bias;
    if HAS_SS {
        v = v * e.scale + e.shift;
    }
    v = activate(v, e.slope);
    if COMBINE {
        v = v * e.u;
        if N_OTHERS >= 1u {
            v += e.v1 * other1(idx);
        }
        if N_OTHERS >= 2u {
            v += e.v2 * other2(idx);
        }
    }
    y[idx] = v;
}
