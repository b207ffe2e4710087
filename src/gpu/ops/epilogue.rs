//! The fused epilogue of the conv and depthwise kernels (wgsl/epilogue.wgsl): its mixed
//! vectors packed into one buffer, their offsets, and the kernel variant's flags.

use bytemuck::{Pod, Zeroable};

use crate::gpu::kernels::EpFlags;
use crate::plan::{Activation, Combine, Epilogue};

/// Offsets (in floats) of the epilogue's vectors in its buffer (`EpOffsets` in
/// wgsl/epilogue.wgsl). `bias` to `v2` are mixed arrays of `(deltas + 1) * channels` values;
/// `slope`, the PReLU slopes, one per channel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct EpOffsets {
    pub bias: u32,
    pub scale: u32,
    pub shift: u32,
    pub u: u32,
    pub v1: u32,
    pub v2: u32,
    pub slope: u32,
    pub unused: u32,
}

/// The activation as the kernels' `ACT` constant: 0 none, 1 ReLU, 2 PReLU.
pub fn act_code(a: &Activation) -> u8 {
    match a {
        Activation::None => 0,
        Activation::Relu => 1,
        Activation::Prelu(_) => 2,
    }
}

/// An epilogue of a validated plan packed for the GPU.
pub struct PackedEpilogue {
    pub data: Vec<f32>,
    pub offsets: EpOffsets,
    pub flags: EpFlags,
}

/// Packs `ep` of a node reading `n_others` other tensors (the combine reads one per gain
/// that has a tensor).
pub fn pack(ep: &Epilogue, n_others: usize) -> PackedEpilogue {
    let mut data = vec![];
    let mut push = |v: &[f32]| -> u32 {
        let off = data.len() as u32;
        data.extend_from_slice(v);
        off
    };
    let mut o = EpOffsets {
        bias: push(&ep.bias),
        ..Default::default()
    };
    let mut flags = EpFlags {
        act: act_code(&ep.act),
        ..Default::default()
    };
    if let Some((s, t)) = &ep.scale_shift {
        flags.scale_shift = true;
        o.scale = push(s);
        o.shift = push(t);
    }
    if let Activation::Prelu(s) = &ep.act {
        o.slope = push(s);
    }
    if let Some(Combine { u, v }) = &ep.combine {
        flags.combine = true;
        o.u = push(u);
        let n = v.len().min(n_others);
        flags.others = n as u8;
        let mut at = [0; 2];
        for (a, vi) in at.iter_mut().zip(v.iter().take(n)) {
            *a = push(vi);
        }
        [o.v1, o.v2] = at;
    }
    PackedEpilogue {
        data,
        offsets: o,
        flags,
    }
}
