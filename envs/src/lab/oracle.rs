//! The scripted agents behind [`Env::oracle_action`](crate::Env::oracle_action): one per
//! task, each reading the true state (where the goal, apples, keys and bots are) and
//! walking a shortest path to its next target.

use super::map::Cell;
use super::world::{action, wrap, Body, Kind, World};
use super::Task;

/// The oracle's action for `task` in the world `w`.
pub(super) fn oracle(task: Task, w: &World) -> usize {
    let mut dist = Vec::new();
    let dist = &mut dist;
    let floor = |x: usize, y: usize| w.grid.get(x as i32, y as i32) == Cell::Floor;
    match task {
        Task::ExploreGoalLocations => {
            let goal = w.objects[0].cell();
            let pass = floor;
            walk_to(w, dist, goal, pass)
        }
        Task::Watermaze => {
            let (px, py, _) = w.platform.expect("watermaze has a platform");
            let pass = floor;
            walk_to(w, dist, (px as usize, py as usize), pass)
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
                Some(t) => walk_to(w, dist, t, pass),
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
                Some(t) => walk_to(w, dist, t, pass),
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
                    walk_to(w, dist, t, pass)
                }
                None => action::LOOK_LEFT,
            }
        }
    }
}

/// The steering of the scripted agents: the action that walks along a shortest path
/// (through cells where `pass` holds) towards the cell `to`.
fn walk_to(
    w: &World,
    dist: &mut Vec<u32>,
    to: (usize, usize),
    pass: impl Fn(usize, usize) -> bool,
) -> usize {
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
