//! A CHW f32 tensor (batch 1), the unit of data between ops.

/// Shape of a CHW tensor (batch 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub fn new(c: usize, h: usize, w: usize) -> Self {
        Shape { c, h, w }
    }
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }
    /// `c * h * w`, or `None` where the product does not fit a `usize`.
    pub fn checked_len(&self) -> Option<usize> {
        self.c.checked_mul(self.h)?.checked_mul(self.w)
    }
    /// Bytes of the tensor as f32, saturating (only compared against limits).
    pub fn bytes(&self) -> u64 {
        (self.c as u64)
            .saturating_mul(self.h as u64)
            .saturating_mul(self.w as u64)
            .saturating_mul(4)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Shape,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn zeros(shape: Shape) -> Self {
        Tensor {
            shape,
            data: vec![0.0; shape.len()],
        }
    }
    /// Panics if `data` does not hold `shape.len()` values; internal constructors only.
    pub fn from_vec(shape: Shape, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.len(),
            data.len(),
            "tensor data does not match its shape"
        );
        Tensor { shape, data }
    }
    #[inline]
    pub fn at(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[(c * self.shape.h + y) * self.shape.w + x]
    }
    pub fn max_abs_diff(&self, other: &Tensor) -> f32 {
        self.data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }
}
