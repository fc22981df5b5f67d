//! `rlcpc pretrain image --objective simclr|moco`: the view-based trainers on images and
//! on recorded frames, their exact resume, the kNN monitor, the whole-image probe with
//! `--labels`, the agent's encoder both ways, and their settings' mistakes named.

use std::path::Path;

use crate::support::{bad_setting_is_named, logged, s, squares, Rlcpc};

/// A small ResNet and head on the squares, 8 images a step, the kNN monitor every 2.
fn small(objective: &str, data: &Path, out: &Path) -> Rlcpc {
    Rlcpc::new("pretrain image --quiet")
        .args(&["--objective", objective])
        .data(data)
        .out(out)
        .set("model.widths", "[4, 8]")
        .set("model.blocks", "[1, 1]")
        .set("model.head_hidden", "[16]")
        .set("model.projection", 8)
        .set("train.batch", 8)
        .set("train.log_every", 1)
        .set("train.checkpoint_every", 2)
        .set("knn.every", 2)
        .set("knn.k", 10)
        .set("knn.bank", 40)
        .set("knn.queries", 40)
        .set("moco.queue", 16)
        .set("moco.shuffle_groups", 2)
}

#[test]
fn simclr_and_moco_train_monitor_resume_exactly_and_probe() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("squares");
    squares(&data);
    // SimCLR: trains, logs knn/top1, exports f alone.
    let sim = dir.path().join("simclr");
    let t = small("simclr", &data, &sim).set("train.steps", 3).ok();
    assert!(
        t.contains("done after 3 steps") && t.contains("kNN top-1"),
        "{t}"
    );
    let metrics = std::fs::read_to_string(sim.join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.matches("knn/top1").count(),
        2,
        "steps 2 and 3: {metrics}"
    );
    assert!(metrics.contains("train/z_norm_std"), "{metrics}");
    let enc = sim.join("encoder.safetensors");
    let names = safetensors_names(&enc);
    assert!(
        names.iter().all(|n| n.starts_with("encoder."))
            && names.iter().any(|n| n.ends_with("running_var")),
        "the encoder f with its BatchNorm statistics, no head: {names:?}"
    );
    // The whole-image probe: linear and kNN, beside the random twin and raw pixels.
    let probe = |enc: &Path| {
        Rlcpc::new("probe")
            .args(&["--encoder", s(enc), "--iters", "30"])
            .data(&data)
    };
    let p = probe(&enc).ok();
    assert!(
        p.contains("4 classes, 40 train (all labels) / 40 test images"),
        "{p}"
    );
    assert!(
        p.contains("simclr (") && p.contains("random-init, same architecture, h"),
        "{p}"
    );
    assert!(p.contains("weighted kNN (k = 200, τ = 0.1)"), "{p}");
    let raw = p
        .lines()
        .find(|l| l.starts_with("raw pixels"))
        .expect("raw row");
    assert!(raw.trim_end().ends_with("100.0%"), "{p}");
    // A stratified tenth of the labels: one image per class.
    let p = probe(&enc).args(&["--labels", "10%"]).ok();
    assert!(
        p.contains("4 train (10.000% of the labels, stratified)"),
        "{p}"
    );
    // Fine-tuning beside training from scratch, on the same labels and budget.
    let p = probe(&enc)
        .args(&["--fine-tune", "3", "--no-baselines"])
        .ok();
    assert!(
        p.contains("3 Adam steps of 128") && p.contains("from scratch (random init)"),
        "{p}"
    );
    let e = Rlcpc::new("probe")
        .args(&["--encoder", s(&enc), "--labels", "0%"])
        .data(&data)
        .fails();
    assert!(e.contains("--labels") && e.contains("above 0%"), "{e}");

    // MoCo: 4 steps straight, or 2 then --resume to 4, give the same encoder to the bit
    // (the queue, the key encoder and the generators are in the checkpoint).
    let straight = dir.path().join("moco");
    let t = small("moco", &data, &straight).set("train.steps", 4).ok();
    assert!(t.contains("done after 4 steps"), "{t}");
    let split = dir.path().join("moco-split");
    small("moco", &data, &split).set("train.steps", 2).ok();
    Rlcpc::new("pretrain image --quiet --resume")
        .out(&split)
        .data(&data)
        .set("train.steps", 4)
        .ok();
    let (a, b) = (
        tensors(&straight.join("encoder.safetensors")),
        tensors(&split.join("encoder.safetensors")),
    );
    assert!(
        a.len() > 10 && a == b,
        "resumed MoCo differs from the straight run"
    );
    let p = probe(&straight.join("encoder.safetensors"))
        .args(&["--no-baselines"])
        .ok();
    assert!(p.contains("moco ("), "{p}");
}

/// `train.learner`: the lean path (the default on the CPU) and candle's autograd train
/// SimCLR and MoCo alike, with the ResNet and with the agent's conv encoder: the same
/// losses step by step and the same exported encoder, to float rounding (tests/lean.rs
/// checks the networks themselves gradient by gradient).
#[test]
fn lean_and_candle_paths_train_the_view_objectives_alike() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("squares");
    squares(&data);
    let losses = |out: &Path| logged(out, "train/loss");
    for objective in ["simclr", "moco"] {
        let run = |learner: &str| {
            let out = dir.path().join(format!("{objective}-{learner}"));
            small(objective, &data, &out)
                .set("train.steps", 4)
                .set("train.learner", format!("\"{learner}\""))
                .ok();
            out
        };
        same_training(objective, &run("lean"), &run("candle"), 4);
    }
    // The agent's conv encoder on recorded 20×20 Lab frames, likewise (its images
    // shared among the threads).
    let rec = dir.path().join("rec");
    Rlcpc::new("record --env lab/watermaze --option width=20 --option height=20 --steps 200 --max-episode-steps 50")
        .out(&rec)
        .ok();
    let run = |learner: &str| {
        let out = dir.path().join(format!("frames-{learner}"));
        Rlcpc::new("pretrain image --quiet --config simclr-lab-frames")
            .data(&rec)
            .out(&out)
            .set("model.features", 16)
            .set("model.head_hidden", "[16]")
            .set("model.projection", 8)
            .set("train.batch", 9)
            .set("train.steps", 3)
            .set("train.log_every", 1)
            .set("knn.every", 0)
            .set("data.test_fraction", 0.3)
            .set("train.learner", format!("\"{learner}\""))
            .ok();
        out
    };
    let (a, b) = (losses(&run("lean")), losses(&run("candle")));
    assert_eq!(a.len(), 3, "{a:?}");
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() < 1e-4 * y.abs().max(1.0),
            "agent encoder: {a:?} vs {b:?}"
        );
    }
}

/// Runs `lean` and `candle` logged the same `steps` losses and exported the same
/// encoder, to float rounding.
fn same_training(what: &str, lean: &Path, candle: &Path, steps: usize) {
    let (a, b) = (logged(lean, "train/loss"), logged(candle, "train/loss"));
    assert_eq!(a.len(), steps, "{what}: {a:?}");
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() < 1e-4 * y.abs().max(1.0),
            "{what}: {a:?} vs {b:?}"
        );
    }
    let (ea, eb) = (
        float_tensors(&lean.join("encoder.safetensors")),
        float_tensors(&candle.join("encoder.safetensors")),
    );
    assert_eq!(ea.keys().collect::<Vec<_>>(), eb.keys().collect::<Vec<_>>());
    for (name, va) in &ea {
        let err = va
            .iter()
            .zip(&eb[name])
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(err < 1e-3, "{what}: {name} differs by {err}");
    }
}

/// Every f32 tensor of a safetensors file, by name.
fn float_tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    tensors(path)
        .into_iter()
        .map(|(k, bytes)| {
            let v = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (k, v)
        })
        .collect()
}

#[test]
fn the_knn_monitor_watches_cpc_image_runs_too() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("squares");
    squares(&data);
    let out = dir.path().join("cpc");
    let t = Rlcpc::new("pretrain image --quiet")
        .data(&data)
        .out(&out)
        .set("model.features", 8)
        .set("train.batch", 4)
        .set("cpc.horizon", 2)
        .set("cpc.skip", 0)
        .set("train.steps", 2)
        .set("knn.every", 1)
        .set("knn.k", 5)
        .ok();
    assert!(t.contains("knn/top1"), "{t}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.matches("knn/top1").count(), 2, "{metrics}");
    // Fine-tuning needs a whole-image encoder.
    Rlcpc::new("probe --fine-tune 2")
        .args(&["--encoder", s(&out)])
        .data(&data)
        .fails_with(&["--fine-tune", "patch encoder"]);
}

/// Image CPC's patch encoder on the lean path trains as candle's does: the same losses
/// and encoder after 4 steps, with and without CPC-v2's LayerNorm.
#[test]
fn lean_and_candle_paths_train_image_cpc_alike() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("squares");
    squares(&data);
    for ln in [false, true] {
        let run = |learner: &str| {
            let out = dir.path().join(format!("cpc-{ln}-{learner}"));
            Rlcpc::new("pretrain image --quiet")
                .data(&data)
                .out(&out)
                .set("model.features", 8)
                .set("model.layer_norm", ln)
                .set("train.batch", 4)
                .set("cpc.horizon", 2)
                .set("cpc.skip", 0)
                .set("train.steps", 4)
                .set("train.log_every", 1)
                .set("knn.every", 2)
                .set("knn.k", 5)
                .set("train.learner", format!("\"{learner}\""))
                .ok();
            out
        };
        let what = format!("image cpc, layer norm {ln}");
        let (lean, candle) = (run("lean"), run("candle"));
        same_training(&what, &lean, &candle, 4);
        // The kNN monitor reads z through the lean encoder too: the same verdicts (one
        // query of the 8 held out may flip on a tie).
        let (a, b) = (logged(&lean, "knn/top1"), logged(&candle, "knn/top1"));
        assert_eq!(a.len(), 2, "{what}: {a:?}");
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 1.0 / 8.0 + 1e-9,
                "{what}: kNN {a:?} vs {b:?}"
            );
        }
        // The probe reads the same features both ways.
        let probe = |learner: &str| {
            let j = Rlcpc::new("probe --json --iters 50")
                .args(&["--encoder", s(&lean), "--learner", learner])
                .data(&data)
                .ok();
            let v: serde_json::Value = serde_json::from_str(&j).unwrap();
            v["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["test_acc"].as_f64().unwrap())
                .collect::<Vec<_>>()
        };
        let (a, b) = (probe("lean"), probe("candle"));
        assert_eq!(a.len(), 3, "{what}: cpc, random-init, raw pixels: {a:?}");
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 1.0 / 8.0 + 1e-9,
                "{what}: probe {a:?} vs {b:?}"
            );
        }
    }
}

#[test]
fn view_settings_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("squares");
    squares(&data);
    let sim = small("simclr", &data, &dir.path().join("a"));
    for (set, names) in [
        ("augment.crop_scale=[0.0, 1.0]", &["augment.crop_scale"][..]),
        ("augment.crop_scale=[0.5, 1.5]", &["augment.crop_scale"]),
        ("augment.brightness=-0.5", &["augment.brightness", "-0.5"]),
        ("augment.flip=1.5", &["augment.flip"]),
        ("contrastive.temperature=0", &["contrastive.temperature"]),
        ("augment.saturation=0.4", &["augment.saturation", "grey"]),
        ("model.widths=[4]", &["model.widths"]),
        ("train.batch=1", &["train.batch"]),
    ] {
        bad_setting_is_named(&sim, set, names);
    }
    let moco = small("moco", &data, &dir.path().join("b"));
    for (set, names) in [
        ("moco.momentum=1.0", &["moco.momentum"][..]),
        ("moco.momentum=-0.1", &["moco.momentum"]),
        ("moco.queue=12", &["moco.queue", "multiple of train.batch"]),
        ("moco.queue=4", &["moco.queue"]),
        ("moco.shuffle_groups=3", &["moco.shuffle_groups"]),
    ] {
        bad_setting_is_named(&moco, set, names);
    }
    // SimCLR and MoCo are for images; the other trainers say so.
    Rlcpc::new("pretrain text --quiet --objective simclr")
        .data(&data)
        .out(&dir.path().join("c"))
        .fails_with(&["objective", "is for images"]);
    // 16×16 is too small for the agent's encoder.
    bad_setting_is_named(&sim, "model.encoder=\"agent\"", &["model.encoder", "20x20"]);
}

#[test]
fn simclr_on_recorded_lab_frames_initialises_a_lab_rgb_agent() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    Rlcpc::new("record --env lab/watermaze --option width=20 --option height=20 --steps 300 --max-episode-steps 60")
        .out(&rec)
        .ok();
    let run = dir.path().join("simclr");
    let t = Rlcpc::new("pretrain image --quiet --config simclr-lab-frames")
        .data(&rec)
        .out(&run)
        .set("model.features", 16)
        .set("model.head_hidden", "[16]")
        .set("model.projection", 8)
        .set("train.batch", 8)
        .set("train.steps", 2)
        .set("knn.every", 2)
        .set("knn.bank", 50)
        .set("knn.queries", 20)
        .set("data.test_fraction", 0.3)
        .ok();
    assert!(
        t.contains("x20x3") && t.contains("the last episodes"),
        "{t}"
    );
    let enc = run.join("encoder.safetensors");
    // The probe reads the recording's frames with the trainer's label and cut.
    let p = Rlcpc::new("probe --iters 20 --no-baselines")
        .args(&["--encoder", s(&enc)])
        .data(&rec)
        .ok();
    assert!(p.contains("8 classes") && p.contains("simclr ("), "{p}");
    // `pretrain frames` with a view objective is the same trainer.
    let t = Rlcpc::new("pretrain frames --quiet --config simclr-lab-frames")
        .data(&rec)
        .out(&dir.path().join("frames"))
        .set("model.features", 16)
        .set("model.head_hidden", "[16]")
        .set("train.batch", 8)
        .set("train.steps", 1)
        .set("knn.every", 0)
        .set("data.test_fraction", 0.3)
        .ok();
    assert!(t.contains("done after 1 steps"), "{t}");
    // A recording of grid observations is not a set of images.
    let grid = dir.path().join("grid");
    Rlcpc::new("record --env lab/watermaze --option obs=grid --option view=5 --steps 100 --max-episode-steps 30")
        .out(&grid)
        .ok();
    Rlcpc::new("pretrain image --quiet --objective simclr")
        .data(&grid)
        .out(&dir.path().join("g"))
        .fails_with(&["[5, 5, 24]", "RGB"]);
    // Its encoder is the agent's: it starts a Lab RGB agent on 20×20 views, 16 wide.
    let init = format!("model.init_encoder=\"{}\"", enc.display());
    let t = Rlcpc::new("train --quiet --config lab-watermaze")
        .out(&dir.path().join("agent"))
        .set("env.options.obs", "\"rgb\"")
        .set("env.options.width", 20)
        .set("env.options.height", 20)
        .set("model.encoder", "\"conv\"")
        .set("model.conv_fc", 16)
        .set("env.num_envs", 2)
        .set("run.workers", 1)
        .set("algo.unroll", 8)
        .set("aux.horizon", 4)
        .set("run.total_steps", 32)
        .args(&["--set", &init])
        .ok();
    assert!(t.contains("done"), "{t}");
}

/// The tensors of a safetensors file: name → raw bytes (the metadata left out).
fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let o = &v["data_offsets"];
            let (a, b) = (
                o[0].as_u64().unwrap() as usize,
                o[1].as_u64().unwrap() as usize,
            );
            (k.clone(), data[a..b].to_vec())
        })
        .collect()
}

fn safetensors_names(path: &Path) -> Vec<String> {
    tensors(path).into_keys().collect()
}

/// Review 3, S2-1: the whole-image probe tests on the encoder's own held-out images. A
/// `--split-seed` that moves class-folder images the encoder trained on into the test
/// part is refused (the review's repro: trained with split seed 0, probed with 1), unless
/// `--allow-overlap`; label subsets have their own seed and leave the test part alone.
#[test]
fn the_image_probe_never_tests_on_what_the_encoder_trained_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("folders");
    for class in 0..4u8 {
        let d = data.join(format!("class{class}"));
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..30u8 {
            image::GrayImage::from_fn(16, 16, |x, y| {
                let on = (x / 8 + 2 * (y / 8)) as u8 == class;
                image::Luma([if on { 255 } else { i * 3 }])
            })
            .save(d.join(format!("{i}.png")))
            .unwrap();
        }
    }
    let out = dir.path().join("simclr");
    small("simclr", &data, &out)
        .set("train.steps", 2)
        .set("knn.every", 0)
        .set("data.split_seed", 0)
        .ok();
    let enc = out.join("encoder.safetensors");
    let probe = |extra: &[&str]| {
        Rlcpc::new("probe")
            .args(&["--encoder", s(&enc), "--iters", "20", "--no-baselines"])
            .args(extra)
            .data(&data)
    };
    // "…, 96 train (all labels) / 24 test images, 0.1 s": the test part's size.
    let tests_line = |p: &str| {
        p.lines().find_map(|l| {
            l.split_once(" test images")
                .map(|(a, _)| a.rsplit(' ').next().unwrap_or_default().to_string())
        })
    };
    let own = probe(&[]).ok();
    assert_eq!(tests_line(&own).as_deref(), Some("24"), "{own}");
    let e = probe(&["--split-seed", "1"]).fails();
    assert!(
        e.contains("were not held out when the encoder trained") && e.contains("--allow-overlap"),
        "{e}"
    );
    probe(&["--split-seed", "1", "--allow-overlap"]).ok();
    // The encoder's own seed is its split: allowed.
    assert_eq!(
        tests_line(&probe(&["--split-seed", "0"]).ok()),
        tests_line(&own)
    );
    // Other label draws keep the same test part.
    for seed in ["1", "2"] {
        let p = probe(&["--labels", "50%", "--label-seed", seed]).ok();
        assert!(p.contains("48 train (50.000% of the labels"), "{p}");
        assert_eq!(tests_line(&p), tests_line(&own), "{p}");
    }
    // Review 3, N9 and S3-5: the share printed is the share used (one image per class
    // is more than asked), and a share that --max-images would cut is refused.
    let p = probe(&["--labels", "1e-9"]).ok();
    assert!(
        p.contains("4 train (4.167% of the labels, stratified; --labels asked for 0.000%)"),
        "{p}"
    );
    let e = probe(&["--labels", "50%", "--max-images", "10"]).fails();
    assert!(
        e.contains("keeps 48 of the 96") && e.contains("--max-images 10"),
        "{e}"
    );
}
