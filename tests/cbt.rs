//! CBT: the network, its losses and gradients against the PyTorch reference
//! (scripts/cbt_reference.py), the training examples, pretraining that learns, and the commands
//! on bad input.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use tessera::cbt::config::PretrainConfig;
use tessera::cbt::data::{Example, NarratedVideo};
use tessera::cbt::model::{Cbt, CbtConfig};
use tessera::video::features::ClipFeatures;

/// The reference's weights, config and the examples of its inputs.
fn reference(
    device: &burn::tensor::Device,
) -> (
    CbtConfig,
    Cbt,
    Vec<NarratedVideo>,
    Vec<Example>,
    BTreeMap<String, burn::tensor::TensorData>,
) {
    let path = Path::new("tests/fixtures/cbt/network.safetensors");
    let (tensors, meta) = tessera::core::checkpoint::load_safetensors(path).unwrap();
    let cfg: CbtConfig = serde_json::from_str(&meta["config"]).unwrap();
    let weights: BTreeMap<String, burn::tensor::TensorData> = tensors
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("weight.")
                .map(|n| (n.to_string(), v.clone()))
        })
        .collect();
    let model = tessera::core::checkpoint::load_named(
        Cbt::new(&cfg, device),
        &weights,
        &tessera::cbt::model::renames(),
        device,
        path,
    )
    .unwrap();
    let get = |n: &str| -> Vec<f32> { common::values(tensors[n].clone()) };
    let (feats, real, masked) = (
        get("input.features"),
        get("input.real"),
        get("input.masked"),
    );
    let (ids, tmask) = (get("input.ids"), get("input.text_mask"));
    let f = cfg.feature_size;
    let (b, l) = (4, real.len() / 4);
    let lt = ids.len() / b;
    let mut videos = Vec::new();
    let mut examples = Vec::new();
    for r in 0..b {
        let n = (0..l).filter(|&t| real[r * l + t] > 0.5).count();
        let features = feats[r * l * f..(r * l + n) * f].to_vec();
        let cf = ClipFeatures {
            video: format!("{r}"),
            dim: f,
            features,
            times: (0..n).map(|t| [t as f32, t as f32 + 1.0]).collect(),
            duration: n as f64,
        };
        videos.push(NarratedVideo {
            times: tessera::video::probe::times64(&cf),
            features: cf,
            narration: vec![],
        });
        let nt = (0..lt).filter(|&t| tmask[r * lt + t] > 0.5).count();
        examples.push(Example {
            video: r,
            clips: (0..n).collect(),
            masked: (0..n).filter(|&t| masked[r * l + t] > 0.5).collect(),
            text: ids[r * lt..r * lt + nt].iter().map(|&v| v as u32).collect(),
            text_targets: vec![],
        });
    }
    (cfg, model, videos, examples, tensors)
}

#[test]
fn the_network_its_losses_and_gradients_equal_the_pytorch_reference() {
    let device = tessera::core::device::device_from_name("cpu").unwrap();
    let ad = device.clone().autodiff();
    let (_, model, videos, examples, st) = reference(&ad);
    let want = |n: &str| common::values(st[n].clone());
    let pc = PretrainConfig::default();
    let refs: Vec<&Example> = examples.iter().collect();
    let clips = tessera::cbt::train::clip_batch(&videos, &refs);
    let embedded = model.embed_clips(&clips, &ad);
    let hidden: Vec<f32> = common::values(model.visual_hidden(&clips, embedded, &ad).into_data());
    let texts: Vec<&[u32]> = examples.iter().map(|e| e.text.as_slice()).collect();
    let tokens = tessera::text::model::TokenBatch {
        ..tessera::cbt::train::token_batch(&texts, 0)
    };
    let text: Vec<f32> = common::values(model.text_hidden(&tokens, &ad).into_data());
    // Compare at real positions only (padding rows are whatever attention makes of them).
    let compare = |ours: &[f32], theirs: &[f32], real: &[bool], what: &str| {
        let h = ours.len() / real.len();
        let mut worst = 0f32;
        for (p, &r) in real.iter().enumerate() {
            if r {
                let d = common::max_diff(&ours[p * h..(p + 1) * h], &theirs[p * h..(p + 1) * h]);
                worst = worst.max(d);
            }
        }
        assert!(worst < 1e-5, "{what}: differs by {worst}");
        eprintln!("{what}: {worst:.2e}");
    };
    compare(
        &hidden,
        &want("output.visual_hidden"),
        &clips.real,
        "visual hidden states",
    );
    let treal: Vec<bool> = tokens.mask.iter().map(|&m| m == 1).collect();
    compare(
        &text,
        &want("output.text_hidden"),
        &treal,
        "text hidden states",
    );
    // The scores and each loss.
    let s = tessera::cbt::train::score(&model, &videos, &examples, &pc, 0, &ad);
    let (cross, cpos) = s.cross.clone().unwrap();
    let cross_scores = common::values(cross.clone().into_data());
    let d = common::max_diff(&cross_scores, &want("output.cross_scores"));
    assert!(d < 1e-5, "cross-modal scores differ by {d}");
    eprintln!("cross-modal scores: {d:.2e}");
    // Video 3 is a copy of video 1: their scores against every text tie (a negative equal to
    // the positive), in ours as in the reference.
    for t in 0..4 {
        assert!((cross_scores[t * 4 + 1] - cross_scores[t * 4 + 3]).abs() < 1e-5);
    }
    let scalar = |t: burn::tensor::Tensor<1>| common::values(t.into_data())[0];
    let (vs, vpos) = s.visual.clone().unwrap();
    let visual = scalar(tessera::core::losses::contrastive_nce(vs, &vpos).unwrap());
    let cross_loss = scalar(tessera::core::losses::contrastive_nce(cross, &cpos).unwrap());
    for (what, ours, theirs) in [
        ("visual loss", visual, want("output.visual_loss")[0]),
        ("cross-modal loss", cross_loss, want("output.cross_loss")[0]),
    ] {
        assert!((ours - theirs).abs() < 1e-5, "{what}: {ours} vs {theirs}");
        eprintln!("{what}: {ours} vs {theirs}");
    }
    // One training step's loss (both weights 1) and the gradient of every trainable weight;
    // the text BERT is frozen: no gradient reaches it.
    let counts = tessera::cbt::train::target_counts(&examples, &pc);
    let loss = tessera::cbt::train::pretrain_loss(&model, &videos, &examples, &counts, &pc, 0, &ad);
    let total = scalar(loss.clone());
    assert!((total - visual - cross_loss).abs() < 1e-5);
    let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
    let ours =
        tessera::core::checkpoint::named_gradients(&model, &grads, &tessera::cbt::model::renames());
    let mut worst = (0f32, String::new());
    let mut seen = Vec::new();
    for (name, data) in &ours {
        assert!(
            !name.starts_with("text."),
            "a gradient reached the frozen text BERT: {name}"
        );
        let key = format!("grad.{name}");
        assert!(
            st.contains_key(&key),
            "the reference has no gradient for {name}"
        );
        let g = common::values(data.clone());
        let w = want(&key);
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
        let d = common::max_diff(&g, &w) / scale;
        assert!(d < 1e-5, "{name}: gradients differ by {d}");
        if d >= worst.0 {
            worst = (d, name.clone());
        }
        seen.push(key);
    }
    let missing: Vec<&String> = st
        .keys()
        .filter(|k| k.starts_with("grad.") && !seen.contains(k))
        .collect();
    assert!(missing.is_empty(), "no gradient of ours for {missing:?}");
    eprintln!(
        "{} gradients, worst {:.2e} ({})",
        ours.len(),
        worst.0,
        worst.1
    );
}

/// `cbt features --layers`: the visual input and each layer's output of an unmasked video equal
/// the reference's, concatenated in the order asked; no choice is the last layer alone; a layer
/// past the model's is refused.
#[test]
fn the_features_of_each_hidden_state_equal_the_reference() {
    use tessera::cbt::eval::{video_features, Layers};
    let device = tessera::core::device::device_from_name("cpu").unwrap();
    let (cfg, model, videos, _, st) = reference(&device);
    let states = common::values(st["output.visual_states_unmasked"].clone());
    let (h, l) = (cfg.hidden(), 5);
    let b = videos.len();
    // The reference's state k at video r, clip t.
    let theirs = |k: usize, r: usize, t: usize| -> &[f32] {
        let o = ((k * b + r) * l + t) * h;
        &states[o..o + h]
    };
    let mut worst = 0f32;
    for (choice, order) in [
        (vec![], vec![2]),
        (vec![0, 1, 2], vec![0, 1, 2]),
        (vec![2, 0], vec![2, 0]),
    ] {
        let layers = Layers(choice);
        assert_eq!(layers.width(&cfg), h * order.len());
        for (r, v) in videos.iter().enumerate() {
            let ours = video_features(&model, &v.features, cfg.max_clips, &layers, &device);
            assert_eq!(ours.len(), v.features.len() * h * order.len());
            for t in 0..v.features.len() {
                for (j, &k) in order.iter().enumerate() {
                    let o = (t * order.len() + j) * h;
                    worst = worst.max(common::max_diff(&ours[o..o + h], theirs(k, r, t)));
                }
            }
        }
    }
    assert!(worst < 1e-5, "hidden states differ by {worst}");
    eprintln!("every visual hidden state: {worst:.2e}");
    let err = format!("{:#}", Layers(vec![1, 3]).check(&cfg).unwrap_err());
    assert!(
        err.contains("--layers 3") && err.contains("2 visual layers"),
        "{err}"
    );
    assert!(Layers(vec![0, 2]).check(&cfg).is_ok());
}

fn clip_features(video: &str, rows: Vec<Vec<f32>>) -> ClipFeatures {
    let dim = rows[0].len();
    ClipFeatures {
        video: video.into(),
        dim,
        times: (0..rows.len())
            .map(|t| [1.5 * t as f32, 1.5 * (t + 1) as f32])
            .collect(),
        duration: 1.5 * rows.len() as f64,
        features: rows.into_iter().flatten().collect(),
    }
}

fn seg(start: f64, end: f64, text: &str) -> tessera::corpora::narration::Segment {
    tessera::corpora::narration::Segment {
        start,
        end,
        text: text.into(),
    }
}

#[test]
fn examples_take_the_clips_of_their_text_with_one_clip_at_least_masked() {
    use rand::SeedableRng;
    let f = clip_features("v", (0..8).map(|t| vec![t as f32; 3]).collect());
    let video = NarratedVideo {
        times: tessera::video::probe::times64(&f),
        features: f,
        // Clips are 1.5 s: the first sentence overlaps clips 0-1, the second 2-5, the third none.
        narration: vec![
            seg(0.5, 2.0, "a b"),
            seg(3.5, 8.5, "c d e"),
            seg(20.0, 21.0, "f"),
        ],
    };
    let encode = |texts: &[&str]| -> anyhow::Result<Vec<Vec<u32>>> {
        Ok(texts
            .iter()
            .map(|t| t.split(' ').map(|w| 10 + w.len() as u32).collect())
            .collect())
    };
    let sp = tessera::cbt::data::TextSpecials {
        cls: 1,
        sep: 2,
        mask: 3,
        pad: 0,
    };
    let cfg = PretrainConfig {
        max_concat: 1,
        max_text_tokens: 2,
        ..PretrainConfig::default()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let ex = tessera::cbt::data::epoch(&[video], &encode, sp, 4..=49, &cfg, 3, &mut rng).unwrap();
    assert_eq!(ex.len(), 2, "{ex:?}");
    assert_eq!(ex[0].clips, vec![0, 1]);
    // Clips 2..=5 overlap the second sentence; the model reads at most 3.
    assert_eq!(ex[1].clips, vec![2, 3, 4]);
    for e in &ex {
        assert!(!e.masked.is_empty() && e.masked.iter().all(|&m| m < e.clips.len()));
        // [CLS], at most max_text_tokens tokens, [SEP]; unmasked with the text loss off.
        assert_eq!((e.text[0], *e.text.last().unwrap()), (1, 2));
        assert!(e.text.len() <= 4 && e.text_targets.is_empty());
    }
    // 15% of 3 clips rounds to 0: one is masked all the same.
    assert_eq!(ex[1].masked.len(), 1);
}

#[test]
fn a_batch_of_one_has_no_negatives_and_is_refused() {
    let device = tessera::core::device::device_from_name("cpu").unwrap();
    let (_, model, videos, examples, _) = reference(&device);
    let pc = PretrainConfig::default();
    // One example of one clip: no other clip to be a negative, no other video.
    let one = vec![Example {
        clips: vec![0],
        masked: vec![0],
        ..examples[1].clone()
    }];
    let s = tessera::cbt::train::score(&model, &videos, &one, &pc, 0, &device);
    assert!(s.visual.is_none() && s.cross.is_none());
    // The loss of such a micro-batch is 0 with a graph, never NaN.
    let counts = tessera::cbt::train::target_counts(&one, &pc);
    let ad = device.clone().autodiff();
    let (_, model_ad, ..) = reference(&ad);
    let loss = tessera::cbt::train::pretrain_loss(&model_ad, &videos, &one, &counts, &pc, 0, &ad);
    assert_eq!(common::values(loss.into_data())[0], 0.0);
    // The scores of a single video are refused by the loss itself.
    let single = burn::tensor::Tensor::<2>::zeros([1, 1], &device);
    let err = tessera::core::losses::cross_modal_nce(single).unwrap_err();
    assert!(format!("{err:#}").contains("no negatives"), "{err:#}");
    // And the config refuses batches and micro-batches that would make such a batch.
    for (batch_size, micro_batch) in [(1, 16), (32, 1)] {
        let cfg = PretrainConfig {
            batch_size,
            micro_batch,
            ..PretrainConfig::default()
        };
        let err = format!("{:#}", cfg.validate().unwrap_err());
        assert!(err.contains("negatives"), "{err}");
    }
}

#[test]
fn the_linear_probe_reads_labels_that_the_features_hold_and_refuses_broken_features() {
    use rand::{Rng, SeedableRng};
    use tessera::video::probe::{linear_probe, Examples};
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    // Class c lies along axis c, under noise; class 0 is half the examples (the majority).
    let mut make = |n: usize| {
        let mut e = Examples::default();
        for i in 0..n {
            let c = if i % 2 == 0 { 0 } else { 1 + i % 3 };
            let mut x: Vec<f64> = (0..6).map(|_| rng.random::<f64>() - 0.5).collect();
            x[c] += 1.5;
            e.x.push(x);
            e.labels.push(format!("class{c}"));
        }
        e
    };
    let (train, test) = (make(200), make(100));
    let s = linear_probe(&train, &test, 300, &[1.0]).unwrap();
    assert_eq!(s.classes, 4);
    assert!((s.majority_top1 - 0.5).abs() < 1e-9, "{s:?}");
    assert!(s.top1 > s.majority_top1 + 0.3, "{s:?}");
    // Several C: chosen on the training split. A C so small that the weights stay near 0 is
    // passed over for the one that fits, whose score is that C's alone.
    let chosen = linear_probe(&train, &test, 300, &[1e-7, 1.0]).unwrap();
    assert_eq!(chosen.c, 1.0, "{chosen:?}");
    assert_eq!(chosen.top1, s.top1);
    let tiny = linear_probe(&train, &test, 300, &[1e-7]).unwrap();
    assert!(tiny.top1 < s.top1 - 0.2, "{tiny:?} against {s:?}");
    // The test split never chooses: its labels shuffled, the same C.
    let mut shuffled = test.clone();
    shuffled.labels.reverse();
    assert_eq!(
        linear_probe(&train, &shuffled, 300, &[1e-7, 1.0])
            .unwrap()
            .c,
        1.0
    );
    for bad in [vec![], vec![0.0], vec![-1.0], vec![f64::NAN]] {
        let err = format!("{:#}", linear_probe(&train, &test, 10, &bad).unwrap_err());
        assert!(err.contains("C must be"), "{err}");
    }
    // Two widths, a NaN, one class: clear errors.
    let mut narrow = test.clone();
    narrow.x[0].pop();
    assert!(format!(
        "{:#}",
        linear_probe(&train, &narrow, 10, &[1.0]).unwrap_err()
    )
    .contains("5 values"));
    let mut nan = test.clone();
    nan.x[3][1] = f64::NAN;
    assert!(
        format!("{:#}", linear_probe(&train, &nan, 10, &[1.0]).unwrap_err()).contains("not finite")
    );
    let mut one = train.clone();
    one.labels.iter_mut().for_each(|l| *l = "same".into());
    assert!(
        format!("{:#}", linear_probe(&one, &test, 10, &[1.0]).unwrap_err()).contains("1 label")
    );
}

const OBJECTS: [&str; 10] = [
    "apple", "chair", "shoe", "dog", "car", "book", "cup", "bag", "hat", "ball",
];

/// 60 videos of 3 steps, each 2 clips carrying the features of the object its narration names
/// (one random vector per object, under noise).
fn synthetic_videos(dim: usize) -> Vec<NarratedVideo> {
    use rand::{Rng, SeedableRng};
    let objects = OBJECTS;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut normal = || -> f32 {
        let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-9), rng.random());
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    };
    let prototypes: Vec<Vec<f32>> = (0..objects.len())
        .map(|_| (0..dim).map(|_| normal()).collect())
        .collect();
    let mut pick = rand::rngs::StdRng::seed_from_u64(8);
    (0..60)
        .map(|v| {
            let steps: Vec<usize> = (0..3)
                .map(|_| pick.random_range(0..objects.len()))
                .collect();
            let rows: Vec<Vec<f32>> = steps
                .iter()
                .flat_map(|&o| [o, o])
                .map(|o| prototypes[o].iter().map(|&x| x + 0.3 * normal()).collect())
                .collect();
            let f = clip_features(&format!("{v:03}"), rows);
            let narration = steps
                .iter()
                .enumerate()
                .map(|(k, &o)| {
                    seg(
                        3.0 * k as f64,
                        3.0 * (k + 1) as f64,
                        &format!("now we pick up the {}", objects[o]),
                    )
                })
                .collect();
            NarratedVideo {
                times: tessera::video::probe::times64(&f),
                features: f,
                narration,
            }
        })
        .collect()
}

/// Training settings for the synthetic videos: batches of 16 in micro-batches of 8 (each
/// example's negatives), 12 epochs, the last 12 videos held out, one sentence a text.
fn synthetic_config() -> PretrainConfig {
    PretrainConfig {
        batch_size: 16,
        micro_batch: 8,
        lr: 5e-4,
        warmup_steps: 5,
        epochs: 12,
        valid_videos: 12,
        max_concat: 1,
        ..PretrainConfig::default()
    }
}

/// Pretrain a CBT around all-MiniLM-L6-v2 on `videos` with `cfg`; the epoch records and the run
/// directory.
fn pretrain_on(
    videos: &[NarratedVideo],
    dim: usize,
    cfg: &PretrainConfig,
) -> (Vec<tessera::core::trainer::EpochRecord>, tempfile::TempDir) {
    use tessera::core::run::RunDir;
    use tessera::core::trainer::RunOptions;
    let device = tessera::core::device::device_from_name("cpu").unwrap();
    let minilm = Path::new("data/minilm");
    device.seed(0);
    let (model_cfg, model) =
        tessera::cbt::model::from_text_bert(minilm, dim, &cfg.model, &device).unwrap();
    let tok = tessera::text::tokenize::TextTokenizer::from_dir(minilm, 512).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::create(&dir.path().join("run")).unwrap();
    let records = tessera::cbt::train::pretrain(
        model,
        &model_cfg,
        &tok,
        videos,
        cfg,
        &run,
        &device,
        &RunOptions {
            quiet: true,
            resume: false,
            stop_after_epochs: None,
        },
    )
    .unwrap();
    (records, dir)
}

/// Pretraining learns which clips a sentence names: synthetic videos whose clips carry the
/// features of the object their narration names (one random vector per object, under noise),
/// the text through all-MiniLM-L6-v2, frozen. The loss falls, the held-out cross-modal accuracy
/// (each text against its micro-batch's videos) and text-to-clip retrieval beat chance by a
/// wide margin, the masked clips are found among the batch's more often than by chance, and the
/// run directory is a model directory that `cbt retrieve` reads.
#[test]
fn pretraining_learns_which_clips_a_sentence_names() {
    let dim = 16;
    let videos = synthetic_videos(dim);
    let device = tessera::core::device::device_from_name("cpu").unwrap();
    let cfg = synthetic_config();
    let (records, dir) = pretrain_on(&videos, dim, &cfg);
    let (first, last) = (&records[0], records.last().unwrap());
    let metric = |k: &str| last.metrics.iter().find(|(n, _)| n == k).unwrap().1;
    eprintln!("loss {} -> {}; {:?}", first.loss, last.loss, last.metrics);
    assert!(
        last.loss < 0.7 * first.loss,
        "loss {} -> {}",
        first.loss,
        last.loss
    );
    // Chance: 1 in the micro-batch's 8 videos.
    assert!(metric("valid_cross_accuracy") > 0.5, "{:?}", last.metrics);
    // The masked clip among the micro-batch's 8 x 6 clips, two of them its own step's.
    assert!(metric("valid_visual_accuracy") > 0.1, "{:?}", last.metrics);
    let (cfg2, model, tok2) = {
        let (c, m) = tessera::cbt::model::load(&dir.path().join("run"), &device).unwrap();
        let t = tessera::text::tokenize::TextTokenizer::for_model(
            &dir.path().join("run"),
            c.text.max_position_embeddings,
            c.text.vocab_size,
        )
        .unwrap();
        (c, m, t)
    };
    assert_eq!(cfg2.feature_size, dim);
    let held_out = &videos[48..];
    let sp = tessera::cbt::train::text_specials(&tok2).unwrap();
    let pairs = tessera::cbt::eval::retrieval_pairs(held_out, &tok2, sp, 32, 48).unwrap();
    assert_eq!(pairs.len(), 36);
    let s =
        tessera::cbt::eval::retrieve(&model, held_out, &pairs, 12, sp.pad, 1024, &device, &|_| {})
            .unwrap();
    eprintln!("{s:?}");
    assert!(
        s.r1 > 2.5 * s.chance_r1 && s.r5 > s.chance_r5 + 0.25,
        "{s:?}"
    );
}

/// The text loss (off in the paper) trains the text BERT: on the synthetic videos' narration
/// ("now we pick up the <object>"), with only that loss on, the loss falls and the held-out
/// masked tokens are filled far better than by the most frequent masked token of the training
/// narration (the baseline) or by chance over the 30,522 word pieces.
#[test]
fn the_text_loss_trains_the_text_bert_to_fill_masked_words() {
    let dim = 16;
    let videos = synthetic_videos(dim);
    let cfg = PretrainConfig {
        epochs: 6,
        visual_weight: 0.0,
        cross_weight: 0.0,
        text_weight: 1.0,
        train_text: true,
        text_mask_prob: 0.3,
        ..synthetic_config()
    };
    let (records, _dir) = pretrain_on(&videos, dim, &cfg);
    let (first, last) = (&records[0], records.last().unwrap());
    let metric = |k: &str| last.metrics.iter().find(|(n, _)| n == k).unwrap().1;
    eprintln!("loss {} -> {}; {:?}", first.loss, last.loss, last.metrics);
    assert!(
        last.loss < 0.5 * first.loss,
        "loss {} -> {}",
        first.loss,
        last.loss
    );
    // The baseline: every word of the narration's template once, and the object: the most
    // frequent masked token is right at most 1 time in 6 ("now we pick up the X").
    let baseline = 1.0 / 6.0;
    let accuracy = metric("valid_text_accuracy");
    assert!(accuracy > baseline + 0.3, "{:?}", last.metrics);
    assert!(!last
        .metrics
        .iter()
        .any(|(n, _)| n.starts_with("valid_cross")));
}
