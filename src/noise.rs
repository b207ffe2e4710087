//! Seeded additive white Gaussian noise, so evaluations are repeatable across runs and machines.

/// SplitMix64: tiny, fast, and good enough to drive Box-Muller for test noise.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// `values + N(0, sigma^2)`, not clipped (the denoising protocol's noisy input).
pub fn add_gaussian(values: &[f32], sigma: f32, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    values
        .iter()
        .map(|&v| v + sigma * rng.normal() as f32)
        .collect()
}
