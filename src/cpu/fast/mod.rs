//! The fast CPU executor (im2col + GEMM, rayon), validated against `reference`.
