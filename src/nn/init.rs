//! Seeded parameter initialisation, computed on the host so that a run's seed fixes
//! every weight on every device (candle's CPU generator cannot be seeded).

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rlcpc_envs::SeededRng;

/// Builds parameters into a [`VarMap`] from one seeded generator.
pub struct Init {
    rng: SeededRng,
    device: Device,
    pub varmap: VarMap,
}

impl Init {
    /// The device the parameters are made on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn new(seed: u64, device: &Device) -> Self {
        Init {
            rng: SeededRng::seed_from_u64(seed),
            device: device.clone(),
            varmap: VarMap::new(),
        }
    }

    fn insert(&mut self, name: &str, shape: &[usize], data: Vec<f32>) -> candle_core::Result<()> {
        let t = Tensor::from_vec(data, shape, &self.device)?;
        self.varmap
            .data()
            .lock()
            .expect("varmap lock")
            .insert(name.to_string(), Var::from_tensor(&t)?);
        Ok(())
    }

    /// Orthogonal matrix `[rows, cols]` times `gain` (Saxe et al. 2014; SB3's default for
    /// actor–critic layers), from Gram–Schmidt on a Gaussian matrix. Higher-rank shapes
    /// (conv kernels) are flattened to `[shape[0], rest]`.
    pub fn orthogonal(
        &mut self,
        name: &str,
        shape: &[usize],
        gain: f64,
    ) -> candle_core::Result<()> {
        let rows = shape[0];
        let cols: usize = shape[1..].iter().product();
        let (n, m) = if rows < cols {
            (rows, cols)
        } else {
            (cols, rows)
        };
        // n orthonormal vectors of length m.
        let mut q: Vec<Vec<f64>> = Vec::with_capacity(n);
        while q.len() < n {
            let mut v: Vec<f64> = (0..m)
                .map(|_| StandardNormal.sample(&mut self.rng))
                .collect();
            for u in &q {
                let d: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(u).for_each(|(a, b)| *a -= d * b);
            }
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm > 1e-6 {
                v.iter_mut().for_each(|a| *a /= norm);
                q.push(v);
            }
        }
        let mut data = vec![0f32; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                let x = if rows < cols { q[r][c] } else { q[c][r] };
                data[r * cols + c] = (x * gain) as f32;
            }
        }
        self.insert(name, shape, data)
    }

    /// Uniform in ±1/√fan_in (PyTorch's default for linear and LSTM layers).
    pub fn uniform_fan_in(
        &mut self,
        name: &str,
        shape: &[usize],
        fan_in: usize,
    ) -> candle_core::Result<()> {
        let b = 1.0 / (fan_in as f32).sqrt();
        let data = (0..shape.iter().product::<usize>())
            .map(|_| self.rng.random_range(-b..b))
            .collect();
        self.insert(name, shape, data)
    }

    pub fn zeros(&mut self, name: &str, shape: &[usize]) -> candle_core::Result<()> {
        self.insert(name, shape, vec![0.0; shape.iter().product()])
    }

    pub fn ones(&mut self, name: &str, shape: &[usize]) -> candle_core::Result<()> {
        self.insert(name, shape, vec![1.0; shape.iter().product()])
    }
}

/// The variables of `varmap` whose names pass `filter`, sorted by name (the order of
/// checkpoints, optimisers and exported files).
pub fn named_vars(varmap: &VarMap, filter: impl Fn(&str) -> bool) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut v: Vec<(String, Var)> = data
        .iter()
        .filter(|(k, _)| filter(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
