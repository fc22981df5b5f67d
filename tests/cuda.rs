//! The CUDA learner against the CPU one (built only with `--features cuda`; needs a GPU):
//! the same loss and gradients for a conv + LSTM + CPC network, the same weights after a
//! short training run, checkpoints that move between the two devices, CartPole learning
//! with the learner on the GPU, and the CPC trainers' objectives (audio, image, text) with
//! the same loss and gradients on both devices.
#![cfg(feature = "cuda")]

mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use rlcpc::checkpoint::Loaded;
use rlcpc::config::Config;
use rlcpc::nn::init::Init;
use rlcpc::nn::{AgentNet, NetSpec};
use rlcpc::rl::auxiliary::cpc::CpcAux;
use rlcpc::rl::train::{saved_config, train, TrainOptions, TrainSummary};
use rlcpc::run_dir::CHECKPOINT;
use rlcpc_agents::{AuxLoss, PolicyNetwork};
use rlcpc_envs::Space;

fn gpu() -> Device {
    Device::new_cuda(0).expect("a CUDA device")
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 + 1e-3 * x.abs().max(y.abs()),
            "{what}[{i}]: cpu {x} vs cuda {y}"
        );
    }
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Loss (policy logits, values and CPC on a conv + LSTM net) and every gradient, on `dev`.
fn loss_and_grads(dev: &Device) -> (f32, Vec<(String, Vec<f32>)>) {
    let cfg = Config::load(
        Some(Path::new("cartpole-lstm-cpc")),
        &["model.encoder=\"auto\"".into(), "aux.horizon=4".into()],
    )
    .unwrap();
    let obs_space = Space::Box {
        low: vec![0.0; 48 * 64 * 3],
        high: vec![255.0; 48 * 64 * 3],
        shape: vec![48, 64, 3],
    };
    let spec = NetSpec::new(&cfg.model, &obs_space, &Space::Discrete(9)).unwrap();
    let mut init = Init::new(3, dev);
    spec.init(&mut init).unwrap();
    let head = cfg.aux.predict().unwrap();
    CpcAux::init(head, spec.feature_dim(), spec.context_dim(), &mut init).unwrap();
    let net = AgentNet::new(spec.clone(), &init.varmap, dev).unwrap();
    let mut aux = CpcAux::new(
        head,
        spec.feature_dim(),
        spec.context_dim(),
        &init.varmap,
        dev,
        7,
    )
    .unwrap();
    let (t1, b) = (9, 3);
    // Deterministic pixels (the same on both devices), an episode start inside the unroll.
    let n = t1 * b * 48 * 64 * 3;
    let px: Vec<f32> = (0..n).map(|i| ((i * 7919) % 256) as f32).collect();
    let x = Tensor::from_vec(px, (t1, b, 48, 64, 3), dev).unwrap();
    let mut first = vec![0f32; t1 * b];
    first[4 * b + 1] = 1.0;
    let first_t = Tensor::from_slice(&first, (t1, b), dev).unwrap();
    let state = Tensor::zeros((b, spec.state_size()), DType::F32, dev).unwrap();
    let out = net.unroll(&x, &first_t, &state).unwrap();
    let actions = vec![0u32; (t1 - 1) * b];
    let batch = rlcpc_agents::AuxBatch {
        first: &first,
        obs: &x,
        actions: &actions,
    };
    let a = aux.loss(&out, batch).unwrap();
    let lse = out.logits.exp().unwrap().sum(2).unwrap().log().unwrap();
    let loss = (a.loss + out.values.sqr().unwrap().mean_all().unwrap())
        .unwrap()
        .add(&lse.mean_all().unwrap())
        .unwrap();
    let grads = loss.backward().unwrap();
    let mut vars = net.vars();
    vars.extend(aux.vars());
    vars.sort_by(|p, q| p.0.cmp(&q.0));
    let g = vars
        .iter()
        .map(|(k, v)| (k.clone(), flat(grads.get(v).expect(k))))
        .collect();
    (loss.to_scalar::<f32>().unwrap(), g)
}

#[test]
fn conv_lstm_cpc_loss_and_gradients_match_the_cpu() {
    let (lc, gc) = loss_and_grads(&Device::Cpu);
    let (lg, gg) = loss_and_grads(&gpu());
    close(&[lc], &[lg], "loss");
    for ((kc, c), (kg, g)) in gc.iter().zip(&gg) {
        assert_eq!(kc, kg);
        close(c, g, kc);
    }
}

fn run(cfg: &Config, out: &Path, device: Device, resume: bool) -> TrainSummary {
    let opts = TrainOptions {
        out: out.to_path_buf(),
        resume,
        device,
        progress: false,
        write: true,
    };
    train(cfg, &opts, Arc::new(AtomicBool::new(false))).unwrap()
}

fn tensors(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let ck = Loaded::read(&dir.join(CHECKPOINT)).unwrap();
    let mut v: Vec<_> = ck
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), flat(t)))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn lstm_cpc_updates_on_cuda_match_the_cpu_and_checkpoints_move_between_devices() {
    // One worker, sync: the first rollout is identical on both devices, so after one
    // update the weights (and optimiser state) agree to float tolerance.
    let cfg = Config::load(
        Some(Path::new("cartpole-lstm-cpc")),
        &[
            "run.workers=1".into(),
            "env.num_envs=8".into(),
            "run.target_return=0".into(),
            "run.total_steps=256".into(),
        ],
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (c, g) = (tmp.path().join("cpu"), tmp.path().join("cuda"));
    run(&cfg, &c, Device::Cpu, false);
    run(&cfg, &g, gpu(), false);
    for ((kc, a), (kg, b)) in tensors(&c).iter().zip(&tensors(&g)) {
        assert_eq!(kc, kg);
        close(a, b, kc);
    }
    // A CUDA checkpoint resumes on the CPU, and a CPU one on CUDA.
    let more = saved_config(&g, &["run.total_steps=768".into()]).unwrap();
    let s = run(&more, &g, Device::Cpu, true);
    assert_eq!(s.counters.env_steps, 768);
    let s = run(&more, &c, gpu(), true);
    assert_eq!(s.counters.env_steps, 768);
}

#[test]
fn cartpole_learns_with_the_learner_on_cuda() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config::load(
        None,
        &["run.total_steps=60000".into(), "run.target_return=0".into()],
    )
    .unwrap();
    let s = run(&cfg, tmp.path(), gpu(), false);
    assert!(
        s.mean_return.unwrap() > 150.0,
        "mean return {:?}",
        s.mean_return
    );
}

/// `a` and `b` agree to 1e-3 of the tensor's largest magnitude (sums of thousands of
/// terms reduce in another order on the GPU, so small entries of a large tensor are
/// compared on its scale, not their own).
fn close_on_scale(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-6 + 1e-3 * scale,
            "{what}[{i}]: cpu {x} vs cuda {y} (largest |cpu| {scale})"
        );
    }
}

#[test]
fn cpc_trainer_objectives_match_the_cpu_in_loss_and_every_gradient() {
    let on_gpu = common::cpc_trainer_objectives(&gpu());
    for ((name, mut c, batch), (_, mut g, _)) in common::cpc_trainer_objectives(&Device::Cpu)
        .into_iter()
        .zip(on_gpu)
    {
        let (lc, gc) = common::objective_loss_and_grads(c.as_mut(), batch);
        let (lg, gg) = common::objective_loss_and_grads(g.as_mut(), batch);
        close(&[lc], &[lg], &format!("{name} loss"));
        assert_eq!(gc.len(), gg.len());
        for ((kc, c), (kg, g)) in gc.iter().zip(&gg) {
            assert_eq!(kc, kg);
            close_on_scale(c, g, &format!("{name} {kc}"));
        }
        eprintln!(
            "{name}: loss cpu {lc} cuda {lg}, {} gradients agree",
            gc.len()
        );
    }
}
