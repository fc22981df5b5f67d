//! InfoNCE and the CPC head against hand-computed values and a direct implementation.

mod common;

use candle_core::{Device, Tensor, Var};
use rand::SeedableRng;
use rlcpc::config::{Config, Negatives};
use rlcpc::contrastive::cpc::{
    cpc_loss, hit, info_nce, pair_weights, sample_candidates, sample_pairs, scores, CpcSampling,
    Pair, Predictor, PredictorDims,
};
use rlcpc::nn::init::Init;
use rlcpc::rl::train::{build_learner, net_spec};
use rlcpc_agents::PolicyNetwork;
use rlcpc_envs::SeededRng;

fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < tol, "{got:?} vs {want:?}");
    }
}

#[test]
fn info_nce_value_matches_hand_computation() {
    // Row 0: logsumexp(2, 1, 0) − 2 = ln(1 + e⁻¹ + e⁻²) = 0.4076059
    // Row 1: logsumexp(0, 0, 3) − 0 = 3 + ln(1 + 2e⁻³) = 3.0949229; mean 1.7512644.
    let s = Tensor::new(&[[2f32, 1.0, 0.0], [0.0, 0.0, 3.0]], &Device::Cpu).unwrap();
    let l = info_nce(&s).unwrap().to_scalar::<f32>().unwrap();
    assert!((l - 1.751_264_4).abs() < 1e-5, "{l}");
}

#[test]
fn info_nce_gradient_matches_hand_computation() {
    // pred = (1, .5); candidates z0 = (1, 0) (positive), z1 = (0, 1), z2 = (−1, 2):
    // scores (1, .5, 0), softmax p = (.5064804, .3071959, .1863237), loss = −ln p0.
    // dL/dpred = Σ_j (p_j − [j = 0]) z_j; dL/dz_j = (p_j − [j = 0]) pred.
    let dev = Device::Cpu;
    let pred = Var::new(&[[1f32, 0.5]], &dev).unwrap();
    let cands = Var::new(&[[[1f32, 0.0], [0.0, 1.0], [-1.0, 2.0]]], &dev).unwrap();
    let loss = info_nce(&scores(&pred, &cands).unwrap()).unwrap();
    assert!((loss.to_scalar::<f32>().unwrap() - 0.680_269_6).abs() < 1e-5);
    let g = loss.backward().unwrap();
    let gp = g
        .get(&pred)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_close(&gp, &[-0.679_843_3, 0.679_843_3], 1e-5);
    let gz = g
        .get(&cands)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_close(
        &gz,
        &[
            -0.493_519_6,
            -0.246_759_8,
            0.307_195_9,
            0.153_598,
            0.186_323_7,
            0.093_161_9,
        ],
        1e-5,
    );
}

fn sampling(negatives: Negatives) -> CpcSampling {
    CpcSampling {
        horizon: 4,
        negatives,
        num_negatives: 5,
        start_times: 0,
        horizons: 0,
        skip: 0,
        groups: Vec::new(),
        shuffled: false,
    }
}

#[test]
fn pairs_stay_inside_the_unroll_and_the_episode() {
    // T = 8, B = 2; sequence 1 starts an episode at t = 5.
    let (t_len, b) = (8, 2);
    let mut first = vec![0f32; t_len * b];
    first[5 * b + 1] = 1.0;
    let mut rng = SeededRng::seed_from_u64(0);
    let pairs = sample_pairs(&first, t_len, b, &sampling(Negatives::Both), &mut rng);
    for p in &pairs {
        assert!(p.k >= 1 && p.k <= 4 && p.t + p.k < t_len, "{p:?}");
        if p.b == 1 {
            assert!(
                !(p.t < 5 && p.t + p.k >= 5),
                "{p:?} crosses the episode start"
            );
        }
    }
    // All valid pairs are taken when nothing is subsampled.
    let n0 = (0..t_len).map(|t| 4.min(t_len - 1 - t)).sum::<usize>();
    let n1 = (0..5).map(|t| 4.min(4 - t)).sum::<usize>()
        + (5..t_len).map(|t| 4.min(t_len - 1 - t)).sum::<usize>();
    assert_eq!(pairs.len(), n0 + n1);
    // Subsampling bounds the count.
    let mut s = sampling(Negatives::Both);
    s.start_times = 2;
    s.horizons = 1;
    assert_eq!(sample_pairs(&first, t_len, b, &s, &mut rng).len(), 4);
}

#[test]
fn negatives_come_from_their_pool_and_never_the_positive() {
    let (t_len, b) = (6, 3);
    let first = vec![0f32; t_len * b];
    let mut rng = SeededRng::seed_from_u64(1);
    for neg in [Negatives::Sequence, Negatives::Batch, Negatives::Both] {
        let s = sampling(neg);
        let pairs = sample_pairs(&first, t_len, b, &s, &mut rng);
        let idx = sample_candidates(&pairs, t_len, b, &s, &mut rng);
        for (p, row) in pairs.iter().zip(idx.chunks(6)) {
            let pos = ((p.t + p.k) * b + p.b) as u32;
            assert_eq!(row[0], pos);
            for &n in &row[1..] {
                assert_ne!(n, pos, "{neg:?}");
                let (nt, nb) = (n as usize / b, n as usize % b);
                match neg {
                    Negatives::Sequence => assert_eq!(nb, p.b),
                    Negatives::Batch => assert_eq!(nt, p.t + p.k),
                    Negatives::Both => {}
                    Negatives::Speaker => unreachable!("tested in tests/pretrain.rs"),
                }
            }
        }
    }
}

#[test]
fn cpc_loss_matches_a_direct_loop_over_pairs() {
    let dev = Device::Cpu;
    let (t_len, b, dz, dc, k) = (7, 3, 4, 5, 3);
    let mut init = Init::new(3, &dev);
    Predictor::init(
        PredictorDims {
            horizon: k,
            z_dim: dz,
            c_dim: dc,
        },
        &mut init,
        "p",
    )
    .unwrap();
    init.uniform_fan_in("z", &[t_len, b, dz], 1).unwrap();
    init.uniform_fan_in("c", &[t_len, b, dc], 1).unwrap();
    let vb = candle_nn::VarBuilder::from_varmap(&init.varmap, candle_core::DType::F32, &dev);
    let pred = Predictor::new(
        PredictorDims {
            horizon: k,
            z_dim: dz,
            c_dim: dc,
        },
        vb.pp("p"),
    )
    .unwrap();
    let z = vb.get((t_len, b, dz), "z").unwrap();
    let c = vb.get((t_len, b, dc), "c").unwrap();
    let w = vb
        .get((k * dz, dc), "p.predictor.weight")
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let zh = z.to_vec3::<f32>().unwrap();
    let ch = c.to_vec3::<f32>().unwrap();
    let mut first = vec![0f32; t_len * b];
    first[4 * b + 2] = 1.0;
    // 4 negatives: 21 targets ≤ ALL_SCORES_MAX × 5, every target is scored; 1 negative:
    // 21 > ALL_SCORES_MAX × 2, the candidates are gathered. Both must give the formula.
    for m in [4, 1] {
        assert_eq!(
            t_len * b <= rlcpc::contrastive::cpc::ALL_SCORES_MAX * (1 + m),
            m == 4
        );
        let mut s = sampling(Negatives::Both);
        s.horizon = k;
        s.num_negatives = m;

        let mut rng = SeededRng::seed_from_u64(9);
        let mut rng_direct = rng.clone();
        let r = cpc_loss(&pred, &z, &c, &first, &s, &mut rng)
            .unwrap()
            .unwrap();

        // Direct: for each pair, W_k c_t, scores against the candidates, −log softmax of the positive.
        let pairs: Vec<Pair> = sample_pairs(&first, t_len, b, &s, &mut rng_direct);
        let cand = sample_candidates(&pairs, t_len, b, &s, &mut rng_direct);
        // The paper's weighting: InfoNCE averaged over the pairs of each k, then over k.
        let mut per_k = vec![(0f64, 0usize); k + 1];
        for (p, row) in pairs.iter().zip(cand.chunks(1 + s.num_negatives)) {
            let ctx = &ch[p.t][p.b];
            let wk = &w[(p.k - 1) * dz..p.k * dz];
            let pk: Vec<f64> = wk
                .iter()
                .map(|r| {
                    r.iter()
                        .zip(ctx)
                        .map(|(a, b)| (*a as f64) * (*b as f64))
                        .sum()
                })
                .collect();
            let sc: Vec<f64> = row
                .iter()
                .map(|&i| {
                    let zz = &zh[i as usize / b][i as usize % b];
                    zz.iter().zip(&pk).map(|(a, b)| *a as f64 * b).sum()
                })
                .collect();
            let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + sc.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            per_k[p.k].0 += lse - sc[0];
            per_k[p.k].1 += 1;
        }
        let present: Vec<f64> = per_k
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(l, n)| l / *n as f64)
            .collect();
        assert_eq!(present.len(), k, "every horizon has pairs");
        let direct = present.iter().sum::<f64>() / present.len() as f64;
        let pair_mean = per_k.iter().map(|x| x.0).sum::<f64>() / pairs.len() as f64;
        assert!(
            (pair_mean - direct).abs() > 1e-4,
            "the test must tell the weighting over k from a plain mean over pairs"
        );
        let got = r.loss.to_scalar::<f32>().unwrap() as f64;
        assert_eq!(r.pairs, pairs);
        assert!((got - direct).abs() < 1e-5, "{got} vs {direct}");
        // The per-pair host copies used for logging, weighted, give the same loss.
        let host: f64 = r
            .pair_losses
            .iter()
            .zip(&r.weights)
            .map(|(l, w)| l * w)
            .sum();
        assert!((host - direct).abs() < 1e-5, "{host} vs {direct}");
    }
}

/// Each named parameter has a finite, non-zero gradient.
fn assert_gradients(
    grads: &candle_core::backprop::GradStore,
    vars: &[(String, Var)],
    names: &[&str],
) {
    for name in names {
        let (_, v) = vars.iter().find(|(n, _)| n == name).unwrap();
        let norm = common::grad_norm_sq(grads, v, name);
        assert!(norm > 0.0 && norm.is_finite(), "{name}: {norm}");
    }
}

fn lstm_cpc_config() -> Config {
    Config::load(
        Some(std::path::Path::new("cartpole-lstm-cpc")),
        &["aux.horizon=5".into(), "algo.unroll=8".into()],
    )
    .unwrap()
}

/// The auxiliary loss of the `cartpole-lstm-cpc` agent (K = 5, unroll 8) with `extra`
/// overrides, on one random unroll of 4 environments with alternating actions: its output
/// and every parameter of the network and the head.
fn aux_on_an_unroll(extra: &[&str]) -> (rlcpc_agents::AuxOutput, Vec<(String, Var)>) {
    let mut overrides = vec!["aux.horizon=5".to_string(), "algo.unroll=8".to_string()];
    overrides.extend(extra.iter().map(|o| o.to_string()));
    let cfg = Config::load(Some(std::path::Path::new("cartpole-lstm-cpc")), &overrides).unwrap();
    let spec = net_spec(&cfg).unwrap();
    let mut learner = build_learner(&cfg, &spec, &Device::Cpu).unwrap();
    let (t1, b) = (9, 4);
    let obs = Tensor::randn(0f32, 1.0, (t1, b, 4), &Device::Cpu).unwrap();
    let first = Tensor::zeros((t1, b), candle_core::DType::F32, &Device::Cpu).unwrap();
    let state = Tensor::zeros(
        (b, spec.state_size()),
        candle_core::DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let out = learner.net.unroll(&obs, &first, &state).unwrap();
    let aux = learner.aux.as_mut().unwrap();
    let first = vec![0.0; t1 * b];
    let actions: Vec<u32> = (0..(t1 - 1) * b).map(|i| (i % 2) as u32).collect();
    let batch = rlcpc_agents::AuxBatch {
        first: &first,
        obs: &obs,
        actions: &actions,
    };
    let a = aux.loss(&out, batch).unwrap();
    let mut vars = learner.net.vars();
    vars.extend(aux.vars());
    (a, vars)
}

#[test]
fn cpc_gradients_reach_encoder_and_core() {
    let (a, vars) = aux_on_an_unroll(&[]);
    assert!(a
        .metrics
        .iter()
        .any(|(k, v)| k == "cpc/acc_k1" && (0.0..=1.0).contains(v)));
    assert!(
        a.metrics
            .iter()
            .any(|(k, v)| k == "cpc/loss_k2_5" && *v > 0.0),
        "{:?}",
        a.metrics
    );
    let grads = a.loss.backward().unwrap();
    assert_gradients(
        &grads,
        &vars,
        &[
            "encoder.mlp.0.weight",
            "core.lstm.weight_hh",
            "aux.cpc.predictor.weight",
        ],
    );
    // The policy head gets none from the CPC loss.
    let (_, v) = vars.iter().find(|(n, _)| n == "policy.weight").unwrap();
    assert!(grads.get(v).is_none());
}

#[test]
fn aux_none_builds_no_head() {
    let mut cfg = lstm_cpc_config();
    cfg.aux.set_kind(rlcpc::config::AuxKind::None);
    let spec = net_spec(&cfg).unwrap();
    let learner = build_learner(&cfg, &spec, &Device::Cpu).unwrap();
    assert!(learner.aux.is_none());
    let names: Vec<String> = learner
        .optim
        .state_tensors()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.iter().all(|n| !n.contains("aux")), "{names:?}");
}

/// Without subsampling the weights sum to 1; with start times and horizons subsampled,
/// the expected weight of every valid pair is
/// the paper's: 1 / (K · number of valid pairs at its k), whatever its start time, its
/// longest horizon or its sequence's episode cuts (Horvitz–Thompson weights).
#[test]
fn subsampled_pair_weights_are_unbiased_for_the_mean_over_horizons() {
    let (t_len, b, k) = (9, 2, 4);
    let mut first = vec![0f32; t_len * b];
    first[5 * b + 1] = 1.0; // sequence 1 is cut at t = 5
    let mut s = sampling(Negatives::Both);
    s.horizon = k;
    s.start_times = 3;
    s.horizons = 2;
    // Every valid (t, b, k) pair, and the paper's weight of each.
    let all = {
        let mut full = s.clone();
        full.start_times = 0;
        full.horizons = 0;
        sample_pairs(&first, t_len, b, &full, &mut SeededRng::seed_from_u64(0))
    };
    let count_k = |kk: usize| all.iter().filter(|p| p.k == kk).count() as f64;
    let mut expected = std::collections::HashMap::new();
    for p in &all {
        expected.insert(*p, 1.0 / (k as f64 * count_k(p.k)));
    }
    let full_w = pair_weights(&all, &first, t_len, b, &{
        let mut full = s.clone();
        full.start_times = 0;
        full.horizons = 0;
        full
    });
    assert!((full_w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    for (p, w) in all.iter().zip(&full_w) {
        assert!((w - expected[p]).abs() < 1e-12);
    }
    let draws = 40_000;
    let mut got: std::collections::HashMap<Pair, f64> = Default::default();
    let mut rng = SeededRng::seed_from_u64(5);
    for _ in 0..draws {
        let pairs = sample_pairs(&first, t_len, b, &s, &mut rng);
        let w = pair_weights(&pairs, &first, t_len, b, &s);
        for (p, w) in pairs.iter().zip(w) {
            assert!(expected.contains_key(p), "{p:?} is not a valid pair");
            *got.entry(*p).or_default() += w / draws as f64;
        }
    }
    // Short-horizon starts near the end are sampled more often than long ones; without
    // the weights, k = 1 would get far more than its 1/K.
    for (p, want) in &expected {
        let g = got.get(p).copied().unwrap_or(0.0);
        assert!(
            (g - want).abs() < 0.05 * want,
            "pair {p:?}: expected weight {want:.5}, got {g:.5}"
        );
    }
    let k1: f64 = got.iter().filter(|(p, _)| p.k == 1).map(|(_, w)| w).sum();
    assert!((k1 - 1.0 / k as f64).abs() < 0.01, "k = 1 weighs {k1}");
}

/// Exact ties between the positive and negatives (identical targets, as in the
/// T-maze's corridor) are not counted as hits: each tied candidate is as likely.
#[test]
fn accuracy_counts_ties_as_a_share() {
    assert_eq!(hit(&[2.0, 1.0, 1.5]), 1.0);
    assert_eq!(hit(&[1.0, 1.0, 0.0]), 0.5);
    assert_eq!(hit(&[1.0, 1.0, 1.0, 1.0]), 0.25);
    assert_eq!(hit(&[1.0, 2.0, 0.0]), 0.0);
    assert_eq!(hit(&[f32::NAN, 0.0]), 0.0);
}

/// CPC|A against a direct loop: for each pair, the GRU run by hand from c_t over the
/// actions a_t … a_{t+k−1}, the classifier on [b; z] per candidate, then the logistic or
/// InfoNCE loss, weighted per horizon as for CPC.
#[test]
fn cpca_loss_matches_a_direct_loop_over_pairs() {
    use rlcpc::config::{CpcHeadConfig, CpcaHeadConfig};
    use rlcpc::rl::auxiliary::cpca::{CpcaAux, CpcaDims, CpcaLoss};
    use rlcpc_agents::AuxLoss;
    let dev = Device::Cpu;
    let (t_len, b, dz, dc, na, k) = (7, 3, 4, 5, 3, 3);
    let dims = CpcaDims {
        actions: na,
        z_dim: dz,
        c_dim: dc,
    };
    let mut init = Init::new(4, &dev);
    CpcaAux::init(dims, &mut init).unwrap();
    init.uniform_fan_in("z", &[t_len, b, dz], 1).unwrap();
    init.uniform_fan_in("c", &[t_len, b, dc], 1).unwrap();
    let vb = candle_nn::VarBuilder::from_varmap(&init.varmap, candle_core::DType::F32, &dev);
    let z = vb.get((t_len, b, dz), "z").unwrap();
    let c = vb.get((t_len, b, dc), "c").unwrap();
    let get2 = |name: &str, shape: (usize, usize)| {
        vb.get(shape, &format!("aux.cpca.{name}"))
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    };
    let get1 = |name: &str, n: usize| {
        vb.get(n, &format!("aux.cpca.{name}"))
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let (w_ih, w_hh) = (
        get2("gru.weight_ih", (3 * dc, na)),
        get2("gru.weight_hh", (3 * dc, dc)),
    );
    let (b_ih, b_hh) = (get1("gru.bias_ih", 3 * dc), get1("gru.bias_hh", 3 * dc));
    let (w1b, w1z) = (
        get2("fc1.weight_b", (dc, dc)),
        get2("fc1.weight_z", (dc, dz)),
    );
    let (b1, w2, b2) = (
        get1("fc1.bias", dc),
        get2("fc2.weight", (1, dc)),
        get1("fc2.bias", 1),
    );
    let zh = z.to_vec3::<f32>().unwrap();
    let ch = c.to_vec3::<f32>().unwrap();
    let mut first = vec![0f32; t_len * b];
    first[4 * b + 2] = 1.0;
    let actions: Vec<u32> = (0..(t_len - 1) * b).map(|i| (i * 7 % na) as u32).collect();
    let dot = |w: &[f32], x: &[f64]| w.iter().zip(x).map(|(a, b)| *a as f64 * b).sum::<f64>();
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let softplus = |x: f64| (1.0 + x.exp()).ln();
    for objective in [CpcaLoss::Binary, CpcaLoss::Infonce] {
        let cfg = CpcaHeadConfig {
            predict: CpcHeadConfig {
                horizon: k,
                num_negatives: 4,
                ..CpcHeadConfig::default()
            },
            cpca_loss: objective,
        };
        let mut aux = CpcaAux::new(&cfg, dims, &init.varmap, &dev, 11).unwrap();
        // The head's generator as it stands before the loss draws its pairs.
        let mut rng: rlcpc_envs::SeededRng = serde_json::from_value(aux.save_rng()).unwrap();
        let r = aux.evaluate(&z, &c, &first, &actions).unwrap().unwrap();

        let s: CpcSampling = (&cfg.predict).into();
        let pairs = sample_pairs(&first, t_len, b, &s, &mut rng);
        let cand = sample_candidates(&pairs, t_len, b, &s, &mut rng);
        assert_eq!(pairs, r.pairs);
        let weights = pair_weights(&pairs, &first, t_len, b, &s);
        let mut direct = 0f64;
        for ((p, row), w) in pairs.iter().zip(cand.chunks(5)).zip(&weights) {
            // The GRU from h = c_t over one-hot actions, gates (r, z, n) as PyTorch's.
            let mut h: Vec<f64> = ch[p.t][p.b].iter().map(|v| *v as f64).collect();
            for j in 0..p.k {
                let a = actions[(p.t + j) * b + p.b] as usize;
                let gi = |g: usize| w_ih[g][a] as f64 + b_ih[g] as f64;
                let gh = |g: usize, h: &[f64]| dot(&w_hh[g], h) + b_hh[g] as f64;
                let mut next = vec![0f64; dc];
                for u in 0..dc {
                    let r = sig(gi(u) + gh(u, &h));
                    let zg = sig(gi(dc + u) + gh(dc + u, &h));
                    let n = (gi(2 * dc + u) + r * gh(2 * dc + u, &h)).tanh();
                    next[u] = (1.0 - zg) * n + zg * h[u];
                }
                h = next;
            }
            let score = |idx: u32| {
                let (tt, bb) = (idx as usize / b, idx as usize % b);
                let zc: Vec<f64> = zh[tt][bb].iter().map(|v| *v as f64).collect();
                let hidden: Vec<f64> = (0..dc)
                    .map(|u| (dot(&w1b[u], &h) + dot(&w1z[u], &zc) + b1[u] as f64).max(0.0))
                    .collect();
                dot(&w2[0], &hidden) + b2[0] as f64
            };
            let sc: Vec<f64> = row.iter().map(|&i| score(i)).collect();
            for (got, want) in r.scores[pairs.iter().position(|q| q == p).unwrap()]
                .iter()
                .zip(&sc)
            {
                assert!((*got as f64 - want).abs() < 1e-4, "{got} vs {want}");
            }
            let l = match objective {
                CpcaLoss::Binary => {
                    softplus(-sc[0]) + sc[1..].iter().map(|s| softplus(*s)).sum::<f64>() / 4.0
                }
                CpcaLoss::Infonce => {
                    let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    m + sc.iter().map(|s| (s - m).exp()).sum::<f64>().ln() - sc[0]
                }
            };
            direct += w * l;
        }
        let got = r.loss.to_scalar::<f32>().unwrap() as f64;
        assert!(
            (got - direct).abs() < 1e-5,
            "{objective:?}: {got} vs {direct}"
        );
    }
}

/// The CPC|A head trains with the agent: its gradients reach the encoder, the core, the
/// action GRU and the classifier.
#[test]
fn cpca_gradients_reach_encoder_core_and_head() {
    let (a, vars) = aux_on_an_unroll(&["aux.kind=\"cpca\""]);
    assert!(a
        .metrics
        .iter()
        .any(|(k, v)| k == "cpca/acc" && (0.0..=1.0).contains(v)));
    let grads = a.loss.backward().unwrap();
    assert_gradients(
        &grads,
        &vars,
        &[
            "encoder.mlp.0.weight",
            "core.lstm.weight_hh",
            "aux.cpca.gru.weight_ih",
            "aux.cpca.gru.weight_hh",
            "aux.cpca.fc1.weight_z",
            "aux.cpca.fc2.weight",
        ],
    );
}
