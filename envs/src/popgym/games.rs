//! POPGym's Multiarmed Bandit, Battleship and Minesweeper.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{RawSpace, Task};
use crate::env::StepOutcome;
use crate::SeededRng;

/// An episodic bandit: each arm pays (observation 1, +1/L) with a probability drawn
/// uniformly per episode, and otherwise costs 1/L; episodes are truncated after L steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MultiarmedBandit {
    /// Each arm's probability of paying.
    pub arms: Vec<f32>,
    /// Steps per episode.
    pub length: usize,
    /// Steps taken.
    pub steps: usize,
}

impl MultiarmedBandit {
    /// `arms` arms, `length` steps.
    pub fn new(arms: usize, length: usize) -> Self {
        MultiarmedBandit {
            arms: vec![0.0; arms],
            length,
            steps: 0,
        }
    }

    /// One pull of `arm` whose uniform draw was `u`, as POPGym decides it.
    pub fn pull(&mut self, arm: usize, u: f64, raw: &mut [f32]) -> StepOutcome {
        let paid = u < self.arms[arm] as f64;
        raw[0] = paid as u8 as f32;
        let scale = 1.0 / self.length as f64;
        let truncated = self.steps + 1 >= self.length;
        self.steps += 1;
        StepOutcome {
            reward: (if paid { scale } else { -scale }) as f32,
            terminated: false,
            truncated,
        }
    }
}

impl Task for MultiarmedBandit {
    fn raw_space(&self) -> RawSpace {
        RawSpace::Discrete(vec![2])
    }
    fn action_nvec(&self) -> Vec<usize> {
        vec![self.arms.len()]
    }
    fn reset(&mut self, rng: &mut SeededRng, raw: &mut [f32]) {
        for p in &mut self.arms {
            *p = rng.random();
        }
        self.steps = 0;
        raw[0] = 0.0;
    }
    fn step(&mut self, action: usize, rng: &mut SeededRng, raw: &mut [f32]) -> StepOutcome {
        let u = rng.random::<f64>();
        self.pull(action, u, raw)
    }
    /// Knows the probabilities: pulls the best arm.
    fn oracle(&self) -> Option<usize> {
        (0..self.arms.len()).max_by(|a, b| self.arms[*a].total_cmp(&self.arms[*b]))
    }
}

/// Battleship on a hidden `size × size` board: fire at a cell (actions row-major),
/// observe hit (1) or miss (0). A new hit pays 1/H (H the ships' cells), anything else
/// costs 1/(size² − H); the episode ends when every ship cell is hit, or after size²
/// shots.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Battleship {
    /// Board side.
    pub size: usize,
    /// The ships' lengths.
    pub ships: Vec<usize>,
    /// Ship cells, row-major.
    pub board: Vec<bool>,
    /// Cells fired at.
    pub guesses: Vec<bool>,
    /// New hits so far.
    pub hits: usize,
    /// Shots so far.
    pub steps: usize,
}

impl Battleship {
    /// A `size × size` board with ships of the given lengths.
    pub fn new(size: usize, ships: &[usize]) -> Self {
        Battleship {
            size,
            ships: ships.to_vec(),
            board: vec![false; size * size],
            guesses: vec![false; size * size],
            hits: 0,
            steps: 0,
        }
    }

    fn needed(&self) -> usize {
        self.ships.iter().sum()
    }

    /// Starts an episode on the board as it lies.
    pub fn start(&mut self, raw: &mut [f32]) {
        self.guesses.fill(false);
        self.hits = 0;
        self.steps = 0;
        raw[0] = 0.0;
    }

    /// POPGym's `place_ship`: a random start cell and direction until the ship fits
    /// on free water.
    fn place(&mut self, len: usize, rng: &mut SeededRng) {
        let n = self.size as i64;
        loop {
            let start = [rng.random_range(0..n), rng.random_range(0..n)];
            let (axis, sign) = (rng.random_range(0..2usize), rng.random_range(0..2));
            let mut end = start;
            end[axis] += if sign == 0 { 1 } else { -1 } * (len as i64 - 1);
            if end.iter().any(|e| *e < 0 || *e >= n) {
                continue;
            }
            let lo = [start[0].min(end[0]), start[1].min(end[1])];
            let hi = [start[0].max(end[0]), start[1].max(end[1])];
            let cells = || {
                (lo[0]..=hi[0])
                    .flat_map(move |r| (lo[1]..=hi[1]).map(move |c| (r * n + c) as usize))
            };
            if cells().all(|i| !self.board[i]) {
                for i in cells() {
                    self.board[i] = true;
                }
                return;
            }
        }
    }
}

impl Task for Battleship {
    fn raw_space(&self) -> RawSpace {
        RawSpace::Discrete(vec![2])
    }
    fn action_nvec(&self) -> Vec<usize> {
        vec![self.size, self.size]
    }
    fn reset(&mut self, rng: &mut SeededRng, raw: &mut [f32]) {
        self.board.fill(false);
        for i in 0..self.ships.len() {
            self.place(self.ships[i], rng);
        }
        self.start(raw);
    }
    fn step(&mut self, action: usize, _: &mut SeededRng, raw: &mut [f32]) -> StepOutcome {
        let hit = self.board[action] && !self.guesses[action];
        self.guesses[action] = true;
        self.hits += hit as usize;
        self.steps += 1;
        let cells = self.size * self.size;
        let needed = self.needed();
        raw[0] = hit as u8 as f32;
        let reward = if hit {
            1.0 / needed as f64
        } else {
            -1.0 / (cells - needed) as f64
        };
        StepOutcome {
            reward: reward as f32,
            terminated: self.hits == needed,
            truncated: self.steps >= cells,
        }
    }
    /// Sees the board: fires at a ship cell not yet hit.
    fn oracle(&self) -> Option<usize> {
        (0..self.board.len())
            .find(|&i| self.board[i] && !self.guesses[i])
            .or(Some(0))
    }
}

/// A cell of Minesweeper's hidden grid.
pub const CLEAR: u8 = 0;
/// A mine.
pub const MINE: u8 = 1;
/// A cleared cell.
pub const VIEWED: u8 = 2;

/// Minesweeper on a hidden grid: click a cell (actions row-major) and observe the mines
/// in its 3×3 neighbourhood, itself included. A new clear cell pays 1/F (F the clear
/// cells), a cell clicked again costs 0.5/(F − 2), a mine ends it at −0.5 − 1/F;
/// clearing every cell ends it; F steps truncate it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MineSweeper {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Number of mines.
    pub mines: usize,
    /// [`CLEAR`], [`MINE`] or [`VIEWED`], row-major.
    pub hidden: Vec<u8>,
    /// Mines in each cell's neighbourhood.
    pub neighbours: Vec<u8>,
    /// Steps taken.
    pub steps: usize,
}

impl MineSweeper {
    /// A `rows × cols` field with `mines` mines.
    pub fn new(rows: usize, cols: usize, mines: usize) -> Self {
        MineSweeper {
            rows,
            cols,
            mines,
            hidden: vec![CLEAR; rows * cols],
            neighbours: vec![0; rows * cols],
            steps: 0,
        }
    }

    fn free(&self) -> usize {
        self.rows * self.cols - self.mines
    }

    /// Starts an episode on the mines as they lie in `hidden`.
    pub fn start(&mut self, raw: &mut [f32]) {
        let (rows, cols) = (self.rows as i64, self.cols as i64);
        for r in 0..rows {
            for c in 0..cols {
                let mut n = 0;
                for dr in -1..=1 {
                    for dc in -1..=1 {
                        let (y, x) = (r + dr, c + dc);
                        if (0..rows).contains(&y) && (0..cols).contains(&x) {
                            n += (self.hidden[(y * cols + x) as usize] == MINE) as u8;
                        }
                    }
                }
                self.neighbours[(r * cols + c) as usize] = n;
            }
        }
        self.steps = 0;
        raw[0] = 0.0;
    }
}

impl Task for MineSweeper {
    fn raw_space(&self) -> RawSpace {
        RawSpace::Discrete(vec![(self.mines + 1).min(10)])
    }
    fn action_nvec(&self) -> Vec<usize> {
        vec![self.rows, self.cols]
    }
    fn reset(&mut self, rng: &mut SeededRng, raw: &mut [f32]) {
        self.hidden.fill(CLEAR);
        for i in rand::seq::index::sample(rng, self.hidden.len(), self.mines) {
            self.hidden[i] = MINE;
        }
        self.start(raw);
    }
    fn step(&mut self, action: usize, _: &mut SeededRng, raw: &mut [f32]) -> StepOutcome {
        let success = 1.0 / self.free() as f64;
        let (mut terminated, reward) = match self.hidden[action] {
            MINE => (true, -0.5 - success),
            VIEWED => (false, -0.5 / (self.free() - 2) as f64),
            _ => {
                self.hidden[action] = VIEWED;
                (false, success)
            }
        };
        self.steps += 1;
        terminated |= !self.hidden.contains(&CLEAR);
        raw[0] = self.neighbours[action] as f32;
        StepOutcome {
            reward: reward as f32,
            terminated,
            truncated: self.steps == self.free() && !terminated,
        }
    }
    /// Sees the mines: clicks a clear cell.
    fn oracle(&self) -> Option<usize> {
        self.hidden.iter().position(|h| *h == CLEAR).or(Some(0))
    }
}
