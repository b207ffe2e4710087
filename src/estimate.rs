//! Blind noise-level estimation: the PCA method of Chen, Zhu and Heng, "An Efficient
//! Statistical Method for Image Noise Level Estimation", ICCV 2015.
//!
//! Patches of a noisy image span a low-dimensional signal subspace plus white noise, so the
//! smallest eigenvalues of the patch covariance are all close to sigma^2. The method walks
//! from the largest eigenvalue down and stops at the first tail whose mean equals its median
//! (as many eigenvalues above the mean as below): that tail is noise, its mean is sigma^2.

use crate::image::Image;

const PATCH: usize = 7;

/// Estimated standard deviation of additive white Gaussian noise, on the 0..255 scale.
pub fn noise_sigma(image: &Image) -> f32 {
    let (w, h, c) = (image.width(), image.height(), image.channels());
    if w < PATCH || h < PATCH {
        return 0.0;
    }
    let d = PATCH * PATCH * c;
    let plane = w * h;
    let px = image.planes();
    // Enough patches for a stable covariance without visiting all of a large image.
    let positions = (w - PATCH + 1) * (h - PATCH + 1);
    let stride = ((positions as f64 / 40_000.0).sqrt().floor() as usize).max(1);
    let mut mean = vec![0.0f64; d];
    let mut cov = vec![0.0f64; d * d];
    let mut n = 0usize;
    let mut v = vec![0.0f64; d];
    for y in (0..=h - PATCH).step_by(stride) {
        for x in (0..=w - PATCH).step_by(stride) {
            let mut i = 0;
            for ch in 0..c {
                for dy in 0..PATCH {
                    let row = ch * plane + (y + dy) * w + x;
                    for dx in 0..PATCH {
                        v[i] = px[row + dx] as f64;
                        i += 1;
                    }
                }
            }
            for a in 0..d {
                mean[a] += v[a];
                let va = v[a];
                let row = &mut cov[a * d..a * d + a + 1];
                for (b, r) in row.iter_mut().enumerate() {
                    *r += va * v[b];
                }
            }
            n += 1;
        }
    }
    let nf = n as f64;
    for a in 0..d {
        for b in 0..=a {
            let s = cov[a * d + b] / nf - (mean[a] / nf) * (mean[b] / nf);
            cov[a * d + b] = s;
            cov[b * d + a] = s;
        }
    }
    let mut eig = symmetric_eigenvalues(cov, d);
    eig.sort_by(|a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal)); // descending
    for i in 0..d {
        let tail = &eig[i..];
        let tau = tail.iter().sum::<f64>() / tail.len() as f64;
        let above = tail.iter().filter(|&&e| e > tau).count();
        let below = tail.iter().filter(|&&e| e < tau).count();
        if above == below {
            return tau.max(0.0).sqrt() as f32;
        }
    }
    eig[d - 1].max(0.0).sqrt() as f32
}

/// Eigenvalues of a symmetric matrix (row-major, n x n) by cyclic Jacobi rotations.
fn symmetric_eigenvalues(mut a: Vec<f64>, n: usize) -> Vec<f64> {
    for _sweep in 0..100 {
        let off: f64 = (0..n).flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| a[i * n + j].powi(2)).sum();
        let diag: f64 = (0..n).map(|i| a[i * n + i].powi(2)).sum();
        if off <= 1e-22 * diag.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
        }
    }
    (0..n).map(|i| a[i * n + i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_finds_known_eigenvalues() {
        // [[2,1],[1,2]] has eigenvalues 1 and 3.
        let mut e = symmetric_eigenvalues(vec![2.0, 1.0, 1.0, 2.0], 2);
        e.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert!((e[0] - 1.0).abs() < 1e-9 && (e[1] - 3.0).abs() < 1e-9, "{e:?}");
    }
}
