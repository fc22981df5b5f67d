//! The grid a Lab level is built on: cells, the level generators (mazes with loops, open
//! arenas, a chain of rooms joined by doors) and shortest paths.
//!
//! Coordinates: cell `(x, y)` covers `[x, x+1) × [y, y+1)`; x grows east, y grows south
//! (rows of the map as printed). Anything outside the grid is wall.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::SeededRng;

/// One cell of the level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cell {
    /// Open floor.
    Floor,
    /// A wall, with its colour (an index into [`WALL_COLOURS`]).
    Wall(u8),
    /// A locked door of a key colour (an index into [`KEY_COLOURS`]); floor once opened.
    Door(u8),
}

/// Wall colours (RGB, 0–255): distinct hues so that places can be told apart.
pub const WALL_COLOURS: [[f32; 3]; 8] = [
    [200.0, 60.0, 50.0],   // brick red
    [60.0, 140.0, 200.0],  // steel blue
    [70.0, 170.0, 80.0],   // green
    [210.0, 180.0, 60.0],  // ochre
    [150.0, 80.0, 190.0],  // violet
    [60.0, 180.0, 170.0],  // teal
    [220.0, 120.0, 40.0],  // orange
    [170.0, 170.0, 170.0], // grey
];

/// Key and door colours: red, green, blue, yellow.
pub const KEY_COLOURS: [[f32; 3]; 4] = [
    [230.0, 30.0, 30.0],
    [30.0, 200.0, 30.0],
    [40.0, 60.0, 240.0],
    [240.0, 230.0, 20.0],
];

/// A rectangular level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    cells: Vec<Cell>,
}

impl Grid {
    /// A `width × height` grid of `cell`.
    pub fn filled(width: usize, height: usize, cell: Cell) -> Grid {
        Grid {
            width,
            height,
            cells: vec![cell; width * height],
        }
    }

    /// The cell at `(x, y)`; wall outside the grid.
    #[inline]
    pub fn get(&self, x: i32, y: i32) -> Cell {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            Cell::Wall(7)
        } else {
            self.cells[y as usize * self.width + x as usize]
        }
    }

    /// Sets the cell at `(x, y)`, which must lie inside the grid.
    pub fn set(&mut self, x: usize, y: usize, c: Cell) {
        self.cells[y * self.width + x] = c;
    }

    /// Walls and closed doors block movement and sight.
    #[inline]
    pub fn solid(&self, x: i32, y: i32) -> bool {
        self.get(x, y) != Cell::Floor
    }

    /// Every floor cell, row by row.
    pub fn floor_cells(&self) -> Vec<(usize, usize)> {
        (0..self.height)
            .flat_map(|y| (0..self.width).map(move |x| (x, y)))
            .filter(|&(x, y)| self.get(x as i32, y as i32) == Cell::Floor)
            .collect()
    }

    /// A level from text, for tests and hand-made maps: `.` floor, `#` wall (colour 7),
    /// `0`–`7` wall of that colour, `R` `G` `B` `Y` doors of that key colour.
    pub fn parse(rows: &[&str]) -> Grid {
        let height = rows.len();
        let width = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let mut g = Grid::filled(width, height, Cell::Wall(7));
        for (y, row) in rows.iter().enumerate() {
            for (x, ch) in row.chars().enumerate() {
                let c = match ch {
                    '.' => Cell::Floor,
                    '0'..='7' => Cell::Wall(ch as u8 - b'0'),
                    'R' => Cell::Door(0),
                    'G' => Cell::Door(1),
                    'B' => Cell::Door(2),
                    'Y' => Cell::Door(3),
                    _ => Cell::Wall(7),
                };
                g.set(x, y, c);
            }
        }
        g
    }

    /// A maze on a `width × height` grid (both odd, at least 5): a recursive backtracker
    /// carves a perfect maze, then a fraction `loops` of the remaining inner walls that
    /// separate two corridors is knocked through, as DMLab's mazes have loops. Walls are
    /// coloured by region (see [`Grid::paint_regions`]).
    pub fn maze(width: usize, height: usize, loops: f64, rng: &mut SeededRng) -> Grid {
        let mut g = Grid::filled(width, height, Cell::Wall(7));
        let (cw, ch) = ((width - 1) / 2, (height - 1) / 2);
        let mut seen = vec![false; cw * ch];
        let start = (rng.random_range(0..cw), rng.random_range(0..ch));
        let mut stack = vec![start];
        seen[start.1 * cw + start.0] = true;
        g.set(2 * start.0 + 1, 2 * start.1 + 1, Cell::Floor);
        while let Some(&(cx, cy)) = stack.last() {
            let mut next = [(0usize, 0usize); 4];
            let mut n = 0;
            for (dx, dy) in [(1i32, 0i32), (-1, 0), (0, 1), (0, -1)] {
                let (nx, ny) = (cx as i32 + dx, cy as i32 + dy);
                if nx >= 0 && ny >= 0 && (nx as usize) < cw && (ny as usize) < ch {
                    let (nx, ny) = (nx as usize, ny as usize);
                    if !seen[ny * cw + nx] {
                        next[n] = (nx, ny);
                        n += 1;
                    }
                }
            }
            if n == 0 {
                stack.pop();
                continue;
            }
            let (nx, ny) = next[rng.random_range(0..n)];
            seen[ny * cw + nx] = true;
            g.set(cx + nx + 1, cy + ny + 1, Cell::Floor); // the wall between
            g.set(2 * nx + 1, 2 * ny + 1, Cell::Floor);
            stack.push((nx, ny));
        }
        // Knock through inner walls that sit between two corridor cells.
        for y in 1..height - 1 {
            for x in 1..width - 1 {
                let between_h = x % 2 == 0 && y % 2 == 1;
                let between_v = x % 2 == 1 && y % 2 == 0;
                if (between_h || between_v) && g.solid(x as i32, y as i32) && rng.random_bool(loops)
                {
                    g.set(x, y, Cell::Floor);
                }
            }
        }
        g.paint_regions(3, rng);
        g
    }

    /// An open arena of `width × height` cells (walls included) whose four sides have
    /// four different colours, with `pillars` single wall blocks of other colours inside
    /// (never on the outer ring of floor, so that the arena stays connected).
    pub fn arena(width: usize, height: usize, pillars: usize, rng: &mut SeededRng) -> Grid {
        let mut g = Grid::filled(width, height, Cell::Floor);
        let mut colours: Vec<u8> = (0..WALL_COLOURS.len() as u8).collect();
        colours.shuffle(rng);
        for x in 0..width {
            g.set(x, 0, Cell::Wall(colours[0]));
            g.set(x, height - 1, Cell::Wall(colours[1]));
        }
        for y in 1..height - 1 {
            g.set(0, y, Cell::Wall(colours[2]));
            g.set(width - 1, y, Cell::Wall(colours[3]));
        }
        // Pillars on cells with even coordinates never touch each other or the border ring.
        let mut spots: Vec<(usize, usize)> = (2..height - 2)
            .step_by(2)
            .flat_map(|y| (2..width - 2).step_by(2).map(move |x| (x, y)))
            .collect();
        spots.shuffle(rng);
        for (i, &(x, y)) in spots.iter().take(pillars).enumerate() {
            g.set(x, y, Cell::Wall(colours[4 + i % 4]));
        }
        g
    }

    /// `rooms` square rooms of `room × room` floor cells in a row, joined by a door in
    /// the middle of each dividing wall; door `d` (between rooms `d` and `d+1`) has key
    /// colour `door_colours[d]`. Returns the grid and each room's floor cells.
    pub fn rooms(
        rooms: usize,
        room: usize,
        door_colours: &[u8],
        rng: &mut SeededRng,
    ) -> (Grid, Vec<Vec<(usize, usize)>>) {
        let (width, height) = (rooms * (room + 1) + 1, room + 2);
        let mut g = Grid::filled(width, height, Cell::Floor);
        let mut colours: Vec<u8> = (0..WALL_COLOURS.len() as u8).collect();
        colours.shuffle(rng);
        let mut cells = Vec::with_capacity(rooms);
        for r in 0..rooms {
            let x0 = r * (room + 1);
            // Each room's walls in its own colour.
            let c = Cell::Wall(colours[r % colours.len()]);
            for y in 0..height {
                g.set(x0, y, c);
                g.set(x0 + room + 1, y, c);
            }
            for x in x0..=x0 + room + 1 {
                g.set(x, 0, c);
                g.set(x, height - 1, c);
            }
            cells.push(
                (1..=room)
                    .flat_map(|y| (x0 + 1..=x0 + room).map(move |x| (x, y)))
                    .collect(),
            );
        }
        for (d, &col) in door_colours.iter().enumerate().take(rooms - 1) {
            g.set((d + 1) * (room + 1), height / 2, Cell::Door(col));
        }
        (g, cells)
    }

    /// Colours every wall by the `region × region` block it lies in, each block's colour
    /// drawn at random: neighbouring walls share a colour, distant ones differ.
    pub fn paint_regions(&mut self, region: usize, rng: &mut SeededRng) {
        let (rw, rh) = (self.width.div_ceil(region), self.height.div_ceil(region));
        let palette: Vec<u8> = (0..rw * rh)
            .map(|_| rng.random_range(0..WALL_COLOURS.len() as u8))
            .collect();
        for y in 0..self.height {
            for x in 0..self.width {
                if let Cell::Wall(_) = self.get(x as i32, y as i32) {
                    self.set(x, y, Cell::Wall(palette[(y / region) * rw + x / region]));
                }
            }
        }
    }

    /// Breadth-first distances (in cells, 4-connected) from `to` to every cell through
    /// cells where `pass(x, y)` holds; `u32::MAX` where unreachable. `to` itself counts
    /// as passable.
    pub fn distances_to(
        &self,
        to: (usize, usize),
        pass: impl Fn(usize, usize) -> bool,
        dist: &mut Vec<u32>,
    ) {
        dist.clear();
        dist.resize(self.width * self.height, u32::MAX);
        let mut queue = std::collections::VecDeque::with_capacity(self.width * self.height);
        dist[to.1 * self.width + to.0] = 0;
        queue.push_back(to);
        while let Some((x, y)) = queue.pop_front() {
            let d = dist[y * self.width + x];
            for (dx, dy) in [(1i32, 0i32), (-1, 0), (0, 1), (0, -1)] {
                let (nx, ny) = (x as i32 + dx, y as i32 + dy);
                if nx < 0 || ny < 0 || nx as usize >= self.width || ny as usize >= self.height {
                    continue;
                }
                let (nx, ny) = (nx as usize, ny as usize);
                let i = ny * self.width + nx;
                if dist[i] == u32::MAX && pass(nx, ny) {
                    dist[i] = d + 1;
                    queue.push_back((nx, ny));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mazes_are_connected_and_bordered() {
        let mut rng = SeededRng::seed_from_u64(5);
        for _ in 0..20 {
            let g = Grid::maze(11, 9, 0.1, &mut rng);
            for x in 0..11 {
                assert!(g.solid(x, 0) && g.solid(x, 8));
            }
            let floor = g.floor_cells();
            let mut d = Vec::new();
            g.distances_to(floor[0], |x, y| !g.solid(x as i32, y as i32), &mut d);
            assert!(floor.iter().all(|&(x, y)| d[y * 11 + x] != u32::MAX));
        }
    }

    #[test]
    fn arenas_stay_connected() {
        let mut rng = SeededRng::seed_from_u64(1);
        let g = Grid::arena(11, 11, 8, &mut rng);
        let floor = g.floor_cells();
        assert_eq!(floor.len(), 81 - 8);
        let mut d = Vec::new();
        g.distances_to(floor[0], |x, y| !g.solid(x as i32, y as i32), &mut d);
        assert!(floor.iter().all(|&(x, y)| d[y * 11 + x] != u32::MAX));
    }
}

/// The view of a wall hit by the ray of one column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Distance along the view direction.
    pub depth: f32,
    /// The wall cell hit.
    pub cell: Cell,
    /// Where along the wall face the ray hit, in `[0, 1)`.
    pub u: f32,
    /// Whether the face runs north–south (hit while stepping in x).
    pub x_side: bool,
}

/// Casts one ray from `(px, py)` along `(rx, ry)` (not necessarily unit length: the
/// returned depth is in units of that vector, i.e. along the view direction when the ray
/// is `dir + k·right`). `max_steps` bounds the walk.
#[inline]
pub fn cast(grid: &Grid, px: f32, py: f32, rx: f32, ry: f32) -> Hit {
    let (mut mx, mut my) = (px.floor() as i32, py.floor() as i32);
    let ddx = if rx == 0.0 {
        f32::INFINITY
    } else {
        (1.0 / rx).abs()
    };
    let ddy = if ry == 0.0 {
        f32::INFINITY
    } else {
        (1.0 / ry).abs()
    };
    let (sx, mut side_x) = if rx < 0.0 {
        (-1, (px - mx as f32) * ddx)
    } else {
        (1, (mx as f32 + 1.0 - px) * ddx)
    };
    let (sy, mut side_y) = if ry < 0.0 {
        (-1, (py - my as f32) * ddy)
    } else {
        (1, (my as f32 + 1.0 - py) * ddy)
    };
    let limit = (grid.width + grid.height) * 2 + 4;
    for _ in 0..limit {
        let x_side = side_x < side_y;
        let depth;
        if x_side {
            depth = side_x;
            side_x += ddx;
            mx += sx;
        } else {
            depth = side_y;
            side_y += ddy;
            my += sy;
        }
        let cell = grid.get(mx, my);
        if cell != Cell::Floor {
            let along = if x_side {
                py + depth * ry
            } else {
                px + depth * rx
            };
            return Hit {
                depth,
                cell,
                u: along - along.floor(),
                x_side,
            };
        }
    }
    Hit {
        depth: f32::INFINITY,
        cell: Cell::Wall(7),
        u: 0.0,
        x_side: false,
    }
}
