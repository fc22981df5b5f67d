//! Regression tests of the reliability review of 302c5d5 (`shared/reviews/reliability.md`,
//! F1–F21): each bad input, fault or signal that was mishandled there, through the
//! binary as a user meets it. Each test is named after its finding.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{bin, fails_with, s, text};

fn ok(args: &[&str]) -> String {
    let (out, err) = common::ok_split(args);
    out + &err
}

/// A finished CartPole MLP run (3000 steps) in `dir`.
fn cartpole_run(dir: &Path) -> PathBuf {
    ok(&[
        "train",
        "--quiet",
        "--out",
        s(dir),
        "--set",
        "run.total_steps=3000",
        "--set",
        "run.log_every=1",
    ]);
    dir.join("checkpoint.safetensors")
}

/// A safetensors file's header (JSON) and data bytes, to edit by hand as an attacker
/// or a broken disk would.
fn st_read(p: &Path) -> (serde_json::Value, Vec<u8>) {
    let b = std::fs::read(p).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&b[8..8 + n]).unwrap(),
        b[8 + n..].to_vec(),
    )
}

/// Writes a safetensors file; a header with rlcpc's checksum gets the one of `data`, as
/// a file that was written so (wrong in what it says, not damaged since).
fn st_write(p: &Path, h: &serde_json::Value, data: &[u8]) {
    let mut h = h.clone();
    if let Some(sum) = h.pointer_mut("/__metadata__/rlcpc.checksum") {
        *sum = format!("crc32:{:08x}", crc32fast::hash(data)).into();
    }
    let mut hb = serde_json::to_vec(&h).unwrap();
    while !hb.len().is_multiple_of(8) {
        hb.push(b' ');
    }
    let mut out = (hb.len() as u64).to_le_bytes().to_vec();
    out.extend(hb);
    out.extend(data);
    std::fs::write(p, out).unwrap();
}

/// A copy of `src` with `edit` applied to its header and data.
fn edited(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut serde_json::Value, &mut Vec<u8>),
) -> PathBuf {
    let (mut h, mut d) = st_read(src);
    edit(&mut h, &mut d);
    st_write(dst, &h, &d);
    dst.to_path_buf()
}

/// Sets metadata `key` (a JSON string) by editing its JSON.
fn edit_meta(h: &mut serde_json::Value, key: &str, f: impl FnOnce(&mut serde_json::Value)) {
    let raw = h["__metadata__"][key].as_str().unwrap().to_string();
    let mut v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    f(&mut v);
    h["__metadata__"][key] = serde_json::Value::String(v.to_string());
}

/// A WAV file with any header fields (none checked by this writer, on purpose).
fn mkwav(p: &Path, rate: u32, fmt: u16, bits: u16, raw: &[u8]) {
    let ba = bits / 8;
    let mut f = Vec::new();
    f.extend(fmt.to_le_bytes());
    f.extend(1u16.to_le_bytes());
    f.extend(rate.to_le_bytes());
    f.extend((rate.wrapping_mul(ba as u32)).to_le_bytes());
    f.extend(ba.to_le_bytes());
    f.extend(bits.to_le_bytes());
    let mut body = b"WAVEfmt ".to_vec();
    body.extend((f.len() as u32).to_le_bytes());
    body.extend(f);
    body.extend(b"data");
    body.extend((raw.len() as u32).to_le_bytes());
    body.extend(raw);
    let mut out = b"RIFF".to_vec();
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(body);
    std::fs::write(p, out).unwrap();
}

fn sine_i16(n: usize, period: f64) -> Vec<u8> {
    (0..n)
        .flat_map(|i| ((8000.0 * (i as f64 / period).sin()) as i16).to_le_bytes())
        .collect()
}

/// 18 half-second FSDD-named utterances of two speakers.
fn good_corpus(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (k, who) in ["alice", "bob"].iter().enumerate() {
        for d in 0..3 {
            for i in 0..3 {
                let period = 3.0 + k as f64 * 2.0 + d as f64 + i as f64 * 0.3;
                mkwav(
                    &dir.join(format!("{d}_{who}_{i}.wav")),
                    16000,
                    1,
                    16,
                    &sine_i16(8000, period),
                );
            }
        }
    }
}

fn tiny_audio_args<'a>(data: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "cpc",
        "audio",
        "--config",
        "cpc-audio-fsdd",
        "--quiet",
        "--data",
        s(data),
        "--out",
        s(out),
        "--set",
        "train.steps=2",
        "--set",
        "train.batch=4",
        "--set",
        "cpc.windows_per_speaker=2",
        "--set",
        "data.window=2400",
    ]
}

/// `rlcpc train --quiet ARGS` for hours (no target, 500M steps, a log line per update),
/// started to be stopped by a signal.
fn spawn_long(args: &[&str]) -> std::process::Child {
    bin()
        .args(["train", "--quiet"])
        .args(args)
        .args([
            "--set",
            "run.total_steps=500000000",
            "--set",
            "run.target_return=0",
            "--set",
            "run.log_every=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// An LSTM + CPC run into `run` that would take hours: it is stopped by a signal.
fn long_train(run: &Path) -> std::process::Child {
    spawn_long(&["--config", "cartpole-lstm-cpc", "--out", s(run)])
}

/// Sends `sig` to `pid`.
fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child process of this test.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// Waits until `path` exists (a run has started and written it), up to 120 s.
fn wait_for(path: &Path) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn f1_a_failed_resume_leaves_the_run_resumable() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("r");
    cartpole_run(&run);
    let before = std::fs::read(run.join("config.toml")).unwrap();
    let r = s(&run);
    fails_with(
        &[
            "train",
            "--quiet",
            "--resume",
            "--out",
            r,
            "--set",
            "model.mlp_hidden=[32]",
        ],
        &["does not match"],
    );
    fails_with(
        &[
            "train",
            "--quiet",
            "--resume",
            "--out",
            r,
            "--set",
            "env.num_envs=32",
        ],
        &["actor 0"],
    );
    fails_with(
        &[
            "train",
            "--quiet",
            "--resume",
            "--out",
            r,
            "--set",
            "run.workers=2",
        ],
        &["actor states", "run.workers"],
    );
    assert_eq!(
        std::fs::read(run.join("config.toml")).unwrap(),
        before,
        "a refused resume rewrote config.toml"
    );
    ok(&[
        "train",
        "--quiet",
        "--resume",
        "--out",
        r,
        "--set",
        "run.total_steps=6000",
    ]);
}

#[test]
fn f2_non_finite_samples_and_observations_are_refused_naming_the_file() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("audio");
    good_corpus(&data);
    let nan: Vec<u8> = (0..8000).flat_map(|_| f32::NAN.to_le_bytes()).collect();
    mkwav(&data.join("1_carol_0.wav"), 16000, 3, 32, &nan);
    let inf: Vec<u8> = (0..8000)
        .flat_map(|_| f32::INFINITY.to_le_bytes())
        .collect();
    mkwav(&data.join("1_carol_1.wav"), 16000, 3, 32, &inf);
    let out = t.path().join("a");
    let o = ok(&tiny_audio_args(&data, &out));
    assert!(
        o.contains("1_carol_0.wav") && o.contains("NaN or infinite"),
        "{o}"
    );
    // --strict stops there.
    let b = t.path().join("b");
    let mut strict = tiny_audio_args(&data, &b);
    strict.push("--strict");
    fails_with(&strict, &["1_carol_", "NaN or infinite"]);
    // The encoder trained on the good files is finite: it loads (loading checks it).
    ok(&[
        "export-encoder",
        "--checkpoint",
        s(&out.join("checkpoint.safetensors")),
        "--out",
        s(&t.path().join("e.safetensors")),
    ]);

    // A recording whose observations hold NaN is refused by `cpc frames` and `probe`.
    let rec = t.path().join("rec");
    ok(&[
        "record",
        "--env",
        "CartPole-v1",
        "--steps",
        "200",
        "--out",
        s(&rec),
    ]);
    let f = rec.join("trajectories.safetensors");
    let (h, mut d) = st_read(&f);
    let off = h["obs"]["data_offsets"][0].as_u64().unwrap() as usize;
    d[off..off + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    st_write(&f, &h, &d);
    fails_with(
        &[
            "cpc",
            "frames",
            "--quiet",
            "--data",
            s(&rec),
            "--out",
            s(&t.path().join("fr")),
        ],
        &["recording", "trajectories.safetensors", "non-finite"],
    );
}

#[test]
fn f3_sigterm_and_sighup_write_a_final_checkpoint() {
    for sig in [libc::SIGTERM, libc::SIGHUP] {
        let t = tempfile::tempdir().unwrap();
        let run = t.path().join("r");
        let child = long_train(&run);
        wait_for(&run.join("metrics.jsonl"));
        signal(child.id(), sig);
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "signal {sig}: {}", text(&o));
        assert!(text(&o).contains("interrupted after"), "{}", text(&o));
        assert!(run.join("checkpoint.safetensors").exists());
        assert!(!rlcpc::run_dir::held(&run), "the lock outlived the run");
        ok(&["eval", "--checkpoint", s(&run), "--episodes", "1"]);
    }
    // Every agent preset checkpoints periodically without being asked.
    for (name, _) in rlcpc::config::PRESETS {
        let c = rlcpc::config::Config::load(Some(Path::new(name)), &[]).unwrap();
        assert!(
            c.run.checkpoint_every > 0 && c.run.checkpoint_minutes > 0.0,
            "{name}"
        );
    }
}

#[test]
fn f4_checkpoints_that_contradict_their_spec_are_refused_everywhere() {
    let t = tempfile::tempdir().unwrap();
    let ck = cartpole_run(&t.path().join("r"));
    let d = t.path();
    let transposed = edited(&ck, &d.join("t.safetensors"), |h, _| {
        h["encoder.mlp.0.weight"]["shape"] = serde_json::json!([4, 64]);
    });
    let as_u8 = edited(&ck, &d.join("u8.safetensors"), |h, _| {
        // 256 f32 values of a bias become 1024 u8 values: a valid file, wrong dtype.
        h["encoder.mlp.0.bias"]["dtype"] = serde_json::json!("U8");
        h["encoder.mlp.0.bias"]["shape"] = serde_json::json!([256]);
    });
    let nan = edited(&ck, &d.join("nan.safetensors"), |h, data| {
        let off = h["encoder.mlp.0.bias"]["data_offsets"][0].as_u64().unwrap() as usize;
        data[off..off + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    let obs7 = edited(&ck, &d.join("obs7.safetensors"), |h, _| {
        edit_meta(h, "rlcpc.net_spec", |v| {
            v["obs_shape"] = serde_json::json!([7]);
            v["encoder"]["in_dim"] = serde_json::json!(7);
        });
    });
    let tmaze = edited(&ck, &d.join("tmaze.safetensors"), |h, _| {
        let cfg = h["__metadata__"]["rlcpc.config"]
            .as_str()
            .unwrap()
            .to_string();
        let toml: String = serde_json::from_str(&cfg).unwrap();
        let toml = toml.replace("CartPole-v1", "TMaze-v0");
        h["__metadata__"]["rlcpc.config"] =
            serde_json::Value::String(serde_json::to_string(&toml).unwrap());
    });
    for (f, why) in [
        (&transposed, "shape [4, 64], the network expects [64, 4]"),
        (&as_u8, "is U8, expected F32"),
        (&nan, "non-finite"),
        (&obs7, "does not fit its environment"),
        (&tmaze, "does not fit its environment"),
    ] {
        fails_with(&["eval", "--checkpoint", s(f), "--episodes", "1"], &[why]);
        let out = d.join("exported.safetensors");
        fails_with(
            &["export-encoder", "--checkpoint", s(f), "--out", s(&out)],
            &[why],
        );
        assert!(!out.exists(), "export wrote a file from {}", f.display());
        fails_with(
            &[
                "record",
                "--checkpoint",
                s(f),
                "--steps",
                "5",
                "--out",
                s(&d.join("rec")),
            ],
            &[why],
        );
    }
    // A checkpoint missing a tensor (here renamed) is not exported either.
    let missing = edited(&ck, &d.join("missing.safetensors"), |h, _| {
        let m = h.as_object_mut().unwrap();
        let t = m.remove("policy.bias").unwrap();
        m.insert("policy.bias_renamed".into(), t);
    });
    fails_with(
        &[
            "export-encoder",
            "--checkpoint",
            s(&missing),
            "--out",
            s(&d.join("m.safetensors")),
        ],
        &["missing tensor 'policy.bias'"],
    );
}

#[test]
fn f5_devices_fifos_and_symlinks_to_them_are_refused_without_reading() {
    let t = tempfile::tempdir().unwrap();
    let zero = t.path().join("z.safetensors");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let fifo = t.path().join("f.safetensors");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) on a path in a fresh temp dir.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    for f in [&zero, &fifo] {
        let t0 = Instant::now();
        fails_with(&["eval", "--checkpoint", s(f)], &["not a regular file"]);
        fails_with(
            &[
                "export-encoder",
                "--checkpoint",
                s(f),
                "--out",
                s(&t.path().join("o.safetensors")),
            ],
            &["not a regular file"],
        );
        assert!(t0.elapsed() < Duration::from_secs(20), "slow refusal");
    }
    // A FIFO named like an audio file in a corpus is skipped, not read forever.
    let data = t.path().join("audio");
    good_corpus(&data);
    let c = std::ffi::CString::new(s(&data.join("9_zed_0.wav"))).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let o = ok(&tiny_audio_args(&data, &t.path().join("a")));
    assert!(
        o.contains("9_zed_0.wav") && o.contains("not a regular file"),
        "{o}"
    );
}

#[test]
fn f6_lying_spec_metadata_never_sizes_an_allocation() {
    let t = tempfile::tempdir().unwrap();
    let ck = cartpole_run(&t.path().join("r"));
    let huge = edited(&ck, &t.path().join("h.safetensors"), |h, _| {
        edit_meta(h, "rlcpc.net_spec", |v| {
            v["obs_shape"] = serde_json::json!([1_000_000_000u64, 1_000_000_000u64]);
        });
    });
    let lstm = edited(&ck, &t.path().join("l.safetensors"), |h, _| {
        edit_meta(h, "rlcpc.net_spec", |v| {
            v["core"] = serde_json::json!("lstm");
            v["lstm_hidden"] = serde_json::json!(100_000_000u64);
        });
    });
    for f in [&huge, &lstm] {
        fails_with(&["eval", "--checkpoint", s(f)], &["rlcpc.net_spec"]);
    }
    // An exported encoder whose spec claims a giant input.
    let enc = t.path().join("enc.safetensors");
    ok(&["export-encoder", "--checkpoint", s(&ck), "--out", s(&enc)]);
    let big = edited(&enc, &t.path().join("big.safetensors"), |h, _| {
        edit_meta(h, "rlcpc.encoder", |v| {
            v["in_dim"] = serde_json::json!(1_000_000_000_000_000_000u64);
        });
    });
    let rec = t.path().join("rec");
    ok(&[
        "record",
        "--env",
        "CartPole-v1",
        "--steps",
        "300",
        "--out",
        s(&rec),
    ]);
    fails_with(
        &["probe", "--encoder", s(&big), "--data", s(&rec)],
        &["rlcpc.encoder"],
    );
}

#[test]
fn f7_no_command_overwrites_a_run_or_a_recording() {
    let t = tempfile::tempdir().unwrap();
    let ck = cartpole_run(&t.path().join("r"));
    let before = std::fs::read(&ck).unwrap();
    fails_with(
        &["export-encoder", "--checkpoint", s(&ck), "--out", s(&ck)],
        &["is the checkpoint itself"],
    );
    fails_with(
        &[
            "export-encoder",
            "--checkpoint",
            s(&ck),
            "--out",
            s(&ck),
            "--force",
        ],
        &["is the checkpoint itself"],
    );
    assert_eq!(std::fs::read(&ck).unwrap(), before);
    let enc = t.path().join("sub/dir/enc.safetensors");
    ok(&["export-encoder", "--checkpoint", s(&ck), "--out", s(&enc)]);
    fails_with(
        &["export-encoder", "--checkpoint", s(&ck), "--out", s(&enc)],
        &["exists", "--force"],
    );
    ok(&[
        "export-encoder",
        "--checkpoint",
        s(&ck),
        "--out",
        s(&enc),
        "--force",
    ]);

    let rec = t.path().join("rec");
    ok(&[
        "record",
        "--env",
        "CartPole-v1",
        "--steps",
        "300",
        "--out",
        s(&rec),
    ]);
    let kept = std::fs::read(rec.join("trajectories.safetensors")).unwrap();
    fails_with(
        &[
            "record",
            "--env",
            "CartPole-v1",
            "--steps",
            "10",
            "--out",
            s(&rec),
        ],
        &["already holds a recording", "--force"],
    );
    assert_eq!(
        std::fs::read(rec.join("trajectories.safetensors")).unwrap(),
        kept
    );
}

#[test]
fn f8_a_run_directory_in_use_is_refused_naming_the_holder() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("two");
    let child = long_train(&run);
    // The lock file holds the PID once the lock is taken.
    let t0 = Instant::now();
    while std::fs::read_to_string(run.join("run.lock"))
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the run never took its lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    fails_with(
        &["train", "--quiet", "--out", s(&run), "--seed", "7"],
        &["is in use by process", &pid],
    );
    // The standalone trainers take the same lock.
    let corpus = t.path().join("c.txt");
    std::fs::write(&corpus, "One sentence here. Another one there. ".repeat(50)).unwrap();
    fails_with(
        &[
            "cpc",
            "text",
            "--quiet",
            "--data",
            s(&corpus),
            "--out",
            s(&run),
        ],
        &["is in use by process", &pid],
    );
    signal(child.id(), libc::SIGTERM);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // The run that held the directory is intact and resumable.
    ok(&[
        "train",
        "--quiet",
        "--resume",
        "--out",
        s(&run),
        "--set",
        "run.total_steps=1",
    ]);
    // A lock file left by a process that is gone holds no lock.
    std::fs::write(run.join("run.lock"), "999999999").unwrap();
    ok(&[
        "train",
        "--quiet",
        "--resume",
        "--out",
        s(&run),
        "--set",
        "run.total_steps=1",
    ]);
}

#[test]
fn f9_wav_headers_with_absurd_sample_rates_are_skipped_naming_the_file() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("audio");
    good_corpus(&data);
    mkwav(&data.join("5_carol_0.wav"), 0, 1, 16, &sine_i16(8000, 5.0));
    mkwav(&data.join("5_carol_1.wav"), 1, 1, 16, &sine_i16(8000, 5.0));
    let o = ok(&tiny_audio_args(&data, &t.path().join("a")));
    assert!(
        o.contains("5_carol_0.wav") && o.contains("sample rate 0 Hz"),
        "{o}"
    );
    assert!(
        o.contains("5_carol_1.wav") && o.contains("sample rate 1 Hz"),
        "{o}"
    );
    assert!(o.contains("read 18 files"), "{o}");
}

#[test]
fn f10_absurd_config_values_are_refused_naming_the_key() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("x");
    let o = s(&out);
    for (preset, set, key) in [
        ("cartpole", "env.num_envs=1000000000", "env.num_envs"),
        (
            "cartpole",
            "model.mlp_hidden=[10000000]",
            "model.mlp_hidden",
        ),
        (
            "cartpole-lstm-cpc",
            "model.lstm_hidden=10000000",
            "model.lstm_hidden",
        ),
        ("cartpole", "algo.unroll=1000000000", "algo.unroll"),
        (
            "cartpole-lstm-cpc",
            "aux.num_negatives=1000000000",
            "aux.num_negatives",
        ),
        (
            "tmaze",
            "env.options.corridor_length=1000000000000",
            "corridor_length",
        ),
    ] {
        fails_with(
            &["train", "--config", preset, "--out", o, "--set", set],
            &[key, "at most"],
        );
        assert!(
            !out.exists(),
            "{set}: a refused config wrote the run directory"
        );
    }
    let corpus = t.path().join("c.txt");
    std::fs::write(&corpus, "One sentence here. Another one there. ".repeat(50)).unwrap();
    for modality in ["frames", "text"] {
        fails_with(
            &[
                "cpc",
                modality,
                "--data",
                s(&corpus),
                "--out",
                o,
                "--set",
                "train.batch=1",
                "--set",
                "cpc.negatives=\"batch\"",
            ],
            &["cpc.negatives", "train.batch"],
        );
    }
    for (modality, set, key) in [
        ("audio", "train.batch=1000000000", "train.batch"),
        ("audio", "cpc.num_negatives=1000000000", "cpc.num_negatives"),
        ("audio", "data.sample_rate=4000000000", "data.sample_rate"),
        ("image", "model.features=10000000", "model.features"),
        ("image", "cpc.num_negatives=100000000", "cpc.num_negatives"),
        ("text", "model.embedding=100000000", "model.embedding"),
    ] {
        fails_with(
            &[
                "cpc",
                modality,
                "--data",
                s(&corpus),
                "--out",
                o,
                "--set",
                set,
            ],
            &[key, "at most"],
        );
    }
}

#[test]
fn f11_async_batches_that_can_never_arrive_are_refused() {
    let t = tempfile::tempdir().unwrap();
    fails_with(
        &[
            "train",
            "--out",
            s(&t.path().join("ab")),
            "--set",
            "run.mode=async",
            "--set",
            "algo.vtrace=true",
            "--set",
            "run.batch_rollouts=1000000000",
        ],
        &["run.batch_rollouts", "at most"],
    );
}

/// A PNG that is only a signature, an IHDR chunk claiming `w`×`h` grey pixels, and
/// empty IDAT and IEND chunks: a few bytes that claim a huge picture.
fn png_header(p: &Path, w: u32, h: u32) {
    fn crc32(b: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &x in b {
            c ^= x as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let mut chunk = b"IHDR".to_vec();
    chunk.extend(w.to_be_bytes());
    chunk.extend(h.to_be_bytes());
    chunk.extend([8, 0, 0, 0, 0]);
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    out.extend(13u32.to_be_bytes());
    out.extend(&chunk);
    out.extend(crc32(&chunk).to_be_bytes());
    for empty in [&b"IDAT"[..], &b"IEND"[..]] {
        out.extend(0u32.to_be_bytes());
        out.extend(empty);
        out.extend(crc32(empty).to_be_bytes());
    }
    std::fs::write(p, out).unwrap();
}

#[test]
fn f12_f14_crafted_image_sets_get_errors_not_panics_or_aborts() {
    let t = tempfile::tempdir().unwrap();
    let i = t.path().join("i");
    let o = s(&i);
    let idx = |dir: &Path, dims: &[u32], data: usize, labels: usize| {
        std::fs::create_dir_all(dir).unwrap();
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(vec![0u8; data]);
        std::fs::write(dir.join("train-images-idx3-ubyte"), b).unwrap();
        let mut l = vec![0, 0, 8, 1];
        l.extend((labels as u32).to_be_bytes());
        l.extend(vec![0u8; labels]);
        std::fs::write(dir.join("train-labels-idx1-ubyte"), l).unwrap();
    };
    let overflow = t.path().join("overflow");
    idx(&overflow, &[1 << 22, 1 << 21, 1 << 21], 0, 4);
    fails_with(
        &["cpc", "image", "--data", s(&overflow), "--out", o],
        &["overflow"],
    );
    let empty = t.path().join("empty");
    idx(&empty, &[0, 28, 28], 0, 0);
    fails_with(
        &["cpc", "image", "--data", s(&empty), "--out", o],
        &["no images"],
    );
    let pngs = t.path().join("pngs");
    for c in ["a", "b"] {
        std::fs::create_dir_all(pngs.join(c)).unwrap();
        png_header(&pngs.join(c).join("x.png"), 30000, 30000);
        png_header(&pngs.join(c).join("y.png"), 30000, 30000);
    }
    fails_with(
        &["cpc", "image", "--data", s(&pngs), "--out", o],
        &["30000x30000", "pixels"],
    );
    // CIFAR-10 whose batches.meta.txt names fewer classes than the labels use.
    let cifar = t.path().join("cifar");
    std::fs::create_dir_all(&cifar).unwrap();
    let rec = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                let mut r = vec![(i % 10) as u8];
                r.extend((0..3072).map(|j| ((i * 7 + j) % 251) as u8));
                r
            })
            .collect()
    };
    std::fs::write(cifar.join("data_batch_1.bin"), rec(40)).unwrap();
    std::fs::write(cifar.join("test_batch.bin"), rec(20)).unwrap();
    std::fs::write(cifar.join("batches.meta.txt"), "airplane\n").unwrap();
    fails_with(
        &["cpc", "image", "--data", s(&cifar), "--out", o],
        &["batches.meta.txt", "names 1 class", "up to 9"],
    );
}

#[test]
fn f13_text_resume_on_another_corpus_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a.txt");
    let b = t.path().join("b.txt");
    let words_a = "The cat sat on the mat today. A dog ran in the park again. ";
    let words_b = "Quail koala zebra walrus heron. Lynx otter badger marten stoat. ";
    std::fs::write(&a, words_a.repeat(40)).unwrap();
    std::fs::write(&b, words_b.repeat(40)).unwrap();
    let run = t.path().join("t");
    let base = |data: &Path, steps: &str| -> Vec<String> {
        [
            "cpc",
            "text",
            "--quiet",
            "--data",
            s(data),
            "--out",
            s(&run),
            "--set",
            steps,
            "--set",
            "data.vocab=12",
        ]
        .into_iter()
        .chain(common::TINY_TEXT)
        .map(String::from)
        .collect()
    };
    let args = base(&a, "train.steps=3");
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let before = std::fs::read(run.join("encoder.safetensors")).unwrap();
    let mut resume = base(&b, "train.steps=6");
    resume.push("--resume".into());
    fails_with(
        &resume.iter().map(String::as_str).collect::<Vec<_>>(),
        &["vocabulary", "differs"],
    );
    assert_eq!(
        std::fs::read(run.join("encoder.safetensors")).unwrap(),
        before
    );
}

#[test]
fn f15_symlink_cycles_in_data_directories_are_read_once() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("loop");
    good_corpus(&data);
    std::os::unix::fs::symlink(".", data.join("self")).unwrap();
    std::os::unix::fs::symlink("..", data.join("up")).unwrap();
    let o = ok(&tiny_audio_args(&data, &t.path().join("a")));
    assert!(o.contains("read 18 files"), "{o}");
    // The text walker too.
    let text_dir = t.path().join("texts");
    std::fs::create_dir_all(&text_dir).unwrap();
    std::fs::write(
        text_dir.join("a.txt"),
        "One sentence here. Another one there. ".repeat(30),
    )
    .unwrap();
    std::os::unix::fs::symlink(".", text_dir.join("self")).unwrap();
    std::os::unix::fs::symlink("..", text_dir.join("up")).unwrap();
    let c = rlcpc::data::text::load_corpus(&text_dir).unwrap();
    assert_eq!(c.files.len(), 1, "{:?}", c.files);
}

#[test]
fn f16_huge_counts_are_refused_before_any_allocation() {
    let t = tempfile::tempdir().unwrap();
    let ck = cartpole_run(&t.path().join("r"));
    let rec = t.path().join("rec");
    let r = s(&rec);
    fails_with(
        &[
            "record",
            "--env",
            "CartPole-v1",
            "--steps",
            "18446744073709551615",
            "--out",
            r,
        ],
        &["GiB"],
    );
    fails_with(
        &[
            "record",
            "--env",
            "CartPole-v1",
            "--steps",
            "2000000000",
            "--out",
            r,
        ],
        &["GiB"],
    );
    fails_with(
        &[
            "eval",
            "--checkpoint",
            s(&ck),
            "--episodes",
            "1000000000000",
        ],
        &["--episodes"],
    );
    fails_with(
        &[
            "envs",
            "score",
            "CartPole-v1",
            "--episodes",
            "1000000000000",
        ],
        &["--episodes"],
    );
    fails_with(
        &[
            "envs",
            "render",
            "lab/watermaze",
            "--steps",
            "18446744073709551615",
            "--out",
            s(&t.path().join("e.gif")),
        ],
        &["--steps"],
    );
    assert!(!t.path().join("e.gif").exists());
}

/// No `*.tmp` file anywhere under `dir`.
fn no_temp_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            no_temp_files(&p);
        } else {
            assert!(
                !p.to_string_lossy().ends_with(".tmp"),
                "left behind: {}",
                p.display()
            );
        }
    }
}

#[test]
fn f17_failed_writes_leave_no_temp_files() {
    let t = tempfile::tempdir().unwrap();
    let ck = cartpole_run(&t.path().join("r"));
    let dir_out = t.path().join("adir");
    std::fs::create_dir_all(&dir_out).unwrap();
    fails_with(
        &[
            "export-encoder",
            "--checkpoint",
            s(&ck),
            "--out",
            s(&dir_out),
            "--force",
        ],
        &["directory"],
    );
    // A write that fails at the rename (the target is a non-empty directory).
    let target = t.path().join("busy");
    std::fs::create_dir_all(target.join("inside")).unwrap();
    let e = rlcpc::checkpoint::write_bytes_atomic(&target.join("inside"), b"x");
    assert!(e.is_err());
    no_temp_files(t.path());
}

#[test]
fn f18_metrics_are_cut_back_to_the_checkpoint_and_never_mixed() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("r");
    cartpole_run(&run);
    let m = run.join("metrics.jsonl");
    let steps = |p: &Path| -> Vec<f64> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["time/total_timesteps"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    let at_checkpoint = *steps(&m).last().unwrap();
    // Rows logged after the checkpoint (as after a kill -9) ...
    let mut text = std::fs::read_to_string(&m).unwrap();
    text.push_str(&format!(
        "{{\"time/total_timesteps\":{}}}\n",
        at_checkpoint + 80.0
    ));
    text.push_str(&format!(
        "{{\"time/total_timesteps\":{}}}\n",
        at_checkpoint + 160.0
    ));
    std::fs::write(&m, text).unwrap();
    ok(&[
        "train",
        "--quiet",
        "--resume",
        "--out",
        s(&run),
        "--set",
        "run.total_steps=6000",
    ]);
    let after = steps(&m);
    assert!(
        after.windows(2).all(|w| w[0] < w[1]),
        "steps repeat: {after:?}"
    );
    assert!(after.last().unwrap() > &at_checkpoint);
    // A fresh run into a directory with metrics but no checkpoint starts a new file.
    let crashed = t.path().join("c");
    std::fs::create_dir_all(&crashed).unwrap();
    std::fs::write(
        crashed.join("metrics.jsonl"),
        "{\"time/total_timesteps\":99999}\n",
    )
    .unwrap();
    let o = ok(&[
        "train",
        "--quiet",
        "--out",
        s(&crashed),
        "--set",
        "run.total_steps=2000",
        "--set",
        "run.log_every=1",
    ]);
    assert!(o.contains("stale-"), "{o}");
    let fresh = steps(&crashed.join("metrics.jsonl"));
    assert!(fresh.iter().all(|&s| s < 99999.0), "{fresh:?}");
}

#[test]
fn f19_errors_name_the_file_the_tensor_and_what_was_expected() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let ck = cartpole_run(&d.join("r"));
    let enc = d.join("enc.safetensors");
    ok(&["export-encoder", "--checkpoint", s(&ck), "--out", s(&enc)]);
    // Every tensor of an encoder retagged I32: the file and tensor are named.
    let i32s = edited(&enc, &d.join("i32.safetensors"), |h, _| {
        for (k, v) in h.as_object_mut().unwrap().iter_mut() {
            if k != "__metadata__" {
                v["dtype"] = serde_json::json!("I32");
            }
        }
    });
    fails_with(
        &[
            "train",
            "--quiet",
            "--out",
            s(&d.join("x")),
            "--set",
            &format!("model.init_encoder=\"{}\"", s(&i32s)),
        ],
        &["i32.safetensors", "encoder.mlp.0", "expected F32"],
    );
    assert!(
        !d.join("x").exists(),
        "a refused start left its run directory behind"
    );
    // Probing an agent checkpoint on data that is not a recording.
    let audio = d.join("audio");
    good_corpus(&audio);
    fails_with(
        &["probe", "--encoder", s(&ck), "--data", s(&audio)],
        &["agent checkpoint", "rlcpc record"],
    );
    // An audio encoder on a labelled text file.
    let a_run = d.join("a");
    ok(&tiny_audio_args(&audio, &a_run));
    let labels = d.join("labels.tsv");
    std::fs::write(&labels, "pos\tgood\nneg\tbad\n").unwrap();
    fails_with(
        &[
            "probe",
            "--encoder",
            s(&a_run.join("encoder.safetensors")),
            "--data",
            s(&labels),
        ],
        &["audio encoder", "directory of audio files"],
    );
    // A recording probed with a test fraction of 0 or 1.
    let rec = d.join("rec");
    ok(&[
        "record",
        "--env",
        "CartPole-v1",
        "--steps",
        "300",
        "--out",
        s(&rec),
    ]);
    for f in ["0", "1"] {
        fails_with(
            &[
                "probe",
                "--encoder",
                s(&ck),
                "--data",
                s(&rec),
                "--test-fraction",
                f,
            ],
            &["(0, 1)"],
        );
    }
    fails_with(
        &[
            "probe",
            "--encoder",
            s(&ck),
            "--data",
            s(&rec),
            "--max-images",
            "0",
        ],
        &["at least 1"],
    );
    // A trainer checkpoint given to eval.
    fails_with(
        &[
            "eval",
            "--checkpoint",
            s(&a_run.join("checkpoint.safetensors")),
        ],
        &["trainer checkpoint", "not an agent checkpoint"],
    );
    // An encoder file given to eval.
    fails_with(
        &["eval", "--checkpoint", s(&enc)],
        &["encoder file", "not an agent checkpoint"],
    );
    // A recording whose action tensor has the wrong dtype.
    let f = rec.join("trajectories.safetensors");
    let (mut h, data) = st_read(&f);
    h["action"]["dtype"] = serde_json::json!("F32");
    st_write(&f, &h, &data);
    fails_with(
        &[
            "cpc",
            "frames",
            "--quiet",
            "--data",
            s(&rec),
            "--out",
            s(&d.join("fr")),
        ],
        &["recording", "tensor 'action' is F32, expected U32"],
    );
    // A labelled JSON object, not a list.
    let text_run = d.join("t");
    let corpus = d.join("c.txt");
    std::fs::write(
        &corpus,
        "The cat sat on the mat today. A dog ran in the park again. ".repeat(30),
    )
    .unwrap();
    ok(&[
        "cpc",
        "text",
        "--quiet",
        "--data",
        s(&corpus),
        "--out",
        s(&text_run),
        "--set",
        "train.steps=2",
        "--set",
        "data.vocab=20",
    ]
    .into_iter()
    .chain(common::TINY_TEXT)
    .collect::<Vec<_>>());
    let obj = d.join("obj.json");
    std::fs::write(&obj, "{\"text\": \"a\", \"class\": \"b\"}").unwrap();
    fails_with(
        &[
            "probe",
            "--encoder",
            s(&text_run.join("encoder.safetensors")),
            "--data",
            s(&obj),
        ],
        &["JSON object", "expected a JSON list"],
    );
    fails_with(
        &[
            "probe",
            "--encoder",
            s(&text_run.join("encoder.safetensors")),
            "--data",
            s(&labels),
            "--max-texts",
            "0",
        ],
        &["at least 1"],
    );
}

#[test]
fn f20_plot_refuses_ranges_that_overflow_instead_of_hanging() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("p");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("metrics.jsonl"),
        "{\"time/total_timesteps\":1,\"rollout/ep_rew_mean\":1e308}\n{\"time/total_timesteps\":2,\"rollout/ep_rew_mean\":-1e308}\n",
    )
    .unwrap();
    let mut child = bin()
        .args(["plot", s(&run), "--out", s(&t.path().join("plots/p.png"))])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert_eq!(st.code(), Some(1));
            break;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("plot hangs on a range of ±1e308");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // An ordinary plot into a folder that does not exist yet works.
    let good = t.path().join("g");
    cartpole_run(&good);
    ok(&[
        "plot",
        s(&good),
        "--out",
        s(&t.path().join("new/dir/g.png")),
    ]);
}

#[test]
fn f21_no_command_exits_0_on_meaningless_output() {
    let t = tempfile::tempdir().unwrap();
    fails_with(&["bench", "--envs-only", "--repeats", "0"], &["--repeats"]);
    fails_with(
        &["bench", "--envs-only", "--env-seconds", "NaN"],
        &["--env-seconds"],
    );
    fails_with(
        &["bench", "--envs-only", "--env-steps", "0"],
        &["--env-steps"],
    );
    // Random bytes are not a text corpus.
    let bin_file = t.path().join("x.txt");
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&bin_file, noise).unwrap();
    fails_with(
        &[
            "cpc",
            "text",
            "--data",
            s(&bin_file),
            "--out",
            s(&t.path().join("t")),
        ],
        &["x.txt", "does not look like text"],
    );
    // A labelled set with an empty text (review 3: two published sets have one such
    // line) is read without it, counted and named; --strict refuses it naming the line.
    let labels = t.path().join("l.tsv");
    std::fs::write(&labels, "pos\tgood film\nneg \nneg\tbad film\n").unwrap();
    let l = rlcpc::data::text::load_labelled(&labels).unwrap();
    assert_eq!((l.texts.len(), l.empty), (2, 1));
    assert!(l.first_empty.unwrap().contains("l.tsv:2"));
    let e =
        rlcpc::data::text::load_labelled_with(&labels, rlcpc::data::text::TextEncoding::Auto, true)
            .unwrap_err()
            .to_string();
    assert!(
        e.contains("l.tsv:2") && e.contains("empty text") && e.contains("--strict"),
        "{e}"
    );
}

/// Review 3, N2 and N6 (`shared/reviews/reliability-3.md`): `plot --table`/`--out` and
/// `envs render --out` replace an earlier output of their own but nothing else without
/// `--force`, never a run directory's own files, a directory or a device; a symlink is
/// replaced, not written through; a symlinked `run.lock` is refused, not truncated; and
/// `export-encoder --force` onto a device is refused.
#[test]
fn n2_n6_no_command_overwrites_what_it_did_not_write() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("a");
    let ck = cartpole_run(&run);
    let (ck_bytes, metrics) = (
        std::fs::read(&ck).unwrap(),
        std::fs::read(run.join("metrics.jsonl")).unwrap(),
    );
    let png = t.path().join("a.png");
    // The review's repro: the table onto the run's metrics, then onto its checkpoint.
    for target in [run.join("metrics.jsonl"), ck.clone()] {
        for force in [false, true] {
            let mut args = vec!["plot", s(&run), "--out", s(&png), "--table", s(&target)];
            if force {
                args.push("--force");
            }
            fails_with(&args, &["--table", "run directory's own file"]);
        }
    }
    assert!(!png.exists(), "a refused plot draws nothing");
    // Any other existing file needs --force; an earlier table or plot does not.
    let notes = t.path().join("notes.txt");
    std::fs::write(&notes, "my notes\n").unwrap();
    fails_with(
        &["plot", s(&run), "--out", s(&png), "--table", s(&notes)],
        &["--table", "notes.txt", "--force"],
    );
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes\n");
    for _ in 0..2 {
        ok(&[
            "plot",
            s(&run),
            "--out",
            s(&png),
            "--table",
            s(&t.path().join("t.txt")),
        ]);
    }
    ok(&[
        "plot",
        s(&run),
        "--out",
        s(&png),
        "--table",
        s(&notes),
        "--force",
    ]);
    assert!(std::fs::read_to_string(&notes)
        .unwrap()
        .starts_with("condition"));
    // A symlink to the checkpoint: refused, then with --force replaced by the PNG while
    // the checkpoint stays whole.
    let evil = t.path().join("evil.png");
    std::os::unix::fs::symlink(&ck, &evil).unwrap();
    fails_with(
        &["plot", s(&run), "--out", s(&evil)],
        &["symlink", "--force"],
    );
    ok(&["plot", s(&run), "--out", s(&evil), "--force"]);
    assert!(!std::fs::symlink_metadata(&evil)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(&std::fs::read(&evil).unwrap()[..4], b"\x89PNG");
    assert_eq!(std::fs::read(&ck).unwrap(), ck_bytes);
    assert_eq!(std::fs::read(run.join("metrics.jsonl")).unwrap(), metrics);
    // Directories and devices, even with --force.
    fails_with(
        &["plot", s(&run), "--out", s(t.path()), "--force"],
        &["--out", "is a directory"],
    );
    fails_with(
        &["plot", s(&run), "--out", "/dev/null", "--force"],
        &["--out", "not a regular file"],
    );
    fails_with(
        &[
            "envs",
            "render",
            "lab/watermaze",
            "--steps",
            "2",
            "--out",
            s(&notes),
        ],
        &["--out", "--force"],
    );
    fails_with(
        &[
            "envs",
            "render",
            "lab/watermaze",
            "--steps",
            "2",
            "--out",
            "/dev/null",
            "--force",
        ],
        &["not a regular file"],
    );
    fails_with(
        &[
            "export-encoder",
            "--checkpoint",
            s(&run),
            "--out",
            "/dev/null",
            "--force",
        ],
        &["--out", "not a regular file"],
    );
    // A run.lock that is a symlink is refused, and what it points at stays whole.
    let victim = t.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    let locked = t.path().join("b");
    std::fs::create_dir_all(&locked).unwrap();
    std::os::unix::fs::symlink(&victim, locked.join("run.lock")).unwrap();
    fails_with(
        &[
            "train",
            "--quiet",
            "--out",
            s(&locked),
            "--set",
            "run.total_steps=500",
        ],
        &["run.lock", "not a regular file"],
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
}

/// Review 3, N8: `--seeds` reports no "± 0" interval for one seed, leaves an interrupted
/// seed out of the means and says how to continue, continues with `--resume` (finished
/// seeds kept, the interrupted one resumed, the rest started), and names the bound of a
/// seed too large for a config.
#[test]
fn n8_seeds_are_summarised_honestly_and_continue_after_an_interrupt() {
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("seeds");
    let child = spawn_long(&["--seeds", "1-3", "--out", s(&base)]);
    wait_for(&base.join("seed-1/metrics.jsonl"));
    std::thread::sleep(Duration::from_millis(500));
    signal(child.id(), libc::SIGINT);
    let o = child.wait_with_output().unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let summary = std::fs::read_to_string(base.join("summary.txt")).unwrap();
    assert!(
        summary.contains("(interrupted: not in the means)")
            && summary.contains("over 0 complete seeds")
            && summary.contains("--resume"),
        "{summary}"
    );
    assert!(!base.join("seed-1/result.json").exists());
    assert!(
        !base.join("seed-2").exists(),
        "seeds after the interrupt start"
    );
    // Continued: seed 1 resumes from its checkpoint, seeds 2 and 3 start.
    let (out, err) = common::ok_split(&[
        "train",
        "--quiet",
        "--seeds",
        "1-3",
        "--out",
        s(&base),
        "--resume",
        "--set",
        "run.total_steps=3000",
    ]);
    assert!(out.contains("over 3 complete seeds"), "{out}{err}");
    assert!(!out.contains("interrupted"), "{out}");
    for seed in 1..=3 {
        assert!(base.join(format!("seed-{seed}/result.json")).is_file());
        let cfg = std::fs::read_to_string(base.join(format!("seed-{seed}/config.toml"))).unwrap();
        assert!(cfg.contains(&format!("seed = {seed}")), "{cfg}");
    }
    // Again: every seed is kept, nothing trains.
    let (out, err) = common::ok_split(&[
        "train",
        "--quiet",
        "--seeds",
        "1-3",
        "--out",
        s(&base),
        "--resume",
    ]);
    assert_eq!(err.matches("finished before, kept").count(), 3, "{err}");
    assert!(out.contains("over 3 complete seeds"), "{out}");
    // One seed: no interval printed as ± 0, here and in plot's table.
    let one = t.path().join("one");
    let (out, _) = common::ok_split(&[
        "train",
        "--quiet",
        "--seeds",
        "5",
        "--out",
        s(&one),
        "--set",
        "run.total_steps=3000",
    ]);
    assert!(
        out.contains("one seed: no interval") && !out.contains("± 0.0000"),
        "{out}"
    );
    let p = ok(&["plot", s(&one), "--out", s(&t.path().join("one.png"))]);
    assert!(
        p.contains("one seed: no interval") && !p.contains("± 0.0000"),
        "{p}"
    );
    // Seeds above i64::MAX are named with the bound, not blamed on the preset.
    fails_with(
        &["train", "--seeds", "18446744073709551615"],
        &["--seeds", "9223372036854775807"],
    );
    let o = common::rlcpc(&["train", "--seed", "9223372036854775808"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("9223372036854775807"), "{}", text(&o));
}

/// Review 3, N9: `probe --labels` is refused where it does not apply (any encoder but an
/// image one) instead of probing on all the labels without a word.
#[test]
fn n9_probe_labels_is_refused_where_it_does_not_apply() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("a");
    cartpole_run(&run);
    // A recording (by name: the refusal comes before anything is read).
    let rec = t.path().join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    std::fs::write(rec.join("trajectories.safetensors"), b"").unwrap();
    fails_with(
        &[
            "probe",
            "--encoder",
            s(&run),
            "--data",
            s(&rec),
            "--labels",
            "10%",
        ],
        &["--labels 10%", "image encoders"],
    );
}

/// Review 3, N4 and N5: sizes outside the per-key bounds (products of widths, Lab's
/// view and action repeat) and zero-sized stages are refused naming the key, before
/// anything is allocated or written.
#[test]
fn n4_n5_sizes_and_zero_shapes_are_refused_naming_the_key() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("r");
    for (set, needles) in [
        (
            "model.mlp_hidden=[65536,65536,65536]",
            &["model.mlp_hidden", "weights"][..],
        ),
        ("model.mlp_hidden=[16384,16384,16384,16384]", &["weights"]),
    ] {
        fails_with(
            &[
                "train",
                "--config",
                "cartpole-lstm-cpc",
                "--out",
                s(&out),
                "--set",
                set,
            ],
            needles,
        );
    }
    for (set, key) in [
        ("env.options.view=100001", "view"),
        ("env.options.action_repeat=1000000000", "action_repeat"),
    ] {
        fails_with(
            &[
                "train",
                "--config",
                "lab-watermaze",
                "--out",
                s(&out),
                "--set",
                set,
            ],
            &[key],
        );
    }
    assert!(!out.exists(), "a refused run writes nothing");
    let data = t.path().join("idx");
    std::fs::create_dir_all(&data).unwrap();
    for (set, needles) in [
        (
            "model.head_hidden=[65536,65536]",
            &["model.head_hidden", "weights"][..],
        ),
        (
            "model.blocks=[0,0,0]",
            &["model.blocks", "at least one block"],
        ),
    ] {
        fails_with(
            &[
                "pretrain",
                "image",
                "--config",
                "simclr-fashion",
                "--data",
                s(&data),
                "--out",
                s(&out),
                "--set",
                set,
            ],
            needles,
        );
    }
    assert!(!out.exists(), "a refused run writes nothing");
}
