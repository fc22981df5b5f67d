//! Audio probes: a label of each utterance (speaker, digit, a manifest column) from
//! time-pooled features, or the phone of each 10 ms frame, next to a random-init twin
//! and MFCCs, on the encoder's own held-out files where it stored them.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rlcpc_envs::SeededRng;

use super::report::{FeatureSource, ProbeRow, Report};
use super::Request;
use crate::data::audio::AudioSet;
use crate::data::mfcc::Pooling;
use crate::data::{split, SplitBy};
use crate::encoder_file::EncoderFile;
use crate::nn::encoders::EncoderSpec;
use crate::par::par_map;
use crate::pretrain::audio::AudioNet;

/// `rlcpc probe` with an audio encoder: the split the trainer used (its held-out files)
/// unless the request draws its own.
pub fn run(file: &EncoderFile, req: &Request) -> Result<Report> {
    let meta = file.data_meta();
    let from_meta = |k: &str| meta.as_ref().and_then(|m| m.get(k).cloned());
    let stored: Option<Vec<String>> =
        from_meta("held_out").and_then(|v| serde_json::from_value(v).ok());
    let own_split = req.split.is_some() || req.test_fraction.is_some() || req.split_seed.is_some();
    let mut notes = Vec::new();
    if own_split && stored.is_some() {
        notes.push("note: --split/--test-fraction/--split-seed draw a new split; its test part may hold files the encoder was trained on (without them the probe tests on the encoder's own held-out files)".to_string());
    }
    let held_out = if own_split { None } else { stored };
    let split = req.split.unwrap_or_else(|| {
        from_meta("split")
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or(SplitBy::Utterance)
    });
    let test_fraction = req
        .test_fraction
        .or_else(|| from_meta("test_fraction").and_then(|v| v.as_f64()))
        .unwrap_or(0.2);
    let split_seed = req
        .split_seed
        .or_else(|| from_meta("split_seed").and_then(|v| v.as_u64()))
        .unwrap_or(0);
    let target = req.target.clone().unwrap_or_else(|| "speaker".into());
    let (net, _vm) = AudioNet::from_file(file, &Device::Cpu)?;
    let EncoderSpec::Audio { sample_rate, .. } = net.spec else {
        bail!("not an audio network")
    };
    let set = AudioSet::load(
        &req.data,
        &crate::data::audio::LoadOptions {
            layout: req.layout,
            strict: req.strict,
            sample_rate,
            max_files: 0,
        },
    )?;
    set.report_skipped(10);
    let t0 = std::time::Instant::now();
    let mut split_text = if held_out.is_some() {
        "split: the encoder's held-out files".to_string()
    } else {
        format!(
            "split by {} (test {:.0}%, seed {split_seed})",
            format!("{split:?}").to_lowercase(),
            100.0 * test_fraction
        )
    };
    if req.validation {
        split_text += &format!(
            "; --validation: tested on {:.0}% of the training files by utterance, the test files unread",
            100.0 * VALIDATION_FRACTION
        );
    }
    let encoder = &file.file.path;
    let p = probe_audio(
        &net,
        &encoder.display().to_string(),
        &set,
        &AudioProbeOptions {
            target,
            split,
            test_fraction,
            split_seed,
            pool: req.features.unwrap_or(FeatureSource::Context),
            baselines: req.baselines,
            iters: req.iters,
            max_frames: req.max_frames,
            held_out,
            validation: req.validation,
        },
    )?;
    let json = serde_json::json!({
        "probe": "audio", "target": p.target, "data": req.data, "encoder": encoder,
        "layout": set.layout.name(), "classes": p.classes.len(),
        "train": p.n_train, "test": p.n_test, "split": split_text,
        "rows": p.rows.iter().map(ProbeRow::json).collect::<Vec<_>>(),
    });
    let head =
        vec![format!(
        "probe '{}' on {} ({} layout): {} classes, {} train / {} test {}, {split_text}, {:.1} s",
        p.target,
        req.data.display(),
        set.layout.name(),
        p.classes.len(),
        p.n_train,
        p.n_test,
        if p.target == "phone" { "frames (10 ms)" } else { "utterances" },
        t0.elapsed().as_secs_f64()
    )];
    let mut report = Report::classify(head, &p.rows, json);
    if p.target != "phone" {
        let mut counts = std::collections::HashMap::new();
        for l in set.label(&p.target)? {
            *counts.entry(l).or_insert(0usize) += 1;
        }
        let majority = *counts.values().max().unwrap_or(&0) as f64 / set.utterances.len() as f64;
        report.foot.push(format!(
            "majority class {:.1}% of all utterances",
            100.0 * majority
        ));
    }
    report.notes = notes;
    Ok(report)
}

/// Utterance-level features, one set per pooling: c_t (or z_t) of one utterance at a
/// time pooled over its frames (utterances differ in length; no padding enters).
pub fn utterance_features(
    net: &AudioNet,
    waves: &[&[f32]],
    source: FeatureSource,
    poolings: &[Pooling],
    device: &Device,
) -> Result<Vec<super::Features>> {
    let rows = par_map(waves, |w| {
        let f = frame_features(net, w, source, device)?;
        Ok(poolings.iter().map(|p| p.apply(&f)).collect::<Vec<_>>())
    })?;
    pooled_sets(rows, poolings.len())
}

/// `rows[utterance][pooling]` regrouped as one feature set per pooling.
fn pooled_sets(rows: Vec<Vec<Vec<f32>>>, n: usize) -> Result<Vec<super::Features>> {
    let mut sets = vec![Vec::with_capacity(rows.len()); n];
    for r in rows {
        for (set, v) in sets.iter_mut().zip(r) {
            set.push(v);
        }
    }
    sets.into_iter().map(super::Features::from_rows).collect()
}

/// Every frame's features `[T][D]` of one waveform (c_t or z_t); a clip shorter than the
/// total stride is zero-padded to one frame.
pub fn frame_features(
    net: &AudioNet,
    wave: &[f32],
    pool: FeatureSource,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let EncoderSpec::Audio { strides, .. } = &net.spec else {
        bail!("not an audio network")
    };
    let min: usize = strides.iter().product();
    let mut w = wave.to_vec();
    if w.len() < min {
        w.resize(min, 0.0);
    }
    let x = Tensor::from_vec(w.clone(), (1, w.len()), device)?;
    let (z, c) = net.forward(&x)?;
    let f = match pool {
        FeatureSource::Context => c,
        FeatureSource::Encoder => z,
    };
    Ok(f.squeeze(0)?.to_vec2::<f32>()?)
}

/// A sequence-level probe of `target` on `set`: the trained encoder, a randomly
/// initialised one of the same architecture, and MFCCs, on the same split.
pub struct AudioProbe {
    pub target: String,
    pub classes: Vec<String>,
    pub n_train: usize,
    pub n_test: usize,
    pub rows: Vec<ProbeRow>,
}

pub struct AudioProbeOptions {
    pub target: String,
    pub split: SplitBy,
    pub test_fraction: f64,
    pub split_seed: u64,
    pub pool: FeatureSource,
    pub baselines: bool,
    pub iters: usize,
    /// The files the encoder's trainer held out (relative paths): the test set is these,
    /// the training set every other file (CPC never trained on the first; a file it
    /// never saw is safe on either side). `None`: the seeded split above.
    pub held_out: Option<Vec<String>>,
    /// Frame-level targets (`phone`): at most this many training and test frames each,
    /// drawn at random (seeded) from the split's utterances.
    pub max_frames: usize,
    /// Test on a validation part of the training items (20% of them by utterance) and fit
    /// on the rest; the test items are not read. For choosing settings.
    pub validation: bool,
}

/// The share of the training items a validation probe tests on.
pub const VALIDATION_FRACTION: f64 = 0.2;

/// Positions in `subset` (indices of `set`'s utterances) of the probe's training and
/// test items: by the encoder's held-out names where it has them (every name must be in
/// the corpus, else the probe would test on something else), else the seeded split.
fn probe_split(
    set: &AudioSet,
    subset: &[usize],
    o: &AudioProbeOptions,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let (tr, te) = test_split(set, subset, o)?;
    if !o.validation {
        return Ok((tr, te));
    }
    // The training items again, by utterance: the test items stay unread.
    let speakers: Vec<&str> = tr.iter().map(|&k| set.speakers()[subset[k]]).collect();
    let (a, b) = split(
        &speakers,
        SplitBy::Utterance,
        VALIDATION_FRACTION,
        o.split_seed ^ 0x0FA1_1DA7,
    )
    .map_err(anyhow::Error::msg)?;
    Ok((
        a.iter().map(|&i| tr[i]).collect(),
        b.iter().map(|&i| tr[i]).collect(),
    ))
}

/// The probe's training and test items (see [`probe_split`]).
fn test_split(
    set: &AudioSet,
    subset: &[usize],
    o: &AudioProbeOptions,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let Some(names) = &o.held_out else {
        let speakers: Vec<&str> = subset.iter().map(|&i| set.speakers()[i]).collect();
        return split(&speakers, o.split, o.test_fraction, o.split_seed)
            .map_err(anyhow::Error::msg);
    };
    let held: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    let present: std::collections::HashSet<String> = set
        .utterances
        .iter()
        .map(|u| u.path.to_string_lossy().into_owned())
        .collect();
    let missing: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !present.contains(*n))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the corpus under '{}' no longer matches the encoder's: {} of its {} held-out files are missing (e.g. '{}'), so the probe cannot test on the files CPC never trained on; probe the corpus the encoder was trained on, or pass --split/--test-fraction/--split-seed to draw a new split (its test part may then hold CPC training data)",
            set.root.display(),
            missing.len(),
            names.len(),
            missing[0]
        );
    }
    let (mut tr, mut te) = (Vec::new(), Vec::new());
    for (k, &i) in subset.iter().enumerate() {
        if held.contains(set.utterances[i].path.to_string_lossy().as_ref()) {
            te.push(k);
        } else {
            tr.push(k);
        }
    }
    if tr.is_empty() || te.is_empty() {
        bail!(
            "the encoder's held-out files leave {} training and {} test items here",
            tr.len(),
            te.len()
        );
    }
    Ok((tr, te))
}

pub fn probe_audio(
    net: &AudioNet,
    encoder_name: &str,
    set: &AudioSet,
    o: &AudioProbeOptions,
) -> Result<AudioProbe> {
    if o.target == "phone" {
        return probe_frames(net, encoder_name, set, o);
    }
    let labels = set.label(&o.target)?;
    let (classes, y) = crate::data::encode_labels(&labels);
    if classes.len() < 2 {
        bail!(
            "target '{}' has a single class ('{}') in this data",
            o.target,
            classes[0]
        );
    }
    let all: Vec<usize> = (0..set.utterances.len()).collect();
    let (tr, te) = probe_split(set, &all, o)?;
    let y_tr: Vec<usize> = tr.iter().map(|&i| y[i]).collect();
    let y_te: Vec<usize> = te.iter().map(|&i| y[i]).collect();
    let waves: Vec<&[f32]> = set.utterances.iter().map(|u| u.wave.as_slice()).collect();
    let dev = Device::Cpu;
    // Every feature set pooled both ways (mean; mean and std over frames), so that no
    // row wins by a richer summary than another's.
    let poolings = Pooling::ALL;
    let what = match o.pool {
        FeatureSource::Context => "c_t",
        FeatureSource::Encoder => "z_t",
    };
    let mut sets: Vec<(String, super::Features)> = Vec::new();
    let mut add = |name: &str, feats: Vec<super::Features>| {
        for (p, f) in poolings.iter().zip(feats) {
            sets.push((format!("{name}, {} over frames", p.name()), f));
        }
    };
    add(
        &format!("cpc {what} ({encoder_name})"),
        utterance_features(net, &waves, o.pool, &poolings, &dev)?,
    );
    if o.baselines {
        let (random, _vm) =
            AudioNet::random(net.spec.clone(), net.context_spec.clone(), 12345, &dev)?;
        add(
            &format!("random-init encoder {what}, same architecture"),
            utterance_features(&random, &waves, o.pool, &poolings, &dev)?,
        );
        let mfcc =
            crate::data::mfcc::Mfcc::new(crate::data::mfcc::MfccConfig::for_rate(set.sample_rate));
        let rows = par_map(&waves, |w| {
            let f = mfcc.compute(w);
            Ok(poolings.iter().map(|p| p.apply(&f)).collect::<Vec<_>>())
        })?;
        add("MFCC (13)", pooled_sets(rows, poolings.len())?);
    }
    let rows = sets
        .into_iter()
        .map(|(name, f)| ProbeRow {
            dim: f.d,
            score: super::classify(
                &f.select(&tr),
                &y_tr,
                &f.select(&te),
                &y_te,
                classes.len(),
                o.split_seed,
                o.iters,
            ),
            features: name,
        })
        .collect();
    Ok(AudioProbe {
        target: o.target.clone(),
        classes,
        n_train: tr.len(),
        n_test: te.len(),
        rows,
    })
}

/// Frame-level phone probe: each 10 ms frame labelled with the phone at its centre
/// (from `.phn` alignments); utterances split as for sequence-level probes.
fn probe_frames(
    net: &AudioNet,
    encoder_name: &str,
    set: &AudioSet,
    o: &AudioProbeOptions,
) -> Result<AudioProbe> {
    use rand::seq::SliceRandom;
    let aligned: Vec<usize> = (0..set.utterances.len())
        .filter(|&i| set.utterances[i].phones.is_some())
        .collect();
    if aligned.is_empty() {
        bail!(
            "--target phone needs alignments: none of the {} files under '{}' has a .phn file beside it (\"START END PHONE\" lines in samples, as TIMIT; scripts/synth-flite.sh writes them)",
            set.utterances.len(),
            set.root.display()
        );
    }
    let EncoderSpec::Audio { strides, .. } = &net.spec else {
        bail!("not an audio network")
    };
    let step = strides.iter().product::<usize>() as f64 / set.sample_rate as f64;
    let (tr, te) = probe_split(set, &aligned, o)?;
    // (utterance, frame, phone) of every labelled frame.
    let frames_of = |idx: &[usize]| -> Vec<(usize, usize, String)> {
        let mut v = Vec::new();
        for &k in idx {
            let u = &set.utterances[aligned[k]];
            let n = crate::nn::audio::frames(u.wave.len(), strides);
            for t in 0..n {
                let centre = (t as f64 + 0.5) * step;
                if let Some((_, _, p)) = u
                    .phones
                    .as_ref()
                    .expect("aligned")
                    .iter()
                    .find(|(s, e, _)| *s <= centre && centre < *e)
                {
                    v.push((aligned[k], t, p.clone()));
                }
            }
        }
        v
    };
    let mut rng = SeededRng::seed_from_u64(o.split_seed ^ 0xF4A3);
    let (mut f_tr, mut f_te) = (frames_of(&tr), frames_of(&te));
    f_tr.shuffle(&mut rng);
    f_te.shuffle(&mut rng);
    f_tr.truncate(o.max_frames);
    f_te.truncate(o.max_frames);
    let names: Vec<&str> = f_tr.iter().chain(&f_te).map(|f| f.2.as_str()).collect();
    let (classes, y) = crate::data::encode_labels(&names);
    let (y_tr, y_te) = y.split_at(f_tr.len());
    let used: Vec<usize> = {
        let mut u: Vec<usize> = f_tr.iter().chain(&f_te).map(|f| f.0).collect();
        u.sort_unstable();
        u.dedup();
        u
    };
    let dev = Device::Cpu;
    let pick =
        |per_utt: &[Vec<Vec<f32>>], frames: &[(usize, usize, String)]| -> Result<super::Features> {
            super::Features::from_rows(
                frames
                    .iter()
                    .map(|(u, t, _)| {
                        let rows = &per_utt[used.binary_search(u).expect("used")];
                        rows[(*t).min(rows.len() - 1)].clone()
                    })
                    .collect(),
            )
        };
    let waves: Vec<&[f32]> = used
        .iter()
        .map(|&i| set.utterances[i].wave.as_slice())
        .collect();
    let mut sets: Vec<(String, Vec<Vec<Vec<f32>>>)> = vec![(
        format!("cpc ({encoder_name}), per frame"),
        par_map(&waves, |w| frame_features(net, w, o.pool, &dev))?,
    )];
    if o.baselines {
        let (random, _vm) =
            AudioNet::random(net.spec.clone(), net.context_spec.clone(), 12345, &dev)?;
        sets.push((
            "random-init encoder, same architecture".into(),
            par_map(&waves, |w| frame_features(&random, w, o.pool, &dev))?,
        ));
        let mfcc =
            crate::data::mfcc::Mfcc::new(crate::data::mfcc::MfccConfig::for_rate(set.sample_rate));
        // MFCC frame f is centred on 10 ms·f + 12.5 ms; CPC frame t on 10 ms·t + 5 ms:
        // frame t − 1 is the nearest (clamped at the start).
        sets.push((
            "MFCC (13, the frame's)".into(),
            par_map(&waves, |w| {
                let m = mfcc.compute(w);
                Ok((0..m.len() + 1)
                    .map(|t| m[t.saturating_sub(1).min(m.len() - 1)].clone())
                    .collect())
            })?,
        ));
    }
    let rows = sets
        .into_iter()
        .map(|(name, per_utt)| {
            let (a, b) = (pick(&per_utt, &f_tr)?, pick(&per_utt, &f_te)?);
            Ok(ProbeRow {
                dim: a.d,
                score: super::classify(&a, y_tr, &b, y_te, classes.len(), o.split_seed, o.iters),
                features: name,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(AudioProbe {
        target: "phone".into(),
        classes,
        n_train: f_tr.len(),
        n_test: f_te.len(),
        rows,
    })
}
