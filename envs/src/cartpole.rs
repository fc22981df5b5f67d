//! CartPole, as Gymnasium's `CartPole-v1` (classic_control/cartpole.py, Barto, Sutton &
//! Anderson 1983): same constants, Euler integration in f64, reward 1 on every step
//! including the terminating one, reset state uniform in ±0.05. The 500-step limit of
//! `CartPole-v1` is the registry's [`crate::registry`] `TimeLimit`.

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::env::{from_state, to_state, Env, EnvError, Info, Space, StepOutcome};
use crate::SeededRng;

const GRAVITY: f64 = 9.8;
const MASSCART: f64 = 1.0;
const MASSPOLE: f64 = 0.1;
const TOTAL_MASS: f64 = MASSPOLE + MASSCART;
/// Half the pole's length, as in Gymnasium.
const LENGTH: f64 = 0.5;
const POLEMASS_LENGTH: f64 = MASSPOLE * LENGTH;
const FORCE_MAG: f64 = 10.0;
/// Seconds between state updates.
const TAU: f64 = 0.02;
/// 12 degrees, written as Gymnasium writes it.
pub const THETA_THRESHOLD: f64 = 12.0 * 2.0 * std::f64::consts::PI / 360.0;
pub const X_THRESHOLD: f64 = 2.4;

/// The physical state `(x, x_dot, theta, theta_dot)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CartPoleState {
    /// Cart position.
    pub x: f64,
    /// Cart velocity.
    pub x_dot: f64,
    /// Pole angle in radians (0 upright).
    pub theta: f64,
    /// Pole angular velocity.
    pub theta_dot: f64,
}

impl CartPoleState {
    /// One Euler step of Gymnasium's equations of motion under `action` (0 pushes left),
    /// with its order of floating-point operations (`np.square` first); states agree with
    /// Gymnasium's to ~1e-13 over 500 steps (numpy's sin/cos can differ in the last bit).
    pub fn next(self, action: usize) -> CartPoleState {
        let force = if action == 1 { FORCE_MAG } else { -FORCE_MAG };
        let (sintheta, costheta) = self.theta.sin_cos();
        let temp =
            (force + POLEMASS_LENGTH * (self.theta_dot * self.theta_dot) * sintheta) / TOTAL_MASS;
        let thetaacc = (GRAVITY * sintheta - costheta * temp)
            / (LENGTH * (4.0 / 3.0 - MASSPOLE * (costheta * costheta) / TOTAL_MASS));
        let xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS;
        CartPoleState {
            x: self.x + TAU * self.x_dot,
            x_dot: self.x_dot + TAU * xacc,
            theta: self.theta + TAU * self.theta_dot,
            theta_dot: self.theta_dot + TAU * thetaacc,
        }
    }

    /// Gymnasium's termination test.
    pub fn is_terminal(&self) -> bool {
        self.x < -X_THRESHOLD
            || self.x > X_THRESHOLD
            || self.theta < -THETA_THRESHOLD
            || self.theta > THETA_THRESHOLD
    }

    /// A linear controller on the full state that balances for the 500 steps of
    /// CartPole-v1 (the oracle of `rlcpc envs score`).
    pub fn balancing_action(&self) -> usize {
        (self.theta + 0.5 * self.theta_dot + 0.01 * self.x + 0.1 * self.x_dot > 0.0) as usize
    }

    fn write_obs(&self, obs: &mut [f32]) {
        obs[0] = self.x as f32;
        obs[1] = self.x_dot as f32;
        obs[2] = self.theta as f32;
        obs[3] = self.theta_dot as f32;
    }
}

/// The cart-pole balancing task without a time limit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CartPole {
    /// The physical state now.
    pub state: CartPoleState,
    rng: SeededRng,
}

impl Default for CartPole {
    fn default() -> Self {
        Self::new()
    }
}

impl CartPole {
    /// A cart-pole at rest; `reset` draws the start state.
    pub fn new() -> Self {
        CartPole {
            state: CartPoleState {
                x: 0.0,
                x_dot: 0.0,
                theta: 0.0,
                theta_dot: 0.0,
            },
            rng: SeededRng::seed_from_u64(0),
        }
    }
}

impl Env for CartPole {
    fn id(&self) -> &str {
        "CartPole"
    }

    fn state_names(&self) -> Vec<String> {
        ["x", "x_dot", "theta", "theta_dot"]
            .map(String::from)
            .to_vec()
    }

    fn true_state(&self) -> Vec<f32> {
        let s = &self.state;
        [s.x, s.x_dot, s.theta, s.theta_dot]
            .map(|v| v as f32)
            .to_vec()
    }

    fn observation_space(&self) -> Space {
        let high = [
            (X_THRESHOLD * 2.0) as f32,
            f32::MAX,
            (THETA_THRESHOLD * 2.0) as f32,
            f32::MAX,
        ];
        Space::Box {
            low: high.iter().map(|h| -h).collect(),
            high: high.to_vec(),
            shape: vec![4],
        }
    }

    fn action_space(&self) -> Space {
        Space::Discrete(2)
    }

    fn reset_into(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Info {
        if let Some(seed) = seed {
            self.rng = SeededRng::seed_from_u64(seed);
        }
        let mut u = || self.rng.random_range(-0.05..0.05);
        self.state = CartPoleState {
            x: u(),
            x_dot: u(),
            theta: u(),
            theta_dot: u(),
        };
        self.state.write_obs(obs);
        Info::new()
    }

    fn step_into(&mut self, action: usize, obs: &mut [f32]) -> Result<StepOutcome, EnvError> {
        if action >= 2 {
            return Err(EnvError::InvalidAction {
                action,
                space: self.action_space(),
            });
        }
        self.state = self.state.next(action);
        self.state.write_obs(obs);
        Ok(StepOutcome {
            reward: 1.0,
            terminated: self.state.is_terminal(),
            truncated: false,
        })
    }

    fn oracle_action(&self) -> Option<usize> {
        Some(self.state.balancing_action())
    }

    fn save_state(&self) -> serde_json::Value {
        to_state(self)
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<(), EnvError> {
        *self = from_state(state)?;
        Ok(())
    }
}

/// CartPole-v1 with the velocities hidden: observations are `(x, theta)` only, so a
/// policy must infer the velocities from the history (POPGym's stateless CartPole).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MaskedCartPole {
    /// The full CartPole underneath.
    pub inner: CartPole,
}

impl MaskedCartPole {
    fn mask(&self, obs: &mut [f32]) {
        obs[0] = self.inner.state.x as f32;
        obs[1] = self.inner.state.theta as f32;
    }
}

impl Env for MaskedCartPole {
    fn id(&self) -> &str {
        "MaskedCartPole"
    }

    /// The velocities are differences of two observations.
    fn memory_span(&self) -> Option<usize> {
        Some(2)
    }

    fn state_names(&self) -> Vec<String> {
        ["x", "x_dot", "theta", "theta_dot"]
            .map(String::from)
            .to_vec()
    }

    fn true_state(&self) -> Vec<f32> {
        let s = &self.inner.state;
        [s.x, s.x_dot, s.theta, s.theta_dot]
            .map(|v| v as f32)
            .to_vec()
    }

    fn observation_space(&self) -> Space {
        match self.inner.observation_space() {
            Space::Box { low, high, .. } => Space::Box {
                low: vec![low[0], low[2]],
                high: vec![high[0], high[2]],
                shape: vec![2],
            },
            other => other,
        }
    }

    fn action_space(&self) -> Space {
        self.inner.action_space()
    }

    fn reset_into(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Info {
        let mut full = [0f32; 4];
        let info = self.inner.reset_into(seed, &mut full);
        self.mask(obs);
        info
    }

    fn step_into(&mut self, action: usize, obs: &mut [f32]) -> Result<StepOutcome, EnvError> {
        let mut full = [0f32; 4];
        let o = self.inner.step_into(action, &mut full)?;
        self.mask(obs);
        Ok(o)
    }

    fn oracle_action(&self) -> Option<usize> {
        self.inner.oracle_action()
    }

    fn save_state(&self) -> serde_json::Value {
        to_state(self)
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<(), EnvError> {
        *self = from_state(state)?;
        Ok(())
    }
}
