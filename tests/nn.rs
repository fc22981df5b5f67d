//! Networks and optimisers: the fast activations, the actors' inference paths against
//! the learner's network, the conv encoder, and RMSProp/Adam against their formulas.

use candle_core::{DType, Device, Tensor, Var};
use rlcpc::config::Config;
use rlcpc::nn::fast;
use rlcpc::nn::init::Init;
use rlcpc::nn::{actor_policy, AgentNet, CandleActor, NetSpec};
use rlcpc::rl::train::{build_learner, net_spec};
use rlcpc_agents::{ActorPolicy, OptimConfig, OptimKind, Optimizer, PolicyNetwork};
use rlcpc_envs::Space;

#[test]
fn fast_tanh_and_sigmoid_are_accurate() {
    let mut worst: f32 = 0.0;
    for i in -200_000..=200_000 {
        let x = i as f32 * 1e-4;
        worst = worst.max((fast::tanh(x) - x.tanh()).abs());
        let s = 1.0 / (1.0 + (-x).exp());
        worst = worst.max((fast::sigmoid(x) - s).abs());
    }
    assert!(worst < 5e-7, "max error {worst}");
    assert_eq!(fast::tanh(100.0), fast::tanh(8.0));
    assert!((fast::tanh(100.0) - 1.0).abs() < 1e-6);
    // The tensor op and its gradient 1 − tanh².
    let x = Var::new(&[-1.5f32, 0.0, 0.3, 4.0], &Device::Cpu).unwrap();
    let y = fast::tanh_t(&x).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    let gx = g.get(&x).unwrap().to_vec1::<f32>().unwrap();
    for (v, d) in [-1.5f32, 0.0, 0.3, 4.0].iter().zip(gx) {
        assert!((d - (1.0 - v.tanh().powi(2))).abs() < 1e-6);
    }
}

fn lstm_config() -> Config {
    Config::load(Some(std::path::Path::new("cartpole-lstm-cpc")), &[]).unwrap()
}

#[test]
fn actor_paths_match_the_learner_network() {
    for cfg in [Config::load(None, &[]).unwrap(), lstm_config()] {
        let spec = net_spec(&cfg).unwrap();
        let learner = build_learner(&cfg, &spec, &Device::Cpu).unwrap();
        let snap = learner.snapshot().unwrap();
        let b = 5;
        let obs: Vec<f32> = (0..b * 4)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3)
            .collect();
        let s = spec.state_size();
        let state0: Vec<f32> = (0..b * s)
            .map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.2)
            .collect();
        // Learner: one unroll step from state0.
        let out = learner
            .net
            .unroll(
                &Tensor::from_slice(&obs, (1, b, 4), &Device::Cpu).unwrap(),
                &Tensor::zeros((1, b), DType::F32, &Device::Cpu).unwrap(),
                &Tensor::from_slice(&state0, (b, s), &Device::Cpu).unwrap(),
            )
            .unwrap();
        let want_logits = out.logits.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want_values = out.values.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let lean = actor_policy(&spec).unwrap();
        let candle: Box<dyn ActorPolicy> = Box::new(CandleActor::new(spec.clone()).unwrap());
        for mut p in [lean, candle] {
            p.load(&snap).unwrap();
            let mut state = state0.clone();
            let (mut logits, mut values) = (vec![0.0; b * 2], vec![0.0; b]);
            p.forward(&obs, &mut state, &mut logits, &mut values)
                .unwrap();
            for (g, w) in logits
                .iter()
                .zip(&want_logits)
                .chain(values.iter().zip(&want_values))
            {
                assert!(
                    (g - w).abs() < 1e-5,
                    "{logits:?} vs {want_logits:?}, {values:?} vs {want_values:?}"
                );
            }
            if s > 0 {
                assert_ne!(state, state0, "the LSTM state advanced");
            }
        }
    }
}

#[test]
fn conv_encoder_builds_and_trains_on_images() {
    let cfg = Config::load(None, &["model.encoder=\"auto\"".into()]).unwrap();
    let obs = Space::Box {
        low: vec![0.0; 48 * 64 * 3],
        high: vec![255.0; 48 * 64 * 3],
        shape: vec![48, 64, 3],
    };
    let spec = NetSpec::new(&cfg.model, &obs, &Space::Discrete(9)).unwrap();
    assert_eq!(spec.feature_dim(), 256);
    let mut init = Init::new(0, &Device::Cpu);
    spec.init(&mut init).unwrap();
    let net = AgentNet::new(spec.clone(), &init.varmap, &Device::Cpu).unwrap();
    let x = Tensor::rand(0f32, 255.0, (3, 2, 48, 64, 3), &Device::Cpu).unwrap();
    let first = Tensor::zeros((3, 2), DType::F32, &Device::Cpu).unwrap();
    let out = net
        .unroll(
            &x,
            &first,
            &Tensor::zeros((2, 0), DType::F32, &Device::Cpu).unwrap(),
        )
        .unwrap();
    assert_eq!(out.logits.dims(), &[3, 2, 9]);
    assert_eq!(out.z.dims(), &[3, 2, 256]);
    let grads = out.values.sum_all().unwrap().backward().unwrap();
    let (_, w) = net
        .vars()
        .into_iter()
        .find(|(n, _)| n == "encoder.conv1.weight")
        .unwrap();
    assert!(grads.get(&w).is_some());
    // Vector observations cannot take the conv encoder.
    let bad = Config::load(None, &["model.encoder=\"conv\"".into()]).unwrap();
    let vec_obs = Space::Box {
        low: vec![0.0; 4],
        high: vec![1.0; 4],
        shape: vec![4],
    };
    assert!(NetSpec::new(&bad.model, &vec_obs, &Space::Discrete(2))
        .unwrap_err()
        .contains("image"));
}

/// Gradients of Σ w² (that is, 2w).
fn sum_of_squares_grads(w: &Var) -> candle_core::backprop::GradStore {
    w.as_tensor()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap()
}

fn one_param_step(kind: OptimKind, steps: usize) -> Vec<f32> {
    let dev = Device::Cpu;
    let w = Var::new(&[1.0f32, -2.0], &dev).unwrap();
    let cfg = OptimConfig {
        kind,
        eps: 1e-8,
        ..OptimConfig::default()
    };
    let mut opt = Optimizer::new(cfg, vec![("w".into(), w.clone())]).unwrap();
    for _ in 0..steps {
        // loss = Σ w², gradient 2w.
        let grads = sum_of_squares_grads(&w);
        opt.step(&grads, 0.1, 1.0).unwrap();
    }
    w.as_tensor().to_vec1::<f32>().unwrap()
}

#[test]
fn rmsprop_and_adam_follow_their_formulas() {
    // RMSProp (α = .99): v = .01·g², w ← w − lr·g/(√v + ε) = w − .1·g/(.1|g|) = w − sign(g).
    let got = one_param_step(OptimKind::Rmsprop, 1);
    assert!(
        (got[0] - 0.0).abs() < 1e-5 && (got[1] - -1.0).abs() < 1e-5,
        "{got:?}"
    );
    // Second step: g = 2w = (0, −2); v = .99·.01·g₁² + .01·g₂².
    let got = one_param_step(OptimKind::Rmsprop, 2);
    let v1 = 0.99 * 0.01 * 16.0 + 0.01 * 4.0;
    assert!(
        (got[1] - (-1.0 + 0.1 * 2.0 / (v1 as f32).sqrt())).abs() < 1e-5,
        "{got:?}"
    );
    // Adam: the first bias-corrected step is −lr·sign(g).
    let got = one_param_step(OptimKind::Adam, 1);
    assert!(
        (got[0] - 0.9).abs() < 1e-5 && (got[1] - -1.9).abs() < 1e-5,
        "{got:?}"
    );
    // Adam, second step from w = (.9, −1.9): m = .9·.1·g₁ + .1·g₂, v likewise.
    let got = one_param_step(OptimKind::Adam, 2);
    let (g1, g2) = (2.0f64, 1.8f64);
    let m = (0.9 * 0.1 * g1 + 0.1 * g2) / (1.0 - 0.81);
    let v = (0.999 * 0.001 * g1 * g1 + 0.001 * g2 * g2) / (1.0 - 0.999f64.powi(2));
    assert!(
        (got[0] as f64 - (0.9 - 0.1 * m / v.sqrt())).abs() < 1e-5,
        "{got:?}"
    );
}

#[test]
fn optimiser_state_round_trips() {
    let w = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
    let mut opt = Optimizer::new(OptimConfig::default(), vec![("w".into(), w.clone())]).unwrap();
    let grads = sum_of_squares_grads(&w);
    opt.step(&grads, 0.1, 1.0).unwrap();
    let saved = opt.state_tensors().unwrap();
    let mut other = Optimizer::new(OptimConfig::default(), vec![("w".into(), w.clone())]).unwrap();
    other
        .load_state(
            |k| saved.iter().find(|(n, _)| n == k).map(|(_, t)| t.clone()),
            opt.steps(),
        )
        .unwrap();
    assert_eq!(
        other.state_tensors().unwrap()[0]
            .1
            .to_vec1::<f32>()
            .unwrap(),
        saved[0].1.to_vec1::<f32>().unwrap()
    );
    assert!(
        other.load_state(|_| None, 1).is_err(),
        "missing state is refused"
    );
}

#[test]
fn im2col_convolution_matches_candles_conv2d() {
    use rlcpc::nn::conv::conv2d_nhwc;
    let dev = Device::Cpu;
    // 12×16 images: every stride below divides (size − kernel), which candle's own conv
    // backward (the reference) needs.
    let x = Var::from_tensor(&Tensor::rand(-1f32, 1.0, (2, 12, 16, 3), &dev).unwrap()).unwrap();
    let w = Var::from_tensor(&Tensor::rand(-1f32, 1.0, (5, 3, 4, 4), &dev).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::rand(-1f32, 1.0, 5, &dev).unwrap()).unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (stride, scale) in [(1, 1.0f32), (2, 0.5), (4, 2.0)] {
        let ours = conv2d_nhwc(&x, &w, &b, stride, scale).unwrap();
        // Candle's NCHW convolution of the same data.
        let want = (x.as_tensor() * scale as f64)
            .unwrap()
            .permute((0, 3, 1, 2))
            .unwrap()
            .conv2d(&w, 0, stride, 1, 1)
            .unwrap()
            .broadcast_add(&b.reshape((1, 5, 1, 1)).unwrap())
            .unwrap()
            .permute((0, 2, 3, 1))
            .unwrap();
        assert_eq!(ours.dims(), want.dims());
        let r = Tensor::rand(-1f32, 1.0, ours.dims(), &dev).unwrap();
        let g1 = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&want * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let pairs = [
            (flat(&ours), flat(&want)),
            (flat(g1.get(&x).unwrap()), flat(g2.get(&x).unwrap())),
            (flat(g1.get(&w).unwrap()), flat(g2.get(&w).unwrap())),
            (flat(g1.get(&b).unwrap()), flat(g2.get(&b).unwrap())),
        ];
        for (i, (a, e)) in pairs.iter().enumerate() {
            let worst = a
                .iter()
                .zip(e)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 1e-4,
                "stride {stride}, part {i}: max difference {worst}"
            );
        }
    }
}

/// FLOPs of one forward pass (`rlcpc::nn::flops`), each counted by hand from the layer
/// shapes (a multiply-add is 2).
#[test]
fn forward_flops_by_hand() {
    use rlcpc::nn::encoders::EncoderSpec;
    use rlcpc::nn::flops;
    // IMPALA's shallow conv on a 48×64 RGB view: 11×15 after 8×8/4, 4×6 after 4×4/2.
    let conv = EncoderSpec::Conv {
        height: 48,
        width: 64,
        channels: 3,
        fc: 256,
        input_scale: 1.0,
    };
    let want = 2 * (3 * 64) * 16 * (11 * 15) + 2 * (16 * 16) * 32 * (4 * 6) + 2 * 768 * 256;
    assert_eq!(conv.forward_flops(0), want as f64);
    // ResNet on 28×28×1, widths [16, 32], one block each: the stem, a 16→16 block at
    // 28×28, a 16→32 block at stride 2 (14×14) with its 1×1 shortcut.
    let resnet = EncoderSpec::Resnet {
        height: 28,
        width: 28,
        channels: 1,
        widths: vec![16, 32],
        blocks: vec![1, 1],
    };
    let want = 2 * 9 * 16 * 784
        + 2 * (2 * 9 * 16 * 16 * 784)
        + 2 * 9 * 16 * 32 * 196
        + 2 * 9 * 32 * 32 * 196
        + 2 * 16 * 32 * 196;
    assert_eq!(resnet.forward_flops(0), want as f64);
    // Audio, strides [5, 4], kernels [10, 8], 8 channels, 100 samples: 20 then 5 frames.
    let audio = EncoderSpec::Audio {
        sample_rate: 16000,
        channels: 8,
        strides: vec![5, 4],
        kernels: vec![10, 8],
        channel_norm: false,
        normalize: false,
    };
    assert_eq!(
        audio.forward_flops(100),
        (20 * 2 * 10 * 8 + 5 * 2 * 64 * 8) as f64
    );
    // Patches: 12×12 images, 8×8 patches every 4 (2×2 of them), two unpadded 3×3
    // layers of 4 features (6×6 then 4×4 outputs).
    let patches = EncoderSpec::Patches {
        height: 12,
        width: 12,
        channels: 1,
        patch: 8,
        stride: 4,
        features: 4,
        layers: 2,
        layer_norm: false,
    };
    assert_eq!(
        patches.forward_flops(0),
        (4 * (2 * 9 * 4 * 36 + 2 * 9 * 16 * 16)) as f64
    );
    assert_eq!(flops::lstm(3, 2), (2 * 5 * 8) as f64);
    assert_eq!(flops::gru(3, 2), (2 * 5 * 6) as f64);
    // The T-maze agent: MLP 3 → 32, LSTM 32 → 64, policy (2) and value heads; the
    // actors' forward and the learner's forward and backward: 4 × per env step.
    let mut cfg = Config::load(
        Some(std::path::Path::new("tmaze")),
        &["aux.kind=\"none\"".into()],
    )
    .unwrap();
    let net = 2 * 3 * 32 + 2 * (32 + 64) * 256 + 2 * 64 * 3;
    let (f, what) = rlcpc::bench::agent_step_flops(&cfg).unwrap();
    assert_eq!((f, what.as_str()), (4.0 * net as f64, "network"));
    // With the CPC head: more, by its pairs' predictions and scores.
    cfg.aux.set_kind(rlcpc::config::AuxKind::Cpc);
    let (g, what) = rlcpc::bench::agent_step_flops(&cfg).unwrap();
    assert!(g > f && what.contains("CPC head"), "{g} {what}");
}

/// Values of the weight tensors (rank ≥ 2: matrices, kernels, embeddings) of `vars`,
/// leaving out the names `skip` matches; and of every tensor.
fn weight_and_all_elements(vars: &[(String, Var)], skip: &str) -> (u128, u128) {
    let mut weights = 0u128;
    let mut all = 0u128;
    for (name, v) in vars {
        let n = v.elem_count() as u128;
        all += n;
        if v.rank() >= 2 && (skip.is_empty() || !name.contains(skip)) {
            weights += n;
        }
    }
    (weights, all)
}

/// A checkpoint's spec is refused when it describes more parameters than the file holds
/// (`ParamCount::min_params`, computed without building anything, in saturating
/// arithmetic, because the spec is untrusted). The count is written apart from the
/// networks' `init`; this ties the two: for every encoder kind and the agent network,
/// the bound is exactly the weights `init` makes (ResNet's 1×1 shortcut convolutions
/// aside) and never more than all the values a real file holds.
#[test]
fn the_parameter_bound_of_every_spec_matches_what_init_builds() {
    use rlcpc::checkpoint::ParamCount;
    use rlcpc::nn::encoders::EncoderSpec;
    let specs = [
        r#"{"kind":"mlp","in_dim":7,"hidden":[64,32],"activation":"tanh"}"#,
        r#"{"kind":"conv","height":48,"width":64,"channels":3,"fc":256,"input_scale":0.0039}"#,
        r#"{"kind":"conv","height":21,"width":33,"channels":1,"fc":16,"input_scale":1.0}"#,
        r#"{"kind":"audio","sample_rate":16000,"channels":32,"strides":[5,4,2],"kernels":[10,8,4],"channel_norm":true,"normalize":true}"#,
        r#"{"kind":"patches","height":28,"width":28,"channels":1,"patch":14,"stride":7,"features":24,"layers":3,"layer_norm":true}"#,
        r#"{"kind":"text","vocab":500,"embedding":32,"kernel":3,"features":48}"#,
        r#"{"kind":"resnet","height":28,"width":28,"channels":1,"widths":[16,32,64],"blocks":[1,2,1]}"#,
        r#"{"kind":"resnet","height":32,"width":32,"channels":3,"widths":[8,8],"blocks":[2,1]}"#,
    ];
    for text in specs {
        let spec: EncoderSpec = serde_json::from_str(text).unwrap();
        let mut init = Init::new(0, &Device::Cpu);
        spec.init(&mut init, "encoder").unwrap();
        let vars = rlcpc::nn::init::named_vars(&init.varmap, |_| true);
        let (weights, all) = weight_and_all_elements(&vars, "shortcut");
        assert_eq!(spec.min_params(), weights, "{text}");
        assert!(spec.min_params() <= all, "{text}");
    }
    for (preset, sets) in [
        ("cartpole", vec![]),
        ("cartpole-lstm-cpc", vec![]),
        (
            "lab-explore_goal_locations",
            vec![
                "env.options.obs=\"rgb\"".to_string(),
                "model.encoder=\"conv\"".into(),
            ],
        ),
    ] {
        let cfg = Config::load(Some(std::path::Path::new(preset)), &sets).unwrap();
        let spec: NetSpec = net_spec(&cfg).unwrap();
        let learner = build_learner(&cfg, &spec, &Device::Cpu).unwrap();
        let (weights, all) = weight_and_all_elements(&learner.net.vars(), "");
        assert_eq!(spec.min_params(), weights, "{preset}");
        assert!(spec.min_params() <= all, "{preset}");
    }
}
