//! POPGym's stateless CartPoles: Gymnasium's CartPole dynamics ([`CartPoleState`])
//! observed through positions only, velocities only, or positions with Gaussian noise;
//! reward 1/L per step, episodes truncated after L steps.

use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use super::{RawSpace, Task};
use crate::cartpole::{CartPoleState, THETA_THRESHOLD, X_THRESHOLD};
use crate::env::StepOutcome;
use crate::SeededRng;

/// Which half of the state the agent sees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum CartPoleView {
    /// `(x, theta)`.
    Position,
    /// `(x_dot, theta_dot)`; POPGym's reset shows `(x, theta)` (upstream's quirk, kept).
    Velocity,
}

/// A POPGym CartPole (the module doc describes it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PopCartPole {
    /// What is observed.
    pub view: CartPoleView,
    /// L, the step limit.
    pub length: usize,
    /// Standard deviation of the observation noise (0: none).
    pub noise: f64,
    /// The physical state.
    pub state: CartPoleState,
    /// Steps taken.
    pub steps: usize,
    /// The pole has fallen (later steps pay −1, as POPGym's reward transform does).
    pub fallen: bool,
}

impl PopCartPole {
    /// A cart-pole seen through `view`, `length` steps, observation noise `noise`.
    pub fn new(view: CartPoleView, length: usize, noise: f64) -> Self {
        PopCartPole {
            view,
            length,
            noise,
            state: CartPoleState {
                x: 0.0,
                x_dot: 0.0,
                theta: 0.0,
                theta_dot: 0.0,
            },
            steps: 0,
            fallen: false,
        }
    }

    fn high(&self) -> [f32; 2] {
        match self.view {
            CartPoleView::Position => [(X_THRESHOLD * 2.0) as f32, (THETA_THRESHOLD * 2.0) as f32],
            CartPoleView::Velocity => [f32::MAX; 2],
        }
    }

    /// Starts an episode from `state`; writes the noise-free observation.
    pub fn start(&mut self, state: CartPoleState, raw: &mut [f32]) {
        self.state = state;
        self.steps = 0;
        self.fallen = false;
        raw[0] = state.x as f32;
        raw[1] = state.theta as f32;
    }

    /// One step under `action`, writing the noise-free observation.
    pub fn advance(&mut self, action: usize, raw: &mut [f32]) -> StepOutcome {
        self.state = self.state.next(action);
        let reward = if self.fallen {
            -1.0
        } else {
            1.0 / self.length as f32
        };
        let terminated = self.state.is_terminal();
        self.fallen |= terminated;
        self.steps += 1;
        let s = &self.state;
        let (a, b) = match self.view {
            CartPoleView::Position => (s.x, s.theta),
            CartPoleView::Velocity => (s.x_dot, s.theta_dot),
        };
        raw[0] = a as f32;
        raw[1] = b as f32;
        StepOutcome {
            reward,
            terminated,
            truncated: self.steps >= self.length,
        }
    }

    fn add_noise(&self, rng: &mut SeededRng, raw: &mut [f32]) {
        if self.noise > 0.0 {
            let normal = Normal::new(0.0, self.noise).expect("the noise is finite and positive");
            let high = self.high();
            for (r, h) in raw.iter_mut().zip(high) {
                *r = (*r + normal.sample(rng) as f32).clamp(-h, h);
            }
        }
    }
}

impl Task for PopCartPole {
    /// Positions alone: the velocities are differences of two observations. (Velocities
    /// alone must be integrated over the episode, noise filtered: no fixed span.)
    fn memory_span(&self) -> Option<usize> {
        (self.view == CartPoleView::Position && self.noise == 0.0).then_some(2)
    }
    fn raw_space(&self) -> RawSpace {
        let high = self.high().to_vec();
        RawSpace::Box {
            low: high.iter().map(|h| -h).collect(),
            high,
        }
    }
    fn action_nvec(&self) -> Vec<usize> {
        vec![2]
    }
    fn reset(&mut self, rng: &mut SeededRng, raw: &mut [f32]) {
        let mut u = || rng.random_range(-0.05..0.05);
        let state = CartPoleState {
            x: u(),
            x_dot: u(),
            theta: u(),
            theta_dot: u(),
        };
        self.start(state, raw);
        self.add_noise(rng, raw);
    }
    fn step(&mut self, action: usize, rng: &mut SeededRng, raw: &mut [f32]) -> StepOutcome {
        let out = self.advance(action, raw);
        self.add_noise(rng, raw);
        out
    }
    /// Sees the full state: CartPole's balancing controller.
    fn oracle(&self) -> Option<usize> {
        Some(self.state.balancing_action())
    }
}
