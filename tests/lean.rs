//! The lean learner path (`run.learner = "lean"`: forward and backward in plain Rust)
//! against candle's autograd (`"candle"`) on real CartPole, T-maze, POPGym and Lab
//! batches: every loss term and every parameter's gradient, for MLP (tanh, relu), conv
//! (Lab RGB) and LSTM networks,
//! with and without the CPC and CPC|A heads, with episode starts inside the unroll and
//! a non-zero initial state; then several updates in a row, so that the optimiser's
//! state and the parameter copies stay in step.

use candle_core::Device;
use rlcpc::config::Config;
use rlcpc::nn::actor_policy;
use rlcpc::rl::train::{build_learner, net_spec};
use rlcpc_agents::{Actor, Learner, Rollout};
use rlcpc_envs::VecEnv;

fn config(preset: Option<&str>, sets: &[&str], path: &str) -> Config {
    let mut v: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    v.push(format!("run.learner=\"{path}\""));
    Config::load(preset.map(std::path::Path::new), &v).unwrap()
}

/// Both learners of `cfg`'s network (same seed, so the same parameters) and an actor
/// whose batches they share.
fn setup(
    preset: Option<&str>,
    sets: &[&str],
) -> (
    Learner<rlcpc::nn::AgentNet>,
    Learner<rlcpc::nn::AgentNet>,
    Actor,
) {
    let lean_cfg = config(preset, sets, "lean");
    let candle_cfg = config(preset, sets, "candle");
    let spec = net_spec(&lean_cfg).unwrap();
    let lean = build_learner(&lean_cfg, &spec, &Device::Cpu).unwrap();
    let candle = build_learner(&candle_cfg, &spec, &Device::Cpu).unwrap();
    let envs = (0..lean_cfg.env.num_envs)
        .map(|_| rlcpc_envs::make(&lean_cfg.env).unwrap())
        .collect();
    let mut actor = Actor::new(
        0,
        VecEnv::new(envs).unwrap(),
        actor_policy(&spec).unwrap(),
        lean_cfg.algo.unroll,
        7,
        0,
    );
    actor.load(&lean.snapshot().unwrap()).unwrap();
    (lean, candle, actor)
}

fn close(a: f32, b: f32, scale: f32) -> bool {
    (a - b).abs() <= 2e-5 * scale + 1e-7
}

/// Loss terms and gradients of both paths on `batch`.
fn compare(
    what: &str,
    lean: &mut Learner<rlcpc::nn::AgentNet>,
    candle: &mut Learner<rlcpc::nn::AgentNet>,
    batch: &Rollout,
) {
    let gl = lean.gradients(batch).unwrap();
    let gc = candle.gradients(batch).unwrap();
    let names = |g: &[(String, Vec<f32>)]| g.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&gl), names(&gc), "{what}: parameters with a gradient");
    let mut nonzero = 0;
    for ((name, l), (_, c)) in gl.iter().zip(&gc) {
        let scale = c.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in l.iter().zip(c).enumerate() {
            assert!(
                close(*x, *y, scale),
                "{what}: d/d{name}[{i}] lean {x:e}, candle {y:e} (largest {scale:e})"
            );
            nonzero += (y.abs() > 1e-6) as usize;
        }
    }
    assert!(nonzero > 100, "{what}: only {nonzero} non-zero gradients");
}

fn check(what: &str, preset: Option<&str>, sets: &[&str], updates: usize) {
    let (mut lean, mut candle, mut actor) = setup(preset, sets);
    let mut starts = 0;
    for u in 0..updates {
        let mut batch = actor.collect().unwrap();
        if u == 0 && batch.state_size > 0 {
            // A state carried in from an earlier unroll.
            for (i, s) in batch.init_state.iter_mut().enumerate() {
                *s = ((i * 37 % 17) as f32 - 8.0) * 0.05;
            }
        }
        starts += batch.first[batch.b..].iter().filter(|&&f| f == 1.0).count();
        compare(
            &format!("{what}, update {u}"),
            &mut lean,
            &mut candle,
            &batch,
        );
        let sl = lean.update(&batch, 0.1).unwrap();
        let sc = candle.update(&batch, 0.1).unwrap();
        for (term, a, b) in [
            ("policy loss", sl.policy_loss, sc.policy_loss),
            ("value loss", sl.value_loss, sc.value_loss),
            ("entropy", sl.entropy, sc.entropy),
            ("aux loss", sl.aux_loss, sc.aux_loss),
            ("total loss", sl.total_loss, sc.total_loss),
            ("gradient norm", sl.grad_norm, sc.grad_norm),
        ] {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{what}, update {u}: {term} lean {a}, candle {b}"
            );
        }
        // The parameters stay together after the optimiser's steps.
        let (pl, pc) = (lean.snapshot().unwrap(), candle.snapshot().unwrap());
        for ((name, _, a), (_, _, b)) in pl.params.iter().zip(&pc.params) {
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() < 1e-4,
                    "{what}, after update {u}: {name} lean {x}, candle {y}"
                );
            }
        }
        // The head's own variables too (CURL's W and momentum key encoder).
        if let (Some(al), Some(ac)) = (&lean.aux, &candle.aux) {
            for ((name, a), (_, b)) in al.vars().iter().zip(ac.vars()) {
                let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                for (x, y) in a.iter().zip(&b) {
                    assert!(
                        (x - y).abs() < 1e-4,
                        "{what}, after update {u}: {name} lean {x}, candle {y}"
                    );
                }
            }
        }
        actor.load(&pl).unwrap();
    }
    assert!(starts > 0, "{what}: no episode started inside an unroll");
}

#[test]
fn mlp_tanh_matches_autograd() {
    // The default preset (4-64-64 tanh, RMSProp); 40-step unrolls so episodes end inside.
    check(
        "mlp tanh",
        None,
        &["algo.unroll=40", "algo.ent_coef=0.01"],
        3,
    );
}

#[test]
fn mlp_relu_with_cpc_and_adam_matches_autograd() {
    check(
        "mlp relu + cpc",
        None,
        &[
            "algo.unroll=40",
            "model.activation=\"relu\"",
            "model.mlp_hidden=[32, 48]",
            "aux.kind=\"cpc\"",
            "aux.horizon=4",
            "optim.kind=\"adam\"",
            "optim.lr=1e-3",
            "algo.normalize_advantages=true",
        ],
        3,
    );
}

#[test]
fn lstm_with_cpc_matches_autograd() {
    check(
        "lstm + cpc",
        Some("cartpole-lstm-cpc"),
        &["algo.ent_coef=0.01"],
        3,
    );
}

#[test]
fn lstm_vtrace_without_a_head_matches_autograd() {
    check(
        "lstm vtrace",
        Some("cartpole-lstm-cpc"),
        &["aux.kind=\"none\"", "algo.vtrace=true", "algo.unroll=24"],
        3,
    );
}

#[test]
fn popgym_lstm_with_cpca_matches_autograd() {
    check(
        "popgym lstm + cpca",
        Some("popgym"),
        &["aux.kind=\"cpca\"", "env.num_envs=4"],
        2,
    );
    check(
        "popgym lstm + cpca (infonce)",
        Some("popgym"),
        &[
            "aux.kind=\"cpca\"",
            "aux.cpca_loss=\"infonce\"",
            "env.num_envs=4",
            "algo.unroll=48",
        ],
        2,
    );
}

#[test]
fn popgym_extra_inputs_beside_the_encoder_match_autograd() {
    // The previous action and first-step flag join z at the LSTM's input (the default):
    // the gradient of W_ih's extra columns and of the encoder without them.
    let cfg = config(Some("popgym"), &["env.num_envs=4"], "lean");
    assert_eq!(net_spec(&cfg).unwrap().extra_inputs, 5);
    check(
        "popgym lstm + cpc, extra inputs at the core",
        Some("popgym"),
        &["env.num_envs=4", "algo.unroll=32"],
        2,
    );
    check(
        "popgym lstm + cpc, extra inputs through the encoder",
        Some("popgym"),
        &[
            "model.extra_inputs=\"encoder\"",
            "env.num_envs=4",
            "algo.unroll=32",
        ],
        2,
    );
}

/// CURL encodes augmented views of its own with the network's encoder (in candle): its
/// gradients for the encoder's weights join the lean backward's, and W and the momentum
/// key encoder follow candle's learner.
#[test]
fn lab_rgb_conv_with_curl_matches_autograd() {
    let curl = [
        "aux.kind=\"curl\"",
        "aux.curl_samples=24",
        "aux.curl_shift=2",
        "aux.curl_exclude=2",
    ];
    let sets = [&LAB_RGB[..], &curl[..]].concat();
    check("lab rgb conv + curl", Some("lab-watermaze"), &sets, 3);
}

#[test]
fn lab_grid_sparse_inputs_with_cpc_match_autograd() {
    // One-hot grid observations take the first layer's sparse path.
    check(
        "lab grid + cpc",
        Some("lab-watermaze"),
        &[
            "env.num_envs=2",
            "run.workers=1",
            "model.mlp_hidden=[32]",
            "model.lstm_hidden=16",
            "algo.unroll=40",
            "env.max_episode_steps=30",
        ],
        2,
    );
}

/// Lab RGB frames through the conv encoder (11×15 and 4×6 feature maps: odd sizes and
/// strides), the LSTM and the CPC head, with episode starts inside the unroll.
/// The Lab RGB agent, small (the head's keys are each test's own).
const LAB_RGB: [&str; 8] = [
    "env.num_envs=2",
    "run.workers=1",
    "env.options.obs=\"rgb\"",
    "model.encoder=\"conv\"",
    "model.conv_fc=32",
    "model.lstm_hidden=16",
    "algo.unroll=20",
    "env.max_episode_steps=15",
];

#[test]
fn lab_rgb_conv_with_cpc_matches_autograd() {
    let sets = [&LAB_RGB[..], &["aux.horizon=8"]].concat();
    check("lab rgb conv + cpc", Some("lab-watermaze"), &sets, 2);
}

#[test]
fn lab_rgb_conv_actor_matches_the_candle_actor() {
    use rlcpc_agents::ActorPolicy;
    let cfg = config(Some("lab-watermaze"), &LAB_RGB, "lean");
    let spec = net_spec(&cfg).unwrap();
    let learner = build_learner(&cfg, &spec, &Device::Cpu).unwrap();
    let snap = learner.snapshot().unwrap();
    let (b, s, a) = (3, spec.state_size(), spec.num_actions);
    let obs: Vec<f32> = (0..b * spec.obs_dim())
        .map(|i| (i * 37 % 256) as f32)
        .collect();
    let state0: Vec<f32> = (0..b * s)
        .map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.2)
        .collect();
    let mut outs = Vec::new();
    let candle: Box<dyn ActorPolicy> = Box::new(rlcpc::nn::CandleActor::new(spec.clone()).unwrap());
    for mut p in [actor_policy(&spec).unwrap(), candle] {
        p.load(&snap).unwrap();
        let mut state = state0.clone();
        let (mut logits, mut values) = (vec![0.0; b * a], vec![0.0; b]);
        p.forward(&obs, &mut state, &mut logits, &mut values)
            .unwrap();
        outs.push((logits, values, state));
    }
    let (l, c) = (&outs[0], &outs[1]);
    for (x, y) in
        l.0.iter()
            .chain(&l.1)
            .chain(&l.2)
            .zip(c.0.iter().chain(&c.1).chain(&c.2))
    {
        assert!((x - y).abs() < 1e-5, "lean {x}, candle {y}");
    }
    assert_ne!(l.2, state0, "the LSTM state advanced");
}

/// The view trainers' ResNet on the lean path against candle's (`nn::resnet`): h, the
/// running statistics and every parameter's gradient in training mode (one BatchNorm
/// group, and two as MoCo's shuffled BatchNorm), over three SGD updates in a row, then
/// h in eval mode. Odd image sizes (11×13, two channels), a stride-2 stage with its
/// projection shortcut, a stage of two blocks (an identity shortcut), and a batch that
/// the convolutions split into chunks and threads.
#[test]
fn lean_resnet_matches_the_candle_resnet() {
    use candle_core::backprop::GradStore;
    use candle_core::Tensor;
    use rlcpc::nn::init::Init;
    use rlcpc::nn::lean::resnet::{BnMode, LeanResNet};
    use rlcpc::nn::resnet::ResNet;

    // 240 images: the convolutions take several chunks of images, shared among threads.
    let (widths, blocks, (h, w, c), n) = ([4, 6, 8], [1, 2, 1], (11, 13, 2), 240);
    for groups in [1, 2] {
        let make = || {
            let mut init = Init::new(7, &Device::Cpu);
            ResNet::init(c, &widths, &blocks, &mut init, "encoder").unwrap();
            init.varmap
        };
        let (vm_candle, vm_lean) = (make(), make());
        let candle = ResNet::new(&widths, &blocks, &vm_candle, "encoder").unwrap();
        let mut lean = LeanResNet::new(&widths, &blocks, (h, w, c), &vm_lean, "encoder").unwrap();
        let vars = |vm: &candle_nn::VarMap| {
            let mut v: Vec<_> = vm.data().lock().unwrap().clone().into_iter().collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        for step in 0..3usize {
            let x: Vec<f32> = (0..n * h * w * c)
                .map(|i| ((i * 7919 + step * 131) % 101) as f32 / 100.0)
                .collect();
            let r: Vec<f32> = (0..n * widths[2])
                .map(|i| ((i * 37 + step) % 11) as f32 / 5.0 - 1.0)
                .collect();
            let xt = Tensor::from_vec(x.clone(), (n, h, w, c), &Device::Cpu).unwrap();
            let rt = Tensor::from_vec(r.clone(), (n, widths[2]), &Device::Cpu).unwrap();
            let h_candle = candle.forward(&xt, true, groups).unwrap();
            let g_candle = (&h_candle * &rt)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let h_lean = lean
                .forward(&x, n, BnMode::Train { groups })
                .unwrap()
                .to_vec();
            let h_candle = h_candle.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            close_slices(
                &format!("groups {groups}, step {step}: h"),
                &h_lean,
                &h_candle,
                1e-4,
            );
            let mut g_lean = GradStore::default();
            lean.backward(&r, &mut g_lean).unwrap();
            let (vc, vl) = (vars(&vm_candle), vars(&vm_lean));
            let mut checked = 0;
            for ((name, a), (_, b)) in vc.iter().zip(&vl) {
                let value = |v: &candle_core::Var| {
                    v.as_tensor()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                };
                if name.ends_with("running_mean") || name.ends_with("running_var") {
                    close_slices(
                        &format!("groups {groups}, step {step}: {name}"),
                        &value(b),
                        &value(a),
                        1e-4,
                    );
                    continue;
                }
                let ga = g_candle
                    .get(a.as_tensor())
                    .unwrap_or_else(|| panic!("{name}: candle"));
                let gb = g_lean
                    .get(b.as_tensor())
                    .unwrap_or_else(|| panic!("{name}: no lean gradient"));
                let (ga, gb) = (
                    ga.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    gb.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                );
                assert!(max_abs(&ga) > 0.0, "{name}: a zero gradient checks nothing");
                close_slices(
                    &format!("groups {groups}, step {step}: d {name}"),
                    &gb,
                    &ga,
                    2e-3,
                );
                // The same SGD step on both copies, each from its own gradient.
                for (v, g) in [(a, ga), (b, gb)] {
                    let t = Tensor::from_vec(g, v.as_tensor().shape(), &Device::Cpu).unwrap();
                    v.set(&(v.as_tensor() - (t * 0.05).unwrap()).unwrap())
                        .unwrap();
                }
                checked += 1;
            }
            // The stem (3), two identity blocks (6 each), two with a shortcut (9 each).
            assert_eq!(checked, 33, "every trainable parameter");
        }
        let xt =
            Tensor::from_vec(vec![0.25f32; 2 * h * w * c], (2, h, w, c), &Device::Cpu).unwrap();
        let e_candle = candle
            .forward(&xt, false, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let x = xt.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let e_lean = lean.forward(&x, 2, BnMode::Eval).unwrap().to_vec();
        close_slices(
            &format!("groups {groups}: eval h"),
            &e_lean,
            &e_candle,
            1e-3,
        );
        let d_h = vec![0.0; 2 * widths[2]];
        assert!(
            lean.backward(&d_h, &mut GradStore::default()).is_err(),
            "eval mode has no backward"
        );
    }
}

/// CPC's audio encoder on the lean path against candle's (`nn::audio`): z and every
/// parameter's gradient, with and without the channel norm and the waveform
/// standardisation, on windows whose lengths leave partial frames at every layer (403
/// samples; strides 5, 4, 2), over three windows that the threads share.
#[test]
fn lean_audio_encoder_matches_the_candle_encoder() {
    use candle_core::backprop::GradStore;
    use candle_core::Tensor;
    use candle_nn::VarBuilder;
    use rlcpc::nn::audio::{init, AudioArch, AudioEncoder};
    use rlcpc::nn::init::Init;
    use rlcpc::nn::lean::audio::LeanAudioEncoder;

    let (channels, strides, kernels, n, len) = (6, [5, 4, 2], [10, 8, 4], 3, 403);
    for (norm, standardise) in [(false, false), (true, true), (true, false)] {
        let mut vars = Init::new(3, &Device::Cpu);
        init(channels, &kernels, norm, &mut vars, "encoder").unwrap();
        let vb = VarBuilder::from_varmap(&vars.varmap, candle_core::DType::F32, &Device::Cpu);
        let arch = AudioArch {
            channels,
            strides: &strides,
            kernels: &kernels,
            channel_norm: norm,
            normalize: standardise,
        };
        let candle = AudioEncoder::new(&arch, vb.pp("encoder")).unwrap();
        let mut lean = LeanAudioEncoder::new(&arch, &vars.varmap, "encoder").unwrap();
        let wave: Vec<f32> = (0..n * len)
            .map(|i| ((i as f32) * 0.173).sin() * 0.6 + ((i * 31 % 17) as f32) / 40.0)
            .collect();
        let z_lean = lean.forward(&wave, n, len).unwrap().to_vec();
        let wt = Tensor::from_vec(wave.clone(), (n, len), &Device::Cpu).unwrap();
        let z = candle.forward(&wt).unwrap();
        // 403 → 81 → 21 → 11 frames.
        assert_eq!(z.dims(), &[n, 11, channels]);
        let r: Vec<f32> = (0..z.elem_count())
            .map(|i| ((i * 37) % 13) as f32 / 6.0 - 1.0)
            .collect();
        let rt = Tensor::from_vec(r.clone(), z.shape(), &Device::Cpu).unwrap();
        let g_candle = (&z * &rt).unwrap().sum_all().unwrap().backward().unwrap();
        let what = format!("norm {norm}, standardised {standardise}");
        let z_candle = z.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        close_slices(&format!("{what}: z"), &z_lean, &z_candle, 1e-4);
        let mut g_lean = GradStore::default();
        lean.backward(&r, &mut g_lean).unwrap();
        let mut checked = 0;
        for (name, v) in vars.varmap.data().lock().unwrap().iter() {
            let get = |g: &GradStore| {
                g.get(v.as_tensor())
                    .unwrap_or_else(|| panic!("{what}: no gradient of {name}"))
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            };
            let (a, b) = (get(&g_lean), get(&g_candle));
            assert!(max_abs(&b) > 0.0, "{what}: {name} has a zero gradient");
            close_slices(&format!("{what}: d {name}"), &a, &b, 1e-3);
            checked += 1;
        }
        assert_eq!(checked, if norm { 12 } else { 6 }, "{what}");
    }
}

/// CPC's GRU context network on the lean path against candle's (`nn::gru`): every state,
/// the input's gradient and every parameter's, over 9 steps of 3 sequences.
#[test]
fn lean_gru_matches_the_candle_gru() {
    use candle_core::backprop::GradStore;
    use candle_core::{Tensor, Var};
    use candle_nn::VarBuilder;
    use rlcpc::nn::gru::Gru;
    use rlcpc::nn::init::Init;
    use rlcpc::nn::lean::gru::LeanGru;

    let (d, h, t_len, b) = (5, 7, 9, 3);
    let mut vars = Init::new(5, &Device::Cpu);
    Gru::init(d, h, &mut vars, "context").unwrap();
    let vb = VarBuilder::from_varmap(&vars.varmap, candle_core::DType::F32, &Device::Cpu);
    let candle = Gru::new(d, h, vb.pp("context")).unwrap();
    let mut lean = LeanGru::new(&vars.varmap, "context", d, h).unwrap();
    // Inputs large enough to saturate some gates, batch-major for candle.
    let x: Vec<f32> = (0..b * t_len * d)
        .map(|i| ((i as f32) * 0.37).sin() * 2.5)
        .collect();
    let xv = Var::from_vec(x.clone(), (b, t_len, d), &Device::Cpu).unwrap();
    let hs = candle.forward(xv.as_tensor()).unwrap();
    let r: Vec<f32> = (0..b * t_len * h)
        .map(|i| ((i * 29) % 11) as f32 / 5.0 - 1.0)
        .collect();
    let rt = Tensor::from_vec(r.clone(), (b, t_len, h), &Device::Cpu).unwrap();
    let g_candle = (&hs * &rt).unwrap().sum_all().unwrap().backward().unwrap();
    // The lean GRU is time-major.
    let tm = |v: &[f32], w: usize| -> Vec<f32> {
        let mut out = vec![0f32; v.len()];
        for s in 0..b {
            for t in 0..t_len {
                out[(t * b + s) * w..(t * b + s + 1) * w]
                    .copy_from_slice(&v[(s * t_len + t) * w..(s * t_len + t + 1) * w]);
            }
        }
        out
    };
    let h_lean = lean.forward(&tm(&x, d), t_len, b).unwrap().to_vec();
    let h_candle = hs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    close_slices("h", &h_lean, &tm(&h_candle, h), 1e-5);
    let mut g_lean = GradStore::default();
    let d_x = lean.backward(&tm(&r, h), &mut g_lean).unwrap().to_vec();
    let host = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let d_x_candle = host(g_candle.get(xv.as_tensor()).unwrap());
    close_slices("d x", &d_x, &tm(&d_x_candle, d), 1e-4);
    let mut checked = 0;
    for (name, v) in vars.varmap.data().lock().unwrap().iter() {
        let a = host(
            g_lean
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("no d {name}")),
        );
        let c = host(g_candle.get(v.as_tensor()).unwrap());
        assert!(max_abs(&c) > 0.0, "{name} has a zero gradient");
        close_slices(&format!("d {name}"), &a, &c, 1e-4);
        checked += 1;
    }
    assert_eq!(checked, 4);
}

/// Audio CPC's whole step on the lean path (encoder, GRU, InfoNCE and W_k on host slices)
/// against candle's autograd from the same seed: the same loss and every parameter's
/// gradient, the encoder's included.
#[test]
fn lean_audio_cpc_step_matches_candle() {
    use rlcpc::pretrain::{audio, TrainerConfig};
    let grads = |learner: &str| {
        let cfg = audio::AudioCpcConfig::load(
            Some(std::path::Path::new("cpc-audio")),
            &[
                "data.window=2560".to_string(),
                "cpc.horizon=4".to_string(),
                "model.channels=16".to_string(),
                "model.context=12".to_string(),
                "model.channel_norm=true".to_string(),
                format!("train.learner=\"{learner}\""),
            ],
        )
        .unwrap();
        let set = rlcpc::bench::generated_audio(cfg.data.window, cfg.data.sample_rate, 16);
        let mut obj = audio::AudioCpc::new(&cfg, set, &Device::Cpu).unwrap();
        let out = rlcpc::pretrain::Objective::has_lean_path(&obj);
        assert_eq!(out, learner == "lean");
        let step = |obj: &mut audio::AudioCpc| {
            use rlcpc::pretrain::Objective;
            let out = obj.step(5).unwrap();
            let mut g = out.loss.backward().unwrap();
            obj.complete_grads(&mut g).unwrap();
            let mut named: Vec<(String, Vec<f32>)> = obj
                .varmap()
                .data()
                .lock()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let d = g.get(v.as_tensor()).unwrap_or_else(|| panic!("no d {k}"));
                    (
                        k.clone(),
                        d.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    )
                })
                .collect();
            named.sort_by(|a, b| a.0.cmp(&b.0));
            (out.loss.to_scalar::<f32>().unwrap(), named)
        };
        step(&mut obj)
    };
    let ((la, ga), (lb, gb)) = (grads("lean"), grads("candle"));
    assert!(
        la.is_finite() && (la - lb).abs() < 1e-4 * lb.abs(),
        "{la} vs {lb}"
    );
    assert_eq!(ga.len(), gb.len());
    // 5 convolutions with norms (20), the GRU (4) and W_k (1).
    assert_eq!(ga.len(), 25);
    for ((k, a), (_, b)) in ga.iter().zip(&gb) {
        assert!(max_abs(b) > 0.0, "{k} has a zero gradient");
        close_slices(&format!("d {k}"), a, b, 2e-3);
    }
}

/// The largest magnitude in `v`.
fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

/// `a` is within `tol` of `b` relative to `b`'s largest magnitude.
fn close_slices(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    let scale = max_abs(b).max(1e-3);
    assert!(
        err <= tol * scale,
        "{what}: differs by {err} (scale {scale})"
    );
}

/// Fine-tuning (`probe --fine-tune`) on the lean path against candle's autograd: the
/// same ResNet (BatchNorm in training mode) and the agent's conv encoder (pixels in
/// [0, 1], scaled to its 0–255 input), a linear classifier, 4 Adam steps; every
/// parameter's change and BatchNorm's running statistics agree, and so do the accuracies.
#[test]
fn lean_fine_tuning_matches_candle() {
    use rlcpc::data::images::ImageSet;
    use rlcpc::nn::encoders::EncoderSpec;
    use rlcpc::nn::views::ViewEncoder;
    use rlcpc::probe::finetune::{fine_tune, FineTune};

    let specs = [
        EncoderSpec::Resnet {
            height: 11,
            width: 13,
            channels: 2,
            widths: vec![4, 6, 8],
            blocks: vec![1, 1, 1],
        },
        EncoderSpec::Conv {
            height: 24,
            width: 28,
            channels: 3,
            fc: 16,
            input_scale: 1.0 / 255.0,
        },
    ];
    for spec in specs {
        let [h, w, c] = spec.image_input().unwrap();
        let n = 90;
        let set = ImageSet {
            height: h,
            width: w,
            channels: c,
            pixels: (0..n * h * w * c)
                .map(|i| ((i * 7919 + i / 97) % 101) as f32 / 100.0)
                .collect(),
            labels: (0..n as u32).map(|i| (i * 7 + i / 5) % 3).collect(),
            classes: vec!["a".into(), "b".into(), "c".into()],
            held_out: None,
            skipped: vec![],
        };
        let (tr, te): (Vec<usize>, Vec<usize>) = ((0..60).collect(), (60..n).collect());
        let o = FineTune {
            steps: 4,
            batch: 32,
            lr: 1e-3,
            seed: 3,
        };
        let values = |vm: &candle_nn::VarMap| {
            let mut v: Vec<(String, Vec<f32>)> = vm
                .data()
                .lock()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let x = v
                        .as_tensor()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap();
                    (k.clone(), x)
                })
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let run = |lean: bool| {
            let (_, vm) = ViewEncoder::random(&spec, 11).unwrap();
            let acc = fine_tune(&spec, &vm, lean, 3, &set, &tr, &set, &te, &o).unwrap();
            (acc, values(&vm))
        };
        let before = values(&ViewEncoder::random(&spec, 11).unwrap().1);
        let ((acc_c, after_c), (acc_l, after_l)) = (run(false), run(true));
        assert_eq!(before.len(), after_c.len());
        let mut moved = 0;
        for (((name, b), (_, c)), (_, l)) in before.iter().zip(&after_c).zip(&after_l) {
            let (dc, dl): (Vec<f32>, Vec<f32>) = (
                c.iter().zip(b).map(|(x, y)| x - y).collect(),
                l.iter().zip(b).map(|(x, y)| x - y).collect(),
            );
            if max_abs(&dc) > 0.0 {
                moved += 1;
            }
            // Adam's steps are near lr whatever the gradient's size, so a wrong
            // gradient moves a weight by about lr the wrong way: 4e-3 after 4 steps.
            close_slices(
                &format!("{}: change of {name}", spec.describe()),
                &dl,
                &dc,
                0.05,
            );
        }
        assert!(
            moved >= 4,
            "{}: fine-tuning moved {moved} tensors",
            spec.describe()
        );
        assert!(
            (acc_c.0 - acc_l.0).abs() <= 2.0 / 60.0 && (acc_c.1 - acc_l.1).abs() <= 2.0 / 30.0,
            "{}: accuracies {acc_c:?} (candle) against {acc_l:?} (lean)",
            spec.describe()
        );
    }
}

/// Image CPC's patch encoder on the lean path against candle's (`nn::patches`): z and
/// every parameter's gradient, with and without CPC-v2's LayerNorm, 2 and 3 layers, on
/// 37 patches of two channels (shared unevenly among the threads), over three SGD steps.
#[test]
fn lean_patch_encoder_matches_the_candle_encoder() {
    use candle_core::{DType, Tensor};
    use candle_nn::VarBuilder;
    use rlcpc::nn::init::Init;
    use rlcpc::nn::lean::patches::LeanPatchEncoder;
    use rlcpc::nn::patches::PatchEncoder;

    let (patch, c, width, n) = (8, 2, 5, 37);
    for (layers, ln) in [(2, false), (2, true), (3, true)] {
        let make = || {
            let mut init = Init::new(5, &Device::Cpu);
            PatchEncoder::init(c, width, layers, ln, &mut init, "encoder").unwrap();
            init.varmap
        };
        let (vm_c, vm_l) = (make(), make());
        let vb = VarBuilder::from_varmap(&vm_c, DType::F32, &Device::Cpu);
        let candle = PatchEncoder::new(c, width, layers, ln, vb.pp("encoder")).unwrap();
        let mut lean =
            LeanPatchEncoder::new((patch, c), width, layers, ln, &vm_l, "encoder").unwrap();
        let vars = |vm: &candle_nn::VarMap| {
            let mut v: Vec<_> = vm.data().lock().unwrap().clone().into_iter().collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        for step in 0..3usize {
            let x: Vec<f32> = (0..n * patch * patch * c)
                .map(|i| ((i * 7919 + step * 131) % 97) as f32 / 48.0 - 1.0)
                .collect();
            let r: Vec<f32> = (0..n * width)
                .map(|i| ((i * 37 + step) % 13) as f32 / 6.0 - 1.0)
                .collect();
            let xt = Tensor::from_vec(x.clone(), (n, patch, patch, c), &Device::Cpu).unwrap();
            let rt = Tensor::from_vec(r.clone(), (n, width), &Device::Cpu).unwrap();
            let z_c = candle.forward(&xt).unwrap();
            let g_c = (&z_c * &rt).unwrap().sum_all().unwrap().backward().unwrap();
            let z_l = lean.forward(&x, n).unwrap().to_vec();
            let what = format!("{layers} layers, layer norm {ln}, step {step}");
            let z_c = z_c.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            close_slices(&format!("{what}: z"), &z_l, &z_c, 1e-4);
            let mut g_l = candle_core::backprop::GradStore::default();
            lean.backward(&r, &mut g_l).unwrap();
            let (vc, vl) = (vars(&vm_c), vars(&vm_l));
            assert_eq!(vc.len(), if ln { 4 * layers } else { 2 * layers });
            for ((name, a), (_, b)) in vc.iter().zip(&vl) {
                let get =
                    |g: &candle_core::backprop::GradStore, v: &candle_core::Var, who: &str| {
                        g.get(v.as_tensor())
                            .unwrap_or_else(|| panic!("{name}: no {who} gradient"))
                            .flatten_all()
                            .unwrap()
                            .to_vec1::<f32>()
                            .unwrap()
                    };
                let (ga, gb) = (get(&g_c, a, "candle"), get(&g_l, b, "lean"));
                assert!(max_abs(&ga) > 0.0, "{name}: a zero gradient checks nothing");
                close_slices(&format!("{what}: d {name}"), &gb, &ga, 2e-3);
                for (v, g) in [(a, ga), (b, gb)] {
                    let t = Tensor::from_vec(g, v.as_tensor().shape(), &Device::Cpu).unwrap();
                    v.set(&(v.as_tensor() - (t * 0.05).unwrap()).unwrap())
                        .unwrap();
                }
            }
        }
    }
}
