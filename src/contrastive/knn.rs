//! Weighted k-nearest-neighbour classification on L2-normalised features (Wu et al. 2018,
//! the monitor of lightly and solo-learn): each query's k most cosine-similar bank items
//! vote for their class with weight exp(sim / τ); the class with the largest total wins.

use candle_core::{Device, Tensor};

/// Settings of the weighted kNN classifier (lightly / solo-learn: k = 200, τ = 0.1).
#[derive(Debug, Clone, Copy)]
pub struct Knn {
    pub k: usize,
    pub temperature: f64,
}

impl Default for Knn {
    fn default() -> Self {
        Knn {
            k: 200,
            temperature: 0.1,
        }
    }
}

/// Rows `[n, d]` of `x`, scaled to unit L2 norm.
fn normalized(x: &[f32], d: usize) -> candle_core::Result<Tensor> {
    let x = Tensor::from_slice(x, (x.len() / d, d), &Device::Cpu)?;
    let norm = x.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
    x.broadcast_div(&norm)
}

impl Knn {
    /// The predicted class of every query (rows of `d` features) from a bank of
    /// labelled rows.
    pub fn predict(
        &self,
        bank: &[f32],
        bank_y: &[usize],
        queries: &[f32],
        d: usize,
        classes: usize,
    ) -> candle_core::Result<Vec<usize>> {
        if d == 0
            || bank.len() != bank_y.len() * d
            || !queries.len().is_multiple_of(d)
            || bank_y.is_empty()
        {
            candle_core::bail!(
                "kNN: {} bank rows for {} labels of {d} features",
                bank.len() / d.max(1),
                bank_y.len()
            );
        }
        let b = normalized(bank, d)?;
        let k = self.k.min(bank_y.len()).max(1);
        let nq = queries.len() / d;
        let mut out = Vec::with_capacity(nq);
        let q_all = normalized(queries, d)?;
        for start in (0..nq).step_by(256) {
            let len = 256.min(nq - start);
            let sims = q_all
                .narrow(0, start, len)?
                .matmul(&b.t()?)?
                .to_vec2::<f32>()?;
            for row in sims {
                let mut idx: Vec<usize> = (0..row.len()).collect();
                if k < idx.len() {
                    idx.select_nth_unstable_by(k - 1, |&a, &c| row[c].total_cmp(&row[a]));
                    idx.truncate(k);
                }
                let mut votes = vec![0f64; classes];
                for i in idx {
                    votes[bank_y[i]] += (row[i] as f64 / self.temperature).exp();
                }
                out.push(rlcpc_agents::argmax(&votes));
            }
        }
        Ok(out)
    }

    /// Top-1 accuracy on labelled queries.
    pub fn accuracy(
        &self,
        bank: &[f32],
        bank_y: &[usize],
        queries: &[f32],
        query_y: &[usize],
        d: usize,
        classes: usize,
    ) -> candle_core::Result<f64> {
        let pred = self.predict(bank, bank_y, queries, d, classes)?;
        let right = pred.iter().zip(query_y).filter(|(a, b)| a == b).count();
        Ok(right as f64 / query_y.len().max(1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_are_weighted_by_similarity_among_the_k_nearest() {
        // Bank: two class-0 items near (1, 0) and three class-1 items near (0, 1).
        let bank = [1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 1.0, 0.2, 1.0];
        let y = [0, 0, 1, 1, 1];
        let q = [1.0, 0.05, 0.05, 1.0];
        let knn = Knn {
            k: 2,
            temperature: 0.1,
        };
        assert_eq!(knn.predict(&bank, &y, &q, 2, 2).unwrap(), vec![0, 1]);
        // With every item voting, the three class-1 items outvote the two close ones
        // only when the temperature is high (the weights flatten).
        let flat = Knn {
            k: 5,
            temperature: 100.0,
        };
        assert_eq!(flat.predict(&bank, &y, &q, 2, 2).unwrap(), vec![1, 1]);
        let sharp = Knn {
            k: 5,
            temperature: 0.05,
        };
        assert_eq!(sharp.predict(&bank, &y, &q, 2, 2).unwrap(), vec![0, 1]);
        assert_eq!(sharp.accuracy(&bank, &y, &q, &[0, 1], 2, 2).unwrap(), 1.0);
    }
}
