// Tensor -> texture: the pixels a tile owns, from the network's output (CHW f32).

@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(9) var dst: Dst;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
    if g.x >= prm.own_w || g.y >= prm.own_h {
        return;
    }
    let tx = prm.own_x + g.x;
    let ty = prm.own_y + g.y;
    let px = prm.tile_x + tx;
    let py = prm.tile_y + ty;
    if px >= prm.width || py >= prm.height {
        return; // the padding past the picture's edge
    }
    let i = ty * prm.tile_w + tx;
    let inv = 1.0 / prm.scale;
    var rgb: vec3<f32>;
    if GRAY {
        rgb = vec3<f32>(x[i] * inv);
    } else {
        let plane = prm.tile_w * prm.tile_h;
        rgb = vec3<f32>(x[i], x[plane + i], x[2u * plane + i]) * inv;
    }
    if CLAMP {
        rgb = clamp(rgb, vec3<f32>(0.0), vec3<f32>(1.0));
    }
    let alpha = textureLoad(src, vec2<i32>(i32(px), i32(py)), 0).a;
    textureStore(dst, vec2<i32>(i32(px), i32(py)), vec4<f32>(rgb, alpha));
}
