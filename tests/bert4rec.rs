//! BERT4Rec: readers, preprocessing, training on real MovieLens-100k, resume, and the CLI.

use burn::tensor::Device;
mod common;

use common::write;
use std::path::{Path, PathBuf};
use std::process::Command;
use tessera::bert4rec::config::Bert4RecConfig;
use tessera::bert4rec::data::{
    read_interactions, resolve_data_file, split_leave_one_out, DataConfig, SequenceData,
};
use tessera::bert4rec::eval::{evaluate, evaluate_popularity, Split};
use tessera::bert4rec::train::{epoch_samples, load_model, train, RunOptions, CHECKPOINT};
use tessera::core::checkpoint::load_safetensors;
use tessera::core::run::RunDir;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn ml100k() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ml-100k/ml-100k.inter");
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: run scripts/fetch-data.sh ml-100k first");
        None
    }
}

#[test]
fn reads_every_supported_format() {
    let d = tempfile::tempdir().unwrap();
    let inter = write(
        d.path(),
        "x.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\nu1\ti1\t3\t10\nu1\ti2\t4\t5\n",
    );
    let dat = write(
        d.path(),
        "ratings.dat",
        "1::10::5::978300760\n1::11::3::978302109\n",
    );
    let csv20 = write(
        d.path(),
        "ratings.csv",
        "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,3.5,1112484676\n",
    );
    let plain = write(d.path(), "plain.csv", "a,x,3\na,y,1\nb,x,2\n");
    for (p, n) in [(&inter, 2), (&dat, 2), (&csv20, 2), (&plain, 3)] {
        let v = read_interactions(p).unwrap();
        assert_eq!(v.len(), n, "{}", p.display());
    }
    let v = read_interactions(&csv20).unwrap();
    assert_eq!((v[1].user.as_str(), v[1].item.as_str()), ("1", "29"));
    assert_eq!(v[1].timestamp, 1112484676.0);
    // a directory with one recognised file resolves to it; with two it is refused
    let one = tempfile::tempdir().unwrap();
    let f = write(one.path(), "ratings.dat", "1::10::5::1\n");
    assert_eq!(resolve_data_file(one.path()).unwrap(), f);
    let err = resolve_data_file(d.path()).unwrap_err().to_string();
    assert!(err.contains("several"), "{err}");
}

#[test]
fn malformed_lines_name_file_line_and_field() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        (
            "bad.inter",
            "user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t10\nu2\ti2\tyesterday\n",
            "bad.inter:3: field `timestamp`",
        ),
        (
            "short.inter",
            "user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\n",
            "short.inter:2",
        ),
        (
            "ratings.dat",
            "1::10::5::978300760\n1::11::3\n",
            "ratings.dat:2",
        ),
        ("plain.csv", "a,x,3\n,y,1\n", "plain.csv:2: field `user`"),
        (
            "noheader.inter",
            "user:token\titem:token\n1\t2\n",
            "noheader.inter:1",
        ),
    ];
    for (name, text, want) in cases {
        let p = write(d.path(), name, text);
        let err = format!("{:#}", read_interactions(&p).unwrap_err());
        assert!(err.contains(want), "{name}: got `{err}`, want `{want}`");
    }
}

#[test]
fn preprocessing_orders_by_time_with_stable_ties_and_filters() {
    let d = tempfile::tempdir().unwrap();
    // u1: c(5) a(10) b(10) d(20): tie a/b keeps file order; u2 has 2 interactions only
    let p = write(
        d.path(),
        "t.csv",
        "u1,a,10\nu1,b,10\nu1,c,5\nu2,a,1\nu2,b,2\nu1,d,20\n",
    );
    let inter = read_interactions(&p).unwrap();
    let data = SequenceData::build(
        &inter,
        &DataConfig {
            min_user_count: 3,
            min_item_count: 0,
        },
    )
    .unwrap();
    assert_eq!(data.users, vec!["u1"]);
    let names: Vec<&str> = data.sequences[0]
        .iter()
        .map(|&i| data.items[i as usize - 1].as_str())
        .collect();
    assert_eq!(names, vec!["c", "a", "b", "d"]);
    let (hist, valid, test) = split_leave_one_out(&data.sequences[0]).unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!(data.items[valid as usize - 1], "b");
    assert_eq!(data.items[test as usize - 1], "d");
    assert_eq!(data.mask_token() as usize, data.num_items() + 1);
}

/// A configuration that learns on ml-100k within a few epochs: N = 50, sliding windows every
/// 10 items, lr 1e-3 with the official 100 warm-up steps (without warm-up the post-norm model
/// stalls at the popularity solution).
fn small_config() -> Bert4RecConfig {
    let mut cfg = Bert4RecConfig::default();
    cfg.model.max_len = 50;
    cfg.model.hidden_dropout = 0.1;
    cfg.model.attention_dropout = 0.1;
    cfg.train.sliding_window = 0.2;
    cfg.train.lr = 1e-3;
    cfg.train.batch_size = 128;
    cfg
}

#[test]
fn training_samples_mask_only_real_items() {
    let Some(path) = ml100k() else { return };
    let data =
        SequenceData::build(&read_interactions(&path).unwrap(), &DataConfig::default()).unwrap();
    let cfg = small_config();
    let s = epoch_samples(&data, &cfg, 1);
    for m in &s {
        assert!(m.input.len() <= cfg.model.max_len);
        assert!(!m.targets.is_empty());
        for &(p, item) in &m.targets {
            assert_eq!(m.input[p], data.mask_token());
            assert!(item >= 1 && item as usize <= data.num_items());
        }
    }
    // another epoch draws other masks
    assert_ne!(epoch_samples(&data, &cfg, 2)[0].input, s[0].input);
}

#[test]
fn short_training_on_ml100k_lowers_loss_and_beats_popularity() {
    let Some(path) = ml100k() else { return };
    let data =
        SequenceData::build(&read_interactions(&path).unwrap(), &DataConfig::default()).unwrap();
    assert_eq!((data.users.len(), data.num_items()), (943, 1682));
    let mut cfg = small_config();
    cfg.train.max_epochs = 4;
    cfg.train.patience = 100;
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(dir.path()).unwrap();
    let dev = Device::flex();
    let opts = RunOptions {
        quiet: true,
        ..Default::default()
    };
    // Seed 0 (the default). Known: whether the model leaves the popularity plateau within four
    // epochs depends on the seed; measured with seeds 0-4: test NDCG@10 0.057, 0.053, 0.053,
    // 0.058 and 0.038 (popularity 0.044). Results do not depend on the thread count.
    let s = train(&data, &cfg, &run, &dev, &opts).unwrap();
    assert!(
        s.last_epoch_loss < s.first_epoch_loss - 0.3,
        "loss {} -> {}",
        s.first_epoch_loss,
        s.last_epoch_loss
    );
    let model = load_model(&run, &cfg, data.num_items(), &dev).unwrap();
    let ours = evaluate(&model, &data, &cfg, Split::Test, true, &dev).unwrap();
    let pop = evaluate_popularity(&data, Split::Test, true);
    let (o, p) = (ours.metrics["NDCG@10"], pop.metrics["NDCG@10"]);
    eprintln!("NDCG@10 ours {o:.4} popularity {p:.4}");
    // chance level (uniform ranking of ~1,600 unseen items) is NDCG@10 ~ 0.002
    assert!(
        o > 1.1 * p,
        "NDCG@10 {o:.4} does not beat popularity {p:.4} by 10%"
    );
}

/// Small generated data (60 users whose next item follows a rule) and a tiny model.
fn tiny_rule_setup(dir: &Path) -> (SequenceData, Bert4RecConfig) {
    let mut text = String::new();
    for u in 0..60 {
        for t in 0..15 {
            text += &format!("u{u},i{},{t}\n", (u + t) % 25);
        }
    }
    let p = write(dir, "gen.csv", &text);
    let data =
        SequenceData::build(&read_interactions(&p).unwrap(), &DataConfig::default()).unwrap();
    let mut cfg = small_config();
    cfg.model.max_len = 20;
    cfg.model.hidden = 16;
    cfg.model.intermediate = 64;
    cfg.train.batch_size = 32;
    cfg.train.max_epochs = 4;
    cfg.train.patience = 100;
    (data, cfg)
}

fn assert_same_checkpoints(a: &RunDir, b: &RunDir, what: &str) {
    let (a, ma) = load_safetensors(&a.file(CHECKPOINT)).unwrap();
    let (b, mb) = load_safetensors(&b.file(CHECKPOINT)).unwrap();
    assert_eq!(ma["epoch"], mb["epoch"]);
    assert_eq!(a.len(), b.len());
    assert!(a.keys().any(|k| k.starts_with("optimizer.")));
    for (k, v) in &a {
        assert_eq!(v, &b[k], "tensor {k} differs between {what}");
    }
}

#[test]
fn training_gives_the_same_weights_on_one_thread_and_on_two() {
    // Micro-batches run in parallel on worker threads and their gradients are added in a
    // fixed order, so the thread count must not change the result.
    let d = tempfile::tempdir().unwrap();
    let (data, mut cfg) = tiny_rule_setup(d.path());
    cfg.train.max_epochs = 2;
    let quiet = RunOptions {
        quiet: true,
        ..Default::default()
    };
    let runs: Vec<(tempfile::TempDir, RunDir)> = [1, 2]
        .into_iter()
        .map(|threads| {
            let dir = tempfile::tempdir().unwrap();
            let run = RunDir::create(dir.path()).unwrap();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| train(&data, &cfg, &run, &Device::flex(), &quiet).unwrap());
            (dir, run)
        })
        .collect();
    assert_same_checkpoints(&runs[0].1, &runs[1].1, "1 and 2 threads");
}

#[test]
fn interrupted_and_resumed_training_equals_uninterrupted() {
    let d = tempfile::tempdir().unwrap();
    let (data, cfg) = tiny_rule_setup(d.path());
    let dev = Device::flex();
    let quiet = RunOptions {
        quiet: true,
        ..Default::default()
    };

    let full_dir = tempfile::tempdir().unwrap();
    let full = RunDir::create(full_dir.path()).unwrap();
    train(&data, &cfg, &full, &dev, &quiet).unwrap();

    let part_dir = tempfile::tempdir().unwrap();
    let part = RunDir::create(part_dir.path()).unwrap();
    let stop = RunOptions {
        stop_after_epochs: Some(2),
        ..quiet.clone()
    };
    train(&data, &cfg, &part, &dev, &stop).unwrap();
    let (_, meta) = load_safetensors(&part.file(CHECKPOINT)).unwrap();
    assert_eq!(meta["epoch"], "2");
    let resume = RunOptions {
        resume: true,
        ..quiet
    };
    train(&data, &cfg, &part, &dev, &resume).unwrap();

    let (_, meta) = load_safetensors(&part.file(CHECKPOINT)).unwrap();
    assert_eq!(meta["epoch"], "4");
    assert_same_checkpoints(&full, &part, "resumed and uninterrupted runs");
}

#[test]
fn sampled_softmax_training_learns_a_sequential_rule() {
    // 500 users whose next item is always the previous one + 1 (mod 40). With seen items
    // removed about 21 candidates remain, so chance HR@10 is ~0.48 (popularity: ~0.58).
    // Known: on this task sampled-softmax training is seed-sensitive (with 10 negatives, seed 3
    // of seeds 1-4 stayed at the uniform solution; the full softmax learned with all four), so
    // the test fixes the seed (the default, 0).
    let d = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for u in 0..500 {
        for t in 0..20 {
            text += &format!("u{u},i{},{t}\n", (u * 7 + t) % 40);
        }
    }
    let p = write(d.path(), "rule.csv", &text);
    let data =
        SequenceData::build(&read_interactions(&p).unwrap(), &DataConfig::default()).unwrap();
    let mut cfg = small_config();
    cfg.model.max_len = 20;
    cfg.model.hidden = 32;
    cfg.model.intermediate = 128;
    cfg.train.loss = tessera::bert4rec::config::LossKind::Sampled;
    cfg.train.sampled_negatives = 10;
    cfg.train.batch_size = 32;
    cfg.train.max_epochs = 20;
    cfg.train.patience = 100;
    let run_dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(run_dir.path()).unwrap();
    let dev = Device::flex();
    let quiet = RunOptions {
        quiet: true,
        ..Default::default()
    };
    let s = train(&data, &cfg, &run, &dev, &quiet).unwrap();
    // the sampled loss starts near ln(11) = 2.4
    assert!(
        s.last_epoch_loss < 0.6 * s.first_epoch_loss,
        "loss {} -> {}",
        s.first_epoch_loss,
        s.last_epoch_loss
    );
    let model = load_model(&run, &cfg, data.num_items(), &dev).unwrap();
    let r = evaluate(&model, &data, &cfg, Split::Test, true, &dev).unwrap();
    let pop = evaluate_popularity(&data, Split::Test, true);
    assert!(r.metrics["HR@10"] > 0.9, "HR@10 {}", r.metrics["HR@10"]);
    assert!(r.metrics["HR@10"] > pop.metrics["HR@10"] + 0.2);
}

fn tessera() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
}

#[test]
fn killed_training_resumes_to_the_uninterrupted_result() {
    let d = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for u in 0..500 {
        for t in 0..20 {
            text += &format!("u{u},i{},{t}\n", (u * 7 + t) % 40);
        }
    }
    let data = write(d.path(), "rule.csv", &text);
    let cfg = write(
        d.path(),
        "c.toml",
        "[model]\nhidden = 32\nintermediate = 128\nmax_len = 20\n[train]\nbatch_size = 32\nmax_epochs = 8\npatience = 100\n",
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
    crate::common::assert_success(&args(&full).output().unwrap());

    // Start again, kill -9 once two epochs are logged, then resume.
    let killed = d.path().join("killed");
    let mut child = args(&killed)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let metrics = killed.join("metrics.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let n = std::fs::read_to_string(&metrics)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n >= 2 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (_, meta) = load_safetensors(&killed.join(CHECKPOINT)).unwrap();
    let at: usize = meta["epoch"].parse().unwrap();
    assert!((1..8).contains(&at), "killed after epoch {at}");
    let mut resume = args(&killed);
    resume.arg("--resume");
    let out = resume.output().unwrap();
    crate::common::assert_success(&out);

    let (a, _) = load_safetensors(&full.join(CHECKPOINT)).unwrap();
    let (b, mb) = load_safetensors(&killed.join(CHECKPOINT)).unwrap();
    assert_eq!(mb["epoch"], "8");
    for (k, v) in &a {
        assert_eq!(v, &b[k], "tensor {k} differs after kill and resume");
    }
}

#[test]
fn cli_reports_bad_input_with_nonzero_exit() {
    let d = tempfile::tempdir().unwrap();
    let bad = write(d.path(), "bad.csv", "a,x,3\nb,y\n");
    let out = tessera()
        .args(["bert4rec", "train", "--data"])
        .arg(&bad)
        .arg("--run-dir")
        .arg(d.path().join("run"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.csv:2"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let out = tessera()
        .args(["bert4rec", "eval", "--run-dir"])
        .arg(d.path().join("nothing-here"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));

    let out = tessera()
        .args([
            "bert4rec",
            "train",
            "--data",
            "x",
            "--run-dir",
            "y",
            "--hidden",
            "63",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("divisible"));
}

#[test]
fn cli_trains_evaluates_and_recommends() {
    let d = tempfile::tempdir().unwrap();
    let mut text = String::from("user,item,timestamp\n");
    for u in 0..40 {
        for t in 0..12 {
            text += &format!("u{u},i{},{t}\n", (u * 3 + t) % 30);
        }
    }
    let data = write(d.path(), "gen.csv", &text);
    let cfg = write(
        d.path(),
        "c.toml",
        "[model]\nhidden = 16\nintermediate = 64\nmax_len = 20\n[train]\nbatch_size = 16\nmax_epochs = 2\nlr = 0.001\n",
    );
    let run = d.path().join("run");
    let out = tessera()
        .args(["bert4rec", "train", "--json", "--data"])
        .arg(&data)
        .arg("--config")
        .arg(&cfg)
        .arg("--run-dir")
        .arg(&run)
        .output()
        .unwrap();
    crate::common::assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["train"]["epochs_run"], 2);
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(saved.contains("hidden = 16") && saved.contains("max_epochs = 2"));
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );

    let out = tessera()
        .args(["bert4rec", "eval", "--json", "--run-dir"])
        .arg(&run)
        .output()
        .unwrap();
    crate::common::assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in [
        "HR@1", "HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR",
    ] {
        assert!(v[k].is_f64(), "missing {k}");
        assert!(v["popularity"][k].is_f64(), "missing popularity {k}");
    }
    assert_eq!(v["sampled"], false);
    let out = tessera()
        .args(["bert4rec", "eval", "--json", "--sampled", "--run-dir"])
        .arg(&run)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sampled"], true);
    assert_eq!(v["ranking"], "sampled-100-popularity");

    let out = tessera()
        .args([
            "bert4rec",
            "recommend",
            "--json",
            "--user",
            "u3",
            "--k",
            "5",
            "--run-dir",
        ])
        .arg(&run)
        .output()
        .unwrap();
    crate::common::assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    // seen items are filtered by default
    let seen: Vec<String> = (0..12).map(|t| format!("i{}", (9 + t) % 30)).collect();
    for it in items {
        assert!(!seen.contains(&it["item"].as_str().unwrap().to_string()));
    }

    let users = write(d.path(), "users.txt", "u1\nu2\nnobody\n");
    let out = tessera()
        .args(["bert4rec", "recommend", "--users"])
        .arg(&users)
        .arg("--run-dir")
        .arg(&run)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("users.txt:3: unknown user `nobody`"));
    let users = write(d.path(), "users.txt", "u1\nu2\n");
    let jsonl = d.path().join("recs.jsonl");
    let out = tessera()
        .args(["bert4rec", "recommend", "--users"])
        .arg(&users)
        .arg("--output")
        .arg(&jsonl)
        .arg("--run-dir")
        .arg(&run)
        .output()
        .unwrap();
    crate::common::assert_success(&out);
    assert_eq!(std::fs::read_to_string(&jsonl).unwrap().lines().count(), 2);
}
