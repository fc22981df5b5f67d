//! `rlcpc study`: a small plan end to end (two tasks, two arms, a tuning grid of 2,
//! 2 tuning + 3 evaluation seeds), stopped part-way by --minutes and by SIGTERM and
//! resumed to the same report as a straight run; and every refusal of a bad plan.

use std::path::Path;

use crate::common::bin;
use crate::support::{s, text, Rlcpc};

/// The example plan with budgets of `steps`; `edit` rewrites its text.
fn plan(dir: &Path, name: &str, steps: u64, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let text = format!(
        r#"
[study]
name = "small"
seeds = [1, 2, 3]
reference = "none"

[[task]]
name = "tmaze"
config = "tmaze"
set = ["env.options.corridor_length=6", "env.num_envs=8"]
steps = {steps}
unroll = 14

[[task]]
name = "twin"
config = "tmaze"
set = ["env.options.corridor_length=6", "env.options.cue_every_step=true", "env.num_envs=8"]
steps = {steps}
unroll = 14
control = true

[[arm]]
name = "none"
set = ['aux.kind="none"']

[[arm]]
name = "cpc"
set = ['aux.kind="cpc"', "aux.horizon=6"]

[tuning]
tasks = ["tmaze"]
seeds = [101, 102]
metric = "final_return"
[tuning.space]
"optim.lr" = [1e-3, 3e-3]

[[criterion]]
name = "helps where memory matters"
arm = "cpc"
test = "above"

[[criterion]]
name = "harmless on the control"
arm = "cpc"
test = "not_below"
tasks = ["twin"]
"#
    );
    let path = dir.join(name);
    std::fs::write(&path, edit(text)).unwrap();
    path
}

/// The report files that must not depend on how the study was run.
fn report(dir: &Path) -> Vec<(String, Vec<u8>)> {
    [
        "report.md",
        "summary.csv",
        "summary.json",
        "runs.csv",
        "plots/tmaze.png",
        "plots/twin.png",
    ]
    .iter()
    .map(|f| {
        (
            f.to_string(),
            std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}")),
        )
    })
    .collect()
}

fn results(dir: &Path) -> usize {
    fn walk(p: &Path, n: &mut usize) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, n);
            } else if p.file_name().is_some_and(|f| f == "result.json") {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(dir, &mut n);
    n
}

#[test]
fn a_study_stopped_and_resumed_writes_the_same_report_as_a_straight_run() {
    let tmp = tempfile::tempdir().unwrap();
    let p = plan(tmp.path(), "plan.toml", 150_000, |t| t);
    // Straight through.
    let straight = tmp.path().join("straight");
    let out = Rlcpc::new("study")
        .args(&[s(&p), "--jobs", "2"])
        .out(&straight)
        .ok();
    assert!(out.contains("done: report"), "{out}");
    assert_eq!(results(&straight), 8 + 12);
    let want = report(&straight);
    let md = String::from_utf8(want[0].1.clone()).unwrap();
    for needle in [
        "## Tuning",
        "c0 (optim.lr=0.001)",
        "in-sample",
        "### twin (control)",
        "Δ vs reference",
        "| helps where memory matters | cpc | final_return | CI of Δ above 0 |",
        "| harmless on the control |",
    ] {
        assert!(md.contains(needle), "report.md lacks '{needle}':\n{md}");
    }
    // The memoryless twin is learnt by both arms (the control works as a control).
    let summary: serde_json::Value = serde_json::from_slice(&want[2].1).unwrap();
    for cell in summary["cells"].as_array().unwrap() {
        if cell["task"] == "twin" && cell["metric"] == "final_return" {
            assert!(cell["mean"].as_f64().unwrap() > 0.8, "{cell}");
        }
    }

    // In pieces: --minutes stops it part-way, the same command finishes it.
    let pieces = tmp.path().join("pieces");
    let o = Rlcpc::new("study")
        .args(&[s(&p), "--jobs", "2", "--minutes", "0.04"])
        .out(&pieces)
        .output();
    let out = text(&o);
    assert_eq!(
        o.status.code(),
        Some(3),
        "a stopped study exits with 3:\n{out}"
    );
    assert!(
        out.contains("stopped: ") && out.contains("runs remain"),
        "{out}"
    );
    let partial = results(&pieces);
    assert!(
        partial < 20,
        "--minutes did not stop the study part-way ({partial} runs done)"
    );
    let out = Rlcpc::new("study")
        .args(&[s(&p), "--jobs", "2"])
        .out(&pieces)
        .ok();
    assert!(out.contains("done: report"), "{out}");
    assert_eq!(report(&pieces), want, "the resumed study's report differs");

    // SIGTERM part-way (what Slurm and docker stop send), then resumed.
    let termed = tmp.path().join("termed");
    let child = bin()
        .args(["study", s(&p), "--jobs", "2", "--out", s(&termed)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while results(&termed) < 3 {
        assert!(t0.elapsed().as_secs() < 120, "the study never got going");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: kill(2) on this test's child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let o = child.wait_with_output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(t.contains("stopped: "), "{t}");
    assert!(results(&termed) < 20, "{t}");
    Rlcpc::new("study").args(&[s(&p)]).out(&termed).ok();
    assert_eq!(
        report(&termed),
        want,
        "the study resumed after SIGTERM reports otherwise"
    );
}

/// A rewrite of the plan's text.
type Edit = Box<dyn Fn(String) -> String>;

#[test]
fn bad_plans_are_refused_naming_the_key_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        (
            "unknown key",
            Box::new(|t| t.replace("reference = \"none\"", "reference = \"none\"\nsedes = [4]")),
            vec!["sedes"],
        ),
        (
            "arm that does not load",
            Box::new(|t| t.replace("aux.horizon=6", "aux.horizon=0")),
            vec!["arm 'cpc'", "aux.horizon"],
        ),
        (
            "task that does not load",
            Box::new(|t| t.replacen("config = \"tmaze\"", "config = \"no-such-preset\"", 1)),
            vec!["task 'tmaze'", "no-such-preset"],
        ),
        (
            "empty grid",
            Box::new(|t| t.replace("[1e-3, 3e-3]", "[]")),
            vec!["tuning.space.\"optim.lr\"", "empty"],
        ),
        (
            "overlapping seeds",
            Box::new(|t| t.replace("seeds = [101, 102]", "seeds = [101, 2]")),
            vec!["tuning.seeds", "seed 2", "disjoint"],
        ),
        (
            "budget of 0",
            Box::new(|t| t.replacen("steps = 1000", "steps = 0", 1)),
            vec!["task[0].steps", "0"],
        ),
        (
            "unknown metric",
            Box::new(|t| t.replace("test = \"above\"", "test = \"above\"\nmetric = \"mean\"")),
            vec!["criterion[0].metric", "mean"],
        ),
        (
            "unknown task",
            Box::new(|t| t.replace("tasks = [\"twin\"]", "tasks = [\"twins\"]")),
            vec!["criterion[1].tasks", "twins"],
        ),
        (
            "unknown arm",
            Box::new(|t| t.replacen("arm = \"cpc\"", "arm = \"cpca\"", 1)),
            vec!["criterion[0].arm", "cpca"],
        ),
        (
            "unknown tuning task",
            Box::new(|t| t.replace("tasks = [\"tmaze\"]", "tasks = [\"maze\"]")),
            vec!["tuning.tasks", "maze"],
        ),
        (
            "no evaluation seeds",
            Box::new(|t| t.replace("seeds = [1, 2, 3]", "seeds = []")),
            vec!["study.seeds", "at least 2"],
        ),
        (
            "one evaluation seed",
            Box::new(|t| t.replace("seeds = [1, 2, 3]", "seeds = [1]")),
            vec!["study.seeds", "at least 2"],
        ),
        (
            "a name that climbs out",
            Box::new(|t| t.replace("name = \"twin\"", "name = \"..\"")),
            vec!["task[1].name", "'..'"],
        ),
        (
            "a tuning task named twice",
            Box::new(|t| t.replace("tasks = [\"tmaze\"]", "tasks = [\"tmaze\", \"tmaze\"]")),
            vec!["tuning.tasks", "twice"],
        ),
        (
            "a budget set by an arm",
            Box::new(|t| t.replace("aux.horizon=6", "aux.horizon=6\", \"run.total_steps=5")),
            vec!["arm[1].set", "run.total_steps"],
        ),
        (
            "a seed tuned",
            Box::new(|t| t.replace("\"optim.lr\" = [1e-3, 3e-3]", "\"run.seed\" = [1, 2]")),
            vec!["tuning.space", "run.seed"],
        ),
        (
            "a grid too large to run",
            Box::new(|t| {
                t.replace(
                    "\"optim.lr\" = [1e-3, 3e-3]",
                    "\"optim.lr\" = [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,84,85,86,87,88,89,90,91,92,93,94,95,96,97,98,99,100,101,102,103,104,105,106,107,108,109,110,111,112,113,114,115,116,117,118,119,120,121,122,123,124,125,126,127,128,129,130,131,132,133,134,135,136,137,138,139,140,141,142,143,144,145,146,147,148,149,150]\n\"algo.ent_coef\" = [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80]",
                )
            }),
            vec!["tuning.space", "12000 configurations", "random"],
        ),
        (
            "a base that is not an arm",
            Box::new(|t| t + "\n[[arm]]\nname = \"k2\"\nbase = \"cpx\"\n"),
            vec!["arm[2].base", "cpx"],
        ),
        (
            "a base with a base",
            Box::new(|t| {
                t + "\n[[arm]]\nname = \"k2\"\nbase = \"cpc\"\n[[arm]]\nname = \"k3\"\nbase = \"k2\"\n"
            }),
            vec!["arm[3].base", "tuned arm"],
        ),
        (
            "a reference that skips a task of the arm",
            Box::new(|t| {
                t + "\n[[arm]]\nname = \"z\"\nbase = \"none\"\ntasks = [\"tmaze\"]\n[[arm]]\nname = \"k2\"\nbase = \"cpc\"\nreference = \"z\"\n"
            }),
            vec!["arm[3].reference", "does not run on task 'twin'"],
        ),
        (
            "a tuned arm that skips a tuning task",
            Box::new(|t| t + "\n[[arm]]\nname = \"w\"\ntasks = [\"twin\"]\n"),
            vec!["arm[2].tasks", "tuning task 'tmaze'"],
        ),
        (
            "an arm on an unknown task",
            Box::new(|t| t + "\n[[arm]]\nname = \"w\"\nbase = \"cpc\"\ntasks = [\"maze\"]\n"),
            vec!["arm[2].tasks", "'maze'"],
        ),
        (
            "a distinct key outside the space",
            Box::new(|t| {
                t.replace(
                    "metric = \"final_return\"\n[tuning.space]",
                    "metric = \"final_return\"\ndistinct = [\"algo.ent_coef\"]\n[tuning.space]",
                )
            }),
            vec!["tuning.distinct", "algo.ent_coef"],
        ),
        (
            "a criterion on a task its arm skips",
            Box::new(|t| {
                t + "\n[[arm]]\nname = \"k2\"\nbase = \"cpc\"\ntasks = [\"tmaze\"]\n[[criterion]]\nname = \"k2 on the twin\"\narm = \"k2\"\ntest = \"above\"\ntasks = [\"twin\"]\n"
            }),
            vec!["criterion[2].tasks", "does not run on task 'twin'"],
        ),
        (
            "duplicate arm",
            Box::new(|t| t.replace("name = \"cpc\"", "name = \"none\"")),
            vec!["arm[1].name", "twice"],
        ),
    ];
    for (what, edit, needles) in cases {
        let p = plan(tmp.path(), "bad.toml", 1000, edit);
        let out = tmp.path().join(format!("out-{}", what.replace(' ', "-")));
        let mut n = needles.clone();
        n.push("bad.toml");
        Rlcpc::new("study").args(&[s(&p)]).out(&out).fails_with(&n);
        assert!(
            !out.exists(),
            "{what}: the refused study wrote '{}'",
            out.display()
        );
    }
    // A missing file is named too.
    Rlcpc::new("study")
        .args(&[s(&tmp.path().join("nope.toml"))])
        .fails_with(&["nope.toml"]);
}

#[test]
fn a_changed_plan_is_refused_naming_the_change_unless_replanned() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("study");
    let p = plan(tmp.path(), "plan.toml", 1000, |t| t);
    let listed = Rlcpc::new("study")
        .args(&[s(&p), "--dry-run"])
        .out(&out)
        .ok();
    assert!(
        listed.contains("8 tuning and 12 evaluation runs"),
        "{listed}"
    );
    let p = plan(tmp.path(), "plan.toml", 1000, |t| {
        t.replacen("steps = 1000", "steps = 2000", 1)
    });
    Rlcpc::new("study")
        .args(&[s(&p), "--dry-run"])
        .out(&out)
        .fails_with(&["another plan", "task[0].steps: 1000 → 2000", "--replan"]);
    let ok = Rlcpc::new("study")
        .args(&[s(&p), "--dry-run", "--replan"])
        .out(&out)
        .ok();
    assert!(ok.contains("--replan"), "{ok}");
    Rlcpc::new("study")
        .args(&[s(&p), "--dry-run"])
        .out(&out)
        .ok();
    Rlcpc::new("study")
        .args(&[s(&p), "--minutes", "0"])
        .out(&out)
        .fails_with(&["--minutes"]);
    Rlcpc::new("study")
        .args(&[s(&p), "--jobs", "0"])
        .out(&out)
        .fails_with(&["--jobs"]);
}

#[test]
fn diverged_runs_are_results_not_faults() {
    let tmp = tempfile::tempdir().unwrap();
    // A tuning configuration that diverges cannot be chosen; the study goes on.
    let p = plan(tmp.path(), "plan.toml", 3000, |t| {
        t.replace("[1e-3, 3e-3]", "[1e-3, 1e30]")
    });
    let out = tmp.path().join("tuned");
    let o = Rlcpc::new("study").args(&[s(&p)]).out(&out).ok();
    assert!(o.contains("diverged") && o.contains("done: report"), "{o}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| none | c0 (optim.lr=0.001) |"), "{md}");
    assert!(
        md.contains("| none | c1 (optim.lr=1000000000000000000000000000000.0) | n/a |  |"),
        "{md}"
    );
    // An arm whose evaluation runs diverge: its cells are missing, named, never 0, and
    // the criterion on it is undecided.
    let p = tmp.path().join("blowup.toml");
    std::fs::write(
        &p,
        r#"
[study]
name = "blowup"
seeds = [1, 2]
[[task]]
name = "tmaze"
config = "tmaze"
set = ["env.options.corridor_length=4", "env.num_envs=4"]
steps = 2000
unroll = 8
[[arm]]
name = "none"
set = ['aux.kind="none"']
[[arm]]
name = "blowup"
set = ['aux.kind="cpc"', "aux.horizon=4", "aux.weight=1e300"]
[[criterion]]
name = "helps"
arm = "blowup"
test = "above"
"#,
    )
    .unwrap();
    let out = tmp.path().join("blowup");
    Rlcpc::new("study").args(&[s(&p)]).out(&out).ok();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| blowup | missing | missing |"), "{md}");
    assert!(md.contains("diverged: non-finite"), "{md}");
    assert!(md.contains("**undecided**"), "{md}");
}

#[test]
fn mechanism_arms_take_their_base_choice_and_run_where_named() {
    let tmp = tempfile::tempdir().unwrap();
    let p = plan(tmp.path(), "mech.toml", 60_000, |t| {
        t.replacen("unroll = 14\n", "unroll = 14\nsolved = 0.9\n", 1)
            + r#"
[[arm]]
name = "k2"
base = "cpc"
set = ["aux.horizon=2"]
tasks = ["tmaze"]

[[arm]]
name = "none-small"
base = "none"
set = ["model.lstm_hidden=16"]
tasks = ["tmaze"]

[[arm]]
name = "cpc-small"
base = "cpc"
set = ["model.lstm_hidden=16"]
tasks = ["tmaze"]
reference = "none-small"
"#
    });
    let dir = tmp.path().join("mech");
    let out = Rlcpc::new("study")
        .args(&[s(&p), "--jobs", "2"])
        .out(&dir)
        .ok();
    assert!(out.contains("done: report"), "{out}");
    // Tuning: the two tuned arms only (2 configurations × 2 seeds each); evaluation: 5
    // arms on the T-maze, 2 on the twin, 3 seeds each.
    assert_eq!(results(&dir.join("tune")), 8);
    assert_eq!(results(&dir.join("eval")), 21);
    assert!(!dir.join("eval/twin/k2").exists());
    // Each mechanism arm ran with its base's chosen configuration.
    let runs = read(&dir.join("runs.csv"));
    let config_of = |arm: &str| -> String {
        runs.lines()
            .find(|l| l.starts_with(&format!("eval,tmaze,{arm},")))
            .unwrap_or_else(|| panic!("no eval row of {arm}:\n{runs}"))
            .split(',')
            .nth(3)
            .unwrap()
            .to_string()
    };
    assert_eq!(config_of("k2"), config_of("cpc"));
    assert_eq!(config_of("cpc-small"), config_of("cpc"));
    assert_eq!(config_of("none-small"), config_of("none"));
    let resolved = read(&dir.join("eval/tmaze/k2/seed-1/config.toml"));
    assert!(resolved.contains("horizon = 2"), "{resolved}");
    let md = read(&dir.join("report.md"));
    for needle in [
        "| k2 | `cpc`'s choice, with aux.horizon=2 |",
        "| cpc-small (vs none-small) |",
        "seeds with final return ≥ 0.9",
        "Spearman ρ(accuracy, final return)",
    ] {
        assert!(md.contains(needle), "report.md lacks '{needle}':\n{md}");
    }
    // The head's accuracy is read from every cpc run; none has none.
    let summary: serde_json::Value =
        serde_json::from_str(&read(&dir.join("summary.json"))).unwrap();
    for e in summary["extras"].as_array().unwrap() {
        let acc = e["head_acc"].as_f64();
        match e["arm"].as_str().unwrap() {
            "none" | "none-small" => assert!(acc.is_none(), "{e}"),
            _ => assert!(acc.is_some_and(|a| (0.0..=1.0).contains(&a)), "{e}"),
        }
        if e["task"] == "tmaze" {
            assert!(e["solved"].as_u64().is_some_and(|n| n <= 3), "{e}");
        }
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The study files the repository ships check and pin as they are (every run's config
/// loads), with the run counts their protocols state.
#[test]
fn the_shipped_study_files_load() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("studies");
    for (file, tuning, eval) in [
        ("example.toml", 8, 12),
        ("memory.toml", 144, 680),
        ("memory-lab.toml", 0, 10),
    ] {
        let out = Rlcpc::new("study")
            .args(&[s(&root.join(file)), "--dry-run"])
            .out(&tmp.path().join(file))
            .ok();
        let want = format!("{tuning} tuning and {eval} evaluation runs");
        assert!(out.contains(&want), "{file}: wanted '{want}' in:\n{out}");
    }
}
