//! What a new user meets first (`shared/reviews/usability.md`): the auxiliary loss
//! toggled on every preset, configs that can be read from the binary, JSON for scripts,
//! text in other encodings, run directories where a checkpoint is asked for.

use std::path::Path;

mod common;
use common::{ok_split as ok, rlcpc, s};

#[test]
fn aux_cpc_and_none_work_on_every_preset() {
    let t = tempfile::tempdir().unwrap();
    for (preset, _) in rlcpc::config::PRESETS {
        let base = rlcpc::config::Config::load(Some(Path::new(preset)), &[]).unwrap();
        if base.env.id.starts_with(rlcpc_envs::gymnasium::PREFIX) {
            continue; // Python environments: tests/gymnasium.rs trains these presets
        }
        for aux in ["cpc", "none"] {
            let out = t.path().join(format!("{preset}-{aux}"));
            let (_, err) = ok(&[
                "train",
                "--quiet",
                "--config",
                preset,
                "--aux",
                aux,
                "--out",
                s(&out),
                "--set",
                "run.total_steps=1",
            ]);
            let cfg = rlcpc::config::Config::load(Some(&out.join("config.toml")), &[]).unwrap();
            assert_eq!(rlcpc::config::user_name(&cfg.aux.kind()), aux, "{preset}");
            if aux == "cpc" {
                // K is what the run used: below the unroll, said when it was clipped.
                let k = cfg.aux.predict().unwrap().horizon;
                assert!(k < cfg.algo.unroll, "{preset}");
                // A preset without the head gets CPC's default K, 30.
                let preset_k = base.aux.predict().map_or(30, |p| p.horizon);
                assert_eq!(
                    err.contains("aux.horizon"),
                    preset_k != k,
                    "{preset}: {err}"
                );
            }
        }
    }
    // The default preset's clipped K (30 → unroll 5 − 1).
    let cfg = rlcpc::config::Config::load(None, &["aux.kind=\"cpc\"".into()]).unwrap();
    assert_eq!(cfg.aux.predict().unwrap().horizon, 4);
}

#[test]
fn config_show_prints_every_key_with_its_doc_and_reads_back() {
    let t = tempfile::tempdir().unwrap();
    let (list, _) = ok(&["config", "list"]);
    for (name, cmd) in rlcpc::config::show::presets() {
        assert!(list.contains(name) && list.contains(cmd), "{list}");
        let (text, _) = ok(&["config", "show", name]);
        assert!(text.contains(&format!("`rlcpc {cmd}`")), "{text}");
        // Plain text for users: no rustdoc links (review 3, N10).
        assert!(
            !text.contains("[`") && !text.contains("::"),
            "{name}:\n{text}"
        );
        // The printed TOML is the resolved config: written to a file, it loads as the
        // same config (the header and doc lines are comments).
        let file = t.path().join(format!("{name}.toml"));
        std::fs::write(&file, &text).unwrap();
        let (again, _) = ok(&["config", "show", s(&file)]);
        let body = |x: &str| x.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert_eq!(body(&again), body(&text), "{name}");
    }
    let (text, _) = ok(&[
        "config",
        "show",
        "cartpole",
        "--set",
        "run.total_steps=1234",
    ]);
    assert!(text.contains("total_steps = 1234"), "{text}");
    assert!(text.contains("# Environment steps to train for"), "{text}");
    assert!(
        text.contains("[optim]") && text.contains("# Learning rate"),
        "{text}"
    );
    let o = rlcpc(&["config", "show", "no-such-preset"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("cartpole-lstm-cpc"),
        "{e}"
    );
    // `train --help` lists every preset.
    let (help, _) = ok(&["train", "--help"]);
    for (name, _) in rlcpc::config::PRESETS {
        assert!(help.contains(name), "train --help does not list {name}");
    }
}

#[test]
fn json_output_for_scripts_and_run_directories_for_checkpoints() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("r");
    ok(&[
        "train",
        "--quiet",
        "--out",
        s(&run),
        "--set",
        "run.total_steps=3000",
    ]);
    // A run directory stands for its checkpoint.
    let (e, _) = ok(&["eval", "--checkpoint", s(&run), "--episodes", "3", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&e).unwrap();
    assert_eq!(v["returns"].as_array().unwrap().len(), 3);
    let mean = v["returns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .sum::<f64>()
        / 3.0;
    assert!((v["mean"].as_f64().unwrap() - mean).abs() < 1e-9);
    let (sc, _) = ok(&[
        "envs",
        "score",
        "TMaze-v0",
        "--policy",
        "oracle",
        "--episodes",
        "5",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&sc).unwrap();
    assert_eq!(
        (v["mean"].as_f64(), v["policy"].as_str()),
        (Some(1.0), Some("oracle"))
    );
    let rec = t.path().join("rec");
    ok(&[
        "record",
        "--checkpoint",
        s(&run),
        "--steps",
        "300",
        "--out",
        s(&rec),
    ]);
    let (p, _) = ok(&["probe", "--encoder", s(&run), "--data", s(&rec), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&p).unwrap();
    assert_eq!(v["probe"], "belief");
    assert!(v["rows"][0]["r2"]["x"].is_number(), "{v}");
    let (b, _) = ok(&[
        "bench",
        "--envs-only",
        "--repeats",
        "1",
        "--env-steps",
        "2000",
        "--env-seconds",
        "0.05",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(
        cases
            .iter()
            .any(|c| c["case"] == "env CartPole-v1" && c["median"].as_f64().unwrap() > 0.0),
        "{v}"
    );
}

#[test]
fn latin1_text_is_read_and_said_and_labels_split_at_any_whitespace() {
    use rlcpc::data::text::{load_corpus, load_labelled, load_labelled_with, TextEncoding};
    let t = tempfile::tempdir().unwrap();
    // "café" and "naïve" in ISO-8859-1: bytes 0xE9 and 0xEF, invalid as UTF-8.
    let mut latin = b"pos\tun caf\xe9 tr\xe8s bon\nneg  \t a na\xefve   film\n".to_vec();
    latin.extend(b"neg bad  plot\n");
    let f = t.path().join("l.tsv");
    std::fs::write(&f, &latin).unwrap();
    let l = load_labelled(&f).unwrap();
    assert!(l.latin1);
    assert_eq!(
        l.texts,
        vec!["un café très bon", "a naïve   film", "bad  plot"]
    );
    assert_eq!(l.classes, vec!["neg", "pos"]);
    let e = load_labelled_with(&f, TextEncoding::Utf8, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("l.tsv") && e.contains("not valid UTF-8"), "{e}");
    // UTF-8 stays UTF-8.
    let u = t.path().join("u.tsv");
    std::fs::write(&u, "pos\tun café\nneg\tmauvais\n").unwrap();
    let l = load_labelled(&u).unwrap();
    assert!(!l.latin1 && l.texts[0] == "un café");
    // A corpus: the Latin-1 file is read and listed.
    let dir = t.path().join("corpus");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.txt"), "Le caf\u{e9} est bon. Il fait beau.").unwrap();
    std::fs::write(dir.join("b.txt"), b"Le caf\xe9 est froid. Il pleut encore.").unwrap();
    let c = load_corpus(&dir).unwrap();
    assert_eq!(c.latin1, vec![dir.join("b.txt")]);
    assert!(
        c.documents[1][0].contains(&"café".to_string()),
        "{:?}",
        c.documents[1]
    );
}

#[test]
fn manifest_csv_reads_quoted_fields_with_commas() {
    use rlcpc::data::audio::{AudioSet, Layout, LoadOptions};
    let t = tempfile::tempdir().unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    for name in ["take 1, final.wav", "plain.wav"] {
        let mut w = hound::WavWriter::create(t.path().join(name), spec).unwrap();
        for i in 0..1600 {
            w.write_sample(((i as f32 / 7.0).sin() * 8000.0) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
    }
    std::fs::write(
        t.path().join("manifest.csv"),
        "path,speaker,note\n\"take 1, final.wav\",\"Smith, J.\",\"said \"\"hi\"\"\"\nplain.wav,ann,x\n",
    )
    .unwrap();
    let set = AudioSet::load(
        t.path(),
        &LoadOptions {
            layout: Layout::Auto,
            strict: true,
            sample_rate: 16000,
            max_files: 0,
        },
    )
    .unwrap();
    assert_eq!(set.utterances.len(), 2);
    let u = set
        .utterances
        .iter()
        .find(|u| u.path == Path::new("take 1, final.wav"))
        .unwrap();
    assert_eq!(u.labels["speaker"], "Smith, J.");
    assert_eq!(u.labels["note"], "said \"hi\"");
    // A row with a missing field is refused, naming the line.
    std::fs::write(t.path().join("manifest.csv"), "path,speaker\nplain.wav\n").unwrap();
    let e = AudioSet::load(
        t.path(),
        &LoadOptions {
            layout: Layout::Auto,
            strict: true,
            sample_rate: 16000,
            max_files: 0,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("manifest.csv") && e.contains("line 2"), "{e}");
}
