//! A worker's `gymnasium:` environments in one Python process, stepped as one
//! `gymnasium.vector` env (`env.vector = "sync"` or `"async"`).
//!
//! A step is one request (every environment's action) and one reply (every reward and
//! flag); the observations go through a buffer of shared memory that the bridge writes
//! and rlcpc reads, float32 `[2, n, dim]`: the current observations in `[0]`, and in `[1]`
//! the last observation of each episode that ended in the step. The vector env resets in
//! the same step (Gymnasium's `AutoresetMode.SAME_STEP`), which is [`crate::VecEnv`]'s own
//! semantics; seeds reach `reset(seed=[...])`, one per environment, so that each
//! environment's trajectory is the one it has in a process of its own (`"none"`).

use memmap2::Mmap;

use super::channel::{Bridge, Failure, ShmPath};
use super::{check, floats, spec, GymnasiumEnv};
use crate::config::{EnvConfig, Vector};
use crate::env::{EnvError, Space};
use crate::hurry::Hurry;
use crate::vec_env::{BatchEnv, VecStep};

/// `n` Gymnasium environments stepped by one Python process.
pub struct GymnasiumVec {
    id: String,
    n: usize,
    observation_space: Space,
    n_actions: usize,
    /// The mapping of the shared buffer (declared before `bridge`: unmapped first).
    shm: Mmap,
    bridge: Bridge,
    backend: String,
    /// Steps each environment has taken over its life (for error messages).
    steps: Vec<u64>,
    /// An error of the last reset, reported by the next step.
    pending: Option<Failure>,
    /// The request being written (reused).
    msg: Vec<u8>,
    /// Rewards and flags of the reply (reused).
    flags: Vec<u8>,
}

impl GymnasiumVec {
    /// Starts one Python process with `n` environments of `cfg` (`gymnasium:NAME`) as a
    /// vector env of kind `cfg.vector`; fails naming the environment as
    /// [`GymnasiumEnv::new`] does.
    pub fn new(cfg: &EnvConfig, n: usize) -> Result<Self, EnvError> {
        check(cfg)?;
        let fail = |message: String| EnvError::Python {
            id: cfg.id.clone(),
            message,
        };
        if n == 0 {
            return Err(fail("a vector of 0 environments".into()));
        }
        let path = ShmPath::new();
        let mut spec = spec(cfg);
        spec["num_envs"] = n.into();
        spec["vector"] = match cfg.vector {
            Vector::Async => "async",
            _ => "sync",
        }
        .into();
        spec["shm"] = path.0.to_string_lossy().into_owned().into();
        let (bridge, hello) = Bridge::start(cfg, &spec, n)?;
        let (observation_space, n_actions) = GymnasiumEnv::spaces(&cfg.id, &hello)?;
        let dim = observation_space.flat_dim();
        // The observations, then the index of the environment being stepped (i32) and
        // 4 bytes of padding.
        let want = 2 * n * dim * 4 + 8;
        let file = std::fs::File::open(&path.0).map_err(|e| {
            fail(format!(
                "cannot open the shared observation buffer {}: {e}",
                path.0.display()
            ))
        })?;
        // SAFETY: the file was made for this bridge alone, which writes it only between a
        // request and its reply; it is read here only after the reply, and its size is
        // checked before any read.
        let shm = unsafe { Mmap::map(&file) }.map_err(|e| {
            fail(format!(
                "cannot map the shared observation buffer {}: {e}",
                path.0.display()
            ))
        })?;
        if shm.len() != want {
            return Err(fail(format!(
                "the shared observation buffer {} holds {} bytes, not the {want} of {n} observations of {dim} values (twice)",
                path.0.display(),
                shm.len()
            )));
        }
        // Both sides hold it mapped: its name is no longer needed (`path` drops).
        Ok(GymnasiumVec {
            id: cfg.id.clone(),
            n,
            observation_space,
            n_actions,
            shm,
            bridge,
            backend: hello.backend,
            steps: vec![0; n],
            pending: None,
            msg: Vec::with_capacity(1 + 9 * n),
            flags: vec![0; 6 * n],
        })
    }

    /// What steps the environments: `gymnasium.vector.SyncVectorEnv`,
    /// `gymnasium.vector.AsyncVectorEnv` or `ale_py.AtariVectorEnv`.
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// The environment the bridge was stepping or resetting, if it was in one (a sync
    /// vector keeps this in the shared buffer, so that the one that hangs or takes the
    /// process down can be named).
    fn stepping(&self) -> Option<usize> {
        let at = 2 * self.n * self.observation_space.flat_dim() * 4;
        let b = &self.shm[at..at + 4];
        usize::try_from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok()
            .filter(|&i| i < self.n)
    }

    /// The error `f` as the run reports it: the environment it names (its steps), or
    /// the worker's environments as a whole.
    fn raised(&self, f: Failure) -> EnvError {
        match f.env.or_else(|| self.stepping()).filter(|&i| i < self.n) {
            Some(i) => EnvError::Raised {
                id: self.id.clone(),
                env: Some(i),
                step: self.steps[i],
                message: f.message,
            },
            None => EnvError::Raised {
                id: self.id.clone(),
                env: None,
                step: self.steps[0],
                message: format!(
                    "{} (in the Python process of {} environments, {})",
                    f.message, self.n, self.backend
                ),
            },
        }
    }

    /// Reads rows `rows` of the shared buffer's half `half` into `obs`, each checked
    /// finite (an error names its row).
    fn read_rows(
        &self,
        half: usize,
        rows: std::ops::Range<usize>,
        obs: &mut [f32],
    ) -> Result<(), Failure> {
        let d = self.observation_space.flat_dim();
        for (r, o) in rows.zip(obs.chunks_exact_mut(d)) {
            let start = (half * self.n + r) * d * 4;
            floats(&self.shm[start..start + d * 4], o).map_err(|message| Failure {
                env: Some(r),
                message,
            })?;
        }
        Ok(())
    }
}

impl BatchEnv for GymnasiumVec {
    fn id(&self) -> &str {
        &self.id
    }

    fn len(&self) -> usize {
        self.n
    }

    fn observation_space(&self) -> Space {
        self.observation_space.clone()
    }

    fn action_space(&self) -> Space {
        Space::Discrete(self.n_actions)
    }

    fn reset(&mut self, seeds: &[Option<u64>], obs: &mut [f32]) {
        self.msg.clear();
        self.msg.push(b'R');
        for s in seeds.iter().chain(std::iter::repeat(&None)).take(self.n) {
            self.msg.push(s.is_some() as u8);
            self.msg.extend_from_slice(&s.unwrap_or(0).to_le_bytes());
        }
        let r = self
            .bridge
            .send(&self.msg)
            .map_err(Failure::from)
            .and_then(|()| self.bridge.status())
            .and_then(|()| self.read_rows(0, 0..self.n, obs));
        if let Err(mut f) = r {
            obs.fill(0.0);
            f.message = format!("reset failed: {}", f.message);
            self.pending = Some(f);
        }
    }

    fn step(
        &mut self,
        actions: &[usize],
        obs: &mut [f32],
        final_obs: &mut [f32],
        out: &mut VecStep,
    ) -> Result<(), EnvError> {
        let d = self.observation_space.flat_dim();
        let n = self.n;
        if actions.len() != n || obs.len() != n * d || final_obs.len() != n * d {
            return Err(EnvError::InvalidOption {
                id: self.id.clone(),
                key: "actions".into(),
                reason: format!(
                    "{} actions and {} / {} observation values for {n} environments of {d} values",
                    actions.len(),
                    obs.len(),
                    final_obs.len()
                ),
            });
        }
        if let Some(f) = self.pending.take() {
            return Err(self.raised(f));
        }
        if let Some(&action) = actions.iter().find(|&&a| a >= self.n_actions) {
            return Err(EnvError::InvalidAction {
                action,
                space: Space::Discrete(self.n_actions),
            });
        }
        self.msg.clear();
        self.msg.push(b'S');
        for &a in actions {
            self.msg.extend_from_slice(&(a as u32).to_le_bytes());
        }
        for s in &mut self.steps {
            *s += 1;
        }
        let r = self
            .bridge
            .send(&self.msg)
            .map_err(Failure::from)
            .and_then(|()| self.bridge.status());
        r.map_err(|f| self.raised(f))?;
        self.bridge
            .read(&mut self.flags)
            .map_err(|e| self.raised(e.into()))?;
        for (i, f) in self.flags.chunks_exact(6).enumerate() {
            let reward = f32::from_le_bytes([f[0], f[1], f[2], f[3]]);
            if !reward.is_finite() {
                return Err(self.raised(Failure {
                    env: Some(i),
                    message: format!("it gave the reward {reward}"),
                }));
            }
            out.rewards[i] = reward;
            out.terminated[i] = f[4] != 0;
            out.truncated[i] = f[5] != 0;
        }
        self.read_rows(0, 0..self.n, obs)
            .map_err(|f| self.raised(f))?;
        for i in 0..self.n {
            if out.terminated[i] || out.truncated[i] {
                self.read_rows(1, i..i + 1, &mut final_obs[i * d..(i + 1) * d])
                    .map_err(|f| self.raised(f))?;
            }
        }
        Ok(())
    }

    fn hurry(&self) -> Option<Hurry> {
        Some(self.bridge.hurry.clone())
    }
}
