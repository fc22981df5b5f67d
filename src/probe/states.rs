//! Belief probes (Guo et al. 2018): ridge regression of an environment's true state from
//! an agent's or a `pretrain frames` encoder's features over a recording, trained on its
//! first part and tested on the episodes after the cut, next to a random-init twin and
//! the raw observation.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Module, Tensor};

use super::{Features, Report, Request};
use crate::data::trajectories::Trajectories;
use crate::encoder_file::{EncoderFile, Origin};
use crate::pretrain::frames::{test_cut, FramesNet};

/// `rlcpc probe` on a recording: R² of ridge probes of the true state.
pub fn run(file: &EncoderFile, req: &Request) -> Result<Report> {
    let (encoder, data) = (&file.file.path, &req.data);
    let target = req.target.clone().unwrap_or_else(|| "state".into());
    // The part `pretrain frames` held out, where the encoder says so.
    let held_out = file
        .data_meta()
        .and_then(|m| m.get("test_fraction").and_then(|v| v.as_f64()));
    let mut notes = Vec::new();
    if let (Some(asked), Some(held)) = (req.test_fraction, held_out) {
        if asked > held {
            notes.push(format!("note: --test-fraction {asked} is larger than the {held} the encoder's trainer held out: on the recording it was trained on, the first part of this test part was training data"));
        }
    }
    let test_fraction = req.test_fraction.or(held_out).unwrap_or(0.2);
    let encoder_only = req.features == Some(super::FeatureSource::Encoder);
    let traj = Trajectories::load(data)?;
    let targets: Vec<usize> = if target == "state" {
        (0..traj.state_names.len()).collect()
    } else {
        vec![traj
            .state_names
            .iter()
            .position(|n| *n == target)
            .with_context(|| {
                format!(
                    "--target {target}: the recording's state variables are state (all), {}",
                    traj.state_names.join(", ")
                )
            })?]
    };
    let (net, source) = FramesNet::from_file(file)?;
    let what = match (source, encoder_only || net.lstm.is_none()) {
        (Origin::AgentCheckpoint, false) => "agent core c_t",
        (Origin::AgentCheckpoint, true) => "agent encoder z_t",
        (Origin::EncoderFile, false) => "encoder + context c_t",
        (Origin::EncoderFile, true) => "encoder z_t",
    };
    let want = net.encoder.spec_input_shape();
    let fits = traj.obs_shape == want
        || (matches!(
            net.encoder.spec,
            crate::nn::encoders::EncoderSpec::Mlp { .. }
        ) && traj.obs_dim() == want.iter().product::<usize>());
    if !fits {
        bail!(
            "{}: the encoder reads observations of shape {:?}, the recording has {:?} ({})",
            encoder.display(),
            net.encoder.spec_input_shape(),
            traj.obs_shape,
            net.encoder.spec.describe()
        );
    }
    let name = format!("{what} ({})", encoder.display());
    let (n_tr, n_te, rows) = probe_states(
        &net,
        &name,
        &traj,
        &targets,
        test_fraction,
        encoder_only,
        req.baselines,
    )?;
    let names: Vec<&str> = targets
        .iter()
        .map(|&j| traj.state_names[j].as_str())
        .collect();
    let json_rows: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "features": r.features, "dim": r.dim, "lambda": r.lambda,
                "r2": names.iter().zip(&r.r2).map(|(n, v)| (n.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    let json = serde_json::json!({
        "probe": "belief", "data": data, "encoder": encoder, "env": traj.env.id,
        "train_steps": n_tr, "test_steps": n_te, "test_fraction": test_fraction,
        "rows": json_rows,
    });
    let head = vec![format!(
        "belief probe on {} ({} by {}): ridge regression of the true state, {n_tr} train / {n_te} test steps (test = the last {:.0}%, cut at an episode start); R² per variable",
        data.display(), traj.env.id, traj.policy, 100.0 * test_fraction
    )];
    let mut columns = vec![("dim".to_string(), 5), ("lambda".to_string(), 7)];
    columns.extend(names.iter().map(|n| (n.to_string(), 11)));
    columns.push(("mean".into(), 8));
    let rows = rows
        .into_iter()
        .map(|r| {
            let mut cells = vec![r.dim.to_string(), format!("{:.0e}", r.lambda)];
            cells.extend(r.r2.iter().map(|v| format!("{v:.3}")));
            let finite: Vec<f64> = r.r2.iter().cloned().filter(|v| v.is_finite()).collect();
            cells.push(format!(
                "{:.3}",
                finite.iter().sum::<f64>() / finite.len().max(1) as f64
            ));
            (r.features, cells)
        })
        .collect();
    Ok(Report {
        head,
        label_width: 64,
        columns,
        rows,
        foot: Vec::new(),
        notes,
        json,
    })
}

/// One line of a belief-probe table: R² per state variable.
pub struct BeliefRow {
    pub features: String,
    pub dim: usize,
    pub lambda: f64,
    pub r2: Vec<f64>,
}

/// Features of every recorded step, the recording run through as one stream (the
/// core reset at episode starts, as the agent saw it): c_t, or z_t with `encoder_only`.
pub fn recording_features(
    net: &FramesNet,
    traj: &Trajectories,
    encoder_only: bool,
) -> Result<Features> {
    const CHUNK: usize = 256;
    let dev = Device::Cpu;
    let n = traj.len();
    let mut rows = Vec::with_capacity(n);
    let mut state = net
        .lstm
        .as_ref()
        .map(|l| Tensor::zeros((1, 2 * l.hidden), DType::F32, &dev))
        .transpose()?;
    for s in (0..n).step_by(CHUNK) {
        let len = CHUNK.min(n - s);
        let d = traj.obs_dim();
        let mut shape = vec![len, 1];
        shape.extend(&traj.obs_shape);
        let obs = Tensor::from_slice(&traj.obs[s * d..(s + len) * d], shape, &dev)?;
        let z = net
            .encoder
            .forward(&obs.flatten_to(1)?)?
            .reshape((len, 1, ()))?;
        let f = match (&net.lstm, encoder_only) {
            (Some(l), false) => {
                let (c, st) = l.unroll(
                    &z,
                    &traj.first[s..s + len],
                    state.as_ref().expect("lstm state"),
                )?;
                state = Some(st.detach());
                c
            }
            _ => z,
        };
        rows.extend(f.squeeze(1)?.to_vec2::<f32>()?);
    }
    Features::from_rows(rows)
}

/// Ridge probes of the true state from frozen features (`encoder_only`: the encoder's z_t
/// instead of the context c_t), trained on the first `1 − test_fraction` of the
/// recording (cut at an episode start, [`test_cut`]) and tested on the rest; λ is chosen
/// on the training part's last episodes.
pub fn probe_states(
    net: &FramesNet,
    name: &str,
    traj: &Trajectories,
    targets: &[usize],
    test_fraction: f64,
    encoder_only: bool,
    baselines: bool,
) -> Result<(usize, usize, Vec<BeliefRow>)> {
    let n = traj.len();
    let cut = test_cut(traj, test_fraction)?;
    let (tr, te): (Vec<usize>, Vec<usize>) = ((0..cut).collect(), (cut..n).collect());
    let y: Vec<Vec<f64>> = (0..n)
        .map(|t| {
            targets
                .iter()
                .map(|&j| traj.state_row(t)[j] as f64)
                .collect()
        })
        .collect();
    let y_tr: Vec<Vec<f64>> = tr.iter().map(|&i| y[i].clone()).collect();
    let y_te: Vec<Vec<f64>> = te.iter().map(|&i| y[i].clone()).collect();
    let mut sets = vec![(
        name.to_string(),
        recording_features(net, traj, encoder_only)?,
    )];
    if baselines {
        let (random, _vm) = FramesNet::random(&net.encoder.spec, net.context.as_ref(), 12345)?;
        sets.push((
            "random-init network, same architecture".into(),
            recording_features(&random, traj, encoder_only)?,
        ));
        if traj.obs_dim() <= 2048 {
            let rows = (0..n).map(|t| traj.obs_row(t).to_vec()).collect();
            sets.push(("raw observation".into(), Features::from_rows(rows)?));
        }
    }
    let rows = sets
        .into_iter()
        .map(|(features, f)| {
            let (lambda, r2) = super::regress(
                &f.select(&tr),
                &y_tr,
                &f.select(&te),
                &y_te,
                &traj.first[..cut],
            )?;
            Ok(BeliefRow {
                features,
                dim: f.d,
                lambda,
                r2,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((tr.len(), te.len(), rows))
}
