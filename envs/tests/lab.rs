//! The Lab tasks: determinism, reward and termination rules on hand-made maps, the
//! renderer's perspective and occlusion, the symbolic view, and the scripted agents.

use rand::{Rng, SeedableRng};
use rlcpc_envs::lab::{
    action, channel, Body, Camera, Grid, Kind, Lab, LabConfig, LabOptions, LasertagOptions, Object,
    ObsKind, SeekavoidArenaOptions, Shape, Sprite, Task, GRID_CHANNELS, KEY_COLOURS, SHADE_Y_SIDE,
    WALL_COLOURS,
};
use rlcpc_envs::{entry, make, Env, EnvConfig, SeededRng};

/// Observations of `steps` random steps after `reset(seed)`.
fn rollout(env: &mut dyn Env, seed: u64, steps: usize) -> Vec<Vec<f32>> {
    let n = env.observation_space().flat_dim();
    let a = match env.action_space() {
        rlcpc_envs::Space::Discrete(a) => a,
        _ => unreachable!(),
    };
    let mut rng = SeededRng::seed_from_u64(99);
    let mut obs = vec![0.0; n];
    env.reset_into(Some(seed), &mut obs);
    let mut out = vec![obs.clone()];
    for _ in 0..steps {
        let o = env.step_into(rng.random_range(0..a), &mut obs).unwrap();
        if o.terminated || o.truncated {
            env.reset_into(None, &mut obs);
        }
        out.push(obs.clone());
    }
    out
}

fn env(task: Task, grid_obs: bool) -> Box<dyn Env> {
    let mut c = EnvConfig::new(task.id());
    if grid_obs {
        c.options.insert("obs".into(), "grid".into());
    }
    make(&c).unwrap()
}

#[test]
fn same_seed_same_observations_and_state_round_trips() {
    for task in Task::ALL {
        for grid_obs in [false, true] {
            let (mut a, mut b) = (env(task, grid_obs), env(task, grid_obs));
            let ra = rollout(a.as_mut(), 7, 60);
            assert_eq!(ra, rollout(b.as_mut(), 7, 60), "{task:?}");
            assert_ne!(ra, rollout(b.as_mut(), 8, 60), "{task:?}: seeds differ");
            // Save mid-episode, run on, restore into a fresh env: the same future.
            let state = a.save_state();
            let tail_a = continue_random(a.as_mut(), 30);
            let mut c = env(task, grid_obs);
            c.load_state(&state).unwrap();
            assert_eq!(tail_a, continue_random(c.as_mut(), 30), "{task:?}");
        }
    }
}

fn continue_random(env: &mut dyn Env, steps: usize) -> Vec<(Vec<f32>, f32)> {
    let mut rng = SeededRng::seed_from_u64(3);
    let mut obs = vec![0.0; env.observation_space().flat_dim()];
    (0..steps)
        .map(|_| {
            let o = env.step_into(rng.random_range(0..8), &mut obs).unwrap();
            (obs.clone(), o.reward)
        })
        .collect()
}

#[test]
fn spaces_follow_the_options() {
    let e = env(Task::Lasertag, false);
    assert_eq!(e.observation_space().shape(), vec![48, 64, 3]);
    assert_eq!(e.action_space(), rlcpc_envs::Space::Discrete(9));
    let e = env(Task::ExploreGoalLocations, true);
    assert_eq!(e.observation_space().shape(), vec![9, 9, GRID_CHANNELS]);
    assert_eq!(e.action_space(), rlcpc_envs::Space::Discrete(8));
    let mut c = EnvConfig::new("lab/watermaze");
    c.options.insert("width".into(), 96.into());
    c.options.insert("height".into(), 72.into());
    assert_eq!(
        make(&c).unwrap().observation_space().shape(),
        vec![72, 96, 3]
    );
    c.options.insert("view".into(), 4.into());
    let err = make(&c).err().unwrap().to_string();
    assert!(err.contains("view") && err.contains("odd"), "{err}");
    let mut c = EnvConfig::new("lab/seekavoid_arena");
    c.options.insert("bots".into(), 2.into());
    let err = make(&c).err().unwrap().to_string();
    assert!(
        err.contains("unknown option") && err.contains("apples"),
        "{err}"
    );
    // Review 3, N10: too many lemons named 'apples'.
    for (key, n, named) in [
        ("lemons", 100_000, "'lemons'"),
        ("apples", 100_000, "'apples'"),
        ("apples", 0, "'apples'"),
    ] {
        let mut c = EnvConfig::new("lab/seekavoid_arena");
        c.options.insert(key.into(), n.into());
        let err = make(&c).err().unwrap().to_string();
        assert!(err.contains(named), "{key}={n}: {err}");
    }
}

#[test]
fn every_task_is_registered_under_its_id() {
    for t in Task::ALL {
        assert_eq!(Task::from_id(t.id()), Some(t));
        assert!(entry(t.id()).is_some(), "{t:?}");
    }
    assert_eq!(Task::from_id("lab/nope"), None);
    assert_eq!(Task::from_id("CartPole-v1"), None);
}

#[test]
fn options_are_typed_and_their_help_shows_the_defaults() {
    // The help text comes from the option structs' defaults, which LabConfig::new uses.
    let help = |id: &str| entry(id).unwrap().options.clone();
    assert_eq!(
        help("lab/seekavoid_arena"),
        "size = 11, apples = 10, lemons = 6; obs = \"rgb\" | \"grid\", width = 64, \
         height = 48, fov = 90, view = 9 (grid window), action_repeat = 4; \
         episodes of 1350 agent steps"
    );
    assert!(help("lab/lasertag").starts_with("size = 13, bots = 3; "));
    let (c, d) = (LabConfig::new(Task::Lasertag), LabOptions::default());
    assert_eq!(c.common, d);
    assert_eq!((c.size, c.bots), (13, LasertagOptions::default().bots));
    let s = SeekavoidArenaOptions::default();
    assert_eq!((c.apples, c.lemons), (s.apples, s.lemons));

    // Options read as their types; the struct refuses unknown keys by itself too.
    let o: LabOptions =
        serde_json::from_value(serde_json::json!({"obs": "grid", "fov": 60})).unwrap();
    assert_eq!((o.obs, o.fov, o.width), (ObsKind::Grid, 60.0, 64));
    assert!(serde_json::from_value::<LabOptions>(serde_json::json!({"bots": 1})).is_err());

    // Errors name the key and say what it must be.
    let err = |id: &str, key: &str, v: serde_json::Value| {
        let mut c = EnvConfig::new(id);
        c.options.insert(key.into(), v);
        make(&c).err().unwrap().to_string()
    };
    let e = err("lab/watermaze", "height", 4.into());
    assert!(e.contains("'height'") && e.contains("8..=1024"), "{e}");
    let e = err("lab/watermaze", "obs", 3.into());
    assert!(
        e.contains("'obs'") && e.contains("\"rgb\" or \"grid\""),
        "{e}"
    );
    let e = err("lab/watermaze", "width", "wide".into());
    assert!(
        e.contains("'width'") && e.contains("non-negative integer"),
        "{e}"
    );
    let e = err("lab/explore_goal_locations", "loops", "many".into());
    assert!(e.contains("'loops'") && e.contains("a number"), "{e}");
    let e = err("lab/lasertag", "loops", 0.5.into());
    assert!(
        e.contains("'loops'")
            && e.contains("unknown option")
            && e.contains("size, bots, obs, width, height, fov, view, action_repeat"),
        "{e}"
    );
    let e = err("lab/keys_doors_puzzle", "rooms", 5.into());
    assert!(e.contains("'rooms'") && e.contains("2..=4"), "{e}");
}

/// A one-cell-wide east–west corridor between walls of colour 3 that ends in `end`.
fn corridor(len: usize, end: char) -> Grid {
    let wall = "3".repeat(len + 2);
    let mid = format!("3{}{end}", ".".repeat(len));
    Grid::parse(&[&wall, &mid, &wall])
}

fn at(x: f32, y: f32, angle: f32) -> Body {
    Body { x, y, angle }
}

fn lab(task: Task, grid: Grid, objects: Vec<Object>, agent: Body) -> Lab {
    Lab::with_world(task, LabConfig::new(task), grid, objects, agent)
}

fn steps(lab: &mut Lab, actions: &[usize]) -> Vec<(f32, bool)> {
    let mut obs = vec![0.0; lab.observation_space().flat_dim()];
    actions
        .iter()
        .map(|&a| {
            let o = lab.step_into(a, &mut obs).unwrap();
            (o.reward, o.terminated)
        })
        .collect()
}

#[test]
fn reaching_the_goal_pays_and_respawns_away_from_it() {
    // Goal 3 cells ahead; ½ cell per step; picked up within ½ cell of its centre.
    let mut l = lab(
        Task::ExploreGoalLocations,
        corridor(6, '3'),
        vec![Object::at(Kind::Goal, (4, 1))],
        at(1.5, 1.5, 0.0),
    );
    let r = steps(&mut l, &[action::FORWARD; 6]);
    let rewards: Vec<f32> = r.iter().map(|x| x.0).collect();
    assert_eq!(rewards, [0.0, 0.0, 0.0, 0.0, 0.0, 10.0]);
    assert!(r.iter().all(|x| !x.1), "the episode goes on");
    // Respawned (then walked on for the step's remaining frames) away from the goal.
    let a = l.world.agent;
    assert!((a.x - 4.5).abs() > 1.0, "{a:?}");
    assert_eq!(l.world.objects[0].cell(), (4, 1), "the goal stays");
}

#[test]
fn keys_open_only_doors_of_their_colour_one_key_at_a_time() {
    // Corridor: green key at x=2, red door at x=5, goal at x=7.
    let grid = Grid::parse(&["3333333333", "3....R...3", "3333333333"]);
    let goal = Object::at(Kind::Goal, (7, 1));
    let green = Object::at(Kind::Key(1), (2, 1));
    let mut l = lab(
        Task::KeysDoorsPuzzle,
        grid.clone(),
        vec![green, goal],
        at(1.5, 1.5, 0.0),
    );
    let r = steps(&mut l, &[action::FORWARD; 20]);
    assert_eq!(r.iter().map(|x| x.0).sum::<f32>(), 1.0, "the key pays once");
    assert_eq!(l.world.held, Some(1));
    assert!(
        l.world.agent.x < 5.0,
        "a red door stays shut to a green key"
    );
    assert!(r.iter().all(|x| !x.1));

    // A red key after the green one: the green key is left behind, the door opens, the
    // goal ends the episode.
    let red = Object::at(Kind::Key(0), (3, 1));
    let mut l = lab(
        Task::KeysDoorsPuzzle,
        grid,
        vec![green, red, goal],
        at(1.5, 1.5, 0.0),
    );
    let r = steps(&mut l, &[action::FORWARD; 20]);
    let end = r
        .iter()
        .position(|x| x.1)
        .expect("the goal ends the episode");
    assert_eq!(r[end].0, 10.0);
    assert_eq!(r[..end].iter().map(|x| x.0).sum::<f32>(), 2.0);
    assert_eq!(l.world.held, None, "the red key was used on the door");
    let left: Vec<_> = l
        .world
        .objects
        .iter()
        .filter(|o| o.kind == Kind::Key(1))
        .collect();
    assert_eq!(
        left.len(),
        1,
        "the green key was dropped where the red one lay"
    );
    assert_eq!(left[0].cell(), (3, 1));
}

#[test]
fn the_hidden_platform_pays_and_respawns() {
    let mut l = lab(
        Task::Watermaze,
        Grid::arena(7, 7, 0, &mut SeededRng::seed_from_u64(0)),
        vec![],
        at(1.5, 3.5, 0.0),
    );
    l.world.platform = Some((4.5, 3.5, 0.6));
    // Within 0.6 of its centre after 20 frames of ⅛ cell: the 5th step.
    let r = steps(&mut l, &[action::FORWARD; 6]);
    assert_eq!(
        r.iter().map(|x| x.0).collect::<Vec<_>>(),
        [0.0, 0.0, 0.0, 0.0, 10.0, 0.0]
    );
    let a = l.world.agent;
    assert!(
        (a.x - 4.5).abs() > 1.0 || (a.y - 3.5).abs() > 1.0,
        "respawned: {a:?}"
    );
}

#[test]
fn apples_pay_and_lemons_cost() {
    let mut l = lab(
        Task::SeekavoidArena,
        corridor(8, '3'),
        vec![
            Object::at(Kind::Apple, (2, 1)),
            Object::at(Kind::Lemon, (3, 1)),
            Object::at(Kind::Apple, (8, 1)),
        ],
        at(1.5, 1.5, 0.0),
    );
    let r: Vec<f32> = steps(&mut l, &[action::FORWARD; 4])
        .iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(r, [0.0, 1.0, 0.0, -1.0]);
    assert_eq!(l.world.objects.len(), 1, "eaten fruit is gone");
}

#[test]
fn firing_tags_a_bot_in_sight_and_not_through_walls() {
    let mut l = lab(
        Task::Lasertag,
        corridor(8, '3'),
        vec![Object::at(Kind::Bot, (5, 1))],
        at(1.5, 1.5, 0.0),
    );
    assert_eq!(steps(&mut l, &[action::FIRE])[0].0, 1.0);
    let b = l.world.objects[0];
    assert!(
        b.x > 4.5,
        "the tagged bot respawns away from the agent: {b:?}"
    );
    // Facing away: nothing.
    let mut l = lab(
        Task::Lasertag,
        corridor(8, '3'),
        vec![Object::at(Kind::Bot, (5, 1))],
        at(1.5, 1.5, std::f32::consts::PI),
    );
    assert_eq!(steps(&mut l, &[action::FIRE])[0].0, 0.0);
    // Behind a wall: nothing.
    let grid = Grid::parse(&["3333333333", "3..3.....3", "3333333333"]);
    let mut l = lab(
        Task::Lasertag,
        grid,
        vec![Object::at(Kind::Bot, (5, 1))],
        at(1.5, 1.5, 0.0),
    );
    assert_eq!(steps(&mut l, &[action::FIRE])[0].0, 0.0);
}

#[test]
fn walls_block_and_the_agent_slides() {
    // Watermaze rules with no platform: nothing but walls.
    let mut l = lab(Task::Watermaze, corridor(4, '3'), vec![], at(2.5, 1.5, 0.0));
    steps(&mut l, &[action::FORWARD; 10]);
    let a = l.world.agent;
    assert!(
        (a.x - 4.75).abs() < 1e-4,
        "stopped a radius from the wall: {a:?}"
    );
    // Walking diagonally into the wall keeps moving along it.
    // 16 frames at 0.3 rad would take y to 2.09: it stops at 1.75 while x goes on.
    l.world.agent = at(1.5, 1.5, 0.3);
    steps(&mut l, &[action::FORWARD; 4]);
    let a = l.world.agent;
    assert!(a.x > 3.3 && (a.y - 1.75).abs() < 1e-4, "{a:?}");
}

/// Pixel `(r, c)` of an `[H, W, 3]` image.
fn px(img: &[f32], w: usize, r: usize, c: usize) -> [f32; 3] {
    let i = (r * w + c) * 3;
    [img[i], img[i + 1], img[i + 2]]
}

/// Whether `p` is colour `x` at some brightness (the brick pattern and side shading).
fn is_shade_of(p: [f32; 3], x: [f32; 3]) -> bool {
    let s = p[0] / x[0];
    s > 0.3 && (0..3).all(|k| (p[k] - x[k] * s).abs() < 0.01 * 255.0)
}

#[test]
fn walls_have_the_height_perspective_predicts() {
    let (w, h) = (64, 48);
    let mut cam = Camera::new(w, h, 90.0);
    let f = cam.focal;
    assert!((f - 32.0).abs() < 1e-4, "f = (W/2)/tan(45°)");
    let grid = corridor(8, '2');
    let colour = WALL_COLOURS[2];
    let mut img = vec![0.0; w * h * 3];
    for x in [1.5f32, 3.5, 6.0, 8.2] {
        let d = 9.0 - x; // distance to the end wall's face at x = 9
        cam.render(&grid, (x, 1.5, 0.0), &[], &mut img);
        for c in [w / 2 - 1, w / 2] {
            let rows: Vec<usize> = (0..h)
                .filter(|&r| is_shade_of(px(&img, w, r, c), colour))
                .collect();
            let want = (f / d).min(h as f32);
            assert!(
                (rows.len() as f32 - want).abs() <= 1.0,
                "d = {d}: {} rows of colour, perspective predicts {want}",
                rows.len()
            );
            // Centred on the horizon, contiguous.
            assert_eq!(rows.last().unwrap() - rows[0] + 1, rows.len());
            let mid = (rows[0] + rows.last().unwrap() + 1) as f32 / 2.0;
            assert!((mid - h as f32 / 2.0).abs() <= 1.0);
        }
        // Without fish-eye, a wall facing the camera is equally high in every column.
        let spans: Vec<usize> = (0..w)
            .map(|c| {
                (0..h)
                    .filter(|&r| is_shade_of(px(&img, w, r, c), colour))
                    .count()
            })
            .filter(|&n| n > 0)
            .collect();
        assert!(
            spans.iter().max().unwrap() - spans.iter().min().unwrap() <= 1,
            "{spans:?}"
        );
    }
    // The side walls are darker on faces hit along y.
    let top_left = px(&img, w, 0, 0);
    assert!(is_shade_of(top_left, WALL_COLOURS[3]), "{top_left:?}");
    assert!(top_left[0] <= WALL_COLOURS[3][0] * SHADE_Y_SIDE + 0.01);
}

#[test]
fn sprites_are_hidden_behind_walls_and_drawn_over_them() {
    let (w, h) = (64, 48);
    let mut cam = Camera::new(w, h, 90.0);
    let apple = Sprite {
        x: 4.5,
        y: 1.5,
        colour: [1.0, 254.0, 2.0],
        size: 0.4,
        shape: Shape::Disc,
    };
    let count = |img: &[f32]| img.chunks(3).filter(|p| p == &apple.colour).count();
    let mut img = vec![0.0; w * h * 3];
    // Open corridor: the apple is seen, in the middle columns, standing on the floor.
    cam.render(&corridor(8, '2'), (1.5, 1.5, 0.0), &[apple], &mut img);
    let n = count(&img);
    let size = cam.focal * 0.4 / 3.0;
    assert!(
        (n as f32 - std::f32::consts::PI / 4.0 * size * size).abs() < 0.3 * size * size,
        "{n} px"
    );
    let cols: Vec<usize> = (0..w)
        .filter(|&c| (0..h).any(|r| px(&img, w, r, c) == apple.colour))
        .collect();
    assert!(cols.contains(&31) && cols.contains(&32));
    // A wall between: not a pixel of it.
    let blocked = Grid::parse(&["3333333333", "3..2.....3", "3333333333"]);
    cam.render(&blocked, (1.5, 1.5, 0.0), &[apple], &mut img);
    assert_eq!(count(&img), 0);
    // A nearer sprite covers a farther one.
    let key = Sprite {
        x: 3.0,
        colour: KEY_COLOURS[2],
        size: 0.8,
        shape: Shape::Square,
        ..apple
    };
    cam.render(&corridor(8, '2'), (1.5, 1.5, 0.0), &[key, apple], &mut img);
    assert_eq!(count(&img), 0, "the apple is behind the key");
}

#[test]
fn the_symbolic_view_is_egocentric() {
    let mut cfg = LabConfig::new(Task::KeysDoorsPuzzle);
    cfg.common.obs = ObsKind::Grid;
    cfg.common.view = 5;
    let grid = Grid::parse(&["3333333", "3...B.3", "3333333"]);
    // The door 3 cells ahead lies outside the 5-wide window; facing it from nearer shows it.
    let mut l = Lab::with_world(
        Task::KeysDoorsPuzzle,
        cfg,
        grid,
        vec![Object::at(Kind::Key(2), (2, 1))],
        at(1.5, 1.5, 0.0),
    );
    let mut obs = vec![0.0; 5 * 5 * GRID_CHANNELS];
    let ch = |obs: &[f32], i: usize, j: usize, k: usize| obs[(i * 5 + j) * GRID_CHANNELS + k];
    l.step_into(action::LOOK_LEFT, &mut obs).unwrap();
    l.step_into(action::LOOK_RIGHT, &mut obs).unwrap(); // facing east again
                                                        // Row 2 is the agent's, row 1 one cell ahead: the blue key ahead, the blue door 3 ahead
                                                        // (out of a 5-window: rows 0..2 are ahead), walls left and right.
    assert_eq!(
        ch(&obs, 1, 2, channel::KEY + 2),
        1.0,
        "blue key one cell ahead"
    );
    assert_eq!(
        ch(&obs, 2, 1, channel::WALL + 3),
        1.0,
        "wall (colour 3) on the left"
    );
    assert_eq!(ch(&obs, 2, 3, channel::WALL + 3), 1.0, "wall on the right");
    assert_eq!(ch(&obs, 3, 2, channel::WALL + 3), 1.0, "wall behind");
    // Facing south: the wall is ahead, the key on the left.
    l.world.agent.angle = std::f32::consts::FRAC_PI_2;
    l.step_into(action::BACKWARD, &mut obs).unwrap(); // stays in its cell
    assert_eq!(ch(&obs, 1, 2, channel::WALL + 3), 1.0, "wall ahead");
    assert_eq!(ch(&obs, 2, 1, channel::KEY + 2), 1.0, "key on the left");
    // Holding a key lights its plane everywhere.
    l.world.agent.angle = 0.0;
    l.step_into(action::FORWARD, &mut obs).unwrap();
    l.step_into(action::FORWARD, &mut obs).unwrap();
    assert_eq!(l.world.held, Some(2));
    assert!((0..25).all(|c| obs[c * GRID_CHANNELS + channel::HELD + 2] == 1.0));
}

#[test]
fn oracles_beat_random_play() {
    for task in Task::ALL {
        let mut e = env(task, true);
        let mut obs = vec![0.0; e.observation_space().flat_dim()];
        let (mut oracle, mut random) = (0.0, 0.0);
        let mut rng = SeededRng::seed_from_u64(1);
        for (policy, total) in [(true, &mut oracle), (false, &mut random)] {
            e.reset_into(Some(5), &mut obs);
            for _ in 0..400 {
                let a = if policy {
                    e.oracle_action().unwrap()
                } else {
                    rng.random_range(0..task.num_actions())
                };
                let o = e.step_into(a, &mut obs).unwrap();
                *total += o.reward;
                if o.terminated || o.truncated {
                    e.reset_into(None, &mut obs);
                }
            }
        }
        assert!(
            oracle > random + 5.0,
            "{task:?}: oracle {oracle}, random {random}"
        );
    }
}
