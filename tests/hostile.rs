//! Hostile input: a sweep of bad inputs over every command family, each run as a user would run
//! it, classified as a clear error (non-zero exit, `error:` and the expected words: the flag, key
//! or file:line), an unhelpful error (non-zero exit without them), a panic, an abort or kill, a
//! hang, or a silently wrong result (exit 0 where an error was due). The test prints the table
//! and the counts per class, and fails on anything but clear errors.
//!
//! `TESSERA_BIN=/path/to/tessera` sweeps another build (e.g. an older one, to see what it gets
//! wrong); `bash scripts/hostile-inputs.sh` runs this test with its table shown.

mod common;

use common::write;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A command that is still running after this long is a hang.
const HANG_AFTER: Duration = Duration::from_secs(60);

fn bin() -> PathBuf {
    std::env::var_os("TESSERA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tessera")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    ClearError,
    Succeeded,
    QuietBrokenPipe,
    Unhelpful,
    Panic,
    AbortOrKilled,
    Hang,
    SilentlyWrong,
}

enum Expect {
    /// A non-zero exit whose message holds every one of these words.
    Error(&'static [&'static str]),
    /// Stdout closed by the reader before the command writes: a quiet end, no panic.
    BrokenPipe,
    /// Input that is odd but valid: success within the hang limit.
    Success,
}

struct Case {
    name: &'static str,
    args: Vec<String>,
    expect: Expect,
}

fn case(name: &'static str, args: &[&str], words: &'static [&'static str]) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        expect: Expect::Error(words),
    }
}

fn ok_case(name: &'static str, args: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        expect: Expect::Success,
    }
}

fn pipe_case(name: &'static str, args: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        expect: Expect::BrokenPipe,
    }
}

fn run_case(c: &Case) -> (Class, String) {
    let mut cmd = Command::new(bin());
    cmd.args(&c.args)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    let broken_pipe = matches!(c.expect, Expect::BrokenPipe);
    cmd.stdout(Stdio::piped());
    let mut child = cmd.spawn().expect("the tessera binary runs");
    if broken_pipe {
        // The reader goes away at once, as `| head -c 0` or `| true` does.
        drop(child.stdout.take());
    }
    let stdout = child.stdout.take();
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(mut o) = stdout {
            let _ = o.read_to_end(&mut s);
        }
        s
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > HANG_AFTER {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = out_reader.join();
    let err = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
    let first_line = err
        .lines()
        .find(|l| l.contains("error") || l.contains("panicked"))
        .or_else(|| err.lines().last())
        .unwrap_or("")
        .chars()
        .take(160)
        .collect::<String>();
    let Some(status) = status else {
        return (Class::Hang, "still running after 60 s".into());
    };
    use std::os::unix::process::ExitStatusExt;
    if err.contains("panicked") || status.code() == Some(101) {
        return (Class::Panic, first_line);
    }
    if let Some(sig) = status.signal() {
        if broken_pipe && sig == libc::SIGPIPE {
            return (Class::QuietBrokenPipe, "ended by SIGPIPE".into());
        }
        return (Class::AbortOrKilled, format!("signal {sig}: {first_line}"));
    }
    match &c.expect {
        Expect::Success => {
            if status.success() {
                (Class::Succeeded, "exit 0".into())
            } else {
                (Class::Unhelpful, first_line)
            }
        }
        Expect::BrokenPipe => {
            if status.success() || status.code() == Some(141) {
                (Class::QuietBrokenPipe, format!("exit {:?}", status.code()))
            } else {
                (Class::Unhelpful, first_line)
            }
        }
        Expect::Error(words) => {
            if status.success() {
                (Class::SilentlyWrong, "exited 0".into())
            } else if err.contains("error") && words.iter().all(|w| err.contains(w)) {
                (Class::ClearError, first_line)
            } else {
                (Class::Unhelpful, first_line)
            }
        }
    }
}

fn tessera(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) {
    let out = tessera(args);
    common::assert_success(&out);
}

/// Small valid inputs and trained runs for every family, built with this build's binary.
struct Fixtures {
    dir: tempfile::TempDir,
}

impl Fixtures {
    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    fn new() -> Self {
        let f = Fixtures {
            dir: tempfile::tempdir().unwrap(),
        };
        let d = f.dir.path();
        // BERT4Rec: interactions, a trained run, and the same run with NaN weights.
        let mut text = String::new();
        for u in 0..40 {
            for t in 0..12 {
                text += &format!("u{u},i{},{t}\n", (u * 3 + t) % 30);
            }
        }
        write(d, "rule.csv", &text);
        write(d, "bad.csv", "u1,i1,1\nu1,i2,notatime\n");
        write(d, "empty.csv", "");
        write(
            d,
            "b4r.toml",
            "[model]\nhidden = 16\nintermediate = 64\nmax_len = 20\n[train]\nbatch_size = 16\nmax_epochs = 1\n",
        );
        write(d, "unknown_key.toml", "[model]\nhiden = 16\n");
        write(d, "syntax.toml", "[model\nhidden = 16\n");
        write(d, "zero_heads.toml", "[model]\nheads = 0\n");
        ok(&[
            "bert4rec",
            "train",
            "--json",
            "--data",
            &f.p("rule.csv"),
            "--config",
            &f.p("b4r.toml"),
            "--run-dir",
            &f.p("b4r"),
        ]);
        copy_dir(&d.join("b4r"), &d.join("b4r_nan"));
        poison(&d.join("b4r_nan/model.safetensors"));
        copy_dir(&d.join("b4r"), &d.join("b4r_badcfg"));
        write(&d.join("b4r_badcfg"), "config.toml", "[model]\nheads = 0\n");
        write(d, "users.txt", "u1\nnobody\n");
        copy_dir(&d.join("b4r"), &d.join("b4r_badmeta"));
        let ckpt = d.join("b4r_badmeta/checkpoint.safetensors");
        let (tensors, mut meta) = tessera::core::checkpoint::load_safetensors(&ckpt).unwrap();
        meta.insert("epoch".into(), "one".into());
        let named: Vec<_> = tensors.into_iter().collect();
        tessera::core::checkpoint::save_safetensors(&ckpt, &named, meta).unwrap();

        // metapath2vec: a typed edge list, its walks and embeddings, labels.
        let mut g = String::new();
        for i in 0..30 {
            g += &format!(
                "paper p{i} author a{}\npaper p{i} venue v{}\n",
                i % 7,
                i % 3
            );
        }
        write(d, "graph.tsv", &g);
        write(d, "bad_graph.tsv", "paper p1 author\n");
        ok(&[
            "metapath2vec",
            "train",
            "--graph",
            &f.p("graph.tsv"),
            "--metapath",
            "APVPA",
            "--walks-per-node",
            "5",
            "--walk-length",
            "20",
            "--dim",
            "8",
            "--min-count",
            "1",
            "--output",
            &f.p("emb.txt"),
            "--save-walks",
            &f.p("walks.txt"),
        ]);
        write(
            d,
            "labels.txt",
            "aa0 x\naa1 y\naa2 x\naa3 y\naa4 x\naa5 y\naa6 x\n",
        );
        write(d, "bad_labels.txt", "aa0\n");
        let many: String = (0..7)
            .map(|i| format!("aa{i} {}\n", i % 2))
            .chain((0..3).map(|i| format!("vv{i} v\n")))
            .collect();
        write(d, "many_labels.txt", &many);
        write(d, "garbled_emb.txt", "3 4\nx 1 2\n");
        write(d, "empty_walks.txt", "\n\n");

        // Text: a corpus, a vocabulary, a tiny trained MLM run, variants of it.
        let words = [
            "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
        ];
        let corpus: String = (0..200)
            .map(|i| {
                let s = i % 5;
                words[s..s + 4].join(" ") + "\n"
            })
            .collect();
        write(d, "corpus.txt", &corpus);
        std::fs::write(d.join("latin1.txt"), b"caf\xe9 one two\n").unwrap();
        write(d, "empty_line.txt", "one two\n\nthree\n");
        write(d, "few.txt", "one two three\ntwo three four\nfive six\n");
        std::fs::write(
            d.join("long_word.txt"),
            format!("one two\n{}\nthree four\n", "x".repeat(10_000_000)),
        )
        .unwrap();
        ok(&[
            "text",
            "vocab",
            "--input",
            &f.p("corpus.txt"),
            "--output",
            &f.p("vocab"),
            "--vocab-size",
            "60",
        ]);
        ok(&[
            "text",
            "train",
            "--json",
            "--input",
            &f.p("corpus.txt"),
            "--vocab",
            &f.p("vocab"),
            "--run-dir",
            &f.p("mlm"),
            "--epochs",
            "1",
            "--max-len",
            "16",
        ]);
        copy_dir(&d.join("mlm"), &d.join("mlm_nan"));
        poison(&d.join("mlm_nan/model.safetensors"));
        copy_dir(&d.join("mlm"), &d.join("mlm_fewer_layers"));
        edit_json(
            &d.join("mlm_fewer_layers/config.json"),
            "num_hidden_layers",
            1.into(),
        );
        copy_dir(&d.join("mlm"), &d.join("mlm_zero_heads"));
        edit_json(
            &d.join("mlm_zero_heads/config.json"),
            "num_attention_heads",
            0.into(),
        );

        // ViT: an 8x8 pixel CSV (two classes), a trained run, variants of it, images.
        let mut csv = String::new();
        for i in 0..80 {
            let label = i % 2;
            let px: Vec<String> = (0..64)
                .map(|j| (((j * 7 + i * 13) % 9) * (label + 1)).to_string())
                .collect();
            csv += &format!("{},{label}\n", px.join(","));
        }
        write(d, "pixels.csv", &csv);
        write(d, "bad_pixels.csv", "1,2,3,0\n1,2,x,1\n");
        ok(&[
            "vit",
            "train",
            "--json",
            "--data",
            &f.p("pixels.csv"),
            "--run-dir",
            &f.p("vit"),
            "--preset",
            "mnist",
            "--hidden",
            "16",
            "--layers",
            "1",
            "--heads",
            "2",
            "--epochs",
            "1",
        ]);
        copy_dir(&d.join("vit"), &d.join("vit_zero_heads"));
        edit_json(
            &d.join("vit_zero_heads/config.json"),
            "num_attention_heads",
            0.into(),
        );
        copy_dir(&d.join("vit"), &d.join("vit_nan"));
        poison(&d.join("vit_nan/model.safetensors"));
        copy_dir(&d.join("vit"), &d.join("vit_garbled_split"));
        write(&d.join("vit_garbled_split"), "split.json", "{not json");
        copy_dir(&d.join("vit"), &d.join("vit_no_split"));
        std::fs::remove_file(d.join("vit_no_split/split.json")).unwrap();
        image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * 30 + y) as u8]))
            .save(d.join("digit.png"))
            .unwrap();
        write(d, "not_an_image.png", "hello");

        // Detectors: the tiny fixture with a cut .weights, and with an unknown layer kind.
        let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/darknet-tiny");
        for (name, cut, reorg) in [("det_cut", true, false), ("det_reorg", false, true)] {
            let dir = d.join(name);
            copy_dir(&tiny, &dir);
            if cut {
                let w = std::fs::read(dir.join("tiny.weights")).unwrap();
                std::fs::write(dir.join("tiny.weights"), &w[..w.len() / 2]).unwrap();
            }
            if reorg {
                let c = std::fs::read_to_string(dir.join("tiny.cfg")).unwrap();
                std::fs::write(dir.join("tiny.cfg"), c.replace("[upsample]", "[reorg]")).unwrap();
            }
        }
        // Annotated corpora: one good image, one box outside its image.
        for (name, bx) in [("corpus", "[1, 1, 6, 6]"), ("bad_corpus", "[1, 1, 60, 6]")] {
            let dir = d.join(name);
            std::fs::create_dir_all(dir.join("images")).unwrap();
            std::fs::copy(d.join("digit.png"), dir.join("images/a.png")).unwrap();
            write(&dir, "annotations.jsonl", &format!("{{\"image\": \"images/a.png\", \"width\": 8, \"height\": 8, \"boxes\": [{bx}]}}\n"));
        }
        // VL-BERT: the parity fixture's model, the same with NaN weights, a captioned corpus and
        // its regions (pixels backbone), a corpus whose captions outrun the positions.
        let vl = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vlbert/model");
        copy_dir(&vl, &d.join("vl_nan"));
        poison(&d.join("vl_nan/model.safetensors"));
        for (name, caption) in [("vl_corpus", "a dog"), ("vl_long", &"dog ".repeat(200)[..])] {
            let dir = d.join(name);
            std::fs::create_dir_all(dir.join("images")).unwrap();
            std::fs::copy(d.join("digit.png"), dir.join("images/a.png")).unwrap();
            write(&dir, "annotations.jsonl", &format!("{{\"image\": \"images/a.png\", \"width\": 8, \"height\": 8, \"boxes\": [[1, 1, 6, 6]], \"labels\": [\"dog\"], \"captions\": [\"{caption}\"]}}\n"));
        }
        ok(&[
            "regions",
            "--backbone",
            "pixels",
            "--boxes",
            &f.p("vl_corpus"),
            "--output",
            &f.p("vl.safetensors"),
        ]);
        // ViLBERT: the parity fixture's model, the same with NaN weights, with an unsupported
        // fusion, with co-attention ids of different lengths; a region file whose image has no
        // boxes.
        let vil = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vilbert/model");
        copy_dir(&vil, &d.join("vil_nan"));
        poison(&d.join("vil_nan/model.safetensors"));
        for (name, from, to) in [
            (
                "vil_fusion",
                "\"pooling_method\": \"mul\"",
                "\"fusion_method\": \"max\"",
            ),
            (
                "vil_ids",
                "\"t_biattention_id\": [\n    1,\n    2\n  ]",
                "\"t_biattention_id\": [2]",
            ),
        ] {
            copy_dir(&vil, &d.join(name));
            let c = std::fs::read_to_string(d.join(name).join("config.json")).unwrap();
            assert!(c.contains(from), "{name}: the fixture config changed");
            std::fs::write(d.join(name).join("config.json"), c.replace(from, to)).unwrap();
        }
        write(d, "vil_empty.tsv", "img0\t8\t8\t0\t\t\t\n");
        write(d, "vil_hard2.toml", "hard_negative_prob = 2.0\n");
        write(d, "vl_mlm2.toml", "mlm_prob = 2.0\n");
        write(d, "vl_one.txt", "a dog\n");
        write(d, "vl_blank.txt", "\n  \n\t\n");
        std::fs::write(d.join("vl_latin1.txt"), b"a dog\nna\xefve caf\xe9\n").unwrap();
        write(d, "vl_text_len.toml", "text_seq_len = 100000\n");
        write(d, "vl_min_words.toml", "text_min_seq_len = 1000000000000\n");

        // Video: two generated videos, their features from the tiny DINOv2 and a 2 x 2 codebook;
        // a corrupt video, a half-second video, .npy features of rank 3 and of another size,
        // narration past the videos' end, a narration line of three fields, a YouCook2 file
        // whose segment ends before it starts.
        ok(&[
            "data",
            "videos",
            "--output",
            &f.p("vids"),
            "--count",
            "2",
            "--seed",
            "1",
        ]);
        let dino = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dinov2-tiny");
        ok(&[
            "video",
            "features",
            "--backbone",
            dino.to_str().unwrap(),
            "--input",
            &f.p("vids"),
            "--output",
            &f.p("feats"),
        ]);
        ok(&[
            "video",
            "codebook",
            "--features",
            &f.p("feats"),
            "--levels",
            "2",
            "--k",
            "2",
            "--output",
            &f.p("book.safetensors"),
        ]);
        std::fs::write(
            d.join("vid_corrupt.mp4"),
            b"\x00\x00\x00\x18ftypmp42 this is not a video",
        )
        .unwrap();
        let short = std::process::Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "color=c=gray:s=64x64:d=0.5:r=10",
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
            ])
            .arg(d.join("short.mp4"))
            .status()
            .unwrap();
        assert!(short.success());
        std::fs::create_dir_all(d.join("npy3")).unwrap();
        std::fs::write(
            d.join("npy3/rank3.npy"),
            tessera::core::npy::npy_bytes_f32(&[2, 3, 4], &[0.5; 24]),
        )
        .unwrap();
        std::fs::create_dir_all(d.join("npy5")).unwrap();
        std::fs::write(
            d.join("npy5/v.npy"),
            tessera::core::npy::npy_bytes_f32(
                &[10, 5],
                &(0..50).map(|i| i as f32).collect::<Vec<_>>(),
            ),
        )
        .unwrap();
        ok(&[
            "video",
            "codebook",
            "--features",
            &f.p("npy5"),
            "--npy-rate",
            "1",
            "--levels",
            "1",
            "--k",
            "2",
            "--output",
            &f.p("book5.safetensors"),
        ]);
        write(d, "late.tsv", "000000\t100\t105\tnow we lift the bag\n");
        write(d, "three.tsv", "000000\t1.0\tlift the bag\n");
        write(
            d,
            "yc_bad.json",
            r#"{"database": {"000000": {"subset": "training", "recipe_type": "1", "annotations": [{"segment": [5, 2], "sentence": "lift the bag", "id": 0}]}}}"#,
        );
        write(
            d,
            "yc_one.json",
            r#"{"database": {"000009": {"subset": "training", "recipe_type": "1", "annotations": [{"segment": [0, 2], "sentence": "lift the bag", "id": 0}]}}}"#,
        );
        std::fs::create_dir_all(d.join("novids")).unwrap();
        ok(&[
            "video",
            "tokenize",
            "--codebook",
            &f.p("book.safetensors"),
            "--features",
            &f.p("feats"),
            "--narration",
            &f.p("vids/narration.tsv"),
            "--output",
            &f.p("words.jsonl"),
        ]);
        // Captioning: a captioner trained one epoch on the two videos, the same with NaN weights,
        // features of another size for the same videos, a video without clips.
        ok(&[
            "videobert",
            "caption-train",
            "--features",
            &f.p("feats"),
            "--captions",
            &f.p("vids"),
            "--epochs",
            "1",
            "--hidden",
            "16",
            "--heads",
            "2",
            "--run-dir",
            &f.p("cap_run"),
        ]);
        copy_dir(&d.join("cap_run"), &d.join("cap_nan"));
        // METEOR resources: a text file for the jar; the real jar beside a text paraphrase table.
        std::fs::create_dir_all(d.join("bad_meteor")).unwrap();
        std::fs::write(d.join("bad_meteor/meteor-1.5.jar"), "not a zip").unwrap();
        std::fs::create_dir_all(d.join("bad_para")).unwrap();
        std::fs::copy(
            "data/meteor/meteor-1.5.jar",
            d.join("bad_para/meteor-1.5.jar"),
        )
        .unwrap();
        std::fs::write(d.join("bad_para/paraphrase-en.gz"), "0.5\nbig\nlarge\n").unwrap();
        poison(&d.join("cap_nan/model.safetensors"));
        for (dir, dim, clips) in [("cap_dim5", 5usize, 4usize), ("cap_noclips", 8, 0)] {
            std::fs::create_dir_all(d.join(dir)).unwrap();
            for video in ["000000", "000001"] {
                let c = if video == "000001" {
                    clips.max(1)
                } else {
                    clips
                };
                tessera::video::features::write_features_with(
                    &d.join(dir),
                    &tessera::video::features::ClipFeatures {
                        video: video.into(),
                        dim,
                        features: vec![0.5; c * dim],
                        times: (0..c).map(|i| [i as f32, i as f32 + 1.0]).collect(),
                        duration: 30.0,
                    },
                    &[],
                )
                .unwrap();
            }
        }
        write(d, "vb_long.toml", "[data]\nmax_text_tokens = 4000\n");
        write(d, "cbt_micro2.toml", "micro_batch = 2\nmax_concat = 1\n");
        write(d, "cbt_micro1.toml", "micro_batch = 1\n");
        write(d, "cbt_temp0.toml", "temperature = 0.0\n");
        write(d, "cbt_tempnan.toml", "temperature = nan\n");
        write(d, "cbt_neg0.toml", "cross_negatives = 0\n");
        write(d, "cbt_text.toml", "text_weight = 1.0\n");
        write(
            d,
            "cbt_zero.toml",
            "visual_weight = 0.0\ncross_weight = 0.0\n",
        );
        write(d, "cbt_clips.toml", "[model]\nmax_clips = 0\n");
        write(d, "vb_noneg.toml", "[data]\nmisaligned_prob = 0.0\n");
        write(d, "vb_unknown.toml", "nonsense = 1\n");
        write(d, "vb_nowords.jsonl", "{\"video\": \"a\", \"duration\": 3.0, \"words\": [], \"times\": [], \"narration\": [{\"start\": 0.5, \"end\": 1.0, \"text\": \"lift the bag\"}]}\n");
        write(d, "vb_words.jsonl", "{\"video\": \"a\", \"duration\": 3.0, \"words\": [0, 9], \"times\": [[0, 1.5], [1.5, 3]], \"narration\": []}\n");
        // VideoBERT zero-shot: the parity fixture's network (50 text tokens, 12 visual words)
        // with a 50-token vocabulary, the same with NaN weights and without a vocabulary.
        let vb = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/videobert/model");
        copy_dir(&vb, &d.join("zs_novocab"));
        copy_dir(&vb, &d.join("zs_model"));
        let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        for w in "now let me show you how to the lift drop bag left right over out make bigger smaller slide spin fade flip grow shrink around zero one two three".split(' ') {
            vocab.push(w.to_string());
        }
        while vocab.len() < 50 {
            vocab.push(format!("w{}", vocab.len()));
        }
        write(d, "zs_model/vocab.txt", &(vocab.join("\n") + "\n"));
        copy_dir(&d.join("zs_model"), &d.join("zs_nan"));
        poison(&d.join("zs_nan/model.safetensors"));
        write(d, "zs_big.jsonl", "{\"video\": \"000000\", \"duration\": 3.0, \"words\": [0, 40], \"times\": [[0, 1.5], [1.5, 3]], \"narration\": []}\n");
        write(d, "zs_other.jsonl", "{\"video\": \"elsewhere\", \"duration\": 3.0, \"words\": [0, 1], \"times\": [[0, 1.5], [1.5, 3]], \"narration\": []}\n");
        write(d, "zs_fields.tsv", "000000\t0\t1.5\tlift\n");
        write(d, "zs_backwards.tsv", "000000\t2\t1.5\tlift\tbag\n");
        write(d, "zs_segments.tsv", "000000\t0\t3\tlift\tbag\n");
        write(d, "zs_verbs.txt", "lift\ndrop\nlift\n");
        write(d, "zs_verbs_ok.txt", "lift\ndrop\n");
        write(d, "zs_objects.txt", "zero\none\n");
        copy_dir(&d.join("zs_model"), &d.join("zs_book4"));
        std::fs::copy(
            d.join("book.safetensors"),
            d.join("zs_book4/codebook.safetensors"),
        )
        .unwrap();
        write(
            d,
            "zs_verbs_phrase.txt",
            "lift\tlift the {object}\ndrop\tdrop the {object}\n",
        );
        // CBT: a model pretrained one epoch on the two videos, the same with NaN weights.
        let minilm = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/minilm");
        ok(&[
            "cbt",
            "pretrain",
            "--bert",
            minilm.to_str().unwrap(),
            "--features",
            &f.p("feats"),
            "--narration",
            &f.p("vids"),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--config",
            &f.p("cbt_micro2.toml"),
            "--run-dir",
            &f.p("cbt_run"),
        ]);
        copy_dir(&d.join("cbt_run"), &d.join("cbt_nan"));
        poison(&d.join("cbt_nan/model.safetensors"));
        write(
            d,
            "cbt_other.tsv",
            "elsewhere\t0\t1.5\tnow we lift the bag\n",
        );
        write(d, "cbt_segments.tsv", "elsewhere\t0\t3\tlift\tbag\n");
        f
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Overwrite every value of every tensor of a safetensors file with NaN.
fn poison(path: &Path) {
    let (tensors, meta) = tessera::core::checkpoint::load_safetensors(path).unwrap();
    let named: Vec<(String, burn::tensor::TensorData)> = tensors
        .into_iter()
        .map(|(k, v)| {
            let shape = v.shape().to_vec();
            let n: usize = shape.iter().product();
            (k, burn::tensor::TensorData::new(vec![f32::NAN; n], shape))
        })
        .collect();
    tessera::core::checkpoint::save_safetensors(path, &named, meta).unwrap();
}

fn edit_json(path: &Path, key: &str, value: serde_json::Value) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v[key] = value;
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[rustfmt::skip]
fn cases(f: &Fixtures) -> Vec<Case> {
    let p = |n: &str| f.p(n);
    let (rule, b4r_cfg, b4r, run) = (p("rule.csv"), p("b4r.toml"), p("b4r"), p("run"));
    let train = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "bert4rec",
            "train",
            "--json",
            "--data",
            &rule,
            "--config",
            &b4r_cfg,
            "--run-dir",
            &run,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let tc = |name: &'static str, extra: &[&str], words: &'static [&'static str]| Case {
        name,
        args: train(extra),
        expect: Expect::Error(words),
    };
    let (graph, walks, emb, labels) = (
        p("graph.tsv"),
        p("walks.txt"),
        p("emb.txt"),
        p("labels.txt"),
    );
    let (corpus, vocab, mlm) = (p("corpus.txt"), p("vocab"), p("mlm"));
    let (pixels, vit) = (p("pixels.csv"), p("vit"));
    let vl_model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vlbert/model")
        .to_string_lossy()
        .into_owned();
    let vl_regions = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vlbert/regions.tsv")
        .to_string_lossy()
        .into_owned();
    let vil = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vilbert");
    let vil_model = vil.join("model").to_string_lossy().into_owned();
    let vil_regions = vil.join("regions.tsv").to_string_lossy().into_owned();
    let vil_text = vil.join("sentences.txt").to_string_lossy().into_owned();
    let tiny_det = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/darknet-tiny")
        .to_string_lossy()
        .into_owned();
    let minilm = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/minilm").to_string_lossy().into_owned();
    let tiny_dino = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dinov2-tiny")
        .to_string_lossy()
        .into_owned();
    let out = p("out.txt");
    vec![
        // BERT4Rec training: numbers from flags and config files.
        tc("sampled softmax with 0 negatives", &["--loss", "sampled", "--sampled-negatives", "0"], &["sampled_negatives", "--sampled-negatives"]),
        tc("100000 threads", &["--threads", "100000"], &["--threads"]),
        tc("0 threads", &["--threads", "0"], &["--threads"]),
        tc("0 epochs", &["--epochs", "0"], &["--epochs"]),
        tc("negative lr (--lr -1)", &["--lr", "-1"], &["--lr"]),
        tc("negative lr (--lr=-1)", &["--lr=-1"], &["--lr"]),
        tc("NaN lr", &["--lr", "nan"], &["--lr"]),
        tc("infinite lr", &["--lr", "inf"], &["--lr"]),
        tc("batch size 0", &["--batch-size", "0"], &["--batch-size"]),
        tc("mask proportion 0", &["--mask-prob", "0"], &["--mask-prob"]),
        tc("mask proportion 1.5", &["--mask-prob", "1.5"], &["--mask-prob"]),
        tc("dropout 1", &["--dropout", "1"], &["--dropout"]),
        tc("hidden 0", &["--hidden", "0"], &["--hidden"]),
        tc("heads 0", &["--heads", "0"], &["--heads"]),
        tc("hidden not divisible by heads", &["--heads", "3"], &["--heads"]),
        tc("max length 1", &["--max-len", "1"], &["--max-len"]),
        tc("max length 10^11", &["--max-len", "99999999999"], &["--max-len"]),
        tc("hidden 10^8 (memory)", &["--hidden", "100000000"], &["memory", "model.hidden"]),
        tc("patience 0", &["--patience", "0"], &["--patience"]),
        case("data file missing", &["bert4rec", "train", "--data", &p("nope.csv"), "--run-dir", &run], &["nope.csv"]),
        case("malformed data line", &["bert4rec", "train", "--data", &p("bad.csv"), "--run-dir", &run], &["bad.csv:2"]),
        case("empty data file", &["bert4rec", "train", "--data", &p("empty.csv"), "--run-dir", &run], &["empty.csv"]),
        case("config with an unknown key", &["bert4rec", "train", "--data", &rule, "--config", &p("unknown_key.toml"), "--run-dir", &run], &["unknown_key.toml", "hiden"]),
        case("config with a syntax error", &["bert4rec", "train", "--data", &rule, "--config", &p("syntax.toml"), "--run-dir", &run], &["syntax.toml", "line 1"]),
        case("config with 0 heads", &["bert4rec", "train", "--data", &rule, "--config", &p("zero_heads.toml"), "--run-dir", &run], &["heads"]),
        case("resume from a checkpoint with garbled metadata", &["bert4rec", "train", "--data", &rule, "--config", &b4r_cfg, "--run-dir", &p("b4r_badmeta"), "--resume"], &["b4r_badmeta/checkpoint.safetensors", "`epoch`"]),
        case("resume without a checkpoint", &["bert4rec", "train", "--data", &rule, "--run-dir", &p("fresh"), "--resume"], &["checkpoint.safetensors"]),
        // BERT4Rec evaluation and recommendation.
        case("sampled protocol with 0 negatives", &["bert4rec", "eval", "--run-dir", &b4r, "--sampled", "0"], &["--sampled"]),
        case("run directory missing", &["bert4rec", "eval", "--run-dir", &p("nope")], &["nope"]),
        case("weights holding NaN (eval)", &["bert4rec", "eval", "--run-dir", &p("b4r_nan")], &["model.safetensors", "non-finite"]),
        case("weights holding NaN (recommend)", &["bert4rec", "recommend", "--run-dir", &p("b4r_nan"), "--user", "u1"], &["model.safetensors", "non-finite"]),
        case("run config with 0 heads", &["bert4rec", "eval", "--run-dir", &p("b4r_badcfg")], &["config.toml", "heads"]),
        case("top 0", &["bert4rec", "recommend", "--run-dir", &b4r, "--user", "u1", "--k", "0"], &["--k"]),
        case("unknown user in a file", &["bert4rec", "recommend", "--run-dir", &b4r, "--users", &p("users.txt")], &["users.txt:2", "nobody"]),
        pipe_case("eval --json into a closed pipe", &["bert4rec", "eval", "--json", "--run-dir", &b4r]),
        pipe_case("recommend into a closed pipe", &["bert4rec", "recommend", "--run-dir", &b4r, "--user", "u1"]),
        // metapath2vec.
        case("0 walks per node", &["metapath2vec", "walk", "--graph", &graph, "--metapath", "APVPA", "--walks-per-node", "0", "--output", &out], &["--walks-per-node"]),
        case("10^14 walks per node (memory)", &["metapath2vec", "walk", "--graph", &graph, "--metapath", "APVPA", "--walks-per-node", "99999999999999", "--output", &out], &["memory", "--walks-per-node"]),
        case("walk length 1", &["metapath2vec", "walk", "--graph", &graph, "--metapath", "APVPA", "--walk-length", "1", "--output", &out], &["--walk-length"]),
        case("unknown node type in the meta-path", &["metapath2vec", "walk", "--graph", &graph, "--metapath", "AXA", "--output", &out], &["AXA"]),
        case("meta-path that does not cycle", &["metapath2vec", "walk", "--graph", &graph, "--metapath", "APV", "--output", &out], &["APV"]),
        case("graph missing", &["metapath2vec", "walk", "--graph", &p("nope.tsv"), "--metapath", "APVPA", "--output", &out], &["nope.tsv"]),
        case("malformed edge line", &["metapath2vec", "walk", "--graph", &p("bad_graph.tsv"), "--metapath", "APVPA", "--output", &out], &["bad_graph.tsv:1"]),
        case("dim 0", &["metapath2vec", "train", "--walks", &walks, "--dim", "0", "--output", &out], &["--dim"]),
        case("dim 10^8 (memory)", &["metapath2vec", "train", "--walks", &walks, "--dim", "100000000", "--output", &out], &["memory", "--dim"]),
        case("NaN learning rate", &["metapath2vec", "train", "--walks", &walks, "--alpha", "nan", "--output", &out], &["--alpha"]),
        case("negative learning rate", &["metapath2vec", "train", "--walks", &walks, "--alpha", "-1", "--output", &out], &["--alpha"]),
        case("window 0", &["metapath2vec", "train", "--walks", &walks, "--window", "0", "--output", &out], &["--window"]),
        case("0 negatives", &["metapath2vec", "train", "--walks", &walks, "--negatives", "0", "--output", &out], &["--negatives"]),
        case("negative subsampling", &["metapath2vec", "train", "--walks", &walks, "--sample", "-1", "--output", &out], &["--sample"]),
        case("0 epochs (metapath2vec)", &["metapath2vec", "train", "--walks", &walks, "--epochs", "0", "--output", &out], &["--epochs"]),
        case("min count above every count", &["metapath2vec", "train", "--walks", &walks, "--min-count", "1000000", "--output", &out], &["--min-count"]),
        case("walk file without walks", &["metapath2vec", "train", "--walks", &p("empty_walks.txt"), "--output", &out], &["empty_walks.txt"]),
        case("0 repeats", &["metapath2vec", "eval", "--embeddings", &emb, "--labels", &labels, "--repeats", "0"], &["--repeats"]),
        case("0 k-means runs", &["metapath2vec", "eval", "--embeddings", &emb, "--labels", &labels, "--runs", "0"], &["--runs"]),
        case("embeddings missing", &["metapath2vec", "eval", "--embeddings", &p("nope.txt"), "--labels", &labels], &["nope.txt"]),
        case("malformed label line", &["metapath2vec", "eval", "--embeddings", &emb, "--labels", &p("bad_labels.txt")], &["bad_labels.txt:1"]),
        case("garbled embeddings", &["metapath2vec", "similar", "--embeddings", &p("garbled_emb.txt"), "--node", "x"], &["garbled_emb.txt"]),
        case("similar with k 0", &["metapath2vec", "similar", "--embeddings", &emb, "--node", "aa0", "--k", "0"], &["--k"]),
        case("similar to an unknown node", &["metapath2vec", "similar", "--embeddings", &emb, "--node", "nobody"], &["nobody"]),
        pipe_case("eval into a closed pipe (metapath2vec)", &["metapath2vec", "eval", "--embeddings", &emb, "--labels", &p("many_labels.txt"), "--repeats", "1", "--runs", "1"]),
        pipe_case("similar into a closed pipe", &["metapath2vec", "similar", "--embeddings", &emb, "--node", "aa0"]),
        // Text.
        case("model directory missing", &["text", "embed", "--model", &p("nope"), "--input", &corpus, "--output", &p("e.safetensors")], &["nope"]),
        case("an empty line to embed", &["text", "embed", "--model", &mlm, "--input", &p("empty_line.txt"), "--output", &p("e.safetensors")], &["empty_line.txt:2"]),
        case("Latin-1 text to embed", &["text", "embed", "--model", &mlm, "--input", &p("latin1.txt"), "--output", &p("e.safetensors")], &["latin1.txt"]),
        case("embedding batch 0", &["text", "embed", "--model", &mlm, "--input", &corpus, "--output", &p("e.safetensors"), "--batch-size", "0"], &["--batch-size"]),
        case("embedding max length 0", &["text", "embed", "--model", &mlm, "--input", &corpus, "--output", &p("e.safetensors"), "--max-len", "0"], &["--max-len"]),
        case("checkpoint with more layers than its config", &["text", "embed", "--model", &p("mlm_fewer_layers"), "--input", &corpus, "--output", &p("e.safetensors")], &["layers"]),
        case("config with 0 heads (text)", &["text", "embed", "--model", &p("mlm_zero_heads"), "--input", &corpus, "--output", &p("e.safetensors")], &["config.json", "num_attention_heads"]),
        case("weights holding NaN (text)", &["text", "embed", "--model", &p("mlm_nan"), "--input", &corpus, "--output", &p("e.safetensors")], &["model.safetensors", "non-finite"]),
        // A 10-million-character word teaches WordPiece nothing (it reads it as [UNK]): left
        // out, it must not take hours.
        ok_case("a vocabulary from a corpus with a 10-million-character word", &["text", "vocab", "--input", &p("long_word.txt"), "--output", &p("vocab_long"), "--vocab-size", "60"]),
        case("vocabulary of size 0", &["text", "vocab", "--input", &corpus, "--output", &p("v0"), "--vocab-size", "0"], &["--vocab-size"]),
        case("Latin-1 corpus for a vocabulary", &["text", "vocab", "--input", &p("latin1.txt"), "--output", &p("v1")], &["latin1.txt:1"]),
        case("negative MLM learning rate", &["text", "train", "--input", &corpus, "--vocab", &vocab, "--run-dir", &p("mlm2"), "--lr=-1"], &["--lr"]),
        case("0 MLM epochs", &["text", "train", "--input", &corpus, "--vocab", &vocab, "--run-dir", &p("mlm2"), "--epochs", "0"], &["--epochs"]),
        case("more held-out lines than lines", &["text", "train", "--input", &corpus, "--vocab", &vocab, "--run-dir", &p("mlm2"), "--valid-lines", "5000"], &["--valid-lines"]),
        case("fill-mask top 0", &["text", "fill-mask", "--model", &mlm, "--text", "one [MASK] three", "--top-k", "0"], &["--top-k"]),
        case("fill-mask without a mask", &["text", "fill-mask", "--model", &mlm, "--text", "one two three"], &["[MASK]"]),
        pipe_case("similarity into a closed pipe", &["text", "similarity", "--model", &mlm, "--input", &p("few.txt")]),
        // ViT.
        case("0 heads (vit)", &["vit", "train", "--data", &pixels, "--run-dir", &p("v2"), "--heads", "0"], &["--heads"]),
        case("negative ViT learning rate", &["vit", "train", "--data", &pixels, "--run-dir", &p("v2"), "--lr=-1"], &["--lr"]),
        case("0 ViT epochs", &["vit", "train", "--data", &pixels, "--run-dir", &p("v2"), "--epochs", "0"], &["--epochs"]),
        case("held-out fraction 0", &["vit", "train", "--data", &pixels, "--run-dir", &p("v2"), "--test-fraction", "0"], &["--test-fraction"]),
        case("held-out fraction 1", &["vit", "train", "--data", &pixels, "--run-dir", &p("v2"), "--test-fraction", "1"], &["--test-fraction"]),
        case("a split that leaves no test image", &["vit", "train", "--data", &pixels, "--run-dir", &p("v2"), "--test-fraction", "0.001"], &["no test images"]),
        case("ViT batch 0", &["vit", "train", "--data", &pixels, "--run-dir", &p("v2"), "--batch-size", "0"], &["--batch-size"]),
        case("malformed pixel CSV", &["vit", "train", "--data", &p("bad_pixels.csv"), "--run-dir", &p("v2")], &["bad_pixels.csv"]),
        case("run config with 0 heads (vit)", &["vit", "eval", "--run-dir", &p("vit_zero_heads")], &["config.json", "num_attention_heads"]),
        case("weights holding NaN (vit)", &["vit", "eval", "--run-dir", &p("vit_nan")], &["model.safetensors", "non-finite"]),
        case("split.json garbled", &["vit", "eval", "--run-dir", &p("vit_garbled_split")], &["split.json"]),
        case("split.json missing", &["vit", "eval", "--run-dir", &p("vit_no_split")], &["split.json"]),
        case("predict on a missing image", &["vit", "predict", "--model", &vit, "--input", &p("nope.png")], &["nope.png"]),
        case("predict on a file that is no image", &["vit", "predict", "--model", &vit, "--input", &p("not_an_image.png")], &["not_an_image.png"]),
        case("predict top 0", &["vit", "predict", "--model", &vit, "--input", &p("digit.png"), "--top-k", "0"], &["--top-k"]),
        pipe_case("predict into a closed pipe", &["vit", "predict", "--model", &vit, "--input", &p("digit.png")]),
        // Detection, regions, corpora.
        case("detector directory missing", &["detect", "--model", &p("nope"), "--input", &p("digit.png")], &["nope"]),
        case("detector directory without a .cfg", &["detect", "--model", &p("vocab"), "--input", &p("digit.png")], &["no .cfg file"]),
        case("detection threshold 2", &["detect", "--model", &tiny_det, "--input", &p("digit.png"), "--threshold", "2"], &["--threshold"]),
        case("NMS 0", &["detect", "--model", &tiny_det, "--input", &p("digit.png"), "--nms", "0"], &["--nms"]),
        case("truncated .weights", &["detect", "--model", &p("det_cut"), "--input", &p("digit.png")], &["tiny.weights", "truncated"]),
        case(".cfg with an unknown layer", &["detect", "--model", &p("det_reorg"), "--input", &p("digit.png")], &["tiny.cfg", "[reorg]"]),
        case("detect on a file that is no image", &["detect", "--model", &tiny_det, "--input", &p("not_an_image.png")], &["not_an_image.png"]),
        case("regions grid 0", &["regions", "--backbone", &tiny_det, "--input", &p("digit.png"), "--grid", "0", "--output", &p("r.safetensors")], &["--grid"]),
        case("regions of 0 boxes", &["regions", "--backbone", &tiny_det, "--input", &p("digit.png"), "--max-boxes", "0", "--output", &p("r.safetensors")], &["--max-boxes"]),
        case("regions at an image size off the patch grid", &["regions", "--backbone", &tiny_dino, "--input", &p("digit.png"), "--grid", "2", "--image-size", "30", "--output", &p("r.safetensors")], &["--image-size 30", "patch size 8"]),
        case("regions at a huge image size", &["regions", "--backbone", &tiny_dino, "--input", &p("digit.png"), "--grid", "2", "--image-size", "1600000000", "--output", &p("r.safetensors")], &["--image-size 1600000000", "4096"]),
        case("regions image size for a detector", &["regions", "--backbone", &tiny_det, "--input", &p("digit.png"), "--image-size", "64", "--output", &p("r.safetensors")], &["--image-size", "ViT"]),
        case("regions backbone missing", &["regions", "--backbone", "no-such-backbone", "--input", &p("digit.png"), "--output", &p("r.safetensors")], &["no-such-backbone"]),
        case("regions without images", &["regions", "--backbone", &tiny_det, "--output", &p("r.safetensors")], &["--input"]),
        case("regions feature layer past the network", &["regions", "--backbone", &tiny_det, "--input", &p("digit.png"), "--feature-layer", "99", "--output", &p("r.safetensors")], &["--feature-layer 99"]),
        case("caption-train on .npy features without their clip rate", &["videobert", "caption-train", "--features", &p("npy5"), "--captions", &p("vids"), "--run-dir", &p("cap_x")], &["v.npy", "--npy-rate"]),
        case("caption-train on .npy features of other videos", &["videobert", "caption-train", "--features", &p("npy5"), "--npy-rate", "1", "--captions", &p("vids"), "--run-dir", &p("cap_x")], &["000000", "no features", "npy5"]),
        case("caption-train on a feature directory of other videos", &["videobert", "caption-train", "--features", &p("cap_dim5"), "--captions", &p("yc_one.json"), "--run-dir", &p("cap_x")], &["000009", "no features", "cap_dim5"]),
        case("caption-train on a video without clips", &["videobert", "caption-train", "--features", &p("cap_noclips"), "--captions", &p("vids"), "--run-dir", &p("cap_x")], &["000000", "no clips"]),
        case("caption-train on a backwards segment", &["videobert", "caption-train", "--features", &p("feats"), "--captions", &p("yc_bad.json"), "--run-dir", &p("cap_x")], &["yc_bad.json"]),
        case("caption-train of width 0", &["videobert", "caption-train", "--features", &p("feats"), "--captions", &p("vids"), "--hidden", "0", "--run-dir", &p("cap_x")], &["--hidden"]),
        case("caption-train of a huge width", &["videobert", "caption-train", "--features", &p("feats"), "--captions", &p("vids"), "--hidden", "18446744073709551615", "--run-dir", &p("cap_x")], &["hidden", "at most 4096"]),
        case("caption-train with heads not dividing the width", &["videobert", "caption-train", "--features", &p("feats"), "--captions", &p("vids"), "--heads", "3", "--run-dir", &p("cap_x")], &["not divisible", "--heads"]),
        case("caption-train with a NaN learning rate", &["videobert", "caption-train", "--features", &p("feats"), "--captions", &p("vids"), "--lr", "NaN", "--run-dir", &p("cap_x")], &["lr"]),
        case("caption with a pretraining run, not a captioner", &["videobert", "caption", "--model", &p("zs_model"), "--features", &p("feats"), "--captions", &p("vids")], &["captioner.json", "caption-train"]),
        case("caption with NaN weights", &["videobert", "caption", "--model", &p("cap_nan"), "--features", &p("feats"), "--captions", &p("vids")], &["model.safetensors", "non-finite"]),
        case("caption on features of another size", &["videobert", "caption", "--model", &p("cap_run"), "--features", &p("cap_dim5"), "--captions", &p("vids")], &["5 values", "cap_dim5", "another backbone"]),
        case("caption with beam 0", &["videobert", "caption", "--model", &p("cap_run"), "--features", &p("feats"), "--captions", &p("vids"), "--beam", "0"], &["--beam"]),
        case("caption with a negative length penalty", &["videobert", "caption", "--model", &p("cap_run"), "--features", &p("feats"), "--captions", &p("vids"), "--beam", "2", "--length-penalty", "-1"], &["--length-penalty"]),
        case("caption with a NaN length penalty", &["videobert", "caption", "--model", &p("cap_run"), "--features", &p("feats"), "--captions", &p("vids"), "--beam", "2", "--length-penalty", "NaN"], &["--length-penalty"]),
        ok_case("caption by beam search", &["videobert", "caption", "--model", &p("cap_run"), "--features", &p("feats"), "--captions", &p("vids"), "--beam", "3", "--output", &p("caps.jsonl")]),
        case("caption with METEOR resources missing", &["videobert", "caption", "--model", &p("cap_run"), "--features", &p("feats"), "--captions", &p("vids"), "--meteor", &p("no_meteor")], &["no_meteor", "meteor-1.5.jar", "fetch-data.sh meteor"]),
        case("caption with a METEOR jar that is not a jar", &["videobert", "caption", "--model", &p("cap_run"), "--features", &p("feats"), "--captions", &p("vids"), "--meteor", &p("bad_meteor")], &["bad_meteor", "meteor-1.5.jar", "not a jar"]),
        case("caption with a METEOR paraphrase table that is not gzip", &["videobert", "caption", "--model", &p("cap_run"), "--features", &p("feats"), "--captions", &p("vids"), "--meteor", &p("bad_para")], &["paraphrase-en.gz", "not a gzipped"]),
        ok_case("caption with METEOR", &["videobert", "caption", "--model", &p("cap_run"), "--features", &p("feats"), "--captions", &p("vids"), "--meteor", "data/meteor"]),
        pipe_case("caption --json piped into head", &["videobert", "caption", "--model", &p("cap_run"), "--features", &p("feats"), "--captions", &p("vids"), "--json"]),
        case("regions-standardize fitted on a file without boxes", &["regions-standardize", "--fit", &p("vil_empty.tsv"), "--input", &p("vl.safetensors"), "--output", &p("std.safetensors")], &["vil_empty.tsv", "no boxes"]),
        case("regions-standardize of another feature size", &["regions-standardize", "--fit", &p("vl.safetensors"), "--input", &vil_regions, "--output", &p("std.safetensors")], &["regions.tsv", "of 192", "another backbone"]),
        case("regions-standardize fit file missing", &["regions-standardize", "--fit", &p("nope.safetensors"), "--input", &p("vl.safetensors"), "--output", &p("std.safetensors")], &["nope.safetensors"]),
        ok_case("regions-standardize of the training file itself", &["regions-standardize", "--fit", &p("vl.safetensors"), "--input", &p("vl.safetensors"), "--output", &p("std.tsv")]),
        case("0 scenes", &["data", "scenes", "--output", &p("sc"), "--count", "0"], &["--count"]),
        case("a canvas too small", &["data", "scenes", "--output", &p("sc"), "--count", "2", "--size", "10"], &["--size"]),
        case("show an image past the corpus", &["data", "show", &p("corpus"), "--index", "5", "--output", &p("s.png")], &["--index 5"]),
        case("an annotation box outside its image", &["data", "show", &p("bad_corpus"), "--output", &p("s.png")], &["annotations.jsonl:1", "boxes"]),
        // VL-BERT.
        case("vlbert model directory missing", &["vlbert", "features", "--model", &p("nope"), "--text", &p("few.txt"), "--regions", &p("vl.safetensors"), "--output", &out], &["nope"]),
        case("vlbert weights holding NaN", &["vlbert", "features", "--model", &p("vl_nan"), "--text", &p("few.txt"), "--regions", &p("vl.safetensors"), "--output", &out], &["model.safetensors", "non-finite"]),
        case("vlbert region file missing", &["vlbert", "features", "--model", &vl_model, "--text", &p("few.txt"), "--regions", &p("nope.safetensors"), "--output", &out], &["nope.safetensors"]),
        case("vlbert feature size of another model", &["vlbert", "features", "--model", &vl_model, "--text", &p("vl_one.txt"), "--regions", &p("vl.safetensors"), "--output", &out], &["object_feature_size"]),
        case("vlbert batch size 0", &["vlbert", "features", "--model", &vl_model, "--text", &p("few.txt"), "--regions", &p("vl.safetensors"), "--output", &out, "--batch-size", "0"], &["--batch-size"]),
        case("vlbert pretrain with mlm_prob 2", &["vlbert", "pretrain", "--data", &p("vl_corpus"), "--regions", &p("vl.safetensors"), "--vocab", &vocab, "--config", &p("vl_mlm2.toml"), "--run-dir", &p("vl_run")], &["mlm_prob"]),
        case("vlbert pretrain 0 epochs", &["vlbert", "pretrain", "--data", &p("vl_corpus"), "--regions", &p("vl.safetensors"), "--vocab", &vocab, "--epochs", "0", "--run-dir", &p("vl_run")], &["--epochs"]),
        case("vlbert pretrain on a caption longer than the positions", &["vlbert", "pretrain", "--data", &p("vl_long"), "--regions", &p("vl.safetensors"), "--vocab", &vocab, "--run-dir", &p("vl_run")], &["vl_long", "positions"]),
        case("vlbert pretrain joining lines forever", &["vlbert", "pretrain", "--data", &p("vl_corpus"), "--regions", &p("vl.safetensors"), "--vocab", &vocab, "--text-corpus", &p("vl_one.txt"), "--config", &p("vl_min_words.toml"), "--run-dir", &p("vl_run")], &["text_min_seq_len"]),
        case("vlbert pretrain on a blank text corpus", &["vlbert", "pretrain", "--data", &p("vl_corpus"), "--regions", &p("vl.safetensors"), "--vocab", &vocab, "--text-corpus", &p("vl_blank.txt"), "--run-dir", &p("vl_run")], &["vl_blank.txt", "no text"]),
        case("vlbert pretrain on a text corpus that is not UTF-8", &["vlbert", "pretrain", "--data", &p("vl_corpus"), "--regions", &p("vl.safetensors"), "--vocab", &vocab, "--text-corpus", &p("vl_latin1.txt"), "--run-dir", &p("vl_run")], &["vl_latin1.txt:2", "UTF-8"]),
        case("vlbert pretrain on a text corpus that is missing", &["vlbert", "pretrain", "--data", &p("vl_corpus"), "--regions", &p("vl.safetensors"), "--vocab", &vocab, "--text-corpus", &p("nope.txt"), "--run-dir", &p("vl_run")], &["nope.txt"]),
        case("vlbert pretrain with text sequences longer than the positions", &["vlbert", "pretrain", "--data", &p("vl_corpus"), "--regions", &p("vl.safetensors"), "--vocab", &vocab, "--text-corpus", &p("vl_one.txt"), "--config", &p("vl_text_len.toml"), "--run-dir", &p("vl_run")], &["text_seq_len", "positions"]),
        case("vlbert pretrain on a corpus of no regions", &["vlbert", "pretrain", "--data", &p("vl_corpus"), "--regions", &p("nope.tsv"), "--vocab", &vocab, "--run-dir", &p("vl_run")], &["nope.tsv"]),
        case("vlbert vqa on a corpus without questions", &["vlbert", "vqa", "--data", &p("vl_corpus"), "--regions", &p("vl.safetensors"), "--vocab", &vocab, "--run-dir", &p("vl_run")], &["no questions"]),
        case("vlbert eval of a model directory missing", &["vlbert", "eval", "--model", &p("nope"), "--data", &p("vl_corpus"), "--regions", &p("vl.safetensors")], &["nope"]),
        case("vlbert ground on captions that refer to no single object", &["vlbert", "ground", "--data", &p("vl_corpus"), "--regions", &p("vl.safetensors"), "--vocab", &vocab, "--run-dir", &p("vl_run")], &["vl_corpus", "exactly one object"]),
        case("vlbert ground --blind", &["vlbert", "ground", "--blind", "--data", &p("vl_corpus"), "--regions", &p("vl.safetensors"), "--vocab", &vocab, "--run-dir", &p("vl_run")], &["--blind"]),
        case("vlbert predict on an image the file lacks", &["vlbert", "predict", "--model", &vl_model, "--regions", &vl_regions, "--image-id", "nope", "--text", "a [MASK]"], &["regions.tsv", "nope"]),
        case("vlbert predict without --image-id on a file of 3 images", &["vlbert", "predict", "--model", &vl_model, "--regions", &vl_regions, "--text", "a [MASK]"], &["--image-id"]),
        case("vlbert predict a sentence without [MASK]", &["vlbert", "predict", "--model", &vl_model, "--regions", &vl_regions, "--image-id", "img0", "--text", "a dog"], &["[MASK]"]),
        // ViLBERT.
        case("vilbert model directory missing", &["vilbert", "features", "--model", &p("nope"), "--text", &vil_text, "--regions", &vil_regions, "--output", &out], &["nope"]),
        case("vilbert weights holding NaN", &["vilbert", "features", "--model", &p("vil_nan"), "--text", &vil_text, "--regions", &vil_regions, "--output", &out], &["model.safetensors", "non-finite"]),
        case("vilbert fusion_method max", &["vilbert", "features", "--model", &p("vil_fusion"), "--text", &vil_text, "--regions", &vil_regions, "--output", &out], &["config.json", "fusion_method"]),
        case("vilbert co-attention ids of different lengths", &["vilbert", "features", "--model", &p("vil_ids"), "--text", &vil_text, "--regions", &vil_regions, "--output", &out], &["config.json", "t_biattention_id"]),
        case("vilbert feature size of another model", &["vilbert", "features", "--model", &vil_model, "--text", &p("vl_one.txt"), "--regions", &p("vl.safetensors"), "--output", &out], &["vl.safetensors", "v_feature_size"]),
        case("vilbert an image without regions", &["vilbert", "features", "--model", &vil_model, "--text", &p("vl_one.txt"), "--regions", &p("vil_empty.tsv"), "--output", &out], &["vil_empty.tsv", "no regions"]),
        case("vilbert fewer images than sentences", &["vilbert", "features", "--model", &vil_model, "--text", &p("vl_one.txt"), "--regions", &vil_regions, "--output", &out], &["line i goes with image i"]),
        case("vilbert batch size 0", &["vilbert", "features", "--model", &vil_model, "--text", &vil_text, "--regions", &vil_regions, "--output", &out, "--batch-size", "0"], &["--batch-size"]),
        case("vilbert pretrain with hard_negative_prob 2", &["vilbert", "pretrain", "--data", &p("vl_corpus"), "--regions", &p("vl.safetensors"), "--vocab", &vocab, "--config", &p("vil_hard2.toml"), "--run-dir", &p("vil_run")], &["hard_negative_prob"]),
        case("vilbert pretrain on a caption longer than the positions", &["vilbert", "pretrain", "--data", &p("vl_long"), "--regions", &p("vl.safetensors"), "--vocab", &vocab, "--run-dir", &p("vil_run")], &["vl_long", "positions"]),
        case("vilbert pretrain on a region file missing", &["vilbert", "pretrain", "--data", &p("vl_corpus"), "--regions", &p("nope.tsv"), "--vocab", &vocab, "--run-dir", &p("vil_run")], &["nope.tsv"]),
        case("vilbert vqa on a corpus without questions", &["vilbert", "vqa", "--data", &p("vl_corpus"), "--regions", &p("vl.safetensors"), "--vocab", &vocab, "--run-dir", &p("vil_run")], &["no questions"]),
        case("vilbert retrieve over one image", &["vilbert", "retrieve", "--data", &p("vl_corpus"), "--regions", &p("vl.safetensors"), "--vocab", &vocab, "--run-dir", &p("vil_run")], &["two images"]),
        case("vilbert retrieve --blind", &["vilbert", "retrieve", "--blind", "--data", &p("vl_corpus"), "--regions", &p("vl.safetensors"), "--vocab", &vocab, "--run-dir", &p("vil_run")], &["--blind"]),
        case("vilbert eval of a model directory missing", &["vilbert", "eval", "--model", &p("nope"), "--data", &p("vl_corpus"), "--regions", &p("vl.safetensors")], &["nope"]),
        case("vilbert predict on an image the file lacks", &["vilbert", "predict", "--model", &vil_model, "--regions", &vil_regions, "--image-id", "nope", "--text", "a dog"], &["regions.tsv", "nope"]),
        case("vilbert predict without --image-id on a file of 3 images", &["vilbert", "predict", "--model", &vil_model, "--regions", &vil_regions, "--text", "a dog"], &["--image-id"]),
        case("vilbert bench with 1 region", &["vilbert", "bench", "--regions", "1"], &["--regions"]),
        case("vilbert bench with 10^14 regions", &["vilbert", "bench", "--regions", "99999999999999"], &["--regions", "memory"]),
        case("vlbert bench with a batch of 10^11", &["vlbert", "bench", "--batch", "99999999999"], &["--batch", "memory"]),
        case("regions pixels:0", &["regions", "--backbone", "pixels:0", "--boxes", &p("vl_corpus"), "--output", &p("r.safetensors")], &["pixels:0"]),
        // Video.
        case("video features of a missing video", &["video", "features", "--backbone", &tiny_dino, "--input", &p("nope.mp4"), "--output", &p("vf")], &["nope.mp4"]),
        case("video features of a corrupt video", &["video", "features", "--backbone", &tiny_dino, "--input", &p("vid_corrupt.mp4"), "--output", &p("vf")], &["vid_corrupt.mp4", "not a readable video"]),
        case("video features of a video shorter than one clip", &["video", "features", "--backbone", &tiny_dino, "--input", &p("short.mp4"), "--output", &p("vf")], &["short.mp4", "shorter than one"]),
        case("video features of a folder without videos", &["video", "features", "--backbone", &tiny_dino, "--input", &p("novids"), "--output", &p("vf")], &["novids", "no video files"]),
        case("video features with 0-second clips", &["video", "features", "--backbone", &tiny_dino, "--input", &p("vids"), "--clip-seconds", "0", "--output", &p("vf")], &["--clip-seconds"]),
        case("video features at NaN frames a second", &["video", "features", "--backbone", &tiny_dino, "--input", &p("vids"), "--frame-rate", "NaN", "--output", &p("vf")], &["--frame-rate"]),
        case("video features at an image size off the patch grid", &["video", "features", "--backbone", &tiny_dino, "--input", &p("vids"), "--image-size", "30", "--output", &p("vf")], &["--image-size 30", "patch size 8"]),
        case("video features from a detector", &["video", "features", "--backbone", &tiny_det, "--input", &p("vids"), "--output", &p("vf")], &["not a ViT/DINOv2"]),
        case("video codebook with k 1", &["video", "codebook", "--features", &p("feats"), "--k", "1", "--output", &p("b.safetensors")], &["--k"]),
        case("video codebook of 10^12 words", &["video", "codebook", "--features", &p("feats"), "--k", "1000", "--levels", "4", "--output", &p("b.safetensors")], &["--k 1000", "words"]),
        case("video codebook of more clusters than clips", &["video", "codebook", "--features", &p("feats"), "--k", "500", "--levels", "1", "--output", &p("b.safetensors")], &["feats", "clips"]),
        case("video codebook on .npy of rank 3", &["video", "codebook", "--features", &p("npy3"), "--npy-rate", "1", "--output", &p("b.safetensors")], &["rank3.npy", "rank-3"]),
        case("video codebook on .npy without a rate", &["video", "codebook", "--features", &p("npy5"), "--output", &p("b.safetensors")], &["v.npy", "--npy-rate"]),
        case("video codebook on .npy at a negative rate", &["video", "codebook", "--features", &p("npy5"), "--npy-rate=-2", "--output", &p("b.safetensors")], &["--npy-rate"]),
        case("video tokenize with narration past the video", &["video", "tokenize", "--codebook", &p("book.safetensors"), "--features", &p("feats"), "--narration", &p("late.tsv"), "--output", &p("w.jsonl")], &["late.tsv", "000000", "outside"]),
        case("video tokenize with a narration line of 3 fields", &["video", "tokenize", "--codebook", &p("book.safetensors"), "--features", &p("feats"), "--narration", &p("three.tsv"), "--output", &p("w.jsonl")], &["three.tsv:1", "4"]),
        case("video tokenize with a YouCook2 segment ending first", &["video", "tokenize", "--codebook", &p("book.safetensors"), "--features", &p("feats"), "--narration", &p("yc_bad.json"), "--output", &p("w.jsonl")], &["yc_bad.json", "annotations[0].segment"]),
        case("video tokenize with a codebook of another size", &["video", "tokenize", "--codebook", &p("book5.safetensors"), "--features", &p("feats"), "--output", &p("w.jsonl")], &["book5.safetensors", "32", "5"]),
        case("video tokenize with a codebook that is no codebook", &["video", "tokenize", "--codebook", &p("vl.safetensors"), "--features", &p("feats"), "--output", &p("w.jsonl")], &["vl.safetensors", "levels"]),
        case("videobert pretrain on words past the codebook", &["videobert", "pretrain", "--words", &p("vb_words.jsonl"), "--codebook", &p("book.safetensors"), "--bert", &minilm, "--run-dir", &p("vb_run")], &["vb_words.jsonl:1", "words", "9"]),
        case("videobert pretrain on videos without words", &["videobert", "pretrain", "--words", &p("vb_nowords.jsonl"), "--codebook", &p("book.safetensors"), "--bert", &minilm, "--run-dir", &p("vb_run")], &["vb_nowords.jsonl", "nothing to train on"]),
        case("videobert pretrain holding out every video", &["videobert", "pretrain", "--words", &p("words.jsonl"), "--codebook", &p("book.safetensors"), "--bert", &minilm, "--valid-videos", "2", "--run-dir", &p("vb_run")], &["valid_videos"]),
        case("videobert pretrain with alignment but no mismatched pairs", &["videobert", "pretrain", "--words", &p("words.jsonl"), "--codebook", &p("book.safetensors"), "--bert", &minilm, "--config", &p("vb_noneg.toml"), "--run-dir", &p("vb_run")], &["misaligned_prob = 0", "alignment_weight"]),
        case("videobert pretrain past the text model's positions", &["videobert", "pretrain", "--words", &p("words.jsonl"), "--codebook", &p("book.safetensors"), "--bert", &minilm, "--config", &p("vb_long.toml"), "--run-dir", &p("vb_run")], &["max_text_tokens 4000", "positions"]),
        case("videobert pretrain with an unknown setting", &["videobert", "pretrain", "--words", &p("words.jsonl"), "--codebook", &p("book.safetensors"), "--bert", &minilm, "--config", &p("vb_unknown.toml"), "--run-dir", &p("vb_run")], &["vb_unknown.toml", "nonsense"]),
        case("videobert pretrain at a NaN learning rate", &["videobert", "pretrain", "--words", &p("words.jsonl"), "--codebook", &p("book.safetensors"), "--bert", &minilm, "--lr", "NaN", "--run-dir", &p("vb_run")], &["lr"]),
        case("videobert zero-shot with a 4-field segment line", &["videobert", "zero-shot", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--segments", &p("zs_fields.tsv"), "--verbs", &p("zs_verbs_ok.txt"), "--objects", &p("zs_objects.txt")], &["zs_fields.tsv:1", "4 tab-separated"]),
        case("videobert zero-shot with a segment ending before it starts", &["videobert", "zero-shot", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--segments", &p("zs_backwards.tsv"), "--verbs", &p("zs_verbs_ok.txt"), "--objects", &p("zs_objects.txt")], &["zs_backwards.tsv:1", "end"]),
        case("videobert zero-shot with verbs but no objects", &["videobert", "zero-shot", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--segments", &p("zs_segments.tsv"), "--verbs", &p("zs_verbs_ok.txt")], &["--verbs", "--objects"]),
        case("videobert zero-shot on a TSV without label files", &["videobert", "zero-shot", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--segments", &p("zs_segments.tsv")], &["zs_segments.tsv", "--verbs"]),
        case("videobert zero-shot with a label twice", &["videobert", "zero-shot", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--segments", &p("zs_segments.tsv"), "--verbs", &p("zs_verbs.txt"), "--objects", &p("zs_objects.txt")], &["zs_verbs.txt:3", "twice"]),
        case("videobert zero-shot with a template lacking {verb}", &["videobert", "zero-shot", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--segments", &p("zs_segments.tsv"), "--verbs", &p("zs_verbs_ok.txt"), "--objects", &p("zs_objects.txt"), "--template", "show me the {object}"], &["--template", "{verb}"]),
        case("videobert zero-shot with the object slot twice", &["videobert", "zero-shot", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--segments", &p("zs_segments.tsv"), "--verbs", &p("zs_verbs_phrase.txt"), "--objects", &p("zs_objects.txt")], &["lift", "{object}", "template"]),
        case("videobert zero-shot with a template past the positions", &["videobert", "zero-shot", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--segments", &p("zs_segments.tsv"), "--verbs", &p("zs_verbs_ok.txt"), "--objects", &p("zs_objects.txt"), "--template", &format!("{} {{verb}} the {{object}}", "now ".repeat(60))], &["positions"]),
        case("videobert zero-shot with segment labels the files lack", &["videobert", "zero-shot", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--segments", &p("zs_segments.tsv"), "--verbs", &p("zs_verbs_ok.txt"), "--objects", &p("zs_objects.txt")], &["bag", "lack"]),
        case("videobert zero-shot on words past the model's codebook", &["videobert", "zero-shot", "--model", &p("zs_model"), "--words", &p("zs_big.jsonl"), "--segments", &p("vids")], &["zs_big.jsonl:1", "40", "12 visual words"]),
        case("videobert zero-shot on words of other videos", &["videobert", "zero-shot", "--model", &p("zs_model"), "--words", &p("zs_other.jsonl"), "--segments", &p("vids")], &["no segment has visual words", "elsewhere"]),
        case("videobert zero-shot with NaN weights", &["videobert", "zero-shot", "--model", &p("zs_nan"), "--words", &p("words.jsonl"), "--segments", &p("vids")], &["zs_nan", "non-finite"]),
        case("videobert zero-shot from a model without a vocabulary", &["videobert", "zero-shot", "--model", &p("zs_novocab"), "--words", &p("words.jsonl"), "--segments", &p("vids")], &["zs_novocab", "vocabulary"]),
        case("videobert zero-shot with a batch of 0", &["videobert", "zero-shot", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--segments", &p("vids"), "--batch-size", "0"], &["--batch-size"]),
        ok_case("videobert zero-shot on the generated corpus", &["videobert", "zero-shot", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--segments", &p("vids"), "--output", &p("zs.jsonl")]),
        pipe_case("videobert zero-shot --json into head", &["videobert", "zero-shot", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--segments", &p("vids"), "--json"]),
        case("videobert predict with a prefix of 0", &["videobert", "predict", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--prefix", "0"], &["--prefix 0"]),
        case("videobert predict with a prefix past the positions", &["videobert", "predict", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--prefix", "100"], &["--prefix 100", "positions"]),
        case("videobert predict on videos shorter than the prefix", &["videobert", "predict", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--prefix", "30"], &["more than 30 visual words"]),
        case("videobert predict on words past the model's codebook", &["videobert", "predict", "--model", &p("zs_model"), "--words", &p("zs_big.jsonl")], &["zs_big.jsonl:1", "40"]),
        case("videobert illustrate from a model without its codebook", &["videobert", "illustrate", "--model", &p("zs_model"), "--text", "lift the bag", "--features", &p("feats"), "--videos", &p("vids"), "--output", &p("ill.png")], &["codebook.safetensors"]),
        case("videobert illustrate with a codebook not the model's", &["videobert", "illustrate", "--model", &p("zs_book4"), "--text", "lift the bag", "--features", &p("feats"), "--videos", &p("vids"), "--output", &p("ill.png")], &["codebook.safetensors", "4 words", "12 visual words"]),
        case("videobert illustrate with 0 words", &["videobert", "illustrate", "--model", &p("zs_model"), "--text", "lift the bag", "--words", "0", "--features", &p("feats"), "--videos", &p("vids"), "--output", &p("ill.png")], &["--words", "0"]),
        case("videobert illustrate with a billion rounds", &["videobert", "illustrate", "--model", &p("zs_model"), "--text", "lift the bag", "--iterations", "1000000000", "--features", &p("feats"), "--videos", &p("vids"), "--output", &p("ill.png")], &["--iterations", "100"]),
        case("videobert predict with the largest prefix", &["videobert", "predict", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--prefix", "18446744073709551615"], &["--prefix", "positions"]),
        case("videobert features with a window past the positions", &["videobert", "features", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--window", "100", "--output", &p("vbf")], &["--window 100", "positions"]),
        case("videobert features from NaN weights", &["videobert", "features", "--model", &p("zs_nan"), "--words", &p("words.jsonl"), "--output", &p("vbf")], &["zs_nan", "non-finite"]),
        ok_case("videobert features of the tokenized corpus", &["videobert", "features", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--output", &p("vbf")]),
        ok_case("videobert predict on the tokenized corpus", &["videobert", "predict", "--model", &p("zs_model"), "--words", &p("words.jsonl"), "--prefix", "1"]),
        case("videobert bench with heads not dividing the width", &["videobert", "bench", "--hidden", "30", "--heads", "4"], &["--hidden 30", "--heads 4"]),
        case("videobert bench with a huge batch", &["videobert", "bench", "--batch", "100000000"], &["--batch"]),
        case("videobert bench in an unknown mode", &["videobert", "bench", "--mode", "fly", "--hidden", "8", "--heads", "2", "--layers", "1", "--text-vocab", "300", "--batch", "2"], &["--mode", "fly"]),
        case("videobert pretrain with a codebook that is no codebook", &["videobert", "pretrain", "--words", &p("words.jsonl"), "--codebook", &p("vl.safetensors"), "--bert", &minilm, "--run-dir", &p("vb_run")], &["vl.safetensors", "levels"]),
        case("0 videos", &["data", "videos", "--output", &p("vv"), "--count", "0"], &["--count"]),
        case("videos of an odd side", &["data", "videos", "--output", &p("vv"), "--count", "1", "--size", "65"], &["--size 65", "even"]),
        case("videos too small for a slide", &["data", "videos", "--output", &p("vv"), "--count", "1", "--size", "40"], &["--size"]),
        case("videos with 2 as a fraction unnarrated", &["data", "videos", "--output", &p("vv"), "--count", "1", "--unnarrated", "2"], &["--unnarrated"]),
        case("videos shifted by 10^9 seconds", &["data", "videos", "--output", &p("vv"), "--count", "1", "--max-shift", "1e9"], &["--max-shift"]),
        case("show a video past the corpus", &["data", "show-video", &p("vids"), "--index", "9", "--output", &p("s.png")], &["--index 9"]),
        case("show a video at 0 frames a second", &["data", "show-video", &p("vids"), "--rate", "0", "--output", &p("s.png")], &["--rate"]),
        // CBT.
        case("cbt pretrain on batches of one", &["cbt", "pretrain", "--bert", &minilm, "--features", &p("feats"), "--narration", &p("vids"), "--batch-size", "1", "--run-dir", &p("cbt_x")], &["batch_size", "negatives"]),
        case("cbt pretrain on micro-batches of one", &["cbt", "pretrain", "--bert", &minilm, "--features", &p("feats"), "--narration", &p("vids"), "--config", &p("cbt_micro1.toml"), "--run-dir", &p("cbt_x")], &["micro_batch", "negatives"]),
        case("cbt pretrain at temperature 0", &["cbt", "pretrain", "--bert", &minilm, "--features", &p("feats"), "--narration", &p("vids"), "--config", &p("cbt_temp0.toml"), "--run-dir", &p("cbt_x")], &["temperature"]),
        case("cbt pretrain at temperature NaN", &["cbt", "pretrain", "--bert", &minilm, "--features", &p("feats"), "--narration", &p("vids"), "--config", &p("cbt_tempnan.toml"), "--run-dir", &p("cbt_x")], &["temperature"]),
        case("cbt pretrain with 0 cross-modal negatives", &["cbt", "pretrain", "--bert", &minilm, "--features", &p("feats"), "--narration", &p("vids"), "--config", &p("cbt_neg0.toml"), "--run-dir", &p("cbt_x")], &["cross_negatives"]),
        case("cbt pretrain a text loss with BERT frozen", &["cbt", "pretrain", "--bert", &minilm, "--features", &p("feats"), "--narration", &p("vids"), "--config", &p("cbt_text.toml"), "--run-dir", &p("cbt_x")], &["text_weight", "frozen"]),
        case("cbt pretrain with every loss weighted 0", &["cbt", "pretrain", "--bert", &minilm, "--features", &p("feats"), "--narration", &p("vids"), "--config", &p("cbt_zero.toml"), "--run-dir", &p("cbt_x")], &["nothing to train"]),
        case("cbt pretrain with 0 clip positions", &["cbt", "pretrain", "--bert", &minilm, "--features", &p("feats"), "--narration", &p("vids"), "--config", &p("cbt_clips.toml"), "--run-dir", &p("cbt_x")], &["max_clips"]),
        case("cbt pretrain on narration of other videos", &["cbt", "pretrain", "--bert", &minilm, "--features", &p("feats"), "--narration", &p("cbt_other.tsv"), "--run-dir", &p("cbt_x")], &["cbt_other.tsv", "no video"]),
        case("cbt pretrain on narration past the clips", &["cbt", "pretrain", "--bert", &minilm, "--features", &p("feats"), "--narration", &p("late.tsv"), "--run-dir", &p("cbt_x")], &["no training example"]),
        case("cbt pretrain on a narration line of three fields", &["cbt", "pretrain", "--bert", &minilm, "--features", &p("feats"), "--narration", &p("three.tsv"), "--run-dir", &p("cbt_x")], &["three.tsv:1", "fields"]),
        case("cbt features from a directory that is no model", &["cbt", "features", "--model", &p("feats"), "--features", &p("feats"), "--output", &p("cbt_f")], &["config.json", "CBT model"]),
        case("cbt features of another width", &["cbt", "features", "--model", &p("cbt_run"), "--features", &p("cap_dim5"), "--output", &p("cbt_f")], &["5 values", "reads"]),
        case("cbt features from NaN weights", &["cbt", "features", "--model", &p("cbt_nan"), "--features", &p("feats"), "--output", &p("cbt_f")], &["cbt_nan", "NaN"]),
        case("cbt retrieve in pools of one", &["cbt", "retrieve", "--model", &p("cbt_run"), "--features", &p("feats"), "--narration", &p("vids"), "--pool", "1"], &["--pool 1"]),
        case("cbt retrieve with NaN weights", &["cbt", "retrieve", "--model", &p("cbt_nan"), "--features", &p("feats"), "--narration", &p("vids")], &["cbt_nan", "NaN"]),
        ok_case("cbt retrieve", &["cbt", "retrieve", "--model", &p("cbt_run"), "--features", &p("feats"), "--narration", &p("vids")]),
        case("cbt probe on features of two widths", &["cbt", "probe", "--train-features", &p("cap_dim5"), "--train-segments", &p("vids"), "--test-features", &p("feats"), "--test-segments", &p("vids")], &["cap_dim5", "5 values", "feats"]),
        case("cbt probe on segments of other videos", &["cbt", "probe", "--train-features", &p("feats"), "--train-segments", &p("cbt_segments.tsv"), "--test-features", &p("feats"), "--test-segments", &p("vids")], &["cbt_segments.tsv", "no segment"]),
        ok_case("cbt probe", &["cbt", "probe", "--train-features", &p("feats"), "--train-segments", &p("vids"), "--test-features", &p("feats"), "--test-segments", &p("vids")]),
        pipe_case("cbt probe into a closed pipe", &["cbt", "probe", "--train-features", &p("feats"), "--train-segments", &p("vids"), "--test-features", &p("feats"), "--test-segments", &p("vids")]),
        case("cbt features of a layer past the model's", &["cbt", "features", "--model", &p("cbt_run"), "--features", &p("feats"), "--output", &p("cbt_f"), "--layers", "0,7"], &["--layers 7", "visual layers"]),
        case("cbt features of a negative layer", &["cbt", "features", "--model", &p("cbt_run"), "--features", &p("feats"), "--output", &p("cbt_f"), "--layers", "-1"], &["-1", "--layers"]),
        ok_case("cbt features of every layer", &["cbt", "features", "--model", &p("cbt_run"), "--features", &p("feats"), "--output", &p("cbt_fl"), "--layers", "0,1,2"]),
        case("cbt probe with layers and no model", &["cbt", "probe", "--train-features", &p("feats"), "--train-segments", &p("vids"), "--test-features", &p("feats"), "--test-segments", &p("vids"), "--layers", "1"], &["--layers", "--model"]),
        case("cbt probe with C 0", &["cbt", "probe", "--train-features", &p("feats"), "--train-segments", &p("vids"), "--test-features", &p("feats"), "--test-segments", &p("vids"), "--c", "0"], &["C must be"]),
        case("cbt probe with C NaN", &["cbt", "probe", "--train-features", &p("feats"), "--train-segments", &p("vids"), "--test-features", &p("feats"), "--test-segments", &p("vids"), "--c", "1,nan"], &["C must be"]),
        case("cbt probe with a negative C", &["cbt", "probe", "--train-features", &p("feats"), "--train-segments", &p("vids"), "--test-features", &p("feats"), "--test-segments", &p("vids"), "--c", "-1"], &["C must be"]),
        case("cbt probe with a C that is no number", &["cbt", "probe", "--train-features", &p("feats"), "--train-segments", &p("vids"), "--test-features", &p("feats"), "--test-segments", &p("vids"), "--c", "lots"], &["--c", "lots"]),
        ok_case("cbt probe choosing C", &["cbt", "probe", "--train-features", &p("feats"), "--train-segments", &p("vids"), "--test-features", &p("feats"), "--test-segments", &p("vids"), "--c", "0.1,1,10"]),
        ok_case("cbt probe through the model's layers", &["cbt", "probe", "--model", &p("cbt_run"), "--layers", "0,2", "--train-features", &p("feats"), "--train-segments", &p("vids"), "--test-features", &p("feats"), "--test-segments", &p("vids")]),
        case("cbt anticipate with NaN weights", &["cbt", "anticipate", "--model", &p("cbt_nan"), "--train-features", &p("feats"), "--train-segments", &p("vids"), "--test-features", &p("feats"), "--test-segments", &p("vids")], &["cbt_nan", "NaN"]),
        case("cbt bench on micro-batches of one", &["cbt", "bench", "--micro-batch", "1"], &["--micro-batch"]),
        case("cbt bench with a huge batch", &["cbt", "bench", "--micro-batch", "100000000", "--batch", "100000000"], &["--micro-batch"]),
        case("cbt bench in an unknown mode", &["cbt", "bench", "--mode", "fly", "--hidden", "8", "--heads", "2", "--text-layers", "1", "--batch", "2", "--micro-batch", "2"], &["--mode", "fly"]),
        // Curves.
        case("plot a directory that is no run", &["plot", &p("vocab"), "--output", &p("c.png")], &["metrics.jsonl"]),
        case("plot a metric no run logs", &["plot", &b4r, "--metric", "nonsense", "--output", &p("c.png")], &["nonsense"]),
    ]
}

#[test]
fn every_bad_input_gets_a_clear_error_never_a_panic_hang_or_wrong_result() {
    let f = Fixtures::new();
    let cases = cases(&f);
    let results: Vec<(Class, String)> = std::thread::scope(|s| {
        let chunks: Vec<_> = cases
            .chunks(cases.len().div_ceil(4))
            .map(|chunk| s.spawn(move || chunk.iter().map(run_case).collect::<Vec<_>>()))
            .collect();
        chunks.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut counts = std::collections::BTreeMap::new();
    println!("{:<48} {:<16} message", "case", "class");
    for (c, (class, msg)) in cases.iter().zip(&results) {
        *counts.entry(*class).or_insert(0usize) += 1;
        println!("{:<48} {:<16} {msg}", c.name, format!("{class:?}"));
    }
    println!("\n{} cases: {counts:?}", cases.len());
    let bad: Vec<String> = cases
        .iter()
        .zip(&results)
        .filter(|(_, (class, _))| {
            !matches!(
                class,
                Class::ClearError | Class::QuietBrokenPipe | Class::Succeeded
            )
        })
        .map(|(c, (class, msg))| format!("{}: {class:?}: {msg}", c.name))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} cases:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
}

/// A temp file a killed writer left (named for a process that no longer runs) is removed by the
/// next write of the same file, and by the next training run in its directory.
#[test]
fn leftovers_of_killed_writers_are_removed() {
    let d = tempfile::tempdir().unwrap();
    // A pid above the kernel's maximum (2^22) belongs to no process.
    let dead = 9_999_999u32;
    let mut g = String::new();
    for i in 0..30 {
        g += &format!(
            "paper p{i} author a{}\npaper p{i} venue v{}\n",
            i % 7,
            i % 3
        );
    }
    let graph = write(d.path(), "graph.tsv", &g);
    let stale_walks = d.path().join(format!(".walks.txt.tmp{dead}"));
    std::fs::write(&stale_walks, "half a walk").unwrap();
    let walks = d.path().join("walks.txt");
    ok(&[
        "metapath2vec",
        "walk",
        "--graph",
        graph.to_str().unwrap(),
        "--metapath",
        "APVPA",
        "--walks-per-node",
        "2",
        "--output",
        walks.to_str().unwrap(),
    ]);
    assert!(walks.exists() && !stale_walks.exists());

    let mut text = String::new();
    for u in 0..20 {
        for t in 0..10 {
            text += &format!("u{u},i{},{t}\n", (u + t) % 15);
        }
    }
    let data = write(d.path(), "rule.csv", &text);
    let run = d.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let stale = run.join(format!(".checkpoint.safetensors.tmp{dead}"));
    std::fs::write(&stale, "half a checkpoint").unwrap();
    let cfg = write(
        d.path(),
        "c.toml",
        "[model]\nhidden = 8\nintermediate = 16\nmax_len = 10\n[train]\nbatch_size = 16\nmax_epochs = 1\n",
    );
    ok(&[
        "bert4rec",
        "train",
        "--json",
        "--data",
        data.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
    ]);
    assert!(!stale.exists());
    assert!(run.join("checkpoint.safetensors").exists());
}

/// `vit eval` finds the data of a run trained with a relative path from another directory, and
/// takes `--data` when the data moved.
#[test]
fn vit_eval_finds_its_data_from_another_directory() {
    let d = tempfile::tempdir().unwrap();
    let work = d.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut csv = String::new();
    for i in 0..60 {
        let label = i % 2;
        let px: Vec<String> = (0..64)
            .map(|j| ((j + i) % 8 * (label + 1)).to_string())
            .collect();
        csv += &format!("{},{label}\n", px.join(","));
    }
    write(&work, "pixels.csv", &csv);
    let bin = env!("CARGO_BIN_EXE_tessera");
    let out = Command::new(bin)
        .current_dir(&work)
        .args([
            "vit",
            "train",
            "--json",
            "--data",
            "pixels.csv",
            "--run-dir",
            "run",
        ])
        .args([
            "--hidden", "16", "--layers", "1", "--heads", "2", "--epochs", "1",
        ])
        .output()
        .unwrap();
    common::assert_success(&out);
    let out = Command::new(bin)
        .current_dir(d.path())
        .args(["vit", "eval", "--json", "--run-dir", "work/run"])
        .output()
        .unwrap();
    common::assert_success(&out);
    // The data moved: eval is told where.
    std::fs::rename(work.join("pixels.csv"), d.path().join("moved.csv")).unwrap();
    let out = Command::new(bin)
        .current_dir(d.path())
        .args(["vit", "eval", "--json", "--run-dir", "work/run"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pixels.csv"));
    let out = Command::new(bin)
        .current_dir(d.path())
        .args([
            "vit",
            "eval",
            "--json",
            "--run-dir",
            "work/run",
            "--data",
            "moved.csv",
        ])
        .output()
        .unwrap();
    common::assert_success(&out);
}
