//! Textures in and out of a plan, for `Model::encode` (wgsl/texture_io.wgsl, texture_in.wgsl,
//! texture_out.wgsl): a tile of the app's input texture into the plan's input tensor, and the
//! part of the output tensor the tile owns into the app's storage texture.

use bytemuck::{Pod, Zeroable};

/// One tile's geometry and value scale (`TexDims` in wgsl/texture_io.wgsl; 48 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct TexDims {
    /// The picture (both textures are this size).
    pub width: u32,
    pub height: u32,
    /// Where the tile's tensor starts in the mirror-padded picture, and its size.
    pub tile_x: u32,
    pub tile_y: u32,
    pub tile_w: u32,
    pub tile_h: u32,
    /// The pixels of the tile it owns (written out), relative to the tile.
    pub own_x: u32,
    pub own_y: u32,
    pub own_w: u32,
    pub own_h: u32,
    /// tensor = texel * scale on the way in; texel = tensor / scale on the way out.
    pub scale: f32,
    pub unused: u32,
}

/// Side of the texture kernels' 16 x 16 workgroups.
const GROUP: u32 = 16;

impl TexDims {
    /// Workgroups of the input kernel (one thread per tile pixel).
    pub fn in_groups(&self) -> [u32; 3] {
        [self.tile_w.div_ceil(GROUP), self.tile_h.div_ceil(GROUP), 1]
    }
    /// Workgroups of the output kernel (one thread per owned pixel).
    pub fn out_groups(&self) -> [u32; 3] {
        [self.own_w.div_ceil(GROUP), self.own_h.div_ceil(GROUP), 1]
    }
}
