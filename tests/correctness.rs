//! Regression tests of the correctness review of 302c5d5 (`shared/reviews/correctness.md`):
//! held-out parts that are really held out (S1-1, S2-3, S3-4), the text predictor's
//! widths (S2-1), encoder features in belief probes (S2-2), the λ tie-break (S2-4),
//! image offsets that overlap the context (S3-1) and episode-blocked validation (S3-5).
//! The CPC loss's weighting over horizons (S3-2) and ties (S3-3) are in `tests/cpc.rs`,
//! the A2C update (S3-6) in `tests/learner.rs`.

use std::path::Path;

use rand::SeedableRng;

mod common;
use common::s;

fn ok(args: &[&str]) -> String {
    common::ok_split(args).0
}

fn fails(args: &[&str]) -> String {
    common::fails_with(args, &[])
}

/// A 16×16 RGB PNG whose pixels depend on `seed` (every image differs).
fn png(path: &Path, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(16, 16, |x, y| {
        let v = (x * 31 + y * 17 + seed * 97) % 251;
        image::Rgb([v as u8, (v * 3 % 251) as u8, (255 - v) as u8])
    });
    img.save(path).unwrap();
}

fn image_cpc(data: &Path, out: &Path) -> String {
    ok(&[
        "cpc",
        "image",
        "--quiet",
        "--data",
        s(data),
        "--out",
        s(out),
        "--set",
        "train.steps=2",
        "--set",
        "train.batch=2",
        "--set",
        "model.features=8",
        "--set",
        "cpc.horizon=2",
    ])
}

fn held_out(encoder: &Path) -> Vec<String> {
    let f = rlcpc::checkpoint::Loaded::read_as(encoder, "encoder file").unwrap();
    let m: serde_json::Value = f.meta("rlcpc.data").unwrap();
    serde_json::from_value(m["held_out"].clone()).unwrap()
}

#[test]
fn s1_1_image_folders_hold_out_a_test_part_the_trainer_never_sees() {
    let t = tempfile::tempdir().unwrap();
    // One tree: 6 images per class, 1 of each held out (20%, seeded).
    let tree = t.path().join("tree");
    for (c, class) in ["ants", "bees"].iter().enumerate() {
        for i in 0..6 {
            png(
                &tree.join(class).join(format!("{i}.png")),
                c as u32 * 10 + i,
            );
        }
    }
    let run = t.path().join("run");
    let o = image_cpc(&tree, &run);
    assert!(o.contains("done after 2 steps"), "{o}");
    let enc = run.join("encoder.safetensors");
    let held = held_out(&enc);
    assert_eq!(held.len(), 2, "{held:?}");
    let train = rlcpc::data::images::load(&tree, rlcpc::data::images::Part::Train).unwrap();
    let test = rlcpc::data::images::load(&tree, rlcpc::data::images::Part::Test).unwrap();
    assert_eq!((train.len(), test.len()), (10, 2));
    // No test image is a training image.
    for i in 0..test.len() {
        for j in 0..train.len() {
            assert_ne!(
                test.image(i),
                train.image(j),
                "test image {i} is training image {j}"
            );
        }
    }
    let p = ok(&[
        "probe",
        "--encoder",
        s(&enc),
        "--data",
        s(&tree),
        "--iters",
        "20",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&p).unwrap();
    assert_eq!(
        (v["train"].as_u64(), v["test"].as_u64()),
        (Some(10), Some(2)),
        "{v}"
    );
    // The folder changes: the held-out part is no longer the encoder's, so the probe
    // refuses rather than test on images the encoder may have trained on.
    for i in 6..9 {
        png(&tree.join("ants").join(format!("{i}.png")), 100 + i);
    }
    let e = fails(&[
        "probe",
        "--encoder",
        s(&enc),
        "--data",
        s(&tree),
        "--iters",
        "20",
    ]);
    assert!(e.contains("no longer matches"), "{e}");
    // Nor can the run be resumed on the changed folder, or with another split seed:
    // images it trained on would reach the new test part.
    let resume = |extra: &str| {
        fails(&[
            "cpc",
            "image",
            "--quiet",
            "--resume",
            "--data",
            s(&tree),
            "--out",
            s(&run),
            "--set",
            "train.steps=4",
            "--set",
            extra,
        ])
    };
    let e = resume("train.lr=0.0002");
    assert!(e.contains("data split") && e.contains("held_out"), "{e}");
    let e = resume("data.split_seed=7");
    assert!(e.contains("data split"), "{e}");

    // DIR/train + DIR/test: the test part is test/, whose images differ from train/.
    let split = t.path().join("split");
    for (c, class) in ["ants", "bees"].iter().enumerate() {
        for i in 0..4 {
            png(
                &split.join("train").join(class).join(format!("{i}.png")),
                c as u32 * 10 + i,
            );
        }
        png(
            &split.join("test").join(class).join("t.png"),
            500 + c as u32,
        );
    }
    let run2 = t.path().join("run2");
    image_cpc(&split, &run2);
    let held = held_out(&run2.join("encoder.safetensors"));
    assert_eq!(held.len(), 2);
    assert!(held.iter().all(|f| f.starts_with("test")), "{held:?}");
    let p = ok(&[
        "probe",
        "--encoder",
        s(&run2.join("encoder.safetensors")),
        "--data",
        s(&split),
        "--iters",
        "20",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&p).unwrap();
    assert_eq!(
        (v["train"].as_u64(), v["test"].as_u64()),
        (Some(8), Some(2)),
        "{v}"
    );
}

#[test]
fn s2_1_text_cpc_trains_with_features_unlike_context() {
    let t = tempfile::tempdir().unwrap();
    let corpus = t.path().join("c.txt");
    std::fs::write(
        &corpus,
        "The cat sat on the mat today. A dog ran in the park again. Birds sing at dawn. "
            .repeat(30),
    )
    .unwrap();
    let o = ok(&[
        "cpc",
        "text",
        "--quiet",
        "--data",
        s(&corpus),
        "--out",
        s(&t.path().join("t")),
        "--set",
        "train.steps=2",
        "--set",
        "data.vocab=30",
        "--set",
        "model.embedding=8",
        "--set",
        "model.features=16",
        "--set",
        "model.context=24",
        "--set",
        "train.batch=2",
        "--set",
        "data.sequence=4",
        "--set",
        "cpc.horizon=2",
    ]);
    assert!(o.contains("done after 2 steps"), "{o}");
}

#[test]
fn s2_2_belief_probes_of_the_encoder_read_z_not_c() {
    let t = tempfile::tempdir().unwrap();
    let rec = t.path().join("rec");
    ok(&[
        "record",
        "--env",
        "MaskedCartPole-v1",
        "--steps",
        "1200",
        "--out",
        s(&rec),
    ]);
    let run = t.path().join("frames");
    ok(&[
        "cpc",
        "frames",
        "--quiet",
        "--data",
        s(&rec),
        "--out",
        s(&run),
        "--set",
        "train.steps=2",
        "--set",
        "model.mlp_hidden=[12]",
        "--set",
        "model.lstm_hidden=10",
        "--set",
        "cpc.unroll=20",
        "--set",
        "cpc.horizon=5",
    ]);
    let enc = run.join("encoder.safetensors");
    let probe = |extra: &[&str]| -> serde_json::Value {
        let mut a = vec!["probe", "--encoder", s(&enc), "--data", s(&rec), "--json"];
        a.extend_from_slice(extra);
        serde_json::from_str(&ok(&a)).unwrap()
    };
    let c = probe(&[]);
    let z = probe(&["--features", "encoder"]);
    assert_eq!(c["rows"][0]["dim"], 10, "{c}");
    assert_eq!(z["rows"][0]["dim"], 12, "{z}");
    assert!(
        z["rows"][0]["features"]
            .as_str()
            .unwrap()
            .contains("encoder z_t"),
        "{z}"
    );
    // The random-init twin reads the same features.
    assert_eq!(z["rows"][1]["dim"], 12, "{z}");
}

#[test]
fn s2_3_the_audio_probe_tests_on_the_files_the_trainer_held_out() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("audio");
    std::fs::create_dir_all(&data).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    for (k, who) in ["alice", "bob"].iter().enumerate() {
        for d in 0..4 {
            for i in 0..2 {
                let mut w = hound::WavWriter::create(data.join(format!("{d}_{who}_{i}.wav")), spec)
                    .unwrap();
                let period = 3.0 + k as f32 * 2.0 + d as f32 + i as f32 * 0.3;
                for n in 0..8000 {
                    w.write_sample((8000.0 * (n as f32 / period).sin()) as i16)
                        .unwrap();
                }
                w.finalize().unwrap();
            }
        }
    }
    let run = t.path().join("a");
    ok(&[
        "cpc",
        "audio",
        "--config",
        "cpc-audio-fsdd",
        "--quiet",
        "--data",
        s(&data),
        "--out",
        s(&run),
        "--set",
        "train.steps=2",
        "--set",
        "train.batch=4",
        "--set",
        "cpc.windows_per_speaker=2",
        "--set",
        "data.window=2400",
        "--set",
        "data.max_files=12",
    ]);
    let enc = run.join("encoder.safetensors");
    let held = held_out(&enc);
    assert!(!held.is_empty());
    // The probe reads all 16 files (not the trainer's 12) yet tests on the held-out ones.
    let p = ok(&[
        "probe",
        "--encoder",
        s(&enc),
        "--data",
        s(&data),
        "--iters",
        "20",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&p).unwrap();
    assert_eq!(v["test"].as_u64(), Some(held.len() as u64), "{v}");
    assert_eq!(v["train"].as_u64(), Some(16 - held.len() as u64), "{v}");
    assert!(v["split"].as_str().unwrap().contains("held-out"), "{v}");
    // A held-out file is gone: refused, naming it.
    std::fs::remove_file(data.join(&held[0])).unwrap();
    let e = fails(&[
        "probe",
        "--encoder",
        s(&enc),
        "--data",
        s(&data),
        "--iters",
        "20",
    ]);
    assert!(
        e.contains("no longer matches") && e.contains(&held[0]),
        "{e}"
    );
}

#[test]
fn s2_4_lambda_ties_go_to_the_stronger_regulariser() {
    use rlcpc::probe::best_lambda;
    assert_eq!(best_lambda(&[0.5, 0.9, 0.9, 0.1]), 2);
    assert_eq!(best_lambda(&[0.7, 0.7, 0.7]), 2);
    assert_eq!(best_lambda(&[0.9, 0.1]), 0);
}

#[test]
fn s3_1_image_cpc_never_predicts_patches_that_overlap_the_context() {
    use rlcpc::pretrain::image::ImageCpcConfig;
    use rlcpc::pretrain::TrainerConfig;
    let cfg = ImageCpcConfig::load(Some(Path::new("cpc-image-fashion")), &[]).unwrap();
    // 8-pixel patches every 4: k = 1 overlaps the context's own row, k = 2 does not.
    assert_eq!(cfg.skip(), 1);
    let crop = ImageCpcConfig::load(
        Some(Path::new("cpc-image-fashion")),
        &["augment.crop=2".into()],
    )
    .unwrap();
    assert_eq!(
        crop.skip(),
        2,
        "patches moved by ±2 px overlap one offset more"
    );
    let e = ImageCpcConfig::load(
        Some(Path::new("cpc-image-fashion")),
        &["cpc.horizon=1".into()],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("cpc.horizon") && e.contains("overlap"), "{e}");
    // The sampler never draws a skipped offset; every horizon after it is drawn.
    let s = rlcpc::contrastive::cpc::CpcSampling {
        horizon: 4,
        skip: 2,
        num_negatives: 3,
        ..Default::default()
    };
    let mut rng = rlcpc_envs::SeededRng::seed_from_u64(1);
    let pairs = rlcpc::contrastive::cpc::sample_pairs(&[0.0; 6 * 3], 6, 3, &s, &mut rng);
    assert!(pairs.iter().all(|p| p.k > 2), "{pairs:?}");
    assert!(pairs.iter().any(|p| p.k == 3) && pairs.iter().any(|p| p.k == 4));
}

#[test]
fn s3_4_cpc_frames_never_trains_on_the_belief_probes_test_part() {
    let t = tempfile::tempdir().unwrap();
    let rec = t.path().join("rec");
    ok(&[
        "record",
        "--env",
        "CartPole-v1",
        "--steps",
        "1000",
        "--out",
        s(&rec),
    ]);
    let run = t.path().join("frames");
    ok(&[
        "cpc",
        "frames",
        "--quiet",
        "--data",
        s(&rec),
        "--out",
        s(&run),
        "--set",
        "train.steps=2",
        "--set",
        "model.mlp_hidden=[8]",
        "--set",
        "model.lstm_hidden=8",
        "--set",
        "cpc.unroll=20",
        "--set",
        "cpc.horizon=5",
    ]);
    let traj = rlcpc::data::trajectories::Trajectories::load(&rec).unwrap();
    let cut = rlcpc::pretrain::frames::test_cut(&traj, 0.2).unwrap();
    assert!(
        (800..1000).contains(&cut) && traj.first[cut] == 1.0,
        "cut {cut}"
    );
    let f = rlcpc::checkpoint::Loaded::read_as(&run.join("encoder.safetensors"), "encoder file")
        .unwrap();
    let m: serde_json::Value = f.meta("rlcpc.data").unwrap();
    assert_eq!(m["train_steps"].as_u64(), Some(cut as u64), "{m}");
    assert_eq!(m["test_fraction"].as_f64(), Some(0.2));
    // No episode starts after 80%: the cut goes back to the last start, never splitting
    // an episode; one episode cannot be cut at all.
    let mut t2 = traj.clone();
    t2.first
        .iter_mut()
        .enumerate()
        .for_each(|(i, f)| *f = (i == 0 || i == 700) as u8 as f32);
    assert_eq!(rlcpc::pretrain::frames::test_cut(&t2, 0.2).unwrap(), 700);
    t2.first[700] = 0.0;
    let e = rlcpc::pretrain::frames::test_cut(&t2, 0.2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("one episode"), "{e}");
}

#[test]
fn s3_5_ridge_validation_is_a_block_of_whole_episodes() {
    use rlcpc::probe::blocked_validation;
    // Episodes of 7 steps.
    let first: Vec<f32> = (0..100).map(|t| (t % 7 == 0) as u8 as f32).collect();
    let (fit, val) = blocked_validation(&first);
    assert_eq!(fit.end, val.start);
    assert_eq!(
        first[val.start], 1.0,
        "validation starts at an episode start"
    );
    assert!(val.len() >= 10 && val.len() <= 25, "{val:?}");
    // No episode start in the validation block: the last block before the end.
    let mut first = vec![0f32; 50];
    first[0] = 1.0;
    first[20] = 1.0;
    let (fit, val) = blocked_validation(&first);
    assert_eq!((fit, val), (0..20, 20..50));
}
