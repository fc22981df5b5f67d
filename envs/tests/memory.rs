//! The memory tasks: T-maze rewards by cue, masked CartPole's observations, options.

use rlcpc_envs::{entry, make, Env, EnvConfig, Options, TMazeOptions};

fn tmaze(corridor: u64) -> Box<dyn Env> {
    let mut cfg = EnvConfig::new("TMaze-v0");
    cfg.options
        .insert("corridor_length".into(), corridor.into());
    make(&cfg).unwrap()
}

/// Rides down the corridor taking `actions` (cycled), then `turn` at the junction;
/// returns (cue was up, reward at the junction).
fn ride(env: &mut dyn Env, seed: Option<u64>, corridor: usize, turn: usize) -> (bool, f32) {
    let mut obs = [0f32; 3];
    env.reset_into(seed, &mut obs);
    let cue_up = match obs {
        [0.0, 1.0, 1.0] => true,
        [1.0, 1.0, 0.0] => false,
        other => panic!("first observation {other:?} is not a cue"),
    };
    for i in 0..corridor {
        // Actions in the corridor change nothing: the agent is carried along.
        let o = env.step_into(i % 2, &mut obs).unwrap();
        assert!(!o.terminated && !o.truncated && o.reward == 0.0, "step {i}");
        let want: [f32; 3] = if i + 1 == corridor {
            [0.0, 1.0, 0.0]
        } else {
            [1.0, 0.0, 1.0]
        };
        assert_eq!(obs, want, "the cue is hidden after the first step");
    }
    let o = env.step_into(turn, &mut obs).unwrap();
    assert!(o.terminated && !o.truncated);
    (cue_up, o.reward)
}

#[test]
fn tmaze_pays_the_side_of_the_cue() {
    let mut env = tmaze(6);
    let (mut ups, mut downs) = (0, 0);
    for ep in 0..40 {
        let seed = if ep == 0 { Some(1) } else { None };
        let turn = ep % 2;
        let (cue_up, r) = ride(env.as_mut(), seed, 6, turn);
        assert_eq!(r, if (turn == 0) == cue_up { 1.0 } else { -1.0 });
        if cue_up {
            ups += 1
        } else {
            downs += 1
        }
    }
    assert!(
        ups > 5 && downs > 5,
        "both cues occur ({ups} up, {downs} down)"
    );
    // Same seed, same cues.
    let cues = |env: &mut dyn Env| {
        (0..10)
            .map(|e| ride(env, if e == 0 { Some(4) } else { None }, 6, 0).0)
            .collect::<Vec<_>>()
    };
    assert_eq!(cues(env.as_mut()), cues(tmaze(6).as_mut()));
    assert!(env.step(2).is_err(), "two actions only");
}

#[test]
fn tmaze_oracle_always_wins() {
    let mut env = tmaze(3);
    let mut obs = [0f32; 3];
    for ep in 0..10 {
        env.reset_into(if ep == 0 { Some(5) } else { None }, &mut obs);
        let mut ret = 0.0;
        let mut steps = 0;
        loop {
            let o = env
                .step_into(env.oracle_action().unwrap(), &mut obs)
                .unwrap();
            ret += o.reward;
            steps += 1;
            if o.terminated || o.truncated {
                break;
            }
        }
        assert_eq!((ret, steps), (1.0, 4));
    }
}

#[test]
fn masked_cartpole_is_cartpole_without_velocities() {
    let mut full = make(&EnvConfig::new("CartPole-v1")).unwrap();
    let mut masked = make(&EnvConfig::new("MaskedCartPole-v1")).unwrap();
    assert_eq!(masked.observation_space().shape(), vec![2]);
    let (mut a, mut b) = ([0f32; 4], [0f32; 2]);
    full.reset_into(Some(9), &mut a);
    masked.reset_into(Some(9), &mut b);
    for t in 0..300 {
        assert_eq!(b, [a[0], a[2]], "step {t}");
        let act = t % 3 % 2;
        let oa = full.step_into(act, &mut a).unwrap();
        let ob = masked.step_into(act, &mut b).unwrap();
        assert_eq!(oa, ob);
        if oa.terminated || oa.truncated {
            full.reset_into(None, &mut a);
            masked.reset_into(None, &mut b);
        }
    }
}

#[test]
fn options_are_checked() {
    let mut cfg = EnvConfig::new("TMaze-v0");
    cfg.options = Options::from_iter([("corridor".to_string(), 3.into())]);
    let e = make(&cfg).err().unwrap().to_string();
    assert!(
        e.contains("corridor") && e.contains("corridor_length"),
        "{e}"
    );
    cfg.options = Options::from_iter([("corridor_length".to_string(), "long".into())]);
    assert!(make(&cfg).err().unwrap().to_string().contains("integer"));
    cfg.options = Options::from_iter([("corridor_length".to_string(), 0.into())]);
    let e = make(&cfg).err().unwrap().to_string();
    assert!(
        e.contains("corridor_length") && e.contains("at least 1"),
        "{e}"
    );
    let mut cp = EnvConfig::new("CartPole-v1");
    cp.options.insert("gravity".into(), 1.into());
    let e = make(&cp).err().unwrap().to_string();
    assert!(
        e.contains("gravity") && e.contains("known: none"),
        "CartPole takes no options: {e}"
    );
}

#[test]
fn options_help_comes_from_the_defaults() {
    let help = |id: &str| entry(id).unwrap().options.clone();
    assert_eq!(TMazeOptions::default().corridor_length, 20);
    assert_eq!(
        help("TMaze-v0"),
        "corridor_length = 20 (episodes last corridor_length + 1 steps), cue_every_step = false (the memoryless twin: a 4th component shows the cue at every step)"
    );
    assert_eq!(help("CartPole-v1"), "");
    assert_eq!(help("MaskedCartPole-v1"), "");
}

#[test]
fn the_memoryless_twin_shows_the_cue_at_every_step() {
    let mut cfg = EnvConfig::new("TMaze-v0");
    cfg.options.insert("corridor_length".into(), 5.into());
    cfg.options.insert("cue_every_step".into(), true.into());
    let mut env = make(&cfg).unwrap();
    assert_eq!(env.observation_space().flat_dim(), 4);
    for seed in 0..20 {
        let (obs, _) = env.reset(Some(seed), None);
        let cue = obs[3];
        let up = obs[..3] == [0.0, 1.0, 1.0];
        assert_eq!(cue, up as u8 as f32, "seed {seed}: {obs:?}");
        // A reactive policy, reading only the current observation, wins every episode.
        let mut o = obs;
        loop {
            let s = env.step(if o[3] == 1.0 { 0 } else { 1 }).unwrap();
            assert_eq!(s.obs[3], cue, "the cue is shown at every step");
            if s.terminated {
                assert_eq!(s.reward, 1.0);
                break;
            }
            o = s.obs;
        }
    }
    // The plain maze keeps Bakker's three bits.
    assert_eq!(tmaze(5).observation_space().flat_dim(), 3);
}

#[test]
fn memory_spans_are_what_the_tasks_need() {
    let span = |id: &str| make(&EnvConfig::new(id)).unwrap().memory_span();
    assert_eq!(tmaze(20).memory_span(), Some(21));
    assert_eq!(span("MaskedCartPole-v1"), Some(2));
    assert_eq!(span("CartPole-v1"), None);
    assert_eq!(span("popgym/RepeatFirstEasy"), Some(52));
    assert_eq!(span("popgym/AutoencodeEasy"), Some(104));
    assert_eq!(span("popgym/CountRecallEasy"), Some(52));
    assert_eq!(span("popgym/PositionOnlyCartPoleEasy"), Some(2));
    assert_eq!(span("popgym/NoisyPositionOnlyCartPoleEasy"), None);
    let rp = span("popgym/RepeatPreviousEasy").unwrap();
    assert!((2..=9).contains(&rp), "RepeatPreviousEasy: k + 1 = {rp}");
}
