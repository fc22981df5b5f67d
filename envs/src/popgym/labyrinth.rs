//! POPGym's Labyrinth Escape and Labyrinth Explore (`popgym/core/maze.py`): a new maze
//! each episode from mazelib's Hunt-and-Kill generator with random hunting, the agent
//! entering from an outer wall and seeing the 3×3 window around it.

use std::collections::VecDeque;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{RawSpace, Task};
use crate::env::StepOutcome;
use crate::SeededRng;

/// A free cell.
pub const FREE: u8 = 0;
/// A wall.
pub const WALL: u8 = 1;
/// The entrance the agent starts on.
pub const START: u8 = 2;
/// The exit (Labyrinth Escape).
pub const GOAL: u8 = 3;
/// The action POPGym reports before the first move.
const NO_ACTION: f32 = 4.0;

/// A maze grid of `(2h + 1) × (2w + 1)` cells, as mazelib lays it out: cells at odd
/// coordinates are rooms, the others walls or passages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Maze {
    /// Rows of the grid.
    pub rows: usize,
    /// Columns of the grid.
    pub cols: usize,
    /// [`FREE`], [`WALL`], [`START`] or [`GOAL`], row-major.
    pub grid: Vec<u8>,
    /// The entrance on the outer wall.
    pub start: (usize, usize),
    /// The exit on the opposite wall.
    pub end: (usize, usize),
}

impl Maze {
    /// mazelib's `HuntAndKill(w, h).generate()` with `hunt_order = "random"`, then
    /// `generate_entrances(start_outer=True)`.
    pub fn hunt_and_kill(h: usize, w: usize, rng: &mut SeededRng) -> Maze {
        let (rows, cols) = (2 * h + 1, 2 * w + 1);
        let mut maze = Maze {
            rows,
            cols,
            grid: vec![WALL; rows * cols],
            start: (0, 0),
            end: (0, 0),
        };
        let odd = |rng: &mut SeededRng, n: usize| 1 + 2 * rng.random_range(0..n / 2);
        let (mut r, mut c) = (odd(rng, rows), odd(rng, cols));
        maze.grid[r * cols + c] = FREE;
        for _ in 0..=rows * cols {
            maze.walk(r, c, rng);
            (r, c) = (odd(rng, rows), odd(rng, cols));
        }
        maze.entrances(rng);
        maze
    }

    fn walk(&mut self, mut r: usize, mut c: usize, rng: &mut SeededRng) {
        if self.grid[r * self.cols + c] != FREE {
            return;
        }
        let mut next = Vec::with_capacity(4);
        loop {
            next.clear();
            if r > 1 && self.grid[(r - 2) * self.cols + c] == WALL {
                next.push((r - 2, c));
            }
            if r + 2 < self.rows && self.grid[(r + 2) * self.cols + c] == WALL {
                next.push((r + 2, c));
            }
            if c > 1 && self.grid[r * self.cols + c - 2] == WALL {
                next.push((r, c - 2));
            }
            if c < self.cols - 2 && self.grid[r * self.cols + c + 2] == WALL {
                next.push((r, c + 2));
            }
            if next.is_empty() {
                return;
            }
            let (nr, nc) = next[rng.random_range(0..next.len())];
            self.grid[nr * self.cols + nc] = FREE;
            self.grid[(nr + r) / 2 * self.cols + (nc + c) / 2] = FREE;
            (r, c) = (nr, nc);
        }
    }

    fn entrances(&mut self, rng: &mut SeededRng) {
        let (h, w) = (self.rows, self.cols);
        loop {
            let odd = |rng: &mut SeededRng, n: usize| 1 + 2 * rng.random_range(0..n / 2);
            (self.start, self.end) = match rng.random_range(0..4) {
                0 => ((0, odd(rng, w)), (h - 1, odd(rng, w))),
                1 => ((h - 1, odd(rng, w)), (0, odd(rng, w))),
                2 => ((odd(rng, h), 0), (odd(rng, h), w - 1)),
                _ => ((odd(rng, h), w - 1), (odd(rng, h), 0)),
            };
            if self.start.0.abs_diff(self.end.0) + self.start.1.abs_diff(self.end.1) >= 2 {
                return;
            }
        }
    }

    fn at(&self, (y, x): (usize, usize)) -> u8 {
        self.grid[y * self.cols + x]
    }

    /// Length of the shortest path between two cells, through anything but walls.
    pub fn distance(&self, from: (usize, usize), to: (usize, usize)) -> Option<usize> {
        self.bfs(from, |p| p == to).map(|(_, d)| d)
    }

    /// Breadth-first search from `from` to the nearest cell where `goal` holds: the first
    /// action on the way and the distance.
    fn bfs(
        &self,
        from: (usize, usize),
        goal: impl Fn((usize, usize)) -> bool,
    ) -> Option<(usize, usize)> {
        let mut first = vec![usize::MAX; self.grid.len()];
        let mut dist = vec![0usize; self.grid.len()];
        let mut queue = VecDeque::from([from]);
        first[from.0 * self.cols + from.1] = 4;
        while let Some(p) = queue.pop_front() {
            let i = p.0 * self.cols + p.1;
            if goal(p) && p != from {
                return Some((first[i], dist[i]));
            }
            for a in 0..4 {
                let q = self.moved(p, a);
                let j = q.0 * self.cols + q.1;
                if first[j] == usize::MAX {
                    first[j] = if p == from { a } else { first[i] };
                    dist[j] = dist[i] + 1;
                    queue.push_back(q);
                }
            }
        }
        None
    }

    /// Where action `a` (left, right, up, down) leads from `p`: walls and the grid's edge
    /// stop the agent.
    fn moved(&self, (y, x): (usize, usize), a: usize) -> (usize, usize) {
        let to = match a {
            0 => (y, x.saturating_sub(1)),
            1 => (y, (x + 1).min(self.cols - 1)),
            2 => (y.saturating_sub(1), x),
            _ => ((y + 1).min(self.rows - 1), x),
        };
        if self.at(to) == WALL {
            (y, x)
        } else {
            to
        }
    }
}

/// Labyrinth Escape (reach the exit: +1, and −1/L each step) or Labyrinth Explore
/// (+1/F for each free cell first entered, −1/L otherwise; done when all are visited).
/// Episodes are truncated at step L − 1. The observation is the 3×3 window around the
/// agent (POPGym clips it at the grid's top and left edges and pads it with walls at
/// the bottom and right, so there it is shifted) and the last action (4 at reset).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Labyrinth {
    /// Maze size in blocks, as POPGym's `maze_dims` (even).
    pub blocks: usize,
    /// L, the step limit.
    pub length: usize,
    /// Explore (true) or Escape.
    pub explore: bool,
    /// The maze.
    pub maze: Maze,
    /// The agent's cell `(row, column)`.
    pub pos: (usize, usize),
    /// Cells visited.
    pub explored: Vec<bool>,
    /// Cells visited so far and cells there are to visit.
    pub counts: (usize, usize),
    /// Free cells at reset (Explore's reward scale).
    pub free: usize,
    /// Steps taken.
    pub steps: usize,
}

impl Labyrinth {
    /// A `blocks × blocks` maze (even), `length` steps.
    pub fn new(blocks: usize, length: usize, explore: bool) -> Self {
        Labyrinth {
            blocks,
            length,
            explore,
            maze: Maze {
                rows: blocks + 1,
                cols: blocks + 1,
                grid: vec![WALL; (blocks + 1) * (blocks + 1)],
                start: (0, 1),
                end: (blocks, 1),
            },
            pos: (0, 1),
            explored: vec![false; (blocks + 1) * (blocks + 1)],
            counts: (0, 0),
            free: 0,
            steps: 0,
        }
    }

    /// Starts an episode in `maze` as mazelib generated it (no start or goal marks).
    pub fn start(&mut self, maze: Maze, raw: &mut [f32]) {
        self.maze = maze;
        let cols = self.maze.cols;
        let s = self.maze.start;
        self.maze.grid[s.0 * cols + s.1] = START;
        if !self.explore {
            let e = self.maze.end;
            self.maze.grid[e.0 * cols + e.1] = GOAL;
        }
        self.pos = s;
        self.explored.clear();
        self.explored.resize(self.maze.grid.len(), false);
        self.explored[s.0 * cols + s.1] = true;
        self.free = self.maze.grid.iter().filter(|g| **g == FREE).count();
        self.counts = (1, self.maze.grid.iter().filter(|g| **g != WALL).count());
        self.steps = 0;
        self.write(NO_ACTION, raw);
    }

    fn write(&self, action: f32, raw: &mut [f32]) {
        let (y, x) = self.pos;
        let (y0, x0) = (y.saturating_sub(1), x.saturating_sub(1));
        let (y1, x1) = ((y + 2).min(self.maze.rows), (x + 2).min(self.maze.cols));
        raw[..9].fill(WALL as f32);
        for (i, yy) in (y0..y1).enumerate() {
            for (j, xx) in (x0..x1).enumerate() {
                raw[i * 3 + j] = self.maze.at((yy, xx)) as f32;
            }
        }
        raw[9] = action;
    }
}

impl Task for Labyrinth {
    fn raw_space(&self) -> RawSpace {
        RawSpace::Discrete(vec![5; 10])
    }
    fn action_nvec(&self) -> Vec<usize> {
        vec![4]
    }
    fn reset(&mut self, rng: &mut SeededRng, raw: &mut [f32]) {
        let maze = Maze::hunt_and_kill(self.blocks / 2, self.blocks / 2, rng);
        self.start(maze, raw);
    }
    fn step(&mut self, action: usize, _: &mut SeededRng, raw: &mut [f32]) -> StepOutcome {
        self.pos = self.maze.moved(self.pos, action);
        let i = self.pos.0 * self.maze.cols + self.pos.1;
        let new = !self.explored[i];
        self.explored[i] = true;
        self.counts.0 += new as usize;
        self.steps += 1;
        let mut reward = -1.0 / self.length as f64;
        let terminated = if self.explore {
            if new {
                reward = 1.0 / self.free as f64;
            }
            self.counts.0 == self.counts.1
        } else if self.maze.grid[i] == GOAL {
            reward += 1.0;
            true
        } else {
            false
        };
        self.write(action as f32, raw);
        StepOutcome {
            reward: reward as f32,
            terminated,
            truncated: self.steps + 1 == self.length,
        }
    }
    /// Sees the maze: the shortest path to the exit, or to the nearest cell not visited.
    fn oracle(&self) -> Option<usize> {
        let found = if self.explore {
            let cols = self.maze.cols;
            self.maze
                .bfs(self.pos, |p| !self.explored[p.0 * cols + p.1])
        } else {
            self.maze.bfs(self.pos, |p| self.maze.at(p) == GOAL)
        };
        Some(found.map_or(0, |(a, _)| a))
    }
}
