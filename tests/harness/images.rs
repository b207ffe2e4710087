//! Generated pictures (no dataset image is read) and their comparison.

use tunable::Image;

/// A ramp across the rows with Gaussian texture on top, wrapped into 0..255: every pixel and
/// channel differs, so a misplaced tile or channel shows.
pub fn textured(w: usize, h: usize, c: usize, seed: u64) -> Image {
    let mut rng = tunable::noise::Rng::new(seed);
    let planes = (0..w * h * c)
        .map(|i| ((i % w) as f32 * 3.0 + (rng.normal() * 40.0) as f32).rem_euclid(255.0))
        .collect();
    Image::from_planes(w, h, c, planes).unwrap()
}

/// A deterministic pattern without randomness (`(7 i) mod 256`).
pub fn gradient(w: usize, h: usize, c: usize) -> Image {
    let planes = (0..w * h * c).map(|i| ((i * 7) % 256) as f32).collect();
    Image::from_planes(w, h, c, planes).unwrap()
}

/// The largest difference between two pictures of one size, on the 0..255 scale.
pub fn max_diff(a: &Image, b: &Image) -> f32 {
    assert_eq!((a.width(), a.height()), (b.width(), b.height()));
    a.planes()
        .iter()
        .zip(b.planes())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}
