//! The memory tasks: T-maze rewards by cue, masked CartPole's observations, options.

use rlcpc_envs::{make, Env, EnvConfig, Options};

fn tmaze(corridor: u64) -> Box<dyn Env> {
    let mut cfg = EnvConfig::new("TMaze-v0");
    cfg.options
        .insert("corridor_length".into(), corridor.into());
    make(&cfg).unwrap()
}

/// Walks to the junction, then takes `turn`; returns (cue was up, total reward, steps).
fn walk(env: &mut dyn Env, seed: Option<u64>, corridor: usize, turn: usize) -> (bool, f32, usize) {
    let mut obs = [0f32; 3];
    env.reset_into(seed, &mut obs);
    let cue_up = match obs {
        [0.0, 1.0, 1.0] => true,
        [1.0, 1.0, 0.0] => false,
        other => panic!("first observation {other:?} is not a cue"),
    };
    let mut total = 0.0;
    for i in 0..corridor {
        // Turning in the corridor does nothing.
        let o = env.step_into(if i == 2 { 1 } else { 0 }, &mut obs).unwrap();
        assert!(!o.terminated && o.reward == 0.0);
        if i == 2 {
            let o = env.step_into(0, &mut obs).unwrap();
            assert!(!o.terminated);
        }
        let want: [f32; 3] = if i + 1 == corridor {
            [0.0, 1.0, 0.0]
        } else {
            [1.0, 0.0, 1.0]
        };
        assert_eq!(obs, want, "the cue is hidden after the first step");
    }
    let o = env.step_into(turn, &mut obs).unwrap();
    assert!(o.terminated && !o.truncated);
    total += o.reward;
    (cue_up, total, corridor + 2)
}

#[test]
fn tmaze_pays_the_side_of_the_cue() {
    let mut env = tmaze(6);
    let (mut ups, mut downs) = (0, 0);
    for ep in 0..40 {
        let seed = if ep == 0 { Some(1) } else { None };
        let turn = if ep % 2 == 0 { 1 } else { 2 };
        let (cue_up, r, _) = walk(env.as_mut(), seed, 6, turn);
        let matches = (turn == 1) == cue_up;
        assert_eq!(r, if matches { 1.0 } else { -1.0 });
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
}

#[test]
fn tmaze_truncates_and_oracle_solves() {
    let mut env = tmaze(3);
    let mut obs = [0f32; 3];
    env.reset_into(Some(0), &mut obs);
    // Waiting at the start: the limit is 2 × (3 + 1) = 8 steps.
    for t in 1..=8 {
        let o = env.step_into(1, &mut obs).unwrap();
        assert_eq!(o.truncated, t == 8, "step {t}");
    }
    // The oracle reads the cue from the state.
    for ep in 0..10 {
        env.reset_into(if ep == 0 { Some(5) } else { None }, &mut obs);
        let mut ret = 0.0;
        loop {
            let o = env
                .step_into(env.oracle_action().unwrap(), &mut obs)
                .unwrap();
            ret += o.reward;
            if o.terminated || o.truncated {
                break;
            }
        }
        assert_eq!(ret, 1.0);
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
    assert!(make(&cfg).is_err());
    let mut cp = EnvConfig::new("CartPole-v1");
    cp.options.insert("gravity".into(), 1.into());
    assert!(make(&cp).is_err(), "CartPole takes no options");
}
