//! One safe matrix product over row-major slices, for the lean paths ([`super::lean`]).
//!
//! It calls the `gemm` crate (the kernels candle's CPU backend itself uses) directly: the
//! learner of a 4-64-64 MLP multiplies matrices of a few thousand elements, where
//! candle's per-op allocation and dispatch cost more than the arithmetic.

/// How an operand is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// As is: `[rows, cols]` row-major.
    N,
    /// Transposed: the slice holds the `[cols, rows]` row-major matrix.
    T,
}

/// `c[m, n] = a[m, k] · b[k, n]` (or `c += ...` with `accumulate`), `a` and `b` stored as
/// `ta` and `tb` say. Single-threaded: the matrices are small and the actors use the other
/// core.
///
/// # Panics
/// If a slice is shorter than its matrix (a bug in the caller, not bad input).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    c: &mut [f32],
    a: &[f32],
    ta: Op,
    b: &[f32],
    tb: Op,
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
) {
    assert!(
        c.len() >= m * n && a.len() >= m * k && b.len() >= k * n,
        "matmul: slices of {}, {}, {} for [{m}, {k}] x [{k}, {n}]",
        c.len(),
        a.len(),
        b.len()
    );
    // Element (i, p) of a is at i·rs + p·cs.
    let a_strides = match ta {
        Op::N => (k, 1),
        Op::T => (1, m),
    };
    let b_strides = match tb {
        Op::N => (n, 1),
        Op::T => (1, k),
    };
    matmul_strided(
        c,
        (a, a_strides.0, a_strides.1),
        (b, b_strides.0, b_strides.1),
        (m, k, n),
        accumulate,
    );
}

/// An operand of [`matmul_strided`]: the slice and the strides of its rows and columns
/// (element (i, j) at `i·rows + j·cols`; rows may overlap, as a strided convolution's
/// patches do).
pub type Strided<'a> = (&'a [f32], usize, usize);

/// `c[m, n] = a[m, k] · b[k, n]` (or `c += ...`) with `a` and `b` read through their
/// strides; `c` is contiguous.
///
/// # Panics
/// If a stride reaches past its slice (a bug in the caller, not bad input).
pub fn matmul_strided(
    c: &mut [f32],
    (a, a_rs, a_cs): Strided,
    (b, b_rs, b_cs): Strided,
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        c.len() >= m * n,
        "matmul_strided: c holds {} of {m}x{n}",
        c.len()
    );
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let last = |rs: usize, cs: usize, r: usize, q: usize| (r - 1) * rs + (q - 1) * cs;
    assert!(
        last(a_rs, a_cs, m, k) < a.len() && last(b_rs, b_cs, k, n) < b.len(),
        "matmul_strided: [{m}, {k}] x [{k}, {n}] reaches past slices of {} and {}",
        a.len(),
        b.len()
    );
    // SAFETY: the assertions keep every offset the strides reach inside the slices, and
    // c is written at i·n + j < m·n only.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Σ a_i b_i with eight independent accumulators, so that it vectorises (a plain
/// `sum()` of f32 must add in order and cannot).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], ta: Op, b: &[f32], tb: Op, (m, k, n): (usize, usize, usize)) -> Vec<f32> {
        let at = |i: usize, p: usize| match ta {
            Op::N => a[i * k + p],
            Op::T => a[p * m + i],
        };
        let bt = |p: usize, j: usize| match tb {
            Op::N => b[p * n + j],
            Op::T => b[j * k + p],
        };
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
            }
        }
        c
    }

    #[test]
    fn dot_matches_the_sum() {
        for n in [0, 1, 7, 8, 9, 64, 67] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.3).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).cos()).collect();
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - want).abs() < 1e-5, "n = {n}");
        }
    }

    #[test]
    fn strided_operands_match_the_definition() {
        // a: overlapping rows (stride 2 over windows of 4), b: a transposed block.
        let (m, k, n) = (5, 4, 3);
        let a: Vec<f32> = (0..2 * (m - 1) + k)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let b: Vec<f32> = (0..n * 7).map(|i| (i as f32 * 0.71).cos()).collect();
        let mut c = vec![0.5; m * n];
        matmul_strided(&mut c, (&a, 2, 1), (&b[1..], 1, 7), (m, k, n), true);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 0.5 + (0..k).map(|p| a[2 * i + p] * b[1 + j * 7 + p]).sum::<f32>();
                assert!((c[i * n + j] - want).abs() < 1e-5, "({i}, {j})");
            }
        }
    }

    #[test]
    fn every_transpose_matches_the_definition() {
        let (m, k, n) = (7, 5, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.71).cos()).collect();
        for ta in [Op::N, Op::T] {
            for tb in [Op::N, Op::T] {
                let want = naive(&a, ta, &b, tb, (m, k, n));
                let mut c = vec![1.0; m * n];
                matmul(&mut c, &a, ta, &b, tb, (m, k, n), false);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-5, "{ta:?} {tb:?}: {x} vs {y}");
                }
                matmul(&mut c, &a, ta, &b, tb, (m, k, n), true);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - 2.0 * y).abs() < 1e-5, "accumulate {ta:?} {tb:?}");
                }
            }
        }
    }
}
