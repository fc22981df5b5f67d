//! Image probes: the class from features of the image, trained on the training part
//! (all its labels or a stratified share, `--labels`) and tested on the part the trainer
//! held out, next to a random-init twin and the raw pixels: grid-pooled context vectors
//! of a CPC patch network, or h of a whole-image encoder (SimCLR, MoCo), where a
//! weighted kNN classifier (k = 200, τ = 0.1) is scored as well.

use anyhow::{bail, Result};
use rand::SeedableRng;
use rlcpc_envs::SeededRng;

use super::report::{FeatureSource, ProbeRow, Report};
use super::Request;
use crate::data::images::{load_split, FolderSplit, ImageSet, Part};
use crate::encoder_file::EncoderFile;
use crate::nn::lean::patches::LeanPatchEncoder;
use crate::pretrain::image::ImageNet;
use candle_nn::VarMap;

/// `rlcpc probe` with an image encoder: the split the trainer used, checked against the
/// test files it held out where it stored them.
pub fn run(file: &EncoderFile, req: &Request) -> Result<Report> {
    let patches = matches!(file.spec, crate::nn::encoders::EncoderSpec::Patches { .. })
        || file
            .file
            .metadata
            .contains_key(crate::checkpoint::keys::PATCH_GRID);
    if !patches {
        return run_whole(file, req);
    }
    if req.fine_tune > 0 {
        bail!(
            "--fine-tune is for whole-image encoders (SimCLR, MoCo); '{}' is a CPC patch encoder",
            file.file.path.display()
        );
    }
    let (encoder, data) = (&file.file.path, &req.data);
    let (net, vm) = ImageNet::from_file(file)?;
    let meta = file.data_meta();
    let get = |k: &str| meta.as_ref().and_then(|m| m.get(k).cloned());
    let split = FolderSplit {
        test_fraction: get("test_fraction")
            .and_then(|v| v.as_f64())
            .unwrap_or(FolderSplit::default().test_fraction),
        split_seed: get("split_seed")
            .and_then(|v| v.as_u64())
            .unwrap_or(FolderSplit::default().split_seed),
    };
    let train = load_split(data, Part::Train, &split)?;
    let test = load_split(data, Part::Test, &split)?;
    train.report_skipped(req.strict)?;
    test.report_skipped(req.strict)?;
    let stored: Option<Vec<String>> = get("held_out").and_then(|v| serde_json::from_value(v).ok());
    if let (Some(want), Some(have)) = (&stored, &test.held_out) {
        if want != have {
            let missing = want.iter().find(|f| !have.contains(f));
            let extra = have.iter().find(|f| !want.contains(f));
            bail!(
                "'{}' no longer matches the folders the encoder was trained beside: its test part has {} images, the encoder held out {} ({}); the probe would test on images the encoder may have trained on",
                data.display(),
                have.len(),
                want.len(),
                match (missing, extra) {
                    (Some(m), _) => format!("'{m}' is no longer in the test part"),
                    (None, Some(e)) => format!("'{e}' is new in the test part"),
                    _ => "the order differs".to_string(),
                }
            );
        }
    }
    check_input(net.encoder_input(), &train, encoder, data)?;
    let t0 = std::time::Instant::now();
    let options = ImageProbeOptions {
        max: req.max_images,
        baselines: req.baselines,
        iters: req.iters,
        seed: req.label_seed,
        pool_z: req.features == Some(FeatureSource::Encoder),
        grid: req.pool_grid,
        labels: req.labels,
        lean: req.learner != crate::config::LearnerPath::Candle,
    };
    let (n_tr, n_te, rows) = probe_images(
        (&net, &vm),
        &encoder.display().to_string(),
        &train,
        &test,
        &options,
    )?;
    let json = serde_json::json!({
        "probe": "image", "target": "class", "data": data, "encoder": encoder,
        "classes": train.classes.len(), "train": n_tr, "test": n_te,
        "rows": rows.iter().map(ProbeRow::json).collect::<Vec<_>>(),
    });
    let head = vec![format!(
        "probe 'class' on {}: {} classes, {n_tr} train / {n_te} test images (at most --max-images of each part), {:.1} s",
        data.display(),
        train.classes.len(),
        t0.elapsed().as_secs_f64()
    )];
    Ok(Report::classify(head, &rows, json))
}

pub use crate::nn::patches::pool_grid;

/// Image-level features: c (or z with `pool_z`) pooled over `g`×`g` cells of the
/// patch grid ([`pool_grid`]), in batches of 256; z through `lean` where it is given.
pub fn image_features(
    net: &ImageNet,
    mut lean: Option<&mut LeanPatchEncoder>,
    set: &ImageSet,
    idx: &[usize],
    pool_z: bool,
    g: usize,
) -> Result<super::Features> {
    let mut rows = Vec::with_capacity(idx.len());
    for chunk in idx.chunks(256) {
        let mut images = Vec::with_capacity(chunk.len() * set.image_len());
        for &i in chunk {
            images.extend_from_slice(set.image(i));
        }
        let (z, c) = net.forward_with(lean.as_deref_mut(), &images, chunk.len())?;
        rows.extend(pool_grid(if pool_z { &z } else { &c }, g)?);
    }
    super::Features::from_rows(rows)
}

/// Refuses images of another size than the encoder reads, naming both.
fn check_input(
    want: [usize; 3],
    set: &ImageSet,
    encoder: &std::path::Path,
    data: &std::path::Path,
) -> Result<()> {
    if [set.height, set.width, set.channels] != want {
        bail!(
            "{}: the encoder reads {}x{}x{} images, '{}' holds {}x{}x{}",
            encoder.display(),
            want[0],
            want[1],
            want[2],
            data.display(),
            set.height,
            set.width,
            set.channels
        );
    }
    Ok(())
}

/// Settings of [`probe_images`].
pub struct ImageProbeOptions {
    /// At most this many training and test images each, drawn at random (seeded).
    pub max: usize,
    pub baselines: bool,
    pub iters: usize,
    pub seed: u64,
    /// Pool z (the patch vectors) instead of c (the context).
    pub pool_z: bool,
    /// Pool to `grid`×`grid` cells of the patch grid (1: the mean over all patches).
    pub grid: usize,
    /// Train on this share of the training labels (stratified; `None`: all).
    pub labels: Option<f64>,
    /// The patch encoder on the lean path (where the network has one).
    pub lean: bool,
}

/// The items of each class, `share` of them (at least one per class), drawn at random:
/// a stratified subset of labelled training items, in random order.
pub fn stratified(labels: &[u32], share: f64, seed: u64) -> Vec<usize> {
    use rand::seq::SliceRandom;
    let mut rng = SeededRng::seed_from_u64(seed ^ 0x1AB_E15);
    let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut by: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &y) in labels.iter().enumerate() {
        by[y as usize].push(i);
    }
    let mut out = Vec::new();
    for mut v in by.into_iter().filter(|v| !v.is_empty()) {
        v.shuffle(&mut rng);
        let keep = ((share * v.len() as f64).round() as usize).clamp(1, v.len());
        out.extend_from_slice(&v[..keep]);
    }
    out.shuffle(&mut rng);
    out
}

/// Training and test indices for a probe: the labelled share of the training part
/// (stratified), then at most `max` of each part, drawn at random.
pub fn probe_indices(
    train: &ImageSet,
    test: &ImageSet,
    max: usize,
    labels: Option<f64>,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    use rand::seq::SliceRandom;
    let mut rng = SeededRng::seed_from_u64(seed ^ 0x1A6E);
    let mut tr: Vec<usize> = match labels {
        Some(share) => {
            let kept = stratified(&train.labels, share, seed);
            // Cut to --max-images, the stratified draw would become a random one and
            // every share above max / n the same experiment.
            if kept.len() > max {
                bail!(
                    "--labels {}% keeps {} of the {} training images, more than --max-images {max}: raise --max-images or lower --labels",
                    100.0 * share,
                    kept.len(),
                    train.len()
                );
            }
            kept
        }
        None => (0..train.len()).collect(),
    };
    tr.shuffle(&mut rng);
    tr.truncate(max);
    let mut te: Vec<usize> = (0..test.len()).collect();
    te.shuffle(&mut rng);
    te.truncate(max);
    Ok((tr, te))
}

/// How the probe's training labels were drawn, for its header line: the share of the
/// training part actually used (at least one image per class can be more than asked).
fn labels_note(asked: Option<f64>, used: usize, of: usize) -> String {
    let Some(asked) = asked else {
        return "all labels".into();
    };
    let share = used as f64 / of.max(1) as f64;
    let mut s = format!("{:.3}% of the labels, stratified", 100.0 * share);
    if (share - asked).abs() > 0.005 * asked.max(1e-12) + 0.5 / of.max(1) as f64 {
        s += &format!("; --labels asked for {:.3}%", 100.0 * asked);
    }
    s
}

/// Linear probe of the class from pooled features of `net`, a random-init twin and the
/// raw pixels, trained on images of `train` and tested on images of `test`.
pub fn probe_images(
    (net, varmap): (&ImageNet, &VarMap),
    name: &str,
    train: &ImageSet,
    test: &ImageSet,
    o: &ImageProbeOptions,
) -> Result<(usize, usize, Vec<ProbeRow>)> {
    let seed = o.seed;
    let (tr, te) = probe_indices(train, test, o.max, o.labels, seed)?;
    let y_tr: Vec<usize> = tr.iter().map(|&i| train.labels[i] as usize).collect();
    let y_te: Vec<usize> = te.iter().map(|&i| test.labels[i] as usize).collect();
    let k = train.classes.len().max(test.classes.len());
    let what = format!(
        "{}, {g}x{g} pooled",
        if o.pool_z { "z" } else { "c" },
        g = o.grid
    );
    // The training and test parts' features.
    let feats = |n: &ImageNet, vm: &VarMap| -> Result<(super::Features, super::Features)> {
        let mut lean = if o.lean { n.lean(vm)? } else { None };
        Ok((
            image_features(n, lean.as_mut(), train, &tr, o.pool_z, o.grid)?,
            image_features(n, lean.as_mut(), test, &te, o.pool_z, o.grid)?,
        ))
    };
    let (a, b) = feats(net, varmap)?;
    let mut sets = vec![(format!("cpc ({name}), {what}"), a, b)];
    if o.baselines {
        let (random, vm) = ImageNet::random(net.spec.clone(), net.grid, net.context_layers, 12345)?;
        let (a, b) = feats(&random, &vm)?;
        sets.push((format!("random-init, same architecture, {what}"), a, b));
        let raw = |s: &ImageSet, idx: &[usize]| {
            super::Features::from_rows(idx.iter().map(|&i| s.image(i).to_vec()).collect())
        };
        sets.push(("raw pixels".into(), raw(train, &tr)?, raw(test, &te)?));
    }
    let rows = sets
        .into_iter()
        .map(|(features, a, b)| ProbeRow {
            dim: a.d,
            score: super::classify(&a, &y_tr, &b, &y_te, k, seed, o.iters),
            features,
        })
        .collect();
    Ok((tr.len(), te.len(), rows))
}

/// Refuses (unless `--allow-overlap`) a split whose test part holds images the encoder
/// trained on: for class folders, test images outside the held-out list the encoder
/// stored; for a recording, a `--test-fraction` above the one it held out; where the
/// encoder stored no list, a `--split-seed` or `--test-fraction` other than its own.
fn check_held_out(
    meta: &serde_json::Value,
    req: &Request,
    recording: bool,
    test: &ImageSet,
    data: &std::path::Path,
) -> Result<()> {
    if req.allow_overlap {
        return Ok(());
    }
    let fix =
        "drop --split-seed/--test-fraction to use the encoder's own split, or pass --allow-overlap";
    let stored_fraction = meta.get("test_fraction").and_then(|v| v.as_f64());
    let stored_seed = meta.get("split_seed").and_then(|v| v.as_u64());
    if recording {
        if let (Some(asked), Some(held)) = (req.test_fraction, stored_fraction) {
            if asked > held {
                bail!("--test-fraction {asked} is above the {held} the encoder held out of its recording: the test part would hold frames it trained on; {fix}");
            }
        }
        return Ok(());
    }
    let Some(have) = &test.held_out else {
        // Fixed parts (IDX, CIFAR, train/ and test/ folders): no split to move.
        return Ok(());
    };
    let stored: Option<Vec<String>> = meta
        .get("held_out")
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    match stored {
        Some(want) => {
            let want: std::collections::HashSet<&String> = want.iter().collect();
            let seen: Vec<&String> = have.iter().filter(|f| !want.contains(f)).collect();
            if let Some(first) = seen.first() {
                bail!(
                    "{} of the {} test images of '{}' (e.g. '{first}') were not held out when the encoder trained (it held out {}): the probe would test on images it may have trained on; {fix}",
                    seen.len(),
                    have.len(),
                    data.display(),
                    want.len()
                );
            }
        }
        None => {
            let fraction_moved =
                matches!((req.test_fraction, stored_fraction), (Some(a), Some(o)) if a != o);
            let seed_moved = matches!((req.split_seed, stored_seed), (Some(a), Some(o)) if a != o);
            if fraction_moved || seed_moved {
                bail!(
                    "the encoder stored no held-out list, and --split-seed/--test-fraction differ from the split it trained with (seed {}, fraction {}): the test part may hold images it trained on; {fix}",
                    stored_seed.map_or("?".into(), |s| s.to_string()),
                    stored_fraction.map_or("?".into(), |f| f.to_string())
                );
            }
        }
    }
    Ok(())
}

/// `rlcpc probe` with a whole-image encoder (SimCLR, MoCo: ResNet or the agent's conv
/// net): h of each image, a linear probe and a weighted kNN, next to a random-init twin
/// and the raw pixels. `--data` is an image set or, for an encoder trained on a
/// recording, that recording (its label and held-out episodes as the trainer had them).
fn run_whole(file: &EncoderFile, req: &Request) -> Result<Report> {
    use crate::config::LearnerPath;
    use crate::data::images::{load_recording, StateLabel};
    use crate::nn::views::{LeanViewEncoder, ViewEncoder};
    use candle_nn::VarMap;
    let (encoder, data) = (&file.file.path, &req.data);
    let meta = file.data_meta().unwrap_or_default();
    let test_fraction = req
        .test_fraction
        .or_else(|| meta.get("test_fraction").and_then(|v| v.as_f64()))
        .unwrap_or(FolderSplit::default().test_fraction);
    let split = FolderSplit {
        test_fraction,
        split_seed: req
            .split_seed
            .or_else(|| meta.get("split_seed").and_then(|v| v.as_u64()))
            .unwrap_or(FolderSplit::default().split_seed),
    };
    let recording = data.join(crate::data::trajectories::FILE).is_file();
    let (train, test) = if recording {
        let label: StateLabel = match &req.target {
            Some(t) => serde_json::from_value(serde_json::json!(t)).map_err(|_| {
                anyhow::anyhow!("--target '{t}': frames are labelled by heading or position")
            })?,
            None => meta
                .get("label")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or(StateLabel::Heading),
        };
        load_recording(data, label, test_fraction)?
    } else {
        let (train, test) = (
            load_split(data, Part::Train, &split)?,
            load_split(data, Part::Test, &split)?,
        );
        train.report_skipped(req.strict)?;
        test.report_skipped(req.strict)?;
        (train, test)
    };
    check_held_out(&meta, req, recording, &test, data)?;
    check_input(
        file.spec.image_input().unwrap_or_default(),
        &train,
        encoder,
        data,
    )?;
    let t0 = std::time::Instant::now();
    let seed = req.label_seed;
    let (tr, te) = probe_indices(&train, &test, req.max_images, req.labels, seed)?;
    let y_tr: Vec<usize> = tr.iter().map(|&i| train.labels[i] as usize).collect();
    let y_te: Vec<usize> = te.iter().map(|&i| test.labels[i] as usize).collect();
    let k = train.classes.len().max(test.classes.len());
    let objective = file
        .file
        .meta::<serde_json::Value>(crate::checkpoint::keys::IMAGE)
        .ok()
        .and_then(|v| {
            v.get("objective")
                .and_then(|o| o.as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| "encoder".into());
    let lean = req.learner != LearnerPath::Candle;
    let hwc = (train.height, train.width, train.channels);
    // h of the training and test images, through the lean f or candle's.
    let rows_of = |(net, vm): (ViewEncoder, VarMap)| -> Result<(Vec<f32>, Vec<f32>)> {
        if lean {
            let mut f = LeanViewEncoder::new(&file.spec, hwc, &vm, "encoder")?;
            Ok((f.features(&train, &tr)?, f.features(&test, &te)?))
        } else {
            Ok((net.features(&train, &tr)?, net.features(&test, &te)?))
        }
    };
    let (a, b) = rows_of(ViewEncoder::from_file(file)?)?;
    let mut sets = vec![(format!("{objective} ({}), h", encoder.display()), a, b)];
    if req.baselines {
        let (a, b) = rows_of(ViewEncoder::random(&file.spec, 12345)?)?;
        sets.push(("random-init, same architecture, h".into(), a, b));
        let raw = |s: &ImageSet, idx: &[usize]| -> Vec<f32> {
            idx.iter().flat_map(|&i| s.image(i).to_vec()).collect()
        };
        sets.push(("raw pixels".into(), raw(&train, &tr), raw(&test, &te)));
    }
    let knn = crate::contrastive::knn::Knn::default();
    let mut rows = Vec::new();
    let mut foot = vec![format!(
        "weighted kNN (k = {}, τ = {}) on the same features, test top-1:",
        knn.k, knn.temperature
    )];
    let mut knn_json = Vec::new();
    for (name, a, b) in sets {
        let d = a.len() / tr.len();
        let acc = knn.accuracy(&a, &y_tr, &b, &y_te, d, k)?;
        foot.push(format!("  {name}: {:.1}%", 100.0 * acc));
        knn_json.push(serde_json::json!({"features": name, "knn_test_acc": acc}));
        let (fa, fb) = (
            super::Features {
                n: tr.len(),
                d,
                x: a,
            },
            super::Features {
                n: te.len(),
                d,
                x: b,
            },
        );
        rows.push(ProbeRow {
            dim: d,
            score: super::classify(&fa, &y_tr, &fb, &y_te, k, seed, req.iters),
            features: name,
        });
    }
    let mut tuned = serde_json::Value::Null;
    if req.fine_tune > 0 {
        use super::finetune::{fine_tune, FineTune};
        let o = FineTune {
            steps: req.fine_tune,
            batch: 128,
            lr: 1e-3,
            seed,
        };
        let spec = &file.spec;
        let (_, vm) = ViewEncoder::from_file(file)?;
        let a = fine_tune(spec, &vm, lean, k, &train, &tr, &test, &te, &o)?;
        let (_, vm) = ViewEncoder::random(spec, 12345)?;
        let b = fine_tune(spec, &vm, lean, k, &train, &tr, &test, &te, &o)?;
        foot.push(format!(
            "fine-tuned with a linear classifier ({} Adam steps of {}, lr {}), train / test accuracy:",
            o.steps, o.batch, o.lr
        ));
        foot.push(format!(
            "  from the {objective} encoder: {:.1}% / {:.1}%",
            100.0 * a.0,
            100.0 * a.1
        ));
        foot.push(format!(
            "  from scratch (random init): {:.1}% / {:.1}%",
            100.0 * b.0,
            100.0 * b.1
        ));
        tuned = serde_json::json!({"steps": o.steps, "batch": o.batch, "lr": o.lr,
            "pretrained": {"train_acc": a.0, "test_acc": a.1}, "scratch": {"train_acc": b.0, "test_acc": b.1}});
    }
    let labels = labels_note(req.labels, tr.len(), train.len());
    let json = serde_json::json!({
        "probe": "image", "target": "class", "data": data, "encoder": encoder,
        "classes": k, "train": tr.len(), "test": te.len(), "labels": tr.len() as f64 / train.len().max(1) as f64,
        "rows": rows.iter().map(ProbeRow::json).collect::<Vec<_>>(), "knn": knn_json, "fine_tune": tuned,
    });
    let head = vec![format!(
        "probe 'class' on {}: {k} classes, {} train ({labels}) / {} test images, {:.1} s",
        data.display(),
        tr.len(),
        te.len(),
        t0.elapsed().as_secs_f64()
    )];
    let mut report = Report::classify(head, &rows, json);
    report.foot.extend(foot);
    Ok(report)
}
