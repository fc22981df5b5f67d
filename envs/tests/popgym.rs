//! The POPGym port against POPGym itself (`fixtures/popgym.json`, written by
//! `fixtures/popgym_record.py` from the PyPI package): given POPGym's own random draws
//! (deck orders, boards, mines, mazes, CartPole start states) every task must replay
//! POPGym's episodes exactly (observations, rewards, episode ends); where the draws are
//! this crate's own, the random-policy returns and lengths must agree in distribution.

use rand::{Rng, SeedableRng};
use rlcpc_envs::popgym::{
    Autoencode, Battleship, CartPoleView, Concentration, CountRecall, DeckType, HigherLower,
    Labyrinth, Maze, MineSweeper, MultiarmedBandit, PopCartPole, RawSpace, RepeatFirst,
    RepeatPrevious, Task, LEVELS,
};
use rlcpc_envs::{CartPoleState, SeededRng, Space};
use serde_json::Value;

fn fixtures() -> &'static Value {
    static F: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        serde_json::from_str(include_str!("fixtures/popgym.json")).unwrap()
    });
    &F["envs"]
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn order(v: &Value) -> Vec<u16> {
    ints(v).into_iter().map(|x| x as u16).collect()
}

/// Replays POPGym's three recorded episodes of `name` on `task`, which `start` puts in
/// the episode's recorded initial state. `exact_obs` false: observations are not
/// compared (noisy CartPole).
fn replay<T: Task>(name: &str, mut task: T, start: impl Fn(&mut T, &Value, &mut [f32])) {
    let fx = &fixtures()[name];
    assert!(fx.is_object(), "no fixture for {name}");
    let nvec: Vec<usize> = ints(&fx["action_nvec"])
        .iter()
        .map(|n| *n as usize)
        .collect();
    assert_eq!(task.action_nvec(), nvec, "{name}: action space");
    let mut raw = vec![0f32; task.raw_space().len()];
    let mut rng = SeededRng::seed_from_u64(0);
    for ep in fx["episodes"].as_array().unwrap() {
        start(&mut task, &ep["init"], &mut raw);
        assert_eq!(
            raw,
            floats(&ep["obs0"])
                .iter()
                .map(|x| *x as f32)
                .collect::<Vec<_>>(),
            "{name}: reset observation"
        );
        let (obs, rewards) = (ep["obs"].as_array().unwrap(), floats(&ep["rewards"]));
        for (i, a) in ints(&ep["actions"]).iter().enumerate() {
            let o = task.step(*a as usize, &mut rng, &mut raw);
            let want: Vec<f32> = floats(&obs[i]).iter().map(|x| *x as f32).collect();
            assert_eq!(
                raw, want,
                "{name} seed {}: observation at step {i}",
                ep["seed"]
            );
            assert!(
                (o.reward as f64 - rewards[i]).abs() < 1e-6,
                "{name}: reward at step {i}: {} vs {}",
                o.reward,
                rewards[i]
            );
            assert_eq!(
                o.terminated,
                ep["terminated"][i].as_bool().unwrap(),
                "{name}: terminated at {i}"
            );
            assert_eq!(
                o.truncated,
                ep["truncated"][i].as_bool().unwrap(),
                "{name}: truncated at {i}"
            );
        }
    }
}

fn pick<X: Copy>(level: usize, x: [X; 3]) -> X {
    x[level]
}

#[test]
fn card_tasks_replay_popgym_exactly() {
    for (l, level) in LEVELS.iter().enumerate() {
        let decks = |t: &mut rlcpc_envs::popgym::Deck, v: &Value| t.set_order(&order(v));
        replay(
            &format!("RepeatFirst{level}"),
            RepeatFirst::new(pick(l, [1, 8, 16])),
            |t, i, r| {
                decks(&mut t.deck, &i["deck_idx"]);
                t.start(r)
            },
        );
        let (d, k) = pick(l, [(1, 4), (2, 32), (3, 64)]);
        replay(
            &format!("RepeatPrevious{level}"),
            RepeatPrevious::new(d, k),
            |t, i, r| {
                decks(&mut t.deck, &i["deck_idx"]);
                t.start(r)
            },
        );
        replay(
            &format!("Autoencode{level}"),
            Autoencode::new(pick(l, [1, 2, 3])),
            |t, i, r| {
                decks(&mut t.deck, &i["deck_idx"]);
                t.start(r)
            },
        );
        let (d, ty) = pick(
            l,
            [
                (1, DeckType::Colors),
                (2, DeckType::Suits),
                (4, DeckType::Ranks),
            ],
        );
        replay(
            &format!("CountRecall{level}"),
            CountRecall::new(d, ty),
            |t, i, r| {
                decks(&mut t.values, &i["value_idx"]);
                decks(&mut t.queries, &i["query_idx"]);
                t.start(r)
            },
        );
        replay(
            &format!("HigherLower{level}"),
            HigherLower::new(pick(l, [1, 2, 3])),
            |t, i, r| {
                decks(&mut t.deck, &i["deck_idx"]);
                t.start(r)
            },
        );
        let (d, ty) = pick(
            l,
            [
                (1, DeckType::Colors),
                (2, DeckType::Colors),
                (1, DeckType::Ranks),
            ],
        );
        replay(
            &format!("Concentration{level}"),
            Concentration::new(d, ty),
            |t, i, r| {
                decks(&mut t.deck, &i["deck_idx"]);
                t.start(r)
            },
        );
    }
}

#[test]
fn games_replay_popgym_exactly() {
    for (l, level) in LEVELS.iter().enumerate() {
        let size = pick(l, [8, 10, 12]);
        replay(
            &format!("Battleship{level}"),
            Battleship::new(size, &[2, 3, 3, 4]),
            |t, i, r| {
                t.board = ints(&i["board"]).iter().map(|c| *c == 1).collect();
                t.start(r)
            },
        );
        let (side, mines) = pick(l, [(4, 2), (6, 6), (8, 10)]);
        replay(
            &format!("MineSweeper{level}"),
            MineSweeper::new(side, side, mines),
            |t, i, r| {
                t.hidden = ints(&i["hidden_grid"]).iter().map(|c| *c as u8).collect();
                t.start(r);
                let want: Vec<u8> = ints(&i["neighbor_grid"]).iter().map(|c| *c as u8).collect();
                assert_eq!(t.neighbours, want, "MineSweeper{level}: neighbour counts");
            },
        );
        // The bandit's pulls draw from the generator: replay each recorded outcome
        // (u = 0 pays on any arm with p > 0, u = 1 never pays) and check the rules.
        let (arms, len) = pick(l, [(10, 200), (20, 400), (30, 600)]);
        let fx = &fixtures()[&format!("MultiarmedBandit{level}")];
        for ep in fx["episodes"].as_array().unwrap() {
            let mut t = MultiarmedBandit::new(arms, len);
            t.arms = floats(&ep["init"]["bandits"])
                .iter()
                .map(|p| *p as f32)
                .collect();
            let mut raw = [0f32];
            for (i, a) in ints(&ep["actions"]).iter().enumerate() {
                let paid = ep["obs"][i][0].as_i64().unwrap() == 1;
                let o = t.pull(*a as usize, if paid { 0.0 } else { 1.0 }, &mut raw);
                assert_eq!(raw[0], paid as u8 as f32);
                assert!((o.reward as f64 - ep["rewards"][i].as_f64().unwrap()).abs() < 1e-7);
                assert_eq!(
                    o.truncated,
                    ep["truncated"][i].as_bool().unwrap(),
                    "bandit step {i}"
                );
                assert!(!o.terminated);
            }
        }
    }
}

fn maze_of(init: &Value) -> Maze {
    let shape = ints(&init["shape"]);
    let (pos, end) = (ints(&init["position"]), ints(&init["end"]));
    Maze {
        rows: shape[0] as usize,
        cols: shape[1] as usize,
        grid: ints(&init["grid"]).iter().map(|c| *c as u8).collect(),
        start: (pos[0] as usize, pos[1] as usize),
        end: (end[0] as usize, end[1] as usize),
    }
}

#[test]
fn labyrinths_replay_popgym_exactly() {
    for (l, level) in LEVELS.iter().enumerate() {
        let blocks = pick(l, [10, 14, 18]);
        for (family, explore) in [("LabyrinthEscape", false), ("LabyrinthExplore", true)] {
            replay(
                &format!("{family}{level}"),
                Labyrinth::new(blocks, 1024, explore),
                |t, i, r| t.start(maze_of(i), r),
            );
        }
    }
}

#[test]
fn cartpoles_replay_popgym_exactly() {
    for (l, level) in LEVELS.iter().enumerate() {
        let len = pick(l, [200, 400, 600]);
        for (family, view, length, noise) in [
            ("PositionOnlyCartPole", CartPoleView::Position, len, 0.0),
            ("VelocityOnlyCartPole", CartPoleView::Velocity, len, 0.0),
            (
                "NoisyPositionOnlyCartPole",
                CartPoleView::Position,
                200,
                pick(l, [0.1, 0.2, 0.3]),
            ),
        ] {
            let name = format!("{family}{level}");
            let fx = &fixtures()[&name];
            for ep in fx["episodes"].as_array().unwrap() {
                let s = floats(&ep["init"]["state0"]);
                let state = CartPoleState {
                    x: s[0],
                    x_dot: s[1],
                    theta: s[2],
                    theta_dot: s[3],
                };
                let mut t = PopCartPole::new(view, length, noise);
                let mut raw = [0f32; 2];
                t.start(state, &mut raw);
                if noise == 0.0 {
                    let want: Vec<f32> = floats(&ep["obs0"]).iter().map(|x| *x as f32).collect();
                    assert_eq!(raw.to_vec(), want, "{name}: reset observation");
                }
                for (i, a) in ints(&ep["actions"]).iter().enumerate() {
                    let o = t.advance(*a as usize, &mut raw);
                    let want = floats(&ep["states"][i]);
                    let got = [t.state.x, t.state.x_dot, t.state.theta, t.state.theta_dot];
                    for (g, w) in got.iter().zip(&want) {
                        assert!((g - w).abs() < 1e-9, "{name} step {i}: {got:?} vs {want:?}");
                    }
                    let obs = floats(&ep["obs"][i]);
                    if noise == 0.0 {
                        assert_eq!(
                            raw.to_vec(),
                            obs.iter().map(|x| *x as f32).collect::<Vec<_>>()
                        );
                    } else {
                        // POPGym's noise is its own draw: it must stay within 6σ and the clip.
                        assert!((obs[0] - t.state.x).abs() < 6.0 * noise, "{name}: {obs:?}");
                    }
                    assert!((o.reward as f64 - ep["rewards"][i].as_f64().unwrap()).abs() < 1e-7);
                    assert_eq!(
                        o.terminated,
                        ep["terminated"][i].as_bool().unwrap(),
                        "{name} step {i}"
                    );
                    assert_eq!(
                        o.truncated,
                        ep["truncated"][i].as_bool().unwrap(),
                        "{name} step {i}"
                    );
                }
            }
        }
    }
}

/// Random-policy returns and episode lengths over many episodes of the registered
/// environments agree with POPGym's within 4 standard errors of the difference.
#[test]
fn random_policy_returns_match_popgym_in_distribution() {
    let mut report = Vec::new();
    for (id, _) in rlcpc_envs::popgym::ids() {
        let name = id.strip_prefix("popgym/").unwrap();
        let want = &fixtures()[name]["random"];
        let mut env = rlcpc_envs::make(&rlcpc_envs::EnvConfig::new(id)).unwrap();
        let Space::Discrete(n) = env.action_space() else {
            unreachable!()
        };
        let episodes = if name.starts_with("Labyrinth") {
            600
        } else {
            4000
        };
        let mut rng = SeededRng::seed_from_u64(7);
        let (mut returns, mut lengths) = (Vec::new(), Vec::new());
        let mut obs = vec![0f32; env.observation_space().flat_dim()];
        for e in 0..episodes {
            env.reset_into(Some(10_000 + e), &mut obs);
            let (mut g, mut len) = (0f64, 0usize);
            loop {
                let o = env.step_into(rng.random_range(0..n), &mut obs).unwrap();
                g += o.reward as f64;
                len += 1;
                if o.terminated || o.truncated {
                    break;
                }
                assert!(len < 100_000, "{id}: an episode does not end");
            }
            // POPGym's scale, [-1, 1]; a Battleship episode that misses more than
            // size² - hits times goes below, to -size²/(size² - 14) = -1.28 at 8x8.
            assert!((-1.3..=1.0 + 1e-4).contains(&g), "{id}: return {g}");
            returns.push(g);
            lengths.push(len as f64);
        }
        for (what, got, key) in [
            ("return", &returns, "return"),
            ("length", &lengths, "length"),
        ] {
            let m = got.iter().sum::<f64>() / got.len() as f64;
            let sd = (got.iter().map(|x| (x - m).powi(2)).sum::<f64>() / got.len() as f64).sqrt();
            let (pm, psd) = (
                want[format!("mean_{key}")].as_f64().unwrap(),
                want[format!("std_{key}")].as_f64().unwrap(),
            );
            let pn = want["episodes"].as_f64().unwrap();
            let se = (sd * sd / got.len() as f64 + psd * psd / pn).sqrt();
            report.push(format!(
                "{name} {what}: {m:.4} vs POPGym {pm:.4} (se {se:.4})"
            ));
            assert!(
                (m - pm).abs() <= 4.0 * se + 1e-9,
                "{}",
                report.last().unwrap()
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn mazes_match_mazelib_in_distribution() {
    for (l, level) in LEVELS.iter().enumerate() {
        let h = pick(l, [5, 7, 9]);
        let want = &fixtures()[&format!("LabyrinthEscape{level}")]["maze_stats"];
        let mut rng = SeededRng::seed_from_u64(20_000);
        let mut paths = Vec::new();
        for _ in 0..400 {
            let mut m = Maze::hunt_and_kill(h, h, &mut rng);
            // The exit is a gap in the outer wall (Labyrinth Escape marks it GOAL).
            let end = m.end.0 * m.cols + m.end.1;
            m.grid[end] = 3;
            let free = m.grid.iter().filter(|c| **c == 0).count();
            assert_eq!(
                free as f64,
                want["mean_free"].as_f64().unwrap(),
                "a perfect maze of {h}x{h} rooms"
            );
            assert!(
                m.start.0 == 0
                    || m.start.1 == 0
                    || m.start.0 == m.rows - 1
                    || m.start.1 == m.cols - 1
            );
            paths.push(m.distance(m.start, m.end).expect("the exit is reachable") as f64);
        }
        let mean = paths.iter().sum::<f64>() / paths.len() as f64;
        let sd =
            (paths.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / paths.len() as f64).sqrt();
        let (pm, psd) = (
            want["mean_path"].as_f64().unwrap(),
            want["std_path"].as_f64().unwrap(),
        );
        let se = (sd * sd / 400.0 + psd * psd / 200.0).sqrt();
        assert!(
            (mean - pm).abs() <= 4.0 * se,
            "{level}: path {mean:.2} vs mazelib {pm:.2} (se {se:.2})"
        );
    }
}

#[test]
fn oracles_score_what_the_best_player_scores() {
    // Tasks whose oracle is perfect reach a return of 1 (ε for float sums).
    for name in [
        "RepeatFirstEasy",
        "RepeatPreviousMedium",
        "AutoencodeEasy",
        "CountRecallHard",
        "ConcentrationEasy",
        "BattleshipEasy",
        "MineSweeperHard",
        "PositionOnlyCartPoleHard",
    ] {
        let mut env =
            rlcpc_envs::make(&rlcpc_envs::EnvConfig::new(&format!("popgym/{name}"))).unwrap();
        for seed in 0..5 {
            env.reset(Some(seed), None);
            let mut g = 0f64;
            loop {
                let o = env.step(env.oracle_action().unwrap()).unwrap();
                g += o.reward as f64;
                if o.terminated || o.truncated {
                    break;
                }
            }
            assert!(
                (g - 1.0).abs() < 1e-4,
                "{name} seed {seed}: oracle return {g}"
            );
        }
    }
    assert!(matches!(
        PopCartPole::new(CartPoleView::Position, 200, 0.0).raw_space(),
        RawSpace::Box { .. }
    ));
}
