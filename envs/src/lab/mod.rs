//! Lab: first-person 3D-looking tasks on a grid, modelled on the five DeepMind Lab
//! levels of the CPC paper (van den Oord et al. 2018, §3.4), fast enough to train on
//! a laptop.
//!
//! A level is a grid of walls (coloured by place, so that places can be recognised),
//! floor, doors and objects. The agent has a continuous position and heading, collides
//! with walls, and acts with DMLab's IMPALA action set; each action is repeated for
//! `action_repeat` frames (4), and only the last frame is rendered. Observations are the
//! first-person RGB view (`[H, W, 3]`, 0–255, 64×48 by default) or, with
//! `obs = "grid"`, an egocentric one-hot top-down window (`[V, V, 24]`).
//!
//! | id | level | DMLab's |
//! |---|---|---|
//! | `lab/explore_goal_locations` | a new maze each episode, a goal at a random place: +10 and respawn on reaching it | explore_goal_locations_small |
//! | `lab/watermaze` | an arena with coloured walls and a hidden platform: +10 and respawn on it | rooms_watermaze |
//! | `lab/seekavoid_arena` | apples +1 and lemons −1 over an arena | seekavoid_arena_01 |
//! | `lab/keys_doors_puzzle` | rooms in a row behind coloured doors, keys (one held at a time), a goal at the end | rooms_keys_doors_puzzle |
//! | `lab/lasertag` | bots that wander an arena; fire to tag one in the centre of view | lasertag_three_opponents_small |
//!
//! Here: the tasks, their settings, and each level's layout and rules. Beside it: `map`
//! (the grid and the level generators), `world` (the level's state and physics),
//! `render` (the views), `options` (the typed `[env.options]`) and `oracle` (the
//! scripted agents).

mod map;
mod options;
mod oracle;
mod render;
mod world;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

pub use map::{cast, Hit};
pub use map::{Cell, Grid, KEY_COLOURS, WALL_COLOURS};
pub(crate) use options::{lab_config, TaskOptions};
pub use options::{
    ExploreGoalLocationsOptions, KeysDoorsPuzzleOptions, LabOptions, LasertagOptions,
    SeekavoidArenaOptions, WatermazeOptions,
};
pub use render::{
    channel, grid_view, sprite, top_down, video_frame, Camera, Shape, Sprite, GRID_CHANNELS,
    SHADE_Y_SIDE,
};
use world::neighbourhood;
pub use world::{action, wrap, Body, Kind, Object, World, ACTIONS, ACTION_NAMES};

use crate::env::{from_state, to_state, Env, EnvError, Image, Info, Space, StepOutcome};
use crate::SeededRng;

/// The five tasks (the module doc describes each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// `lab/explore_goal_locations`.
    ExploreGoalLocations,
    /// `lab/watermaze`.
    Watermaze,
    /// `lab/seekavoid_arena`.
    SeekavoidArena,
    /// `lab/keys_doors_puzzle`.
    KeysDoorsPuzzle,
    /// `lab/lasertag`.
    Lasertag,
}

impl Task {
    /// Every task, in the registry's order.
    pub const ALL: [Task; 5] = [
        Task::ExploreGoalLocations,
        Task::Watermaze,
        Task::SeekavoidArena,
        Task::KeysDoorsPuzzle,
        Task::Lasertag,
    ];

    /// The task registered as `id`, e.g. `lab/watermaze`.
    pub fn from_id(id: &str) -> Option<Task> {
        Task::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The registered id, e.g. `lab/watermaze`.
    pub fn id(self) -> &'static str {
        match self {
            Task::ExploreGoalLocations => "lab/explore_goal_locations",
            Task::Watermaze => "lab/watermaze",
            Task::SeekavoidArena => "lab/seekavoid_arena",
            Task::KeysDoorsPuzzle => "lab/keys_doors_puzzle",
            Task::Lasertag => "lab/lasertag",
        }
    }

    /// Only lasertag fires.
    pub fn num_actions(self) -> usize {
        if self == Task::Lasertag {
            9
        } else {
            8
        }
    }

    /// Default level size in cells (walls included).
    pub fn default_size(self) -> usize {
        match self {
            Task::ExploreGoalLocations => 11,
            Task::Watermaze => 11,
            Task::SeekavoidArena => 11,
            Task::KeysDoorsPuzzle => 4, // floor cells per room side
            Task::Lasertag => 13,
        }
    }
}

/// What the agent observes: option `obs`, `"rgb"` or `"grid"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObsKind {
    /// First-person RGB, `[height, width, 3]`, 0–255.
    Rgb,
    /// Egocentric symbolic top-down window, `[view, view, GRID_CHANNELS]`, one-hot.
    Grid,
}

/// A level's settings, all tasks' in one struct: [`LabConfig::new`] gives a task's
/// defaults, and the registry fills it from the `[env.options]` of a config (read into
/// [`LabOptions`] and the task's own options, which document each).
#[derive(Debug, Clone, PartialEq)]
pub struct LabConfig {
    /// The view and the action repeat, as every task takes them.
    pub common: LabOptions,
    /// Level size: the maze's or arena's side in cells (walls included); for
    /// keys_doors_puzzle the floor side of one room.
    pub size: usize,
    /// seekavoid_arena: apples on the floor.
    pub apples: usize,
    /// seekavoid_arena: lemons on the floor.
    pub lemons: usize,
    /// lasertag: bots.
    pub bots: usize,
    /// keys_doors_puzzle: rooms in the row (2–4; one door fewer).
    pub rooms: usize,
    /// explore_goal_locations: the fraction of inner walls knocked through to make loops.
    pub loops: f64,
}

/// Default episode length in agent steps: 90 s of DMLab at 60 frames per second with
/// action repeat 4.
pub const DEFAULT_EPISODE_STEPS: usize = 1350;

/// One Lab level as a Gymnasium-style environment.
pub struct Lab {
    task: Task,
    cfg: LabConfig,
    /// The level's state (public for tests and scripted scenarios).
    pub world: World,
    camera: Camera,
    sprites: Vec<Sprite>,
}

impl Lab {
    /// Where the task's goal is (the goal object, or watermaze's hidden platform); `None`
    /// for tasks without one.
    pub fn goal_position(&self) -> Option<(f32, f32)> {
        match self.task {
            Task::Watermaze => self.world.platform.map(|(x, y, _)| (x, y)),
            Task::ExploreGoalLocations | Task::KeysDoorsPuzzle => self
                .world
                .objects
                .iter()
                .find(|o| o.kind == world::Kind::Goal)
                .map(|o| (o.x, o.y)),
            Task::SeekavoidArena | Task::Lasertag => None,
        }
    }

    /// The task's level with settings `cfg`, laid out from seed 0 until the first `reset`.
    pub fn new(task: Task, cfg: LabConfig) -> Lab {
        let camera = Camera::new(cfg.common.width, cfg.common.height, cfg.common.fov);
        let mut lab = Lab {
            task,
            cfg,
            world: World::new(Grid::filled(3, 3, Cell::Floor), SeededRng::seed_from_u64(0)),
            camera,
            sprites: Vec::new(),
        };
        lab.layout();
        lab
    }

    /// The task it plays.
    pub fn task(&self) -> Task {
        self.task
    }

    /// Its settings.
    pub fn config(&self) -> &LabConfig {
        &self.cfg
    }

    /// A level on a hand-made map (for tests and scripted scenarios): the given grid,
    /// objects and agent, with the task's rules.
    pub fn with_world(
        task: Task,
        cfg: LabConfig,
        grid: Grid,
        objects: Vec<Object>,
        agent: Body,
    ) -> Lab {
        let mut lab = Lab::new(task, cfg);
        lab.world.grid = grid;
        lab.world.objects = objects;
        lab.world.agent = agent;
        lab.world.held = None;
        lab.world.platform = None;
        lab
    }

    /// Builds a new level from the generator's current state.
    fn layout(&mut self) {
        let c = &self.cfg;
        let w = &mut self.world;
        w.objects.clear();
        w.held = None;
        w.platform = None;
        match self.task {
            Task::ExploreGoalLocations => {
                w.grid = Grid::maze(c.size, c.size, c.loops, &mut w.rng);
                let goal = w.free_cell(&[]);
                w.objects.push(Object::at(Kind::Goal, goal));
                w.spawn_agent(&[goal]);
            }
            Task::Watermaze => {
                w.grid = Grid::arena(c.size, c.size, 0, &mut w.rng);
                let p = w.free_cell(&[]);
                w.platform = Some((p.0 as f32 + 0.5, p.1 as f32 + 0.5, 0.6));
                w.spawn_agent(&[p]);
            }
            Task::SeekavoidArena => {
                w.grid = Grid::arena(c.size, c.size, c.size / 3, &mut w.rng);
                w.spawn_agent(&[]);
                w.scatter_fruit(c.apples, c.lemons);
            }
            Task::KeysDoorsPuzzle => {
                let mut colours: Vec<u8> = (0..4).collect();
                colours.shuffle(&mut w.rng);
                let doors = c.rooms - 1;
                let (grid, rooms) = Grid::rooms(c.rooms, c.size, &colours[..doors], &mut w.rng);
                w.grid = grid;
                // The key of door d lies in one of the rooms before it; one more key, of
                // the unused colour, is a distractor.
                let door_cells: Vec<(usize, usize)> = (0..doors)
                    .map(|d| ((d + 1) * (c.size + 1), (c.size + 2) / 2))
                    .collect();
                let in_front: Vec<(usize, usize)> = door_cells
                    .iter()
                    .flat_map(|&(x, y)| [(x - 1, y), (x + 1, y)])
                    .collect();
                let place = |w: &mut World, kind: Kind, room: usize| {
                    let options: Vec<(usize, usize)> = rooms[room]
                        .iter()
                        .copied()
                        .filter(|p| {
                            !in_front.contains(p) && !w.objects.iter().any(|o| o.cell() == *p)
                        })
                        .collect();
                    let p = options[w.rng.random_range(0..options.len())];
                    w.objects.push(Object::at(kind, p));
                };
                for (d, &col) in colours.iter().enumerate().take(doors) {
                    let room = w.rng.random_range(0..=d);
                    place(w, Kind::Key(col), room);
                }
                let room = w.rng.random_range(0..doors.max(1));
                place(w, Kind::Key(colours[doors]), room);
                place(w, Kind::Goal, c.rooms - 1);
                let start: Vec<(usize, usize)> = rooms[1..].iter().flatten().copied().collect();
                w.spawn_agent(&start);
            }
            Task::Lasertag => {
                w.grid = Grid::arena(c.size, c.size, c.size / 2, &mut w.rng);
                w.spawn_agent(&[]);
                for _ in 0..c.bots {
                    let p = w.free_cell(&[w.agent.cell()]);
                    w.objects.push(Object::at(Kind::Bot, p));
                }
            }
        }
    }

    /// One frame of physics and the task's rules; returns its reward and whether the
    /// episode terminated.
    fn frame(&mut self, action: usize, first: bool) -> (f32, bool) {
        let (fwd, strafe, turn, fire) = ACTIONS[action];
        let w = &mut self.world;
        let blocked = w.move_agent(fwd, strafe, turn);
        let mut reward = 0.0;
        // A door opens to the agent that walks into it with the key of its colour.
        if let Some((bx, by)) = blocked {
            if let Cell::Door(col) = w.grid.get(bx, by) {
                if w.held == Some(col) {
                    w.grid.set(bx as usize, by as usize, Cell::Floor);
                    w.held = None;
                }
            }
        }
        if self.task == Task::Lasertag {
            w.move_bots();
            if fire && first {
                if let Some(i) = w.bot_in_sights() {
                    reward += 1.0;
                    let far: Vec<(usize, usize)> = neighbourhood(w.agent.cell(), 3);
                    let p = w.free_cell(&far);
                    w.objects[i] = Object::at(Kind::Bot, p);
                }
            }
        }
        if let Some((px, py, r)) = w.platform {
            if (w.agent.x - px).powi(2) + (w.agent.y - py).powi(2) < r * r {
                reward += 10.0;
                w.spawn_agent(&neighbourhood((px as usize, py as usize), 1));
            }
        }
        let mut terminated = false;
        let mut i = 0;
        while i < w.objects.len() {
            let o = w.objects[i];
            let near = o.dist(&w.agent) < world::REACH;
            if !o.armed {
                if o.dist(&w.agent) > world::REACH + 0.1 {
                    w.objects[i].armed = true;
                }
                i += 1;
                continue;
            }
            if !near {
                i += 1;
                continue;
            }
            match o.kind {
                Kind::Goal if self.task == Task::KeysDoorsPuzzle => {
                    reward += 10.0;
                    terminated = true;
                    i += 1;
                }
                Kind::Goal => {
                    reward += 10.0;
                    w.spawn_agent(&neighbourhood(o.cell(), 1));
                    i += 1;
                }
                Kind::Apple | Kind::Lemon => {
                    reward += if o.kind == Kind::Apple { 1.0 } else { -1.0 };
                    w.objects.swap_remove(i);
                    if !w.objects.iter().any(|o| o.kind == Kind::Apple) {
                        let lemons = self.cfg.lemons;
                        w.objects.clear();
                        w.scatter_fruit(self.cfg.apples, lemons);
                    }
                }
                Kind::Key(col) => {
                    if o.fresh {
                        reward += 1.0;
                    }
                    w.objects.swap_remove(i);
                    if let Some(h) = w.held.replace(col) {
                        // One key at a time: the one held is left where this one lay.
                        let mut dropped = Object::at(Kind::Key(h), o.cell());
                        (dropped.x, dropped.y, dropped.armed, dropped.fresh) =
                            (o.x, o.y, false, false);
                        w.objects.push(dropped);
                    }
                }
                Kind::Bot => i += 1,
            }
        }
        (reward, terminated)
    }

    fn write_obs(&mut self, obs: &mut [f32]) {
        match self.cfg.common.obs {
            ObsKind::Rgb => {
                self.sprites.clear();
                self.sprites
                    .extend(self.world.objects.iter().map(|o| sprite(o.kind, o.x, o.y)));
                let a = self.world.agent;
                self.camera
                    .render(&self.world.grid, (a.x, a.y, a.angle), &self.sprites, obs);
            }
            ObsKind::Grid => grid_view(&self.world, self.cfg.common.view, obs),
        }
    }

    /// The first-person view (whatever the observation kind) beside the top-down map,
    /// for videos.
    pub fn render_frame(&self) -> Image {
        video_frame(
            &self.world,
            self.cfg.common.width,
            self.cfg.common.height,
            self.cfg.common.fov,
        )
    }
}

impl Env for Lab {
    fn id(&self) -> &str {
        self.task.id()
    }

    fn observation_space(&self) -> Space {
        let shape = match self.cfg.common.obs {
            ObsKind::Rgb => vec![self.cfg.common.height, self.cfg.common.width, 3],
            ObsKind::Grid => vec![self.cfg.common.view, self.cfg.common.view, GRID_CHANNELS],
        };
        let n: usize = shape.iter().product();
        let high = if self.cfg.common.obs == ObsKind::Rgb {
            255.0
        } else {
            1.0
        };
        Space::Box {
            low: vec![0.0; n],
            high: vec![high; n],
            shape,
        }
    }

    fn action_space(&self) -> Space {
        Space::Discrete(self.task.num_actions())
    }

    fn reset_into(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Info {
        if let Some(seed) = seed {
            self.world.rng = SeededRng::seed_from_u64(seed);
        }
        self.layout();
        self.write_obs(obs);
        Info::new()
    }

    fn step_into(&mut self, action: usize, obs: &mut [f32]) -> Result<StepOutcome, EnvError> {
        if action >= self.task.num_actions() {
            return Err(EnvError::InvalidAction {
                action,
                space: self.action_space(),
            });
        }
        let mut reward = 0.0;
        let mut terminated = false;
        for f in 0..self.cfg.common.action_repeat {
            let (r, t) = self.frame(action, f == 0);
            reward += r;
            if t {
                terminated = true;
                break;
            }
        }
        self.write_obs(obs);
        Ok(StepOutcome {
            reward,
            terminated,
            truncated: false,
        })
    }

    fn save_state(&self) -> serde_json::Value {
        to_state(&self.world)
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<(), EnvError> {
        self.world = from_state(state)?;
        Ok(())
    }

    fn oracle_action(&self) -> Option<usize> {
        Some(oracle::oracle(self.task, &self.world))
    }

    fn state_names(&self) -> Vec<String> {
        let mut v: Vec<String> = ["agent_x", "agent_y", "heading_cos", "heading_sin"]
            .map(String::from)
            .to_vec();
        if !matches!(self.task, Task::SeekavoidArena | Task::Lasertag) {
            v.extend(["goal_x", "goal_y"].map(String::from));
        }
        v
    }

    fn true_state(&self) -> Vec<f32> {
        let a = &self.world.agent;
        let mut v = vec![a.x, a.y, a.angle.cos(), a.angle.sin()];
        if !matches!(self.task, Task::SeekavoidArena | Task::Lasertag) {
            let (x, y) = self.goal_position().unwrap_or((-1.0, -1.0));
            v.extend([x, y]);
        }
        v
    }

    fn render(&self) -> Option<Image> {
        Some(self.render_frame())
    }
}
