//! CartPole-v1 against trajectories recorded from Gymnasium 1.4.0 itself
//! (`fixtures/cartpole_gymnasium.py`), and the VecEnv's auto-reset semantics.

use rlcpc_envs::{make, CartPole, CartPoleState, Env, EnvConfig, Space, TimeLimit, VecEnv};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/cartpole_gymnasium.json")).unwrap()
}

fn cfg() -> EnvConfig {
    EnvConfig::new("CartPole-v1")
}

#[test]
fn dynamics_rewards_and_flags_match_gymnasium() {
    let fx = fixture();
    let trajectories = fx["trajectories"].as_array().unwrap();
    assert_eq!(trajectories.len(), 5);
    for tr in trajectories {
        let s: Vec<f64> = serde_json::from_value(tr["start"].clone()).unwrap();
        let mut cp = CartPole::new();
        cp.state = CartPoleState {
            x: s[0],
            x_dot: s[1],
            theta: s[2],
            theta_dot: s[3],
        };
        let mut env = TimeLimit::new(Box::new(cp), "CartPole-v1", 500);
        let mut obs = [0f32; 4];
        for (i, st) in tr["steps"].as_array().unwrap().iter().enumerate() {
            let a = st["action"].as_u64().unwrap() as usize;
            let o = env.step_into(a, &mut obs).unwrap();
            let want_obs: Vec<f32> = serde_json::from_value(st["obs"].clone()).unwrap();
            for (g, w) in obs.iter().zip(&want_obs) {
                assert!(
                    (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "observation at step {i}: {obs:?} vs {want_obs:?}"
                );
            }
            assert_eq!(
                o.reward,
                st["reward"].as_f64().unwrap() as f32,
                "reward at step {i}"
            );
            assert_eq!(
                o.terminated,
                st["terminated"].as_bool().unwrap(),
                "terminated at step {i}"
            );
            assert_eq!(
                o.truncated,
                st["truncated"].as_bool().unwrap(),
                "truncated at step {i}"
            );
        }
    }
    // The last trajectory balances for the full 500 steps and is truncated, not terminated.
    let last = trajectories.last().unwrap()["steps"].as_array().unwrap();
    assert_eq!(last.len(), 500);
    assert!(
        last[499]["truncated"].as_bool().unwrap() && !last[499]["terminated"].as_bool().unwrap()
    );
}

#[test]
fn state_update_matches_gymnasium_in_f64() {
    let fx = fixture();
    let tr = &fx["trajectories"][4];
    let s: Vec<f64> = serde_json::from_value(tr["start"].clone()).unwrap();
    let mut st = CartPoleState {
        x: s[0],
        x_dot: s[1],
        theta: s[2],
        theta_dot: s[3],
    };
    for step in tr["steps"].as_array().unwrap() {
        st = st.next(step["action"].as_u64().unwrap() as usize);
        let want: Vec<f64> = serde_json::from_value(step["state"].clone()).unwrap();
        for (got, w) in [st.x, st.x_dot, st.theta, st.theta_dot].iter().zip(&want) {
            // numpy's sin/cos may differ from libm's in the last bit; chaos amplifies that
            // over 500 steps only to ~1e-13 here.
            assert!((got - w).abs() <= 1e-10, "{got} vs {w}");
        }
    }
}

#[test]
fn registered_spaces_and_seeded_resets() {
    let mut env = make(&cfg()).unwrap();
    assert_eq!(env.action_space(), Space::Discrete(2));
    assert_eq!(env.observation_space().shape(), vec![4]);
    let (a, _) = env.reset(Some(7), None);
    let (b, _) = env.reset(Some(7), None);
    let (c, _) = env.reset(None, None);
    assert_eq!(a, b, "same seed, same first observation");
    assert_ne!(a, c, "reset(None) continues the generator");
    assert!(a.iter().all(|v| v.abs() <= 0.05));
    assert!(env.step(2).is_err(), "action 2 is outside Discrete(2)");
    let err = make(&EnvConfig {
        id: "Nope-v0".into(),
        ..cfg()
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("Nope-v0") && err.contains("CartPole-v1"),
        "{err}"
    );
}

#[test]
fn vec_env_autoreset_keeps_final_observation() {
    // Always pushing right terminates within a few dozen steps.
    let mut venv = VecEnv::new(vec![make(&cfg()).unwrap(), make(&cfg()).unwrap()]).unwrap();
    venv.reset(11, 0);
    let mut single = make(&cfg()).unwrap();
    let mut obs = vec![0f32; 4];
    single.reset_into(Some(rlcpc_envs::stream_seed(11, 0)), &mut obs);
    for t in 0..100 {
        let o = single.step_into(1, &mut obs).unwrap();
        let step = venv.step(&[1, 1]).unwrap().clone();
        assert_eq!(step.terminated[0], o.terminated, "step {t}");
        if o.terminated {
            assert_eq!(venv.final_obs(0), &obs[..], "final observation kept");
            assert_ne!(&venv.obs()[..4], &obs[..], "the env was reset");
            assert!(venv.obs()[..4].iter().all(|v| v.abs() <= 0.05));
            let eps: Vec<_> = venv.drain_episodes().collect();
            assert!(eps.iter().any(|&(r, l)| r == (t + 1) as f64 && l == t + 1));
            return;
        }
        assert_eq!(&venv.obs()[..4], &obs[..]);
    }
    panic!("pushing right for 100 steps never terminated");
}

#[test]
fn saved_state_resumes_exactly() {
    let mut a = VecEnv::new(vec![make(&cfg()).unwrap(), make(&cfg()).unwrap()]).unwrap();
    a.reset(3, 0);
    for t in 0..37 {
        a.step(&[t % 2, (t / 3) % 2]).unwrap();
    }
    let saved = a.save_state();
    let mut b = VecEnv::new(vec![make(&cfg()).unwrap(), make(&cfg()).unwrap()]).unwrap();
    b.load_state(&saved).unwrap();
    for t in 0..200 {
        let sa = a.step(&[t % 2, 1]).unwrap().clone();
        let sb = b.step(&[t % 2, 1]).unwrap().clone();
        assert_eq!(sa.terminated, sb.terminated);
        assert_eq!(a.obs(), b.obs(), "step {t}");
    }
    let mut c = VecEnv::new(vec![make(&cfg()).unwrap()]).unwrap();
    assert!(
        c.load_state(&saved).is_err(),
        "wrong number of environments is refused"
    );
}
