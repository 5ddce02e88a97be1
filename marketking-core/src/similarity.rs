//! Vector math shared by the stores.

/// Cosine similarity of two vectors, in `[-1, 1]`.
///
/// Returns `None` when the lengths differ or either vector has zero norm. The sums are kept in
/// several independent lanes so the compiler can vectorise the loop without `unsafe`.
///
/// ```
/// let s = marketking_core::cosine_similarity(&[1.0, 0.0], &[1.0, 1.0]).unwrap();
/// assert!((s - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
/// ```
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> Option<f32> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let (dot, na, nb) = dot_norms(a, b);
    if na == 0.0 || nb == 0.0 {
        return None;
    }
    Some((dot / (na.sqrt() * nb.sqrt())).clamp(-1.0, 1.0) as f32)
}

/// Dot product of two equal-length vectors (8 lanes, vectorisable).
#[cfg_attr(not(feature = "embedded"), allow(dead_code))]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `v` as int8 codes with one scale (`v[i] ~ scale * codes[i]`, the largest component at
/// +-127), written into `codes`; returns the scale (0 for a zero vector).
#[cfg_attr(not(feature = "embedded"), allow(dead_code))]
pub(crate) fn quantize_i8(v: &[f32], codes: &mut [i8]) -> f32 {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        codes.iter_mut().for_each(|c| *c = 0);
        return 0.0;
    }
    let inv = 127.0 / max;
    for (c, x) in codes.iter_mut().zip(v) {
        *c = (x * inv).round().clamp(-127.0, 127.0) as i8;
    }
    max / 127.0
}

fn dot_norms(a: &[f32], b: &[f32]) -> (f64, f64, f64) {
    let mut d = [0.0f32; 8];
    let mut x2 = [0.0f32; 8];
    let mut y2 = [0.0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for ((((d, x2), y2), x), y) in d.iter_mut().zip(&mut x2).zip(&mut y2).zip(x).zip(y) {
            *d += x * y;
            *x2 += x * x;
            *y2 += y * y;
        }
    }
    let mut dot: f64 = d.iter().map(|v| *v as f64).sum();
    let mut na: f64 = x2.iter().map(|v| *v as f64).sum();
    let mut nb: f64 = y2.iter().map(|v| *v as f64).sum();
    for (x, y) in ra.iter().zip(rb) {
        dot += (*x as f64) * (*y as f64);
        na += (*x as f64) * (*x as f64);
        nb += (*y as f64) * (*y as f64);
    }
    (dot, na, nb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(cosine_similarity(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).map(|s| (s * 1e5).round()), Some(1e5));
        assert_eq!(cosine_similarity(&[1.0, 0.0], &[0.0, 1.0]), Some(0.0));
        assert_eq!(cosine_similarity(&[1.0, 0.0], &[-1.0, 0.0]), Some(-1.0));
        assert_eq!(cosine_similarity(&[1.0], &[1.0, 2.0]), None);
        assert_eq!(cosine_similarity(&[0.0, 0.0], &[1.0, 2.0]), None);
        assert_eq!(cosine_similarity(&[], &[]), None);
    }

    #[test]
    fn long_vectors_match_naive() {
        let a: Vec<f32> = (0..1537).map(|i| ((i * 7919) % 101) as f32 - 50.0).collect();
        let b: Vec<f32> = (0..1537).map(|i| ((i * 104729) % 97) as f32 - 48.0).collect();
        let naive = {
            let d: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            d / (na * nb)
        };
        assert!((cosine_similarity(&a, &b).unwrap() as f64 - naive).abs() < 1e-5);
        assert!((dot(&a, &b) as f64 - a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum::<f64>()).abs() < 1.0);
    }
}
