//! The first-person raycast renderer, the egocentric symbolic view (and its channel
//! table), the top-down map, and the video frame that shows the view beside the map.
//!
//! The camera is a pinhole at eye height ½ (walls are 1 high) looking along the agent's
//! heading; column `c` casts a ray through `dir + right·tan(fov/2)·(2(c+½)/W − 1)` with a
//! DDA walk over the grid. Distances are measured along the view direction (the
//! perpendicular distance to the camera plane), which is what gives straight walls
//! without fish-eye; vertical and horizontal focal lengths are equal (square pixels), so a
//! wall at distance d is `f/d` pixels high with `f = (W/2)/tan(fov/2)`. Sprites are
//! billboards standing on the floor, drawn far to near and clipped per column against the
//! walls' depth buffer.

use super::map::{cast, Cell, Grid, KEY_COLOURS, WALL_COLOURS};
use super::world::{Kind, World};
use crate::env::Image;

/// A billboard: an object seen in the first-person view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sprite {
    /// Position, x (cells).
    pub x: f32,
    /// Position, y (cells).
    pub y: f32,
    /// RGB colour, 0–255.
    pub colour: [f32; 3],
    /// Height and width in world units (walls are 1).
    pub size: f32,
    /// Its outline.
    pub shape: Shape,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// The outline of a sprite.
pub enum Shape {
    /// A round object (apples, lemons).
    Disc,
    /// A square (keys; watermaze's platform on the map).
    Square,
    /// A diamond (goals, bots).
    Diamond,
}

impl Shape {
    /// Whether `(u, v)` in `[0, 1)²` of the sprite's square is inside the shape.
    #[inline]
    fn covers(self, u: f32, v: f32) -> bool {
        let (du, dv) = (u - 0.5, v - 0.5);
        match self {
            Shape::Disc => du * du + dv * dv < 0.25,
            Shape::Square => true,
            Shape::Diamond => du.abs() + dv.abs() < 0.5,
        }
    }
}

/// How an object of `kind` looks in the first-person view, standing at `(x, y)`.
pub fn sprite(kind: Kind, x: f32, y: f32) -> Sprite {
    let (colour, size, shape) = match kind {
        Kind::Goal => ([250.0, 220.0, 90.0], 0.6, Shape::Diamond),
        Kind::Apple => ([60.0, 230.0, 60.0], 0.4, Shape::Disc),
        Kind::Lemon => ([245.0, 245.0, 70.0], 0.4, Shape::Disc),
        Kind::Key(c) => (KEY_COLOURS[c as usize % 4], 0.3, Shape::Square),
        Kind::Bot => ([230.0, 60.0, 230.0], 0.7, Shape::Diamond),
    };
    Sprite {
        x,
        y,
        colour,
        size,
        shape,
    }
}

/// The brightness pattern of a wall face at `(u, v)`: bricks for walls, a dark frame and
/// a keyhole band for doors.
#[inline]
fn pattern(cell: Cell, u: f32, v: f32) -> f32 {
    match cell {
        Cell::Door(_) => {
            if !(0.1..=0.9).contains(&u) || v < 0.08 {
                0.35
            } else if (0.45..0.55).contains(&v) {
                0.7
            } else {
                1.0
            }
        }
        _ => {
            let row = (v * 4.0) as i32;
            let shift = if row % 2 == 0 { 0.0 } else { 0.25 };
            let bu = (u + shift) * 2.0;
            if v * 4.0 - row as f32 > 0.9 || bu - bu.floor() > 0.94 {
                0.6
            } else {
                1.0
            }
        }
    }
}

fn cell_colour(cell: Cell) -> [f32; 3] {
    match cell {
        Cell::Wall(c) => WALL_COLOURS[c as usize % WALL_COLOURS.len()],
        Cell::Door(c) => KEY_COLOURS[c as usize % KEY_COLOURS.len()],
        Cell::Floor => [0.0; 3],
    }
}

/// Faces hit while stepping in y are drawn at this brightness, as a cheap light direction.
pub const SHADE_Y_SIDE: f32 = 0.8;

/// A first-person camera with its scratch buffers (no allocation per frame).
#[derive(Debug, Clone)]
pub struct Camera {
    /// Width of the image in pixels.
    pub width: usize,
    /// Height of the image in pixels.
    pub height: usize,
    /// tan(fov/2).
    pub tan_half: f32,
    /// Focal length in pixels, `(W/2)/tan(fov/2)`.
    pub focal: f32,
    zbuf: Vec<f32>,
    order: Vec<(f32, usize)>,
    /// Ceiling and floor colour of every row.
    sky: Vec<[f32; 3]>,
}

impl Camera {
    /// A camera of `width × height` pixels with a horizontal field of view of `fov_degrees`.
    pub fn new(width: usize, height: usize, fov_degrees: f32) -> Camera {
        let tan_half = (fov_degrees.to_radians() / 2.0).tan();
        let focal = width as f32 / 2.0 / tan_half;
        let h2 = height as f32 / 2.0;
        let sky = (0..height)
            .map(|r| {
                let t = ((r as f32 + 0.5 - h2) / h2).abs(); // 0 at the horizon, 1 at the edge
                if (r as f32) < h2 {
                    [120.0 + 60.0 * t, 150.0 + 60.0 * t, 190.0 + 50.0 * t]
                } else {
                    [70.0 + 50.0 * t, 60.0 + 40.0 * t, 50.0 + 30.0 * t]
                }
            })
            .collect();
        Camera {
            width,
            height,
            tan_half,
            focal,
            zbuf: vec![0.0; width],
            order: Vec::with_capacity(32),
            sky,
        }
    }

    /// Renders the view from `(px, py)` facing `angle` (radians, 0 = east, growing
    /// towards south, i.e. clockwise on the map) into `out`, `[H, W, 3]` RGB in 0–255.
    pub fn render(
        &mut self,
        grid: &Grid,
        (px, py, angle): (f32, f32, f32),
        sprites: &[Sprite],
        out: &mut [f32],
    ) {
        let (w, h) = (self.width, self.height);
        debug_assert_eq!(out.len(), w * h * 3);
        let (dx, dy) = (angle.cos(), angle.sin());
        let (rx, ry) = (-dy, dx); // the camera's right
        let h2 = h as f32 / 2.0;
        for c in 0..w {
            let k = self.tan_half * (2.0 * (c as f32 + 0.5) / w as f32 - 1.0);
            let hit = cast(grid, px, py, dx + k * rx, dy + k * ry);
            self.zbuf[c] = hit.depth;
            let span = self.focal / hit.depth; // the wall's height in pixels
            let top = h2 - 0.5 * span;
            let base = cell_colour(hit.cell);
            let shade = if hit.x_side { 1.0 } else { SHADE_Y_SIDE };
            for r in 0..h {
                let y = r as f32 + 0.5;
                let v = (y - top) / span; // 0 at the top of the wall, 1 at its foot
                let px_out = &mut out[(r * w + c) * 3..(r * w + c) * 3 + 3];
                if (0.0..1.0).contains(&v) {
                    let s = shade * pattern(hit.cell, hit.u, v);
                    px_out[0] = base[0] * s;
                    px_out[1] = base[1] * s;
                    px_out[2] = base[2] * s;
                } else {
                    px_out.copy_from_slice(&self.sky[r]);
                }
            }
        }
        self.draw_sprites((px, py), (dx, dy), sprites, out);
    }

    fn draw_sprites(&mut self, p: (f32, f32), d: (f32, f32), sprites: &[Sprite], out: &mut [f32]) {
        let (w, h) = (self.width, self.height);
        let h2 = h as f32 / 2.0;
        let (rx, ry) = (-d.1, d.0);
        self.order.clear();
        for (i, s) in sprites.iter().enumerate() {
            let (ox, oy) = (s.x - p.0, s.y - p.1);
            let depth = ox * d.0 + oy * d.1;
            if depth > 0.05 {
                self.order.push((depth, i));
            }
        }
        // Far to near, so that near sprites cover far ones.
        self.order.sort_by(|a, b| b.0.total_cmp(&a.0));
        for &(depth, i) in &self.order {
            let s = &sprites[i];
            let lateral = (s.x - p.0) * rx + (s.y - p.1) * ry;
            let cx = w as f32 / 2.0 * (1.0 + lateral / (depth * self.tan_half));
            let size = self.focal * s.size / depth;
            let foot = h2 + self.focal * 0.5 / depth;
            let (left, top) = (cx - size / 2.0, foot - size);
            let c0 = left.max(0.0) as usize;
            let c1 = ((left + size).ceil().max(0.0) as usize).min(w);
            let r0 = top.max(0.0) as usize;
            let r1 = (foot.ceil().max(0.0) as usize).min(h);
            for c in c0..c1 {
                if self.zbuf[c] <= depth {
                    continue; // hidden by a wall
                }
                let u = (c as f32 + 0.5 - left) / size;
                if !(0.0..1.0).contains(&u) {
                    continue;
                }
                for r in r0..r1 {
                    let v = (r as f32 + 0.5 - top) / size;
                    if (0.0..1.0).contains(&v) && s.shape.covers(u, v) {
                        out[(r * w + c) * 3..(r * w + c) * 3 + 3].copy_from_slice(&s.colour);
                    }
                }
            }
        }
    }
}

fn to_u8(c: [f32; 3]) -> [u8; 3] {
    [c[0] as u8, c[1] as u8, c[2] as u8]
}

/// The level seen from above, `scale` pixels per cell: walls and doors in their colours,
/// sprites as dots, and the agent as a white dot with a line along its heading.
pub fn top_down(grid: &Grid, agent: (f32, f32, f32), sprites: &[Sprite], scale: usize) -> Image {
    let mut img = Image::new(grid.width * scale, grid.height * scale);
    for y in 0..grid.height {
        for x in 0..grid.width {
            let c = match grid.get(x as i32, y as i32) {
                Cell::Floor => [60, 50, 40],
                cell => to_u8(cell_colour(cell)),
            };
            img.fill_rect(x * scale, y * scale, scale, scale, c);
        }
    }
    let dot = |img: &mut Image, x: f32, y: f32, r: f32, c: [u8; 3]| {
        let (cx, cy) = (x * scale as f32, y * scale as f32);
        let rr = r * scale as f32;
        let (x0, x1) = ((cx - rr).max(0.0) as usize, (cx + rr).ceil() as usize);
        let (y0, y1) = ((cy - rr).max(0.0) as usize, (cy + rr).ceil() as usize);
        for py in y0..y1.min(img.height) {
            for px in x0..x1.min(img.width) {
                let (ddx, ddy) = (px as f32 + 0.5 - cx, py as f32 + 0.5 - cy);
                if ddx * ddx + ddy * ddy <= rr * rr {
                    let i = (py * img.width + px) * 3;
                    img.rgb[i..i + 3].copy_from_slice(&c);
                }
            }
        }
    };
    for s in sprites {
        dot(&mut img, s.x, s.y, 0.3, to_u8(s.colour));
    }
    let (ax, ay, a) = agent;
    for i in 0..=(scale as i32) {
        let t = i as f32 / scale as f32 * 0.7;
        dot(
            &mut img,
            ax + a.cos() * t,
            ay + a.sin() * t,
            0.08,
            [255, 255, 255],
        );
    }
    dot(&mut img, ax, ay, 0.25, [255, 255, 255]);
    img
}

/// Channels of the grid observation (see [`channel`]).
pub const GRID_CHANNELS: usize = 24;

/// The grid observation's channels: a wall of each of the 8 wall colours (so that
/// places can be told apart, as in the RGB view), goal, apple, lemon, bot, a key of each
/// of the 4 key colours, a door of each key colour, and the held key's colour (whole
/// planes).
pub mod channel {
    /// First wall channel (one per wall colour).
    pub const WALL: usize = 0;
    /// The goal.
    pub const GOAL: usize = 8;
    /// An apple.
    pub const APPLE: usize = 9;
    /// A lemon.
    pub const LEMON: usize = 10;
    /// A bot.
    pub const BOT: usize = 11;
    /// First key channel (one per key colour).
    pub const KEY: usize = 12;
    /// First door channel (one per key colour).
    pub const DOOR: usize = 16;
    /// First held-key channel (one per key colour, the whole plane).
    pub const HELD: usize = 20;
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

/// The first-person view (whatever the observation kind) beside the top-down map, for
/// videos: the view at least 64×48 and scaled up 4 times.
pub fn video_frame(w: &World, width: usize, height: usize, fov: f32) -> Image {
    let mut cam = Camera::new(width.max(64), height.max(48), fov);
    let sprites: Vec<Sprite> = w.objects.iter().map(|o| sprite(o.kind, o.x, o.y)).collect();
    let mut px = vec![0.0; cam.width * cam.height * 3];
    let a = w.agent;
    cam.render(&w.grid, (a.x, a.y, a.angle), &sprites, &mut px);
    let view = Image::from_f32(cam.width, cam.height, &px);
    let scale = 4;
    let mut map_sprites = sprites;
    if let Some((x, y, _)) = w.platform {
        map_sprites.push(Sprite {
            x,
            y,
            colour: [90.0, 90.0, 255.0],
            size: 0.6,
            shape: Shape::Square,
        });
    }
    let cell_px = (view.height * scale / w.grid.height).max(4);
    let map = top_down(&w.grid, (a.x, a.y, a.angle), &map_sprites, cell_px);
    let mut out = Image::new(
        view.width * scale + 8 + map.width,
        (view.height * scale).max(map.height),
    );
    out.blit(&view, 0, 0, scale);
    out.blit(&map, view.width * scale + 8, 0, 1);
    out
}
