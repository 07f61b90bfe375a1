//! Dot products for the exact scan: f32 and i8 (i32 sums), with AVX2 + FMA kernels chosen at
//! run time on x86-64 and portable loops elsewhere (written in 8 lanes so the compiler
//! vectorises them).

/// A dot product of two equally long slices.
pub(crate) type DotF32 = fn(&[f32], &[f32]) -> f32;
/// A dot product of two equally long i8 slices, summed in i32.
pub(crate) type DotI8 = fn(&[i8], &[i8]) -> i32;

/// The fastest f32 dot product this processor runs.
pub(crate) fn dot_f32() -> DotF32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        return x86::dot_f32;
    }
    dot_f32_portable
}

/// The fastest i8 dot product this processor runs.
pub(crate) fn dot_i8() -> DotI8 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return x86::dot_i8;
    }
    dot_i8_portable
}

/// Portable f32 dot product (eight partial sums).
pub(crate) fn dot_f32_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, ar) = a.split_at(a.len() / 8 * 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + ar.iter().zip(br).map(|(x, y)| x * y).sum::<f32>()
}

/// Portable i8 dot product (eight partial sums).
pub(crate) fn dot_i8_portable(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = [0i32; 8];
    let (ac, ar) = a.split_at(a.len() / 8 * 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    acc.iter().sum::<i32>() + ar.iter().zip(br).map(|(x, y)| i32::from(*x) * i32::from(*y)).sum::<i32>()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// AVX2 + FMA f32 dot product. Only handed out after `dot_f32` checked both features.
    pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `super::dot_f32` returns this function only when the processor has AVX2 and FMA.
        unsafe { dot_f32_avx2(a, b) }
    }

    /// AVX2 i8 dot product. Only handed out after `dot_i8` checked the feature.
    pub(super) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: `super::dot_i8` returns this function only when the processor has AVX2.
        unsafe { dot_i8_avx2(a, b) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut s0 = _mm256_setzero_ps();
        let mut s1 = _mm256_setzero_ps();
        let mut s2 = _mm256_setzero_ps();
        let mut s3 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY (all loads): every load reads 8 values at i + offset with i + offset + 8 <= n,
        // inside both slices; loadu has no alignment requirement.
        while i + 32 <= n {
            unsafe {
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
                s1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), s1);
                s2 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 16)), _mm256_loadu_ps(pb.add(i + 16)), s2);
                s3 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 24)), _mm256_loadu_ps(pb.add(i + 24)), s3);
            }
            i += 32;
        }
        while i + 8 <= n {
            unsafe { s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0) };
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
        let half = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let one = _mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1));
        let mut sum = _mm_cvtss_f32(one);
        for j in i..n {
            sum += a[j] * b[j];
        }
        sum
    }

    #[target_feature(enable = "avx2")]
    unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut s0 = _mm256_setzero_si256();
        let mut s1 = _mm256_setzero_si256();
        let mut i = 0;
        // SAFETY (all loads): each reads 16 bytes at i + offset with i + offset + 16 <= n,
        // inside both slices; loadu has no alignment requirement.
        while i + 32 <= n {
            unsafe {
                let x0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i).cast()));
                let y0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i).cast()));
                let x1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i + 16).cast()));
                let y1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i + 16).cast()));
                s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(x0, y0));
                s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(x1, y1));
            }
            i += 32;
        }
        let s = _mm256_add_epi32(s0, s1);
        let half = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        let quad = _mm_add_epi32(half, _mm_shuffle_epi32(half, 0b01_00_11_10));
        let one = _mm_add_epi32(quad, _mm_shuffle_epi32(quad, 0b10_11_00_01));
        let mut sum = _mm_cvtsi128_si32(one);
        for j in i..n {
            sum += i32::from(a[j]) * i32::from(b[j]);
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chosen_kernels_agree_with_the_portable_ones_at_every_length() {
        let mut seed = 7u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed >> 8
        };
        let (f, i) = (dot_f32(), dot_i8());
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 100, 384, 385] {
            let a: Vec<f32> = (0..n).map(|_| next() as f32 / (1u32 << 24) as f32 - 0.5).collect();
            let b: Vec<f32> = (0..n).map(|_| next() as f32 / (1u32 << 24) as f32 - 0.5).collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            assert!((f64::from(f(&a, &b)) - exact).abs() < 1e-4, "f32, n = {n}");
            assert!((f64::from(dot_f32_portable(&a, &b)) - exact).abs() < 1e-4, "portable f32, n = {n}");
            let x: Vec<i8> = (0..n).map(|_| (next() % 255) as i32 as i8).collect();
            let y: Vec<i8> = (0..n).map(|_| (next() % 255) as i32 as i8).collect();
            let exact: i32 = x.iter().zip(&y).map(|(p, q)| i32::from(*p) * i32::from(*q)).sum();
            assert_eq!(i(&x, &y), exact, "i8, n = {n}");
            assert_eq!(dot_i8_portable(&x, &y), exact, "portable i8, n = {n}");
        }
    }
}
