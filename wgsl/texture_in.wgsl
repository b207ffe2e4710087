// Texture -> tensor: one tile of the picture as the network's input (CHW f32).

@group(0) @binding(7) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
    if g.x >= prm.tile_w || g.y >= prm.tile_h {
        return;
    }
    let sx = mirror(prm.tile_x + g.x, prm.width);
    let sy = mirror(prm.tile_y + g.y, prm.height);
    let t = textureLoad(src, vec2<i32>(i32(sx), i32(sy)), 0);
    let i = g.y * prm.tile_w + g.x;
    if GRAY {
        y[i] = dot(t.rgb, LUMA) * prm.scale;
    } else {
        let plane = prm.tile_w * prm.tile_h;
        y[i] = t.r * prm.scale;
        y[plane + i] = t.g * prm.scale;
        y[2u * plane + i] = t.b * prm.scale;
    }
}
