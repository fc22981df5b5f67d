//! Trajectories recorded from an environment (`rlcpc record`): observations, actions,
//! rewards, episode starts and the environment's true state at every step, in one
//! safetensors file (`DIR/trajectories.safetensors`) readable from Python as well.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use rlcpc_envs::EnvConfig;

use crate::checkpoint::{self, keys, Loaded};

pub const FILE: &str = "trajectories.safetensors";

/// N steps of one environment, in order; `first[t] = 1` where an episode starts.
#[derive(Debug, Clone)]
pub struct Trajectories {
    pub env: EnvConfig,
    /// Who acted (`random`, `oracle`, or the checkpoint's path).
    pub policy: String,
    pub obs_shape: Vec<usize>,
    /// `[N, obs...]`, flattened.
    pub obs: Vec<f32>,
    pub state_names: Vec<String>,
    /// `[N, S]`.
    pub state: Vec<f32>,
    pub actions: Vec<u32>,
    pub rewards: Vec<f32>,
    pub first: Vec<f32>,
}

impl Trajectories {
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    pub fn obs_dim(&self) -> usize {
        self.obs_shape.iter().product()
    }

    pub fn obs_row(&self, t: usize) -> &[f32] {
        let d = self.obs_dim();
        &self.obs[t * d..(t + 1) * d]
    }

    pub fn state_row(&self, t: usize) -> &[f32] {
        let s = self.state_names.len();
        &self.state[t * s..(t + 1) * s]
    }

    pub fn episodes(&self) -> usize {
        self.first.iter().filter(|&&f| f != 0.0).count()
    }

    pub fn save(&self, dir: &Path, force: bool) -> Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create '{}'", dir.display()))?;
        let n = self.len();
        let dev = Device::Cpu;
        let mut obs_shape = vec![n];
        obs_shape.extend(&self.obs_shape);
        let tensors = vec![
            (
                "obs".to_string(),
                Tensor::from_slice(&self.obs, obs_shape, &dev)?,
            ),
            (
                "state".to_string(),
                Tensor::from_slice(&self.state, (n, self.state_names.len()), &dev)?,
            ),
            (
                "action".to_string(),
                Tensor::from_slice(&self.actions, n, &dev)?,
            ),
            (
                "reward".to_string(),
                Tensor::from_slice(&self.rewards, n, &dev)?,
            ),
            (
                "first".to_string(),
                Tensor::from_slice(&self.first, n, &dev)?,
            ),
        ];
        let meta = checkpoint::metadata(vec![
            (keys::RECORDING_ENV, serde_json::to_string(&self.env)?),
            (keys::RECORDING_POLICY, serde_json::to_string(&self.policy)?),
            (keys::STATE_NAMES, serde_json::to_string(&self.state_names)?),
        ]);
        let path = dir.join(FILE);
        if path.exists() && !force {
            anyhow::bail!(
                "'{}' already holds a recording ({}); choose another --out or pass --force to replace it",
                dir.display(),
                path.display()
            );
        }
        checkpoint::write_atomic(&path, tensors, meta)?;
        Ok(())
    }

    /// Reads `DIR/trajectories.safetensors`.
    pub fn load(dir: &Path) -> Result<Trajectories> {
        let path = dir.join(FILE);
        if !path.exists() {
            bail!(
                "'{}' holds no {FILE}; write one with `rlcpc record`",
                dir.display()
            );
        }
        let f = Loaded::read_as(&path, "recording")?;
        let state_names: Vec<String> = f.meta(keys::STATE_NAMES)?;
        let get = |k: &str| -> Result<&Tensor> {
            let t = f
                .tensors
                .get(k)
                .ok_or_else(|| f.mismatch(format!("missing tensor '{k}'")))?;
            let want = if k == "action" {
                candle_core::DType::U32
            } else {
                candle_core::DType::F32
            };
            if t.dtype() != want {
                return Err(f
                    .mismatch(format!(
                        "tensor '{k}' is {:?}, expected {want:?}",
                        t.dtype()
                    ))
                    .into());
            }
            Ok(t)
        };
        let obs = get("obs")?;
        let n = obs.dim(0)?;
        let obs_shape = obs.dims()[1..].to_vec();
        let state = get("state")?;
        if state.dims() != [n, state_names.len()] {
            return Err(f
                .mismatch(format!(
                    "state has shape {:?}, expected [{n}, {}]",
                    state.dims(),
                    state_names.len()
                ))
                .into());
        }
        let v1 = |k: &str| -> Result<Vec<f32>> {
            let t = get(k)?;
            if t.dims() != [n] {
                return Err(f
                    .mismatch(format!("'{k}' has shape {:?}, expected [{n}]", t.dims()))
                    .into());
            }
            Ok(t.to_vec1::<f32>()?)
        };
        Ok(Trajectories {
            env: f.meta(keys::RECORDING_ENV)?,
            policy: f.meta(keys::RECORDING_POLICY)?,
            obs_shape,
            obs: obs.flatten_all()?.to_vec1()?,
            state: state.flatten_all()?.to_vec1()?,
            state_names,
            actions: {
                let a = get("action")?;
                if a.dims() != [n] {
                    return Err(f
                        .mismatch(format!("'action' has shape {:?}, expected [{n}]", a.dims()))
                        .into());
                }
                a.to_vec1::<u32>()?
            },
            rewards: v1("reward")?,
            first: v1("first")?,
        })
    }
}

/// Where a recording is cut into a training and a test part: the first episode start at
/// or after `1 − test_fraction` of its steps, so that no episode straddles the cut.
/// `cpc frames` trains on the part before it; the belief probe tests on the part after.
pub fn test_cut(traj: &Trajectories, test_fraction: f64) -> Result<usize> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        bail!("the test fraction must be in (0, 1), got {test_fraction}");
    }
    let n = traj.len();
    let want = ((1.0 - test_fraction) * n as f64) as usize;
    let cut = (want..n)
        .find(|&t| traj.first[t] != 0.0)
        .or_else(|| (1..want).rev().find(|&t| traj.first[t] != 0.0))
        .with_context(|| {
            format!(
                "the recording ({n} steps) is one episode: it cannot be cut into train and test episodes"
            )
        })?;
    if cut < 10 || n - cut < 10 {
        bail!(
            "the recording ({n} steps, {} episodes) is too short to split into train and test parts of at least 10 steps at test fraction {test_fraction}",
            traj.episodes()
        );
    }
    Ok(cut)
}
