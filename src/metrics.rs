//! Image quality: PSNR and SSIM on the 0..255 scale, as the denoising papers score.

use crate::image::Image;

/// PSNR in dB over all channels together; both images already clipped and rounded by the
/// caller if the protocol asks for it. Infinite for identical images.
pub fn psnr(reference: &[f32], test: &[f32]) -> f64 {
    let mse = reference
        .iter()
        .zip(test)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / reference.len().max(1) as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

/// Clips to [0, 255] and rounds to integers, as the protocol scores restored images.
pub fn quantize(values: &[f32]) -> Vec<f32> {
    values.iter().map(|v| v.clamp(0.0, 255.0).round()).collect()
}

/// PSNR between two images of the same size after quantizing `test` to 8 bits.
pub fn psnr_images(reference: &Image, test: &Image) -> f64 {
    psnr(&quantize(reference.planes()), &quantize(test.planes()))
}

/// Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, L 255),
/// averaged over channels; valid windows only.
pub fn ssim(reference: &[f32], test: &[f32], width: usize, height: usize, channels: usize) -> f64 {
    const R: usize = 5;
    let g: Vec<f64> = (0..=2 * R)
        .map(|i| (-((i as f64 - R as f64).powi(2)) / (2.0 * 1.5 * 1.5)).exp())
        .collect();
    let gs: f64 = g.iter().sum();
    let g: Vec<f64> = g.iter().map(|v| v / gs).collect();
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    if width <= 2 * R || height <= 2 * R {
        return global_ssim(reference, test, c1, c2); // smaller than one window
    }
    let plane = width * height;
    let mut total = 0.0;
    let mut count = 0usize;
    for c in 0..channels {
        let a = &reference[c * plane..(c + 1) * plane];
        let b = &test[c * plane..(c + 1) * plane];
        // Separable filtering of x, y, x^2, y^2, xy: horizontal pass then vertical.
        let fields: [Box<dyn Fn(usize) -> f64>; 5] = [
            Box::new(|i| a[i] as f64),
            Box::new(|i| b[i] as f64),
            Box::new(|i| (a[i] as f64).powi(2)),
            Box::new(|i| (b[i] as f64).powi(2)),
            Box::new(|i| a[i] as f64 * b[i] as f64),
        ];
        let ow = width - 2 * R;
        let oh = height - 2 * R;
        let mut filtered = vec![vec![0.0f64; ow * oh]; 5];
        for (f, out) in fields.iter().zip(filtered.iter_mut()) {
            let mut horiz = vec![0.0f64; ow * height];
            for y in 0..height {
                for x in 0..ow {
                    horiz[y * ow + x] = (0..=2 * R).map(|k| g[k] * f(y * width + x + k)).sum();
                }
            }
            for y in 0..oh {
                for x in 0..ow {
                    out[y * ow + x] = (0..=2 * R).map(|k| g[k] * horiz[(y + k) * ow + x]).sum();
                }
            }
        }
        #[allow(clippy::needless_range_loop)] // five parallel arrays, one index
        for i in 0..ow * oh {
            let (mx, my) = (filtered[0][i], filtered[1][i]);
            let sxx = filtered[2][i] - mx * mx;
            let syy = filtered[3][i] - my * my;
            let sxy = filtered[4][i] - mx * my;
            total += ((2.0 * mx * my + c1) * (2.0 * sxy + c2))
                / ((mx * mx + my * my + c1) * (sxx + syy + c2));
            count += 1;
        }
    }
    total / count.max(1) as f64
}

/// SSIM with one window covering the whole image (for images smaller than 11x11).
fn global_ssim(a: &[f32], b: &[f32], c1: f64, c2: f64) -> f64 {
    let n = a.len().max(1) as f64;
    let mx = a.iter().map(|&v| v as f64).sum::<f64>() / n;
    let my = b.iter().map(|&v| v as f64).sum::<f64>() / n;
    let sxx = a.iter().map(|&v| (v as f64 - mx).powi(2)).sum::<f64>() / n;
    let syy = b.iter().map(|&v| (v as f64 - my).powi(2)).sum::<f64>() / n;
    let sxy = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - mx) * (y as f64 - my))
        .sum::<f64>()
        / n;
    ((2.0 * mx * my + c1) * (2.0 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_known_error() {
        // A constant error of 1 gives MSE 1: PSNR = 20 log10(255).
        let a = vec![10.0f32; 100];
        let b = vec![11.0f32; 100];
        assert!((psnr(&a, &b) - 48.1308).abs() < 1e-3);
        assert!(psnr(&a, &a).is_infinite());
    }

    #[test]
    fn ssim_is_one_for_identical_and_lower_for_noisy() {
        let (w, h) = (32, 24);
        let a: Vec<f32> = (0..w * h).map(|i| ((i * 37) % 255) as f32).collect();
        assert!((ssim(&a, &a, w, h, 1) - 1.0).abs() < 1e-9);
        // Stronger noise, lower SSIM; always below 1 once anything differs.
        let noisy = |amp: f32| -> Vec<f32> {
            a.iter()
                .enumerate()
                .map(|(i, v)| v + if i % 2 == 0 { amp } else { -amp })
                .collect()
        };
        let scores: Vec<f64> = [10.0, 40.0, 80.0]
            .iter()
            .map(|&amp| ssim(&a, &noisy(amp), w, h, 1))
            .collect();
        assert!(
            scores[0] < 1.0 && scores[0] > scores[1] && scores[1] > scores[2] && scores[2] > 0.0,
            "{scores:?}"
        );
    }
}
