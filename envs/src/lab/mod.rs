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

mod map;
mod render;
mod world;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

pub use map::{Cell, Grid, KEY_COLOURS, WALL_COLOURS};
pub use render::{cast, top_down, Camera, Hit, Shape, Sprite, SHADE_Y_SIDE};
pub use world::{action, wrap, Body, Kind, Object, World, ACTIONS, ACTION_NAMES};

use crate::env::{from_state, to_state, Env, EnvError, Image, Info, Space, StepOutcome};
use crate::SeededRng;

/// The five tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    ExploreGoalLocations,
    Watermaze,
    SeekavoidArena,
    KeysDoorsPuzzle,
    Lasertag,
}

impl Task {
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

/// What the agent observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObsKind {
    /// First-person RGB, `[height, width, 3]`, 0–255.
    Rgb,
    /// Egocentric symbolic top-down window, `[view, view, GRID_CHANNELS]`, one-hot.
    Grid,
}

/// Channels of the grid observation (see [`channel`]).
pub const GRID_CHANNELS: usize = 24;

/// The grid observation's channels: a wall of each of the 8 wall colours (so that
/// places can be told apart, as in the RGB view), goal, apple, lemon, bot, a key of each
/// of the 4 key colours, a door of each key colour, and the held key's colour (whole
/// planes).
pub mod channel {
    pub const WALL: usize = 0;
    pub const GOAL: usize = 8;
    pub const APPLE: usize = 9;
    pub const LEMON: usize = 10;
    pub const BOT: usize = 11;
    pub const KEY: usize = 12;
    pub const DOOR: usize = 16;
    pub const HELD: usize = 20;
}

/// A level's settings (the `[env.options]` of a config).
#[derive(Debug, Clone, PartialEq)]
pub struct LabConfig {
    pub obs: ObsKind,
    pub width: usize,
    pub height: usize,
    /// Horizontal field of view in degrees (DMLab's is 90).
    pub fov: f32,
    /// Side of the grid observation's window (odd).
    pub view: usize,
    pub action_repeat: usize,
    /// Level size: the maze's or arena's side in cells (walls included); for
    /// keys_doors_puzzle the floor side of one room.
    pub size: usize,
    /// seekavoid_arena: apples and lemons on the floor.
    pub apples: usize,
    pub lemons: usize,
    /// lasertag: bots.
    pub bots: usize,
    /// keys_doors_puzzle: rooms in the row (2–4; one door fewer).
    pub rooms: usize,
    /// explore_goal_locations: the fraction of inner walls knocked through to make loops.
    pub loops: f64,
}

impl LabConfig {
    pub fn new(task: Task) -> LabConfig {
        LabConfig {
            obs: ObsKind::Rgb,
            width: 64,
            height: 48,
            fov: 90.0,
            view: 9,
            action_repeat: 4,
            size: task.default_size(),
            apples: 10,
            lemons: 6,
            bots: 3,
            rooms: 3,
            loops: 0.15,
        }
    }
}

/// Default episode length in agent steps: 90 s of DMLab at 60 frames per second with
/// action repeat 4.
pub const DEFAULT_EPISODE_STEPS: usize = 1350;

/// One Lab level as a Gymnasium-style environment.
pub struct Lab {
    task: Task,
    cfg: LabConfig,
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

    pub fn new(task: Task, cfg: LabConfig) -> Lab {
        let camera = Camera::new(cfg.width, cfg.height, cfg.fov);
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

    pub fn task(&self) -> Task {
        self.task
    }

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
                scatter_fruit(w, c.apples, c.lemons);
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
                        scatter_fruit(w, self.cfg.apples, lemons);
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
        match self.cfg.obs {
            ObsKind::Rgb => {
                self.sprites.clear();
                self.sprites
                    .extend(self.world.objects.iter().map(|o| o.kind.sprite(o.x, o.y)));
                let a = self.world.agent;
                self.camera
                    .render(&self.world.grid, (a.x, a.y, a.angle), &self.sprites, obs);
            }
            ObsKind::Grid => grid_view(&self.world, self.cfg.view, obs),
        }
    }

    /// The steering of the scripted agents: the action that walks along a shortest
    /// path (through cells where `pass` holds) towards the cell `to`.
    fn walk_to(
        &self,
        dist: &mut Vec<u32>,
        to: (usize, usize),
        pass: impl Fn(usize, usize) -> bool,
    ) -> usize {
        let w = &self.world;
        w.grid.distances_to(to, pass, dist);
        let here = w.agent.cell();
        let (gx, gy) = if here == to {
            (to.0 as f32 + 0.5, to.1 as f32 + 0.5)
        } else {
            // The neighbouring cell one step closer; stay on course when none is.
            let mut best = (dist[here.1 * w.grid.width + here.0], here);
            for (dx, dy) in [(1i32, 0i32), (-1, 0), (0, 1), (0, -1)] {
                let (nx, ny) = (here.0 as i32 + dx, here.1 as i32 + dy);
                if nx < 0 || ny < 0 || nx as usize >= w.grid.width || ny as usize >= w.grid.height {
                    continue;
                }
                let d = dist[ny as usize * w.grid.width + nx as usize];
                if d < best.0 {
                    best = (d, (nx as usize, ny as usize));
                }
            }
            (best.1 .0 as f32 + 0.5, best.1 .1 as f32 + 0.5)
        };
        steer(&w.agent, gx, gy)
    }

    fn oracle(&self) -> usize {
        let w = &self.world;
        let mut dist = Vec::new();
        let dist = &mut dist;
        let floor = |x: usize, y: usize| w.grid.get(x as i32, y as i32) == Cell::Floor;
        match self.task {
            Task::ExploreGoalLocations => {
                let goal = w.objects[0].cell();
                let pass = floor;
                self.walk_to(dist, goal, pass)
            }
            Task::Watermaze => {
                let (px, py, _) = w.platform.expect("watermaze has a platform");
                let pass = floor;
                self.walk_to(dist, (px as usize, py as usize), pass)
            }
            Task::SeekavoidArena => {
                // The nearest apple by a path that avoids lemons.
                let lemons: Vec<(usize, usize)> = w
                    .objects
                    .iter()
                    .filter(|o| o.kind == Kind::Lemon)
                    .map(|o| o.cell())
                    .collect();
                let g = &w.grid;
                let pass = move |x: usize, y: usize| {
                    g.get(x as i32, y as i32) == Cell::Floor && !lemons.contains(&(x, y))
                };
                w.grid.distances_to(w.agent.cell(), &pass, dist);
                let width = w.grid.width;
                let target = w
                    .objects
                    .iter()
                    .filter(|o| o.kind == Kind::Apple)
                    .min_by_key(|o| dist[o.cell().1 * width + o.cell().0])
                    .map(|o| o.cell());
                match target {
                    Some(t) => self.walk_to(dist, t, pass),
                    None => action::LOOK_LEFT,
                }
            }
            Task::KeysDoorsPuzzle => {
                let door = (0..w.grid.height)
                    .flat_map(|y| (0..w.grid.width).map(move |x| (x, y)))
                    .filter_map(|(x, y)| match w.grid.get(x as i32, y as i32) {
                        Cell::Door(c) => Some((x, y, c)),
                        _ => None,
                    })
                    .min_by_key(|d| d.0);
                let keys: Vec<((usize, usize), u8)> = w
                    .objects
                    .iter()
                    .filter_map(|o| match o.kind {
                        Kind::Key(c) => Some((o.cell(), c)),
                        _ => None,
                    })
                    .collect();
                let (target, want) = match door {
                    None => (
                        w.objects
                            .iter()
                            .find(|o| o.kind == Kind::Goal)
                            .map(|o| o.cell()),
                        None,
                    ),
                    Some((x, y, c)) if w.held == Some(c) => (Some((x, y)), None),
                    Some((_, _, c)) => (keys.iter().find(|k| k.1 == c).map(|k| k.0), Some(c)),
                };
                let g = &w.grid;
                // Walk around keys other than the one wanted, so as not to swap for them.
                let avoid: Vec<(usize, usize)> = keys
                    .iter()
                    .filter(|k| Some(k.1) != want)
                    .map(|k| k.0)
                    .collect();
                let pass = move |x: usize, y: usize| {
                    g.get(x as i32, y as i32) == Cell::Floor && !avoid.contains(&(x, y))
                };
                match target {
                    Some(t) => self.walk_to(dist, t, pass),
                    None => action::LOOK_LEFT,
                }
            }
            Task::Lasertag => {
                if w.bot_in_sights().is_some() {
                    return action::FIRE;
                }
                // Turn to the nearest visible bot, or walk towards the nearest one.
                let a = w.agent;
                let bots = w.objects.iter().filter(|o| o.kind == Kind::Bot);
                if let Some(b) = bots
                    .clone()
                    .filter(|o| w.visible(o.x, o.y))
                    .min_by(|p, q| p.dist(&a).total_cmp(&q.dist(&a)))
                {
                    let err = wrap((b.y - a.y).atan2(b.x - a.x) - a.angle);
                    return if err > 0.0 {
                        action::LOOK_RIGHT
                    } else {
                        action::LOOK_LEFT
                    };
                }
                match bots.min_by(|p, q| p.dist(&a).total_cmp(&q.dist(&a))) {
                    Some(b) => {
                        let t = b.cell();
                        let pass = floor;
                        self.walk_to(dist, t, pass)
                    }
                    None => action::LOOK_LEFT,
                }
            }
        }
    }

    /// The first-person view (whatever the observation kind) beside the top-down map,
    /// for videos.
    pub fn render_frame(&self) -> Image {
        let mut cam = Camera::new(
            self.cfg.width.max(64),
            self.cfg.height.max(48),
            self.cfg.fov,
        );
        let sprites: Vec<Sprite> = self
            .world
            .objects
            .iter()
            .map(|o| o.kind.sprite(o.x, o.y))
            .collect();
        let mut px = vec![0.0; cam.width * cam.height * 3];
        let a = self.world.agent;
        cam.render(&self.world.grid, (a.x, a.y, a.angle), &sprites, &mut px);
        let view = Image::from_f32(cam.width, cam.height, &px);
        let scale = 4;
        let mut map_sprites = sprites;
        if let Some((x, y, _)) = self.world.platform {
            map_sprites.push(Sprite {
                x,
                y,
                colour: [90.0, 90.0, 255.0],
                size: 0.6,
                shape: Shape::Square,
            });
        }
        let cell_px = (view.height * scale / self.world.grid.height).max(4);
        let map = top_down(&self.world.grid, (a.x, a.y, a.angle), &map_sprites, cell_px);
        let mut out = Image::new(
            view.width * scale + 8 + map.width,
            (view.height * scale).max(map.height),
        );
        out.blit(&view, 0, 0, scale);
        out.blit(&map, view.width * scale + 8, 0, 1);
        out
    }
}

/// Within `r` cells (Chebyshev) of `c`: where respawns and new bots do not go.
fn neighbourhood(c: (usize, usize), r: usize) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for y in c.1.saturating_sub(r)..=c.1 + r {
        for x in c.0.saturating_sub(r)..=c.0 + r {
            v.push((x, y));
        }
    }
    v
}

fn scatter_fruit(w: &mut World, apples: usize, lemons: usize) {
    let avoid = [w.agent.cell()];
    for i in 0..apples + lemons {
        let p = w.free_cell(&avoid);
        w.objects.push(Object::at(
            if i < apples { Kind::Apple } else { Kind::Lemon },
            p,
        ));
    }
}

/// Turn towards `(gx, gy)` while far off course, walk and turn when roughly on course,
/// walk straight when on course.
fn steer(a: &Body, gx: f32, gy: f32) -> usize {
    let err = wrap((gy - a.y).atan2(gx - a.x) - a.angle).to_degrees();
    if err.abs() > 50.0 {
        if err > 0.0 {
            action::LOOK_RIGHT
        } else {
            action::LOOK_LEFT
        }
    } else if err.abs() > 15.0 {
        if err > 0.0 {
            action::FORWARD_LOOK_RIGHT
        } else {
            action::FORWARD_LOOK_LEFT
        }
    } else {
        action::FORWARD
    }
}

/// The egocentric symbolic view: a `view × view` window centred on the agent's cell,
/// turned so that the agent's heading (to the nearest quarter turn) points up.
pub fn grid_view(w: &World, view: usize, out: &mut [f32]) {
    out.fill(0.0);
    let q = ((w.agent.angle / std::f32::consts::FRAC_PI_2).round() as i32).rem_euclid(4);
    let (fx, fy) = [(1, 0), (0, 1), (-1, 0), (0, -1)][q as usize];
    let (rx, ry) = (-fy, fx);
    let (ax, ay) = (w.agent.x.floor() as i32, w.agent.y.floor() as i32);
    let c = (view / 2) as i32;
    let at = |i: usize, j: usize| -> (i32, i32) {
        let (f, r) = (c - i as i32, j as i32 - c);
        (ax + f * fx + r * rx, ay + f * fy + r * ry)
    };
    for i in 0..view {
        for j in 0..view {
            let (x, y) = at(i, j);
            let base = (i * view + j) * GRID_CHANNELS;
            match w.grid.get(x, y) {
                Cell::Floor => {}
                Cell::Wall(col) => out[base + channel::WALL + col as usize % 8] = 1.0,
                Cell::Door(col) => out[base + channel::DOOR + col as usize % 4] = 1.0,
            }
            if let Some(h) = w.held {
                out[base + channel::HELD + h as usize % 4] = 1.0;
            }
        }
    }
    for o in &w.objects {
        let (ox, oy) = (o.x.floor() as i32 - ax, o.y.floor() as i32 - ay);
        // Inverse of `at`: forward and right offsets of the object's cell.
        let (f, r) = (ox * fx + oy * fy, ox * rx + oy * ry);
        let (i, j) = (c - f, c + r);
        if i < 0 || j < 0 || i >= view as i32 || j >= view as i32 {
            continue;
        }
        let ch = match o.kind {
            Kind::Goal => channel::GOAL,
            Kind::Apple => channel::APPLE,
            Kind::Lemon => channel::LEMON,
            Kind::Bot => channel::BOT,
            Kind::Key(col) => channel::KEY + col as usize % 4,
        };
        out[(i as usize * view + j as usize) * GRID_CHANNELS + ch] = 1.0;
    }
}

impl Env for Lab {
    fn id(&self) -> &str {
        self.task.id()
    }

    fn observation_space(&self) -> Space {
        let shape = match self.cfg.obs {
            ObsKind::Rgb => vec![self.cfg.height, self.cfg.width, 3],
            ObsKind::Grid => vec![self.cfg.view, self.cfg.view, GRID_CHANNELS],
        };
        let n: usize = shape.iter().product();
        let high = if self.cfg.obs == ObsKind::Rgb {
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
        for f in 0..self.cfg.action_repeat {
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
        Some(self.oracle())
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
