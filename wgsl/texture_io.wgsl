// Textures in and out of a plan (Model::encode, src/gpu/ops/texture.rs): the part shared by
// wgsl/texture_in.wgsl and wgsl/texture_out.wgsl. The Rust side prepends GRAY (the model has
// one channel) and, for the output, the storage format as `alias Dst`.
//
// In: one tile of the picture, mirror-padded past the bottom and right edges exactly as
// engine::pad_reflect pads (PyTorch's `reflect`), scaled to the network's values; a gray model
// reads the Rec. 709 luminance. Out: the part of the tile it owns, scaled back; alpha is taken
// from the input texture unchanged, a gray result goes to all three colour channels.

struct TexDims {
    // The picture (both textures are this size).
    width: u32,
    height: u32,
    // Where the tile's tensor starts in the padded picture, and its size.
    tile_x: u32,
    tile_y: u32,
    tile_w: u32,
    tile_h: u32,
    // Out: the pixels of the tile it owns, relative to the tile.
    own_x: u32,
    own_y: u32,
    own_w: u32,
    own_h: u32,
    // In: tensor = texel * scale; out: texel = tensor / scale.
    scale: f32,
    unused: u32,
}

@group(0) @binding(1) var<uniform> prm: TexDims;
@group(0) @binding(8) var src: texture_2d<f32>;

const LUMA: vec3<f32> = vec3<f32>(0.2126, 0.7152, 0.0722);

fn mirror(i: u32, n: u32) -> u32 {
    if i < n {
        return i;
    }
    return u32(max(2 * (i32(n) - 1) - i32(i), 0));
}

