//! Image probes: the class from grid-pooled features of the patch grid, trained on the
//! training part and tested on the part the trainer held out, next to a random-init twin
//! and the raw pixels.

use anyhow::{bail, Result};
use candle_core::Tensor;
use rand::SeedableRng;
use rlcpc_envs::SeededRng;

use super::report::{FeatureSource, ProbeRow, Report};
use super::Request;
use crate::data::images::{load_split, FolderSplit, ImageSet, Part};
use crate::encoder_file::EncoderFile;
use crate::pretrain::image::ImageNet;

/// `rlcpc probe` with an image encoder: the split the trainer used, checked against the
/// test files it held out where it stored them.
pub fn run(file: &EncoderFile, req: &Request) -> Result<Report> {
    let (encoder, data) = (&file.file.path, &req.data);
    let (net, _vm) = ImageNet::from_file(file)?;
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
    let want = net.encoder_input();
    if [train.height, train.width, train.channels] != want {
        bail!(
            "{}: the encoder reads {}x{}x{} images, '{}' holds {}x{}x{}",
            encoder.display(),
            want[0],
            want[1],
            want[2],
            data.display(),
            train.height,
            train.width,
            train.channels
        );
    }
    let t0 = std::time::Instant::now();
    let options = ImageProbeOptions {
        max: req.max_images,
        baselines: req.baselines,
        iters: req.iters,
        seed: 0,
        pool_z: req.features == Some(FeatureSource::Encoder),
        grid: req.pool_grid,
    };
    let (n_tr, n_te, rows) = probe_images(
        &net,
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

/// Averages a grid `[n, rows, cols, D]` over `g`×`g` cells (PyTorch's adaptive average
/// pooling: cell i covers rows ⌊i·rows/g⌋..⌈(i+1)·rows/g⌉), flattened to `g·g·D` per
/// image; `g = 1` is the mean over the whole grid.
pub fn pool_grid(grid: &Tensor, g: usize) -> Result<Vec<Vec<f32>>> {
    let (n, rows, cols, d) = grid.dims4()?;
    if g == 0 || g > rows.min(cols) {
        bail!("cannot pool a {rows}x{cols} patch grid to {g}x{g} cells");
    }
    let v = grid.flatten_all()?.to_vec1::<f32>()?;
    let span = |i: usize, len: usize| (i * len / g, ((i + 1) * len).div_ceil(g));
    let mut out = Vec::with_capacity(n);
    for img in v.chunks_exact(rows * cols * d) {
        let mut row = vec![0f32; g * g * d];
        for gi in 0..g {
            let (r0, r1) = span(gi, rows);
            for gj in 0..g {
                let (c0, c1) = span(gj, cols);
                let cell = &mut row[(gi * g + gj) * d..(gi * g + gj + 1) * d];
                for r in r0..r1 {
                    for c in c0..c1 {
                        let at = (r * cols + c) * d;
                        for (o, x) in cell.iter_mut().zip(&img[at..at + d]) {
                            *o += x;
                        }
                    }
                }
                let k = ((r1 - r0) * (c1 - c0)) as f32;
                cell.iter_mut().for_each(|o| *o /= k);
            }
        }
        out.push(row);
    }
    Ok(out)
}

/// Image-level features: c (or z with `pool_z`) pooled over `g`×`g` cells of the
/// patch grid ([`pool_grid`]), in batches of 256.
pub fn image_features(
    net: &ImageNet,
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
        let (z, c) = net.forward(&images, chunk.len())?;
        rows.extend(pool_grid(if pool_z { &z } else { &c }, g)?);
    }
    super::Features::from_rows(rows)
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
}

/// Linear probe of the class from pooled features of `net`, a random-init twin and the
/// raw pixels, trained on images of `train` and tested on images of `test`.
pub fn probe_images(
    net: &ImageNet,
    name: &str,
    train: &ImageSet,
    test: &ImageSet,
    o: &ImageProbeOptions,
) -> Result<(usize, usize, Vec<ProbeRow>)> {
    use rand::seq::SliceRandom;
    let (max, seed) = (o.max, o.seed);
    let mut rng = SeededRng::seed_from_u64(seed ^ 0x1A6E);
    let mut pick = |n: usize| {
        let mut v: Vec<usize> = (0..n).collect();
        v.shuffle(&mut rng);
        v.truncate(max);
        v
    };
    let (tr, te) = (pick(train.len()), pick(test.len()));
    let y_tr: Vec<usize> = tr.iter().map(|&i| train.labels[i] as usize).collect();
    let y_te: Vec<usize> = te.iter().map(|&i| test.labels[i] as usize).collect();
    let k = train.classes.len().max(test.classes.len());
    let what = format!(
        "{}, {g}x{g} pooled",
        if o.pool_z { "z" } else { "c" },
        g = o.grid
    );
    let feats =
        |n: &ImageNet, s: &ImageSet, idx: &[usize]| image_features(n, s, idx, o.pool_z, o.grid);
    let mut sets = vec![(
        format!("cpc ({name}), {what}"),
        feats(net, train, &tr)?,
        feats(net, test, &te)?,
    )];
    if o.baselines {
        let (random, _vm) =
            ImageNet::random(net.spec.clone(), net.grid, net.context_layers, 12345)?;
        sets.push((
            format!("random-init, same architecture, {what}"),
            feats(&random, train, &tr)?,
            feats(&random, test, &te)?,
        ));
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
