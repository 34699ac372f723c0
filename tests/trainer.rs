//! The shared training loop (`core::trainer`): early stopping and best-model selection on a
//! scripted metric sequence, resume after kill -9 and after Ctrl-C for every model through the
//! CLI, the metrics files, resume refusals that name the key, and `tessera plot`.

mod common;

use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use common::{assert_success, write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tessera::core::checkpoint::load_safetensors;
use tessera::core::optim::{AdamConfig, Decay};
use tessera::core::run::RunDir;
use tessera::core::trainer::{
    self, CheckpointNames, Direction, LoopSettings, MicroStep, RunOptions, Selection, Task,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A task whose metric after epoch e is `metrics[e - 1]`; it records the epochs it saved.
struct Scripted {
    metrics: Vec<f64>,
    evaluated: AtomicUsize,
    saved: Mutex<Vec<usize>>,
    ad: Device,
}

impl Task for Scripted {
    type Model = Linear;
    type Item = f32;
    type Batch = Vec<f32>;

    fn batches(&self, _epoch: usize) -> Vec<Vec<f32>> {
        vec![vec![1.0, 2.0, 3.0, 4.0], vec![0.5, -1.0]]
    }

    fn items<'a>(&self, batch: &'a Vec<f32>) -> &'a [f32] {
        batch
    }

    fn loss(&self, m: &Linear, batch: &Vec<f32>, micro: &[f32], _: MicroStep) -> Tensor<1> {
        let x = Tensor::<2>::from_data(TensorData::new(micro.to_vec(), [micro.len(), 1]), &self.ad);
        let y = m.forward(x);
        (y.clone() * y)
            .mean()
            .mul_scalar(micro.len() as f64 / batch.len() as f64)
    }

    fn evaluate(&self, _model: &Linear) -> anyhow::Result<Vec<(String, f64)>> {
        let i = self.evaluated.fetch_add(1, Ordering::SeqCst);
        Ok(vec![("score".into(), self.metrics[i])])
    }

    fn save_model(&self, _model: &Linear, _run: &RunDir, epoch: usize) -> anyhow::Result<()> {
        self.saved.lock().unwrap().push(epoch);
        Ok(())
    }
}

fn scripted_settings(epochs: usize, selection: Option<Selection>) -> LoopSettings {
    LoopSettings {
        format: "test-scripted",
        config_file: ("train.toml", "epochs = 1\n".into()),
        resume_settings: toml::Table::new(),
        extendable: &[],
        names: CheckpointNames::default(),
        checkpoint_meta: Default::default(),
        seed: 0,
        epochs,
        micro_batch: 0,
        dropout_stream: 99,
        lr: 1e-2,
        warmup_steps: 0,
        decay: Decay::Constant,
        adam: AdamConfig::default(),
        selection,
    }
}

fn run_scripted(
    metrics: &[f64],
    epochs: usize,
    selection: Option<Selection>,
) -> (trainer::TrainOutcome, Vec<usize>, tempfile::TempDir) {
    let dev = Device::flex();
    dev.seed(1);
    let task = Scripted {
        metrics: metrics.to_vec(),
        evaluated: AtomicUsize::new(0),
        saved: Mutex::new(vec![]),
        ad: dev.clone().autodiff(),
    };
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(dir.path()).unwrap();
    let model = LinearConfig::new(1, 1).init(&dev);
    let opts = RunOptions {
        quiet: true,
        ..Default::default()
    };
    let out = trainer::train(
        &task,
        model,
        &scripted_settings(epochs, selection),
        &run,
        &dev,
        &opts,
    )
    .unwrap();
    let saved = task.saved.lock().unwrap().clone();
    (out, saved, dir)
}

#[test]
fn early_stopping_stops_at_the_expected_epoch_and_keeps_the_best() {
    // Larger is better, patience 2: best at epoch 2 (0.30); epochs 3 and 4 do not beat it (0.25
    // is below, 0.30 is equal, not better), so training stops before epoch 5 although epoch 6
    // would have been better.
    let max = Selection {
        metric: "score".into(),
        direction: Direction::Max,
        patience: Some(2),
    };
    let (out, saved, dir) = run_scripted(&[0.10, 0.30, 0.25, 0.30, 0.9, 0.95], 6, Some(max));
    assert_eq!(out.epochs_run, 4);
    assert_eq!(out.best_epoch, 2);
    assert_eq!(out.best_value, 0.30);
    assert!(out.stopped_early);
    assert_eq!(saved, vec![1, 2]);
    assert_eq!(
        out.records.iter().map(|r| r.best_epoch).collect::<Vec<_>>(),
        vec![1, 2, 2, 2]
    );
    // metrics.jsonl and metrics.csv hold the four epochs with the metric and the bookkeeping.
    let jsonl = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4);
    for k in [
        "epoch",
        "step",
        "loss",
        "lr",
        "score",
        "train_seconds",
        "seconds",
        "cpu_seconds",
        "items",
        "items_per_second",
        "best_epoch",
    ] {
        assert!(rows[0].get(k).is_some(), "metrics.jsonl lacks {k}");
    }
    assert_eq!(rows[3]["step"], 8);
    assert_eq!(rows[3]["items"], 6);
    let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines[0].starts_with("epoch,step,loss,lr,score,"));
    assert!(lines[2].starts_with("2,4,"));
    assert!(dir.path().join("train.toml").exists());

    // Smaller is better, no patience: every epoch runs, the lowest is kept.
    let min = Selection {
        metric: "score".into(),
        direction: Direction::Min,
        patience: None,
    };
    let (out, saved, _d) = run_scripted(&[0.5, 0.4, 0.45, 0.1, 0.2], 5, Some(min));
    assert_eq!(
        (out.epochs_run, out.best_epoch, out.stopped_early),
        (5, 4, false)
    );
    assert_eq!(saved, vec![1, 2, 4]);

    // No selection: the last epoch's model is kept, every epoch.
    let (out, saved, _d) = run_scripted(&[0.5, 0.4, 0.3], 3, None);
    assert_eq!((out.epochs_run, out.best_epoch), (3, 3));
    assert_eq!(saved, vec![1, 2, 3]);
    assert!(out.first_loss.is_finite() && out.last_loss < out.first_loss);
}

#[test]
fn a_selection_metric_the_model_does_not_log_is_an_error_naming_the_metrics() {
    let dev = Device::flex();
    let task = Scripted {
        metrics: vec![0.1; 3],
        evaluated: AtomicUsize::new(0),
        saved: Mutex::new(vec![]),
        ad: dev.clone().autodiff(),
    };
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(dir.path()).unwrap();
    let sel = Selection {
        metric: "accuracy".into(),
        direction: Direction::Max,
        patience: None,
    };
    let err = trainer::train(
        &task,
        LinearConfig::new(1, 1).init(&dev),
        &scripted_settings(3, Some(sel)),
        &run,
        &dev,
        &RunOptions {
            quiet: true,
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`accuracy`") && err.contains("score"), "{err}");
}

fn tessera() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

fn epochs_logged(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Waits until `run` has logged `epochs` epochs (at most two minutes).
fn wait_for_epochs(run: &Path, epochs: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while epochs_logged(run) < epochs && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every tensor of two checkpoints equal, bit for bit.
fn assert_same_checkpoint(a: &Path, b: &Path, what: &str) {
    let (ta, ma) = load_safetensors(&a.join("checkpoint.safetensors")).unwrap();
    let (tb, mb) = load_safetensors(&b.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ma["epoch"], mb["epoch"], "{what}");
    assert_eq!(ma["step"], mb["step"], "{what}");
    assert!(ta.keys().any(|k| k.starts_with("optimizer.")));
    assert_eq!(ta.len(), tb.len(), "{what}");
    for (k, v) in &ta {
        assert_eq!(v, &tb[k], "tensor {k} differs: {what}");
    }
}

/// Runs `args(run)` to the end, and again killed with SIGKILL once `kill_after` epochs are
/// logged, then with `--resume`: the two final checkpoints must be equal, and the resumed log
/// must hold each epoch once.
fn kill_and_resume(args: &dyn Fn(&Path) -> Command, epochs: usize, kill_after: usize) {
    let d = tempfile::tempdir().unwrap();
    let full = d.path().join("full");
    assert_success(&args(&full).output().unwrap());
    let killed = d.path().join("killed");
    let mut child = args(&killed)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_epochs(&killed, kill_after);
    child.kill().unwrap();
    child.wait().unwrap();
    let (_, meta) = load_safetensors(&killed.join("checkpoint.safetensors")).unwrap();
    let at: usize = meta["epoch"].parse().unwrap();
    assert!((1..epochs).contains(&at), "killed after epoch {at}");
    let mut resume = args(&killed);
    resume.arg("--resume");
    assert_success(&resume.output().unwrap());
    assert_same_checkpoint(&full, &killed, "kill -9 and resume vs uninterrupted");
    let logged: Vec<u64> = std::fs::read_to_string(killed.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["epoch"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(logged, (1..=epochs as u64).collect::<Vec<_>>());
}

fn counting_corpus(dir: &Path, lines: usize) -> PathBuf {
    let words = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    let mut text = String::new();
    for i in 0..lines {
        let start = (i * 7) % 14;
        let len = 3 + (i * 5) % 4;
        text += &words[start..start + len].join(" ");
        text.push('\n');
    }
    write(dir, "corpus.txt", &text)
}

#[test]
fn killed_mlm_training_resumes_to_the_uninterrupted_result() {
    let d = tempfile::tempdir().unwrap();
    let corpus = counting_corpus(d.path(), 3000);
    let vocab = d.path().join("vocab");
    let out = tessera()
        .args(["text", "vocab", "--vocab-size", "100", "--input"])
        .arg(&corpus)
        .arg("--output")
        .arg(&vocab)
        .output()
        .unwrap();
    assert_success(&out);
    let args = |run: &Path| {
        let mut c = tessera();
        c.args(["text", "train", "--json", "--threads", "1", "--epochs", "4"])
            .args(["--max-len", "16", "--valid-lines", "200", "--input"])
            .arg(&corpus)
            .arg("--vocab")
            .arg(&vocab)
            .arg("--run-dir")
            .arg(run);
        c
    };
    kill_and_resume(&args, 4, 1);
}

fn digits() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits/digits.csv.gz");
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: run scripts/fetch-data.sh digits");
        None
    }
}

#[test]
fn killed_vit_training_resumes_to_the_uninterrupted_result() {
    let Some(data) = digits() else { return };
    let args = |run: &Path| {
        let mut c = tessera();
        c.args(["vit", "train", "--json", "--threads", "1", "--hidden", "64"])
            .args(["--layers", "4", "--heads", "4", "--epochs", "6", "--data"])
            .arg(&data)
            .arg("--run-dir")
            .arg(run);
        c
    };
    kill_and_resume(&args, 6, 2);
}

/// Interactions in which each user's next item follows the last (mod `items`).
fn rule_data(dir: &Path, users: usize, items: usize) -> PathBuf {
    let mut text = String::new();
    for u in 0..users {
        for t in 0..20 {
            text += &format!("u{u},i{},{t}\n", (u * 7 + t) % items);
        }
    }
    write(dir, "rule.csv", &text)
}

#[test]
fn ctrl_c_stops_after_a_step_with_a_checkpoint_that_resumes_exactly() {
    let d = tempfile::tempdir().unwrap();
    let data = rule_data(d.path(), 1500, 60);
    let cfg = write(
        d.path(),
        "c.toml",
        "[model]\nhidden = 32\nintermediate = 128\nmax_len = 20\n[train]\nbatch_size = 16\nmax_epochs = 3\npatience = 100\n",
    );
    let args = |run: &Path| {
        let mut c = tessera();
        c.args(["bert4rec", "train", "--json", "--threads", "1", "--data"])
            .arg(&data)
            .arg("--config")
            .arg(&cfg)
            .arg("--run-dir")
            .arg(run);
        c
    };
    let full = d.path().join("full");
    assert_success(&args(&full).output().unwrap());
    let stopped = d.path().join("stopped");
    let child = args(&stopped)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_epochs(&stopped, 1);
    // Some way into epoch 2.
    std::thread::sleep(Duration::from_millis(150));
    // SAFETY: sends SIGINT to the child we spawned.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted") && stderr.contains("--resume"),
        "{stderr}"
    );
    // The checkpoint loads, and records where in the epoch training stopped.
    let (tensors, meta) = load_safetensors(&stopped.join("checkpoint.safetensors")).unwrap();
    assert!(tensors.keys().any(|k| k.starts_with("optimizer.")));
    let epoch: usize = meta["epoch"].parse().unwrap();
    let done: usize = meta["epoch_batches_done"].parse().unwrap();
    eprintln!("stopped after epoch {epoch} and {done} batches of the next");
    assert!(epoch < 3, "stopped after the last epoch");
    assert_eq!(epochs_logged(&stopped), epoch);
    assert!(!std::fs::read_dir(&stopped).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".tmp")));
    let mut resume = args(&stopped);
    resume.arg("--resume");
    assert_success(&resume.output().unwrap());
    assert_same_checkpoint(&full, &stopped, "Ctrl-C and resume vs uninterrupted");
    assert_eq!(epochs_logged(&stopped), 3);
}

#[test]
fn resume_names_the_keys_that_differ_and_a_finished_run_takes_more_epochs() {
    let d = tempfile::tempdir().unwrap();
    let data = rule_data(d.path(), 100, 30);
    let cfg = write(
        d.path(),
        "c.toml",
        "[model]\nhidden = 16\nintermediate = 64\nmax_len = 20\n[train]\nbatch_size = 32\nmax_epochs = 2\npatience = 100\n",
    );
    let run = d.path().join("run");
    let train = |extra: &[&str]| {
        tessera()
            .args(["bert4rec", "train", "--json", "--data"])
            .arg(&data)
            .arg("--config")
            .arg(&cfg)
            .arg("--run-dir")
            .arg(&run)
            .args(extra)
            .output()
            .unwrap()
    };
    assert_success(&train(&[]));
    let out = train(&["--resume", "--lr", "0.01", "--mask-prob", "0.5"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("differs") && err.contains("train.lr") && err.contains("train.mask_prob"),
        "{err}"
    );
    // More epochs for a finished run: it continues from epoch 3.
    let out = train(&["--resume", "--epochs", "4"]);
    assert_success(&out);
    assert_eq!(epochs_logged(&run), 4);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["train"]["epochs_run"], 4);
}

#[test]
fn plot_draws_the_curves_of_runs_and_refuses_what_is_not_a_run() {
    let d = tempfile::tempdir().unwrap();
    let data = rule_data(d.path(), 60, 25);
    let cfg = write(
        d.path(),
        "c.toml",
        "[model]\nhidden = 16\nintermediate = 64\nmax_len = 20\n[train]\nbatch_size = 32\nmax_epochs = 3\n",
    );
    let mut runs = Vec::new();
    for seed in ["1", "2"] {
        let run = d.path().join(format!("seed{seed}"));
        let out = tessera()
            .args(["bert4rec", "train", "--json", "--seed", seed, "--data"])
            .arg(&data)
            .arg("--config")
            .arg(&cfg)
            .arg("--run-dir")
            .arg(&run)
            .output()
            .unwrap();
        assert_success(&out);
        runs.push(run);
    }
    let png = d.path().join("curves.png");
    let out = tessera()
        .arg("plot")
        .args(&runs)
        .arg("--output")
        .arg(&png)
        .output()
        .unwrap();
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("valid_NDCG@10"));
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1400, 560));
    // Both panels hold coloured curves (not only black text and grey grid lines).
    for (x0, x1) in [(0, 700), (700, 1400)] {
        let coloured = (x0..x1)
            .flat_map(|x| (0..560).map(move |y| (x, y)))
            .filter(|&(x, y)| {
                let p = img.get_pixel(x, y).0;
                let (lo, hi) = (p.iter().min().unwrap(), p.iter().max().unwrap());
                hi - lo > 80
            })
            .count();
        assert!(
            coloured > 200,
            "panel {x0}..{x1}: {coloured} coloured pixels"
        );
    }
    let out = tessera()
        .arg("plot")
        .arg(&runs[0])
        .args(["--metric", "nonsense", "--output"])
        .arg(&png)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`nonsense`"));
    let out = tessera()
        .arg("plot")
        .arg(d.path())
        .arg("--output")
        .arg(&png)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("metrics.jsonl"));
}
