//! The state of a Lab level and its physics: the agent's body with continuous position
//! and heading, collision against walls, objects and bots, and DMLab's IMPALA action set.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::map::{cast, Cell, Grid};
use crate::SeededRng;

/// The agent's collision radius, in cells.
pub const RADIUS: f32 = 0.25;
/// Distance walked per frame at full speed, in cells (½ cell per agent step at repeat 4).
pub const SPEED: f32 = 0.125;
/// Turn per frame of a look action: 7.5° (30° per agent step at repeat 4).
pub const TURN: f32 = 7.5 * std::f32::consts::PI / 180.0;
/// Distance from an object's centre within which the agent picks it up.
pub const REACH: f32 = 0.5;
/// Bots walk at half the agent's speed.
pub const BOT_SPEED: f32 = 0.0625;
/// A shot tags a bot whose centre passes within this distance of the view's centre line.
pub const TAG_HALF_WIDTH: f32 = 0.3;

/// DMLab's action set of the IMPALA paper (Espeholt et al. 2018, table D.2): forward,
/// backward, strafe, look and forward + look; fire is the 9th, for tasks that use it.
/// Each entry: (forward, strafe right, turn right, fire).
pub const ACTIONS: [(f32, f32, f32, bool); 9] = [
    (1.0, 0.0, 0.0, false),
    (-1.0, 0.0, 0.0, false),
    (0.0, -1.0, 0.0, false),
    (0.0, 1.0, 0.0, false),
    (0.0, 0.0, -1.0, false),
    (0.0, 0.0, 1.0, false),
    (1.0, 0.0, -1.0, false),
    (1.0, 0.0, 1.0, false),
    (0.0, 0.0, 0.0, true),
];

/// Names of [`ACTIONS`], for people.
pub const ACTION_NAMES: [&str; 9] = [
    "forward",
    "backward",
    "strafe left",
    "strafe right",
    "look left",
    "look right",
    "forward + look left",
    "forward + look right",
    "fire",
];

/// Action indices, for scripted agents.
pub mod action {
    /// Move forward.
    pub const FORWARD: usize = 0;
    /// Move backward.
    pub const BACKWARD: usize = 1;
    /// Step left.
    pub const STRAFE_LEFT: usize = 2;
    /// Step right.
    pub const STRAFE_RIGHT: usize = 3;
    /// Turn left.
    pub const LOOK_LEFT: usize = 4;
    /// Turn right.
    pub const LOOK_RIGHT: usize = 5;
    /// Move forward and turn left.
    pub const FORWARD_LOOK_LEFT: usize = 6;
    /// Move forward and turn right.
    pub const FORWARD_LOOK_RIGHT: usize = 7;
    /// Fire (lasertag only).
    pub const FIRE: usize = 8;
}

/// Position (cells) and heading (radians: 0 east, π/2 south).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Body {
    /// Position east, in cells.
    pub x: f32,
    /// Position south, in cells.
    pub y: f32,
    /// Heading in radians.
    pub angle: f32,
}

impl Body {
    /// The cell it stands in.
    pub fn cell(&self) -> (usize, usize) {
        (self.x.max(0.0) as usize, self.y.max(0.0) as usize)
    }
    /// The unit vector of its heading.
    pub fn dir(&self) -> (f32, f32) {
        (self.angle.cos(), self.angle.sin())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
/// What an object is.
pub enum Kind {
    /// The goal: +10.
    Goal,
    /// An apple: +1.
    Apple,
    /// A lemon: −1.
    Lemon,
    /// A key of a colour (index into [`super::map::KEY_COLOURS`]).
    Key(u8),
    /// A lasertag bot, to tag.
    Bot,
}

/// Something in the level besides walls.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Object {
    /// What it is.
    pub kind: Kind,
    /// Position east, in cells.
    pub x: f32,
    /// Position south, in cells.
    pub y: f32,
    /// False for a key just dropped under the agent, until the agent steps away.
    pub armed: bool,
    /// Whether picking it up still pays (keys pay on their first pickup only).
    pub fresh: bool,
    /// A bot's next cell.
    pub dest: (usize, usize),
    /// The cell a bot came from.
    pub from: (usize, usize),
}

impl Object {
    /// An object at the centre of cell `(x, y)`.
    pub fn at(kind: Kind, (x, y): (usize, usize)) -> Object {
        Object {
            kind,
            x: x as f32 + 0.5,
            y: y as f32 + 0.5,
            armed: true,
            fresh: true,
            dest: (x, y),
            from: (x, y),
        }
    }
    /// The cell it stands in.
    pub fn cell(&self) -> (usize, usize) {
        (self.x as usize, self.y as usize)
    }
    /// Distance to `b`'s position.
    pub fn dist(&self, b: &Body) -> f32 {
        ((self.x - b.x).powi(2) + (self.y - b.y).powi(2)).sqrt()
    }
}

/// Everything that changes during an episode; serialisable for exact resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct World {
    /// The level's cells.
    pub grid: Grid,
    /// The agent.
    pub agent: Body,
    /// Goals, fruit, keys and bots.
    pub objects: Vec<Object>,
    /// The key the agent carries.
    pub held: Option<u8>,
    /// `lab/watermaze`'s hidden platform (centre, radius).
    pub platform: Option<(f32, f32, f32)>,
    /// The generator of layouts, respawns and bots' walks.
    pub rng: SeededRng,
}

impl World {
    /// A world on `grid` with the agent at cell (1, 1) facing east and nothing else.
    pub fn new(grid: Grid, rng: SeededRng) -> World {
        World {
            grid,
            agent: Body {
                x: 1.5,
                y: 1.5,
                angle: 0.0,
            },
            objects: Vec::new(),
            held: None,
            platform: None,
            rng,
        }
    }

    /// The first solid cell a disc of [`RADIUS`] at `(x, y)` overlaps.
    fn blocking(&self, x: f32, y: f32) -> Option<(i32, i32)> {
        // Touching a wall is allowed; overlapping it is not.
        const E: f32 = 1e-4;
        let (x0, x1) = (
            (x - RADIUS + E).floor() as i32,
            (x + RADIUS - E).floor() as i32,
        );
        let (y0, y1) = (
            (y - RADIUS + E).floor() as i32,
            (y + RADIUS - E).floor() as i32,
        );
        for cy in y0..=y1 {
            for cx in x0..=x1 {
                if self.grid.solid(cx, cy) {
                    return Some((cx, cy));
                }
            }
        }
        None
    }

    /// Turns, then moves the agent by `(forward, strafe)` × `SPEED`, axis by axis so
    /// that it slides along walls. Returns the cell that blocked it, if any.
    pub fn move_agent(&mut self, forward: f32, strafe: f32, turn: f32) -> Option<(i32, i32)> {
        self.agent.angle = wrap(self.agent.angle + turn * TURN);
        if forward == 0.0 && strafe == 0.0 {
            return None;
        }
        let (dx, dy) = self.agent.dir();
        let mx = (forward * dx - strafe * dy) * SPEED;
        let my = (forward * dy + strafe * dx) * SPEED;
        // Blocked along an axis, the agent stops touching the wall.
        let touch = |pos: f32, m: f32, wall: i32| {
            if m > 0.0 {
                (wall as f32 - RADIUS).max(pos)
            } else {
                (wall as f32 + 1.0 + RADIUS).min(pos)
            }
        };
        let mut blocked = None;
        let nx = self.agent.x + mx;
        match self.blocking(nx, self.agent.y) {
            None => self.agent.x = nx,
            Some(b) => {
                self.agent.x = touch(self.agent.x, mx, b.0);
                blocked = Some(b);
            }
        }
        let ny = self.agent.y + my;
        match self.blocking(self.agent.x, ny) {
            None => self.agent.y = ny,
            Some(b) => {
                self.agent.y = touch(self.agent.y, my, b.1);
                blocked = blocked.or(Some(b));
            }
        }
        blocked
    }

    /// A uniformly random floor cell not in `avoid` and holding no object.
    pub fn free_cell(&mut self, avoid: &[(usize, usize)]) -> (usize, usize) {
        let taken: Vec<(usize, usize)> = self.objects.iter().map(|o| o.cell()).collect();
        let cells: Vec<(usize, usize)> = self
            .grid
            .floor_cells()
            .into_iter()
            .filter(|c| !avoid.contains(c) && !taken.contains(c))
            .collect();
        let pool = if cells.is_empty() {
            self.grid.floor_cells()
        } else {
            cells
        };
        pool[self.rng.random_range(0..pool.len())]
    }

    /// Puts the agent at the centre of a random free cell (not in `avoid`), facing a
    /// random direction.
    pub fn spawn_agent(&mut self, avoid: &[(usize, usize)]) {
        let (x, y) = self.free_cell(avoid);
        self.agent = Body {
            x: x as f32 + 0.5,
            y: y as f32 + 0.5,
            angle: self
                .rng
                .random_range(-std::f32::consts::PI..std::f32::consts::PI),
        };
    }

    /// Scatters `apples` apples, then `lemons` lemons, over free cells away from the agent.
    pub fn scatter_fruit(&mut self, apples: usize, lemons: usize) {
        let avoid = [self.agent.cell()];
        for i in 0..apples + lemons {
            let p = self.free_cell(&avoid);
            self.objects.push(Object::at(
                if i < apples { Kind::Apple } else { Kind::Lemon },
                p,
            ));
        }
    }

    /// Walks every bot one frame towards its next cell, picking a new neighbouring floor
    /// cell (not back where it came from, unless at a dead end) on arrival.
    pub fn move_bots(&mut self) {
        for i in 0..self.objects.len() {
            if self.objects[i].kind != Kind::Bot {
                continue;
            }
            let o = self.objects[i];
            let (tx, ty) = (o.dest.0 as f32 + 0.5, o.dest.1 as f32 + 0.5);
            let (dx, dy) = (tx - o.x, ty - o.y);
            let d = (dx * dx + dy * dy).sqrt();
            if d > BOT_SPEED {
                self.objects[i].x += dx / d * BOT_SPEED;
                self.objects[i].y += dy / d * BOT_SPEED;
                continue;
            }
            self.objects[i].x = tx;
            self.objects[i].y = ty;
            let here = o.dest;
            let mut options = [(0usize, 0usize); 4];
            let mut n = 0;
            for (ddx, ddy) in [(1i32, 0i32), (-1, 0), (0, 1), (0, -1)] {
                let (nx, ny) = (here.0 as i32 + ddx, here.1 as i32 + ddy);
                if !self.grid.solid(nx, ny) {
                    let c = (nx as usize, ny as usize);
                    if c != o.from {
                        options[n] = c;
                        n += 1;
                    }
                }
            }
            self.objects[i].from = here;
            self.objects[i].dest = if n == 0 {
                o.from // a dead end: turn back
            } else {
                options[self.rng.random_range(0..n)]
            };
        }
    }

    /// The distance along a straight line from the agent to the first wall in direction
    /// `angle`.
    pub fn wall_distance(&self, angle: f32) -> f32 {
        cast(
            &self.grid,
            self.agent.x,
            self.agent.y,
            angle.cos(),
            angle.sin(),
        )
        .depth
    }

    /// Index of the bot a shot fired now would tag: the nearest whose centre lies within
    /// `TAG_HALF_WIDTH` of the view's centre line, in front, with no wall between.
    pub fn bot_in_sights(&self) -> Option<usize> {
        let (dx, dy) = self.agent.dir();
        let wall = self.wall_distance(self.agent.angle);
        let mut best: Option<(f32, usize)> = None;
        for (i, o) in self.objects.iter().enumerate() {
            if o.kind != Kind::Bot {
                continue;
            }
            let (ox, oy) = (o.x - self.agent.x, o.y - self.agent.y);
            let depth = ox * dx + oy * dy;
            let lateral = -ox * dy + oy * dx;
            if depth > 0.0
                && lateral.abs() < TAG_HALF_WIDTH
                && depth < wall
                && best.is_none_or(|(d, _)| depth < d)
            {
                best = Some((depth, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// Whether the straight line from the agent to `(x, y)` crosses no wall.
    pub fn visible(&self, x: f32, y: f32) -> bool {
        let (ox, oy) = (x - self.agent.x, y - self.agent.y);
        let d = (ox * ox + oy * oy).sqrt();
        d < 1e-6 || cast(&self.grid, self.agent.x, self.agent.y, ox / d, oy / d).depth > d
    }

    /// Whether cell `(x, y)` is floor.
    pub fn is_floor(&self, (x, y): (usize, usize)) -> bool {
        self.grid.get(x as i32, y as i32) == Cell::Floor
    }
}

/// Within `r` cells (Chebyshev) of `c`: where respawns and new bots do not go.
pub(super) fn neighbourhood(c: (usize, usize), r: usize) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for y in c.1.saturating_sub(r)..=c.1 + r {
        for x in c.0.saturating_sub(r)..=c.0 + r {
            v.push((x, y));
        }
    }
    v
}

/// An angle in `(-π, π]`.
pub fn wrap(a: f32) -> f32 {
    use std::f32::consts::PI;
    let mut a = a % (2.0 * PI);
    if a > PI {
        a -= 2.0 * PI;
    } else if a <= -PI {
        a += 2.0 * PI;
    }
    a
}
