//! The rooms of the library after the refactor, checked through their own doors: config
//! validation that opens no file and the preflight that does, the one encoder-file
//! reader on an agent checkpoint and its export, the one validation-error shape, the
//! objective key, the probe report printer against the formats it replaced, and an
//! encoder file run on plain arrays (`rlcpc::probe::encode`).

mod common;

use candle_core::Tensor;
use common::{ok_split, rlcpc, s, text};
use rlcpc::config::Config;
use rlcpc::encoder_file::{EncoderFile, Modality, Origin};
use rlcpc::nn::encoders::ContextSpec;
use rlcpc::pretrain::TrainerConfig;
use rlcpc::probe::{ProbeRow, ProbeScore, Report};

#[test]
fn config_validation_opens_no_file_and_the_preflight_names_a_missing_encoder() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-encoder.safetensors");
    let set = format!("model.init_encoder=\"{}\"", missing.display());
    // The config's own values are fine: loading it reads no encoder file.
    let cfg = Config::load(None, std::slice::from_ref(&set)).expect("local checks only");
    // The preflight is where the file is read, and its message names the key and file.
    let e = format!("{:#}", rlcpc::rl::train::preflight(&cfg).unwrap_err());
    assert!(
        e.contains("invalid value for 'model.init_encoder'") && e.contains("no-such-encoder"),
        "{e}"
    );
    // Through the CLI: refused with exit 1 before the run directory is made.
    let out = tmp.path().join("run");
    let o = rlcpc(&["train", "--quiet", "--set", &set, "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("model.init_encoder"), "{}", text(&o));
    assert!(!out.exists(), "nothing written for a refused start");
}

/// Loading a config starts no Python: a `gymnasium:` environment's interpreter is
/// first run by the preflight, whose error names the key; what needs no Python (an
/// unknown wrapper) is still refused at load.
#[test]
fn config_validation_starts_no_python_and_the_preflight_names_the_interpreter() {
    let sets = [
        "env.id=\"gymnasium:CartPole-v1\"",
        "env.python=\"/no/such/python3\"",
    ]
    .map(String::from);
    let cfg = Config::load(None, &sets).expect("Python is not started at load");
    let e = format!("{:#}", rlcpc::rl::train::preflight(&cfg).unwrap_err());
    assert!(
        e.contains("invalid value for 'env.python'") && e.contains("/no/such/python3"),
        "{e}"
    );
    let mut bad = sets.to_vec();
    bad.push("env.wrappers=[\"nope\"]".into());
    let e = Config::load(None, &bad).unwrap_err().to_string();
    assert!(e.contains("env.wrappers") && e.contains("nope"), "{e}");
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn an_agent_checkpoint_reads_as_an_encoder_with_its_lstm_core_as_context_and_exports_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    ok_split(&[
        "train",
        "--quiet",
        "--config",
        "cartpole-lstm-cpc",
        "--set",
        "run.total_steps=2000",
        "--out",
        s(&run),
    ]);
    let ck = run.join("checkpoint.safetensors");
    let f = EncoderFile::read(&ck).unwrap();
    assert_eq!(f.origin, Origin::AgentCheckpoint);
    assert_eq!(f.modality(), Modality::Observations);
    let Some(ContextSpec::Lstm { hidden, .. }) = f.context else {
        panic!(
            "an LSTM agent's core is its context network: {:?}",
            f.context
        )
    };
    // load_into reads the core's weights as context.* and the encoder's as encoder.*.
    let (_, varmap) =
        rlcpc::pretrain::frames::FramesNet::random(&f.spec, f.context.as_ref(), 99).unwrap();
    f.load_into(&varmap, &["encoder.", "context."]).unwrap();
    let vars = varmap.data().lock().unwrap();
    let mut context_vars = 0;
    for (name, v) in vars.iter() {
        let source = match name.strip_prefix("context.") {
            Some(rest) => {
                context_vars += 1;
                format!("core.lstm.{rest}")
            }
            None => name.clone(),
        };
        assert_eq!(
            values(v.as_tensor()),
            values(&f.file.tensors[&source]),
            "{name} holds {source}"
        );
    }
    assert!(context_vars > 0, "the LSTM was loaded");
    drop(vars);
    // The export holds the same tensors under the encoder file's names.
    let exported = tmp.path().join("enc.safetensors");
    ok_split(&[
        "export-encoder",
        "--checkpoint",
        s(&run),
        "--out",
        s(&exported),
    ]);
    let e = EncoderFile::read(&exported).unwrap();
    assert_eq!(e.origin, Origin::EncoderFile);
    assert_eq!(e.spec, f.spec);
    assert_eq!(e.context, f.context);
    for (name, t) in &e.file.tensors {
        let source = match name.strip_prefix("context.") {
            Some(rest) => format!("core.lstm.{rest}"),
            None => name.clone(),
        };
        assert_eq!(values(t), values(&f.file.tensors[&source]), "{name}");
    }
    assert!(e.file.tensors.keys().any(|k| k.starts_with("context.")));
    assert!(hidden > 0);
}

#[test]
fn every_validation_error_has_one_shape_naming_the_key() {
    let e = Config::load(None, &["run.workers=0".to_string()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid value for 'run.workers': 0"), "{e}");
    // An agents-crate check comes out in the same shape.
    let e = Config::load(None, &["algo.gamma=1.5".to_string()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid value for 'algo.gamma': 1.5"), "{e}");
    // And a trainer's.
    let e =
        rlcpc::pretrain::audio::AudioCpcConfig::load(None, &["cpc.num_negatives=0".to_string()])
            .unwrap_err()
            .to_string();
    assert!(
        e.contains("invalid value for 'cpc.num_negatives': 0"),
        "{e}"
    );
}

#[test]
fn the_objective_is_a_config_key_and_unknown_ones_are_refused() {
    let cfg = rlcpc::pretrain::text::TextCpcConfig::load(None, &[]).unwrap();
    assert_eq!(cfg.objective, rlcpc::pretrain::ObjectiveKind::Cpc);
    assert!(cfg.to_toml().contains("objective = \"cpc\""));
    let e = rlcpc::pretrain::text::TextCpcConfig::load(None, &["objective=\"nosuch\"".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("nosuch") && e.contains("cpc"), "{e}");
}

/// The old format strings' layout, with the first column widened to the longest label
/// (an encoder's path can be longer than its 60 characters; the columns stay aligned).
#[test]
fn the_report_printer_lays_out_rows_as_the_old_format_strings_did() {
    let rows = [
        ProbeRow {
            features: "cpc (a/encoder.safetensors)".into(),
            dim: 128,
            score: ProbeScore {
                lambda: 1e-4,
                val: 0.5,
                train: 0.1994,
                test: 0.197,
            },
        },
        ProbeRow {
            features: "a label longer than the sixty characters of the first column: it widens it"
                .into(),
            dim: 26,
            score: ProbeScore {
                lambda: 1e-5,
                val: 0.9,
                train: 0.942,
                test: 1.0,
            },
        },
    ];
    let r = Report::classify(vec!["head line".into()], &rows, serde_json::json!({}));
    let mut want = String::from("head line\n");
    let w = rows[1].features.chars().count();
    assert!(w > 60);
    want.push_str(&format!(
        "{:<w$} {:>5} {:>8} {:>10} {:>10}\n",
        "features", "dim", "lambda", "train acc", "test acc"
    ));
    for r in &rows {
        want.push_str(&format!(
            "{:<w$} {:>5} {:>8.0e} {:>9.1}% {:>9.1}%\n",
            r.features,
            r.dim,
            r.score.lambda,
            100.0 * r.score.train,
            100.0 * r.score.test
        ));
    }
    assert_eq!(r.table(), want);
}

/// `rlcpc::probe::encode` (what the Python package runs): an agent's encoder on plain arrays
/// gives what its network gives, in one batch or in chunks, and refuses inputs that do
/// not fit its spec, saying what it reads.
#[test]
fn an_encoder_file_runs_on_plain_arrays_as_its_network_does() {
    use candle_core::{Device, Module};
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    ok_split(&[
        "train",
        "--quiet",
        "--set",
        "run.total_steps=2000",
        "--out",
        s(&run),
    ]);
    let enc = rlcpc::probe::encode::FileEncoder::read(&run).unwrap();
    assert_eq!(enc.item_shape(), Some(vec![4]));
    assert!(enc
        .tensors()
        .unwrap()
        .iter()
        .all(|(k, _)| k.starts_with("encoder.")));
    // 600 observations: more than one chunk.
    let n = 600;
    let x: Vec<f32> = (0..n * 4)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let (y, shape) = enc.forward(&x, &[n, 4]).unwrap();
    assert_eq!(shape, vec![n, 64]);
    let (net, _) =
        rlcpc::encoder_file::load_encoder(&run.join("checkpoint.safetensors"), &Device::Cpu)
            .unwrap();
    let t = Tensor::from_slice(&x, (n, 4), &Device::Cpu).unwrap();
    assert_eq!(
        y,
        values(&net.forward(&t).unwrap()),
        "the network's own forward"
    );
    let (last, _) = enc.forward(&x[(n - 1) * 4..], &[1, 4]).unwrap();
    // An item alone gives its row (to rounding: the matrix product blocks differently).
    let row = &y[(n - 1) * 64..];
    assert!(
        last.iter().zip(row).all(|(a, b)| (a - b).abs() < 1e-5),
        "{last:?} {row:?}"
    );
    let (empty, shape) = enc.forward(&[], &[0, 4]).unwrap();
    assert!(empty.is_empty() && shape == vec![0, 64]);
    for (data, dims, needle) in [
        (vec![0.0; 15], vec![3, 5], "reads [N, 4], got [3, 5]"),
        (vec![0.0; 4], vec![], "scalar"),
        (vec![0.0; 7], vec![2, 4], "do not fill"),
        (vec![0.0, f32::NAN, 0.0, 0.0], vec![1, 4], "finite"),
    ] {
        let e = format!("{:#}", enc.forward(&data, &dims).unwrap_err());
        assert!(e.contains(needle), "{e}");
    }
    let e = format!("{:#}", enc.forward_text(&[vec![1, 2]]).unwrap_err());
    assert!(e.contains("does not read sentences"), "{e}");
}

/// `[aux]` is a tagged section: each head takes its own keys only, a key of another head
/// is refused naming the heads that take it, and setting `aux.kind` replaces the section
/// (keys the new head shares stay; a key set by an earlier `--set` is kept, and refused
/// if the new head does not take it). A `config.toml` that an older rlcpc wrote, with
/// every head's keys, still loads as its own head.
#[test]
fn aux_is_a_tagged_section_and_a_key_of_another_head_is_refused() {
    use rlcpc::config::{AuxConfig, AuxKind, CpcaLoss};
    use std::path::Path;
    let load = |preset: &str, sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Config::load(Some(Path::new(preset)), &sets)
    };
    // The preset's CPC keys go when the kind changes; its weight stays.
    let c = load(
        "lab-explore_goal_locations",
        &["aux.weight=0.3", "aux.kind=\"curl\""],
    )
    .unwrap();
    match &c.aux {
        AuxConfig::Curl(h) => assert_eq!((h.weight, h.curl_shift), (0.3, 4)),
        other => panic!("{other:?}"),
    }
    // CPC → CPC|A keeps every predicting key.
    let c = load(
        "popgym",
        &["aux.kind=\"cpca\"", "aux.cpca_loss=\"infonce\""],
    )
    .unwrap();
    match &c.aux {
        AuxConfig::Cpca(h) => {
            assert_eq!((h.predict.horizon, h.predict.horizons), (8, 2));
            assert_eq!(h.cpca_loss, CpcaLoss::Infonce);
        }
        other => panic!("{other:?}"),
    }
    // A key of another head, from a --set before or after the kind, or from a file.
    for sets in [
        &["aux.kind=\"curl\"", "aux.horizon=5"][..],
        &["aux.horizon=5", "aux.kind=\"curl\""],
        &["aux.kind=\"cpc\"", "aux.cpca_loss=\"binary\""],
        &["aux.kind=\"none\"", "aux.weight=0.5"],
    ] {
        let e = load("lab-explore_goal_locations", sets)
            .unwrap_err()
            .to_string();
        let key = sets.iter().find(|s| !s.starts_with("aux.kind")).unwrap();
        let key = key.split('=').next().unwrap();
        assert!(
            e.contains(&format!("{key} is not a key of aux.kind")),
            "{sets:?}: {e}"
        );
    }
    let e = load("cartpole", &["aux.curl_shift=2"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("a key of \"curl\"") && e.contains("\"none\" takes no other key"),
        "{e}"
    );
    let e = Config::from_toml(
        "[env]\nid = \"CartPole-v1\"\n[aux]\nkind = \"curl\"\nhorizon = 3\n",
        "mine.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("mine.toml") && e.contains("aux.horizon"), "{e}");
    let e = load("cartpole", &["aux.kind=\"cpcx\""])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cpcx") && e.contains("curl"), "{e}");
    // What the config writes reads back as the same config, for every kind.
    for kind in AuxKind::ALL {
        let c = load("tmaze", &[&format!("aux.kind=\"{}\"", kind.as_str())]);
        if kind == AuxKind::Curl {
            continue; // CURL needs images; its keys are checked above
        }
        let c = c.unwrap();
        assert_eq!(c.aux.kind(), kind);
        assert_eq!(Config::from_toml(&c.to_toml(), "x").unwrap(), c, "{kind:?}");
    }
    // The format before: every head's keys in one section, read as the head's own.
    let old = "[env]\nid = \"CartPole-v1\"\n[aux]\nkind = \"cpc\"\nweight = 0.2\nhorizon = 3\nnegatives = \"both\"\nnum_negatives = 7\nstart_times = 0\nhorizons = 0\ntargets = \"future\"\ncpca_loss = \"binary\"\ncurl_samples = 256\ncurl_shift = 4\ncurl_momentum = 0.95\n";
    let c = Config::from_toml(old, "old.toml").unwrap();
    let p = c.aux.predict().unwrap();
    assert_eq!(
        (c.aux.weight(), p.horizon, p.num_negatives),
        (Some(0.2), 3, 7)
    );
    assert!(!c.to_toml().contains("curl_samples"));
    // set_kind is what --set aux.kind does.
    let mut a = load("popgym", &[]).unwrap().aux;
    a.set_kind(AuxKind::Cpca);
    assert_eq!(a, load("popgym", &["aux.kind=\"cpca\""]).unwrap().aux);
}
