//! VideoBERT's pretraining sequences: sentence-clip pairs by timestamps, random concatenation
//! and stride, the three sequence layouts, masking per part, alignment negatives.

mod common;

use rand::SeedableRng;
use tessera::corpora::narration::Segment;
use tessera::videobert::config::DataConfig;
use tessera::videobert::data::{
    epoch, mask, pairs, read_tokenized, sequence, Kind, Specials, TokenizedVideo, VocabLayout,
};

const SP: Specials = Specials {
    cls: 101,
    sep: 102,
    mask: 103,
    pad: 0,
};
const LAYOUT: VocabLayout = VocabLayout {
    text_vocab: 1000,
    visual_words: 144,
};

fn seg(start: f64, end: f64, text: &str) -> Segment {
    Segment {
        start,
        end,
        text: text.into(),
    }
}

/// Ten 1.5 s clips whose words are 10, 11, ..., 19.
fn video(narration: Vec<Segment>) -> TokenizedVideo {
    TokenizedVideo {
        video: "v".into(),
        duration: 15.0,
        words: (10..20).collect(),
        times: (0..10)
            .map(|c| [c as f64 * 1.5, (c + 1) as f64 * 1.5])
            .collect(),
        narration,
    }
}

/// The word-embedding rows (text, `[>]`, visual words) of a VideoBERT network, flat.
fn word_rows(model: &tessera::videobert::model::VideoBert) -> Vec<f32> {
    common::values(
        model
            .bert
            .embeddings
            .word_embeddings
            .weight
            .val()
            .into_data(),
    )
}

#[test]
fn a_sentence_takes_the_words_of_the_clips_its_time_overlaps() {
    let cfg = DataConfig {
        max_concat: 1,
        max_stride: 1,
        ..DataConfig::default()
    };
    let v = video(vec![
        seg(4.0, 6.5, "lift the bag"),
        seg(0.2, 1.0, "hello"),
        seg(20.0, 21.0, "after the end"),
    ]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let p = pairs(&v, 3, &cfg, &mut rng);
    // Sorted by time; the sentence past the last clip has no words and is dropped.
    assert_eq!(p.len(), 2);
    assert_eq!(
        (p[0].text.as_str(), p[0].words.clone()),
        ("hello", vec![10])
    );
    // 4.0-6.5 s overlaps clips [3.0, 4.5), [4.5, 6.0), [6.0, 7.5).
    assert_eq!(
        (p[1].text.as_str(), p[1].words.clone()),
        ("lift the bag", vec![12, 13, 14])
    );
    assert!(p.iter().all(|x| x.video == 3));
}

#[test]
fn neighbouring_sentences_concatenate_and_words_thin_by_a_stride_of_one_to_three() {
    let cfg = DataConfig::default();
    let narration: Vec<Segment> = (0..10)
        .map(|i| seg(i as f64 * 1.5, i as f64 * 1.5 + 1.4, &format!("s{i}")))
        .collect();
    let v = video(narration);
    let mut concat = std::collections::BTreeSet::new();
    let mut thinned = false;
    for seed in 0..50 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let p = pairs(&v, 0, &cfg, &mut rng);
        // Every sentence once, in order.
        let all: Vec<String> = p
            .iter()
            .flat_map(|x| x.text.split(' ').map(String::from))
            .collect();
        assert_eq!(all, (0..10).map(|i| format!("s{i}")).collect::<Vec<_>>());
        for x in &p {
            let n = x.text.split(' ').count();
            concat.insert(n);
            assert!((1..=3).contains(&n));
            // The clips of the span, every stride-th: consecutive words differ by the stride.
            let first = (x.start / 1.5).floor() as u32 + 10;
            let last = ((x.end / 1.5).ceil() as u32 + 9).min(19);
            assert!(x.words.iter().all(|w| (first..=last).contains(w)));
            let gaps: Vec<u32> = x.words.windows(2).map(|w| w[1] - w[0]).collect();
            assert!(gaps.iter().all(|&g| g == gaps[0] && (1..=3).contains(&g)));
            thinned |= gaps.first().is_some_and(|&g| g > 1);
        }
    }
    assert_eq!(concat.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(thinned);
}

#[test]
fn sequences_are_cls_text_video_start_words_sep_with_token_types() {
    let cfg = DataConfig::default();
    let j = sequence(Kind::Joint, &[7, 8], &[0, 5], Some(true), SP, LAYOUT, &cfg);
    assert_eq!(j.ids, vec![101, 7, 8, 1000, 1001, 1006, 102]);
    assert_eq!(j.type_ids, vec![0, 0, 0, 1, 1, 1, 1]);
    let t = sequence(Kind::TextOnly, &[7, 8], &[0, 5], None, SP, LAYOUT, &cfg);
    assert_eq!(
        (t.ids, t.type_ids),
        (vec![101, 7, 8, 102], vec![0, 0, 0, 0])
    );
    let v = sequence(Kind::VideoOnly, &[7, 8], &[0, 5], None, SP, LAYOUT, &cfg);
    assert_eq!(
        (v.ids, v.type_ids),
        (vec![101, 1000, 1001, 1006, 102], vec![0, 1, 1, 1, 1])
    );
    // Cut to the configured lengths.
    let short = DataConfig {
        max_text_tokens: 1,
        max_visual_words: 1,
        ..cfg
    };
    let c = sequence(
        Kind::Joint,
        &[7, 8],
        &[0, 5],
        Some(true),
        SP,
        LAYOUT,
        &short,
    );
    assert_eq!(c.ids, vec![101, 7, 1000, 1001, 102]);
}

#[test]
fn text_and_visual_words_are_masked_apart_with_their_own_random_tokens() {
    let cfg = DataConfig::default();
    let text: Vec<u32> = (200..240).collect();
    let words: Vec<u32> = (0..40).collect();
    let (mut text_masked, mut word_masked, mut text_n, mut word_n) = (0, 0, 0, 0);
    for seed in 0..200 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let seq = sequence(Kind::Joint, &text, &words, Some(true), SP, LAYOUT, &cfg);
        let m = mask(seq, SP, LAYOUT, &cfg, 999, &mut rng);
        text_n += 40;
        word_n += 40;
        text_masked += m.text_targets.len();
        word_masked += m.word_targets.len();
        for &(i, id) in &m.text_targets {
            assert!((1..=40).contains(&i) && id == m.seq.ids[i]);
            let got = m.input[i];
            assert!(
                got == SP.mask || got == id || (999..1000).contains(&got),
                "{got}"
            );
        }
        for &(i, id) in &m.word_targets {
            assert!((42..=81).contains(&i) && id == m.seq.ids[i] && LAYOUT.is_word(id));
            let got = m.input[i];
            assert!(got == SP.mask || LAYOUT.is_word(got), "{got}");
        }
        // [CLS], [>] and [SEP] are never masked.
        assert_eq!((m.input[0], m.input[41], m.input[82]), (101, 1000, 102));
    }
    let (t, w) = (
        text_masked as f64 / text_n as f64,
        word_masked as f64 / word_n as f64,
    );
    assert!(
        (0.13..0.17).contains(&t) && (0.13..0.17).contains(&w),
        "{t} {w}"
    );
}

#[test]
fn an_epoch_mixes_kinds_and_misaligned_texts_come_from_another_video() {
    let cfg = DataConfig::default();
    // Video k: words 4k..4k+3 (so a sequence's words tell its video), sentences "video<k> ...".
    let videos: Vec<TokenizedVideo> = (0..30u32)
        .map(|k| TokenizedVideo {
            video: format!("v{k}"),
            duration: 6.0,
            words: (4 * k..4 * k + 4).collect(),
            times: (0..4)
                .map(|c| [c as f64 * 1.5, (c + 1) as f64 * 1.5])
                .collect(),
            narration: (0..4)
                .map(|i| seg(i as f64 * 1.5, i as f64 * 1.5 + 1.0, &format!("video{k}")))
                .collect(),
        })
        .collect();
    // A text of video k encodes as [500 + k, ...].
    let encode = |texts: &[&str]| -> anyhow::Result<Vec<Vec<u32>>> {
        Ok(texts
            .iter()
            .map(|t| {
                let k: u32 = t.split(' ').next().unwrap()[5..].parse().unwrap();
                vec![500 + k; t.split(' ').count()]
            })
            .collect())
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let seqs = epoch(&videos, &encode, SP, LAYOUT, 999, &cfg, &mut rng).unwrap();
    let count = |k: Kind| seqs.iter().filter(|s| s.seq.kind == k).count() as f64;
    let n = seqs.len() as f64;
    assert!(n > 40.0, "{n} sequences");
    assert!((count(Kind::Joint) / n - 0.5).abs() < 0.2);
    assert!(count(Kind::TextOnly) > 0.0 && count(Kind::VideoOnly) > 0.0);
    let (mut pos, mut neg) = (0, 0);
    for s in seqs.iter().filter(|s| s.seq.kind == Kind::Joint) {
        let text_video = s.seq.ids[1] - 500;
        let start = s
            .seq
            .ids
            .iter()
            .position(|&id| id == LAYOUT.video_start())
            .unwrap();
        let word_video = (s.seq.ids[start + 1] - LAYOUT.word(0)) / 4;
        match s.seq.aligned {
            Some(true) => {
                pos += 1;
                assert_eq!(text_video, word_video);
            }
            Some(false) => {
                neg += 1;
                assert_ne!(text_video, word_video);
            }
            None => panic!("a joint sequence without an alignment label"),
        }
    }
    assert!(pos > 5 && neg > 5, "{pos} aligned, {neg} misaligned");
    // Only joint sequences carry the label.
    assert!(seqs
        .iter()
        .all(|s| (s.seq.kind == Kind::Joint) == s.seq.aligned.is_some()));
    // Masked targets per alignment label: (aligned, misaligned).
    let targets = |seqs: &[tessera::videobert::data::MaskedSequence]| {
        let mut n = [0usize; 2];
        for s in seqs {
            if let Some(a) = s.seq.aligned {
                n[usize::from(!a)] += s.text_targets.len() + s.word_targets.len();
            }
        }
        n
    };
    let with = targets(&seqs);
    assert!(with[0] > 0 && with[1] > 0, "{with:?}");
    // `predict_misaligned = false`: misaligned sequences are masked as often as aligned ones
    // (their masks must not give their label away) but have nothing to predict.
    let cfg = DataConfig {
        predict_misaligned: false,
        ..cfg
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let seqs = epoch(&videos, &encode, SP, LAYOUT, 999, &cfg, &mut rng).unwrap();
    let without = targets(&seqs);
    assert!(without[0] > 0 && without[1] == 0, "{without:?}");
    // Share of changed input positions per alignment label: (aligned, misaligned).
    let mut changed = [[0usize; 2]; 2];
    for s in &seqs {
        if let Some(a) = s.seq.aligned {
            let c = &mut changed[usize::from(!a)];
            c[0] += s
                .input
                .iter()
                .zip(&s.seq.ids)
                .filter(|(x, y)| x != y)
                .count();
            c[1] += s.input.len();
        }
    }
    let share = |c: [usize; 2]| c[0] as f64 / c[1] as f64;
    let (aligned, misaligned) = (share(changed[0]), share(changed[1]));
    assert!(
        misaligned > 0.05 && (aligned - misaligned).abs() < 0.5 * aligned,
        "changed input: aligned {aligned}, misaligned {misaligned}"
    );
}

#[test]
fn tokenized_words_past_the_codebook_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::write(
        dir.path(),
        "w.jsonl",
        "{\"video\": \"a\", \"duration\": 3.0, \"words\": [1, 2], \"times\": [[0, 1.5], [1.5, 3]]}\n\
         {\"video\": \"b\", \"duration\": 3.0, \"words\": [1, 200], \"times\": [[0, 1.5], [1.5, 3]]}\n",
    );
    let e = read_tokenized(&p, 144).unwrap_err().to_string();
    assert!(
        e.contains("w.jsonl:2") && e.contains("words") && e.contains("200"),
        "{e}"
    );
    assert_eq!(read_tokenized(&p, 201).unwrap().len(), 2);
}

#[test]
fn the_network_equals_transformers_bert_for_pretraining_over_the_joint_vocabulary() {
    use tessera::text::model::TokenBatch;
    let device = tessera::core::device::device_from_name("cpu").unwrap();
    let (cfg, model) = tessera::videobert::model::load(
        std::path::Path::new("tests/fixtures/videobert/model"),
        &device,
    )
    .unwrap();
    assert_eq!((cfg.layout().size(), cfg.visual_words), (63, 12));
    let bytes = std::fs::read("tests/fixtures/videobert/reference.safetensors").unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let u = |n: &str| {
        common::tensor_f64(&st, n)
            .iter()
            .map(|&v| v as u32)
            .collect::<Vec<u32>>()
    };
    let ids = u("input_ids");
    let len = ids.len() / 2;
    let batch = TokenBatch {
        batch: 2,
        len,
        ids,
        type_ids: u("token_type_ids"),
        mask: u("attention_mask"),
    };
    let mask = batch.mask.clone();
    let hidden = model.forward(&batch, &device);
    let h: Vec<f32> = common::values(hidden.clone().into_data());
    let d = 32;
    let want_h: Vec<f32> = common::tensor_f32(&st, "last_hidden_state");
    // Padding positions hold whatever each side computes there: compare real tokens.
    let real: Vec<usize> = (0..2 * len).filter(|&i| mask[i] == 1).collect();
    let pick = |v: &[f32], w: usize| -> Vec<f32> {
        real.iter()
            .flat_map(|&i| v[i * w..(i + 1) * w].to_vec())
            .collect()
    };
    let dh = common::max_diff(&pick(&h, d), &pick(&want_h, d));
    assert!(dh < 1e-5, "hidden states differ by {dh}");
    let flat = hidden.clone().reshape([2 * len, d]);
    let logits: Vec<f32> = common::values(model.token_logits(flat).into_data());
    let want_l: Vec<f32> = common::tensor_f32(&st, "prediction_logits");
    let dl = common::max_diff(&pick(&logits, 63), &pick(&want_l, 63));
    assert!(dl < 1e-5, "token scores differ by {dl}");
    let align: Vec<f32> = common::values(model.alignment_logits(hidden).into_data());
    let want_a: Vec<f32> = common::tensor_f32(&st, "seq_relationship_logits");
    let da = common::max_diff(&align, &want_a);
    assert!(da < 1e-5, "alignment scores differ by {da}");
    eprintln!("max differences: hidden {dh:.2e}, token scores {dl:.2e}, alignment {da:.2e}");
}

/// One training step against PyTorch: the fixture's masked sequences through our pretraining
/// loss (MLM + 0.5 MFM + 2 alignment) give transformers' loss, and every parameter's gradient
/// equals `BertForPreTraining`'s under its state-dict name (the tied decoder's gradient lands
/// on the word embeddings on both sides).
#[test]
fn one_training_step_has_the_loss_and_gradients_of_transformers() {
    use tessera::videobert::data::{MaskedSequence, Sequence};
    let device = tessera::core::device::device_from_name("cpu").unwrap();
    let ad = device.clone().autodiff();
    let (_, model) = tessera::videobert::model::load(
        std::path::Path::new("tests/fixtures/videobert/model"),
        &ad,
    )
    .unwrap();
    let bytes = std::fs::read("tests/fixtures/videobert/reference.safetensors").unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let u = |n: &str| -> Vec<u32> {
        common::tensor_f64(&st, n)
            .iter()
            .map(|&v| v as u32)
            .collect()
    };
    let (ids, masked, types, attn) = (
        u("input_ids"),
        u("masked_input_ids"),
        u("token_type_ids"),
        u("attention_mask"),
    );
    let len = ids.len() / 2;
    let targets = |pos: &str, tgt: &str, row: usize| -> Vec<(usize, u32)> {
        let p = u(pos);
        p.chunks(2)
            .zip(u(tgt))
            .filter(|(rc, _)| rc[0] as usize == row)
            .map(|(rc, t)| (rc[1] as usize, t))
            .collect()
    };
    let aligned = u("alignment_labels");
    let seqs: Vec<MaskedSequence> = (0..2)
        .map(|r| {
            let n = attn[r * len..(r + 1) * len]
                .iter()
                .filter(|&&m| m == 1)
                .count();
            MaskedSequence {
                seq: Sequence {
                    kind: Kind::Joint,
                    ids: ids[r * len..r * len + n].to_vec(),
                    type_ids: types[r * len..r * len + n].to_vec(),
                    aligned: Some(aligned[r] == 0),
                },
                input: masked[r * len..r * len + n].to_vec(),
                text_targets: targets("text_target_positions", "text_targets", r),
                word_targets: targets("word_target_positions", "word_targets", r),
            }
        })
        .collect();
    let counts = tessera::videobert::train::target_counts(&seqs);
    assert_eq!(counts, [2, 3, 2]);
    let loss =
        tessera::videobert::train::pretrain_loss(&model, &seqs, &counts, [1.0, 0.5, 2.0], 0, &ad);
    let value: f32 = loss
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()[0];
    let want = common::tensor_f64(&st, "loss")[0] as f32;
    assert!((value - want).abs() < 1e-5, "loss {value} vs {want}");
    let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
    let ours = tessera::core::checkpoint::named_gradients(
        &model,
        &grads,
        &tessera::videobert::model::hf_renames(),
    );
    let mut worst = (0.0f32, String::new());
    let mut seen = Vec::new();
    for (name, data) in &ours {
        let g: Vec<f32> = common::values(data.clone());
        let key = format!("grad.{name}");
        let want: Vec<f32> = common::tensor_f32(&st, &key);
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1.0);
        let d = common::max_diff(&g, &want) / scale;
        assert!(
            d < 1e-5,
            "{name}: gradients differ by {d} (relative to {scale})"
        );
        if d >= worst.0 {
            worst = (d, name.clone());
        }
        seen.push(key);
    }
    let missing: Vec<String> = st
        .names()
        .into_iter()
        .filter(|n| n.starts_with("grad.") && !seen.contains(&n.to_string()))
        .map(str::to_string)
        .collect();
    assert!(missing.is_empty(), "no gradient of ours for {missing:?}");
    eprintln!(
        "loss {value} vs {want}; {} gradients, worst {:.2e} ({})",
        ours.len(),
        worst.0,
        worst.1
    );
}

#[test]
fn from_a_text_bert_text_sequences_run_as_before_and_visual_rows_follow_the_centroids() {
    use tessera::core::kmeans::{HierarchicalKMeans, Lloyd};
    use tessera::text::model::TokenBatch;
    use tessera::videobert::model::{from_text_bert, load, save, VisualInit};
    let device = tessera::core::device::device_from_name("cpu").unwrap();
    // A codebook of 16 words over 24-value features in 4 well-separated groups, all sharing a
    // large mean (as clip features do).
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let x: Vec<f32> = (0..400)
        .flat_map(|i| {
            let g = (i % 4) as f32;
            (0..24)
                .map(|k| if k % 4 == i % 4 { 13.0 + g } else { 10.0 } + rand::Rng::random::<f32>(&mut rng) * 0.3)
                .collect::<Vec<_>>()
        })
        .collect();
    let book = HierarchicalKMeans::fit(&x, 24, 2, 4, Lloyd::default(), 0).unwrap();
    let minilm = std::path::Path::new("data/minilm");
    let (cfg, model) = from_text_bert(minilm, &book, VisualInit::Centroids, 0, &device).unwrap();
    assert_eq!((cfg.text_vocab_size, cfg.visual_words), (30_522, 16));
    assert_eq!(cfg.bert.vocab_size, 30_522 + 1 + 16);
    // A text-only sequence runs through exactly the text model's weights.
    let text_cfg =
        tessera::text::config::BertConfig::from_json_file(&minilm.join("config.json")).unwrap();
    let (text, _) =
        tessera::text::model::load_hf(&text_cfg, &minilm.join("model.safetensors"), &device)
            .unwrap();
    let batch = TokenBatch {
        batch: 1,
        len: 6,
        ids: vec![101, 2085, 2292, 2033, 2265, 102],
        type_ids: vec![0; 6],
        mask: vec![1; 6],
    };
    let a: Vec<f32> = common::values(model.forward(&batch, &device).into_data());
    let b: Vec<f32> = common::values(text.forward(&batch, &device).into_data());
    assert!(common::max_diff(&a, &b) < 1e-6);
    // Visual rows: words of one centroid group are closer to each other than to other groups'.
    let rows: Vec<f32> = word_rows(&model);
    let h = cfg.bert.hidden_size;
    let row = |w: usize| &rows[(30_523 + w) * h..(30_524 + w) * h];
    let leaves = &book.centres[1];
    let dist = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt()
    };
    let (mut agree, mut total) = (0, 0);
    for i in 0..16 {
        for j in 0..16 {
            for k in 0..16 {
                if i == j || i == k || j == k {
                    continue;
                }
                let (ci, cj, ck) = (
                    &leaves[i * 24..(i + 1) * 24],
                    &leaves[j * 24..(j + 1) * 24],
                    &leaves[k * 24..(k + 1) * 24],
                );
                if dist(ci, cj) * 2.0 < dist(ci, ck) {
                    total += 1;
                    agree += usize::from(dist(row(i), row(j)) < dist(row(i), row(k)));
                }
            }
        }
    }
    assert!(
        total > 100 && agree as f64 > 0.9 * total as f64,
        "{agree} of {total}"
    );
    // The centroids share a large mean, which the projection keeps (the visual rows are nearly
    // parallel); centred first, the rows are not.
    let mean_cosine = |v: &[f32], d: usize| {
        let n = v.len() / d;
        let (mut sum, mut pairs) = (0.0f64, 0);
        for i in 0..n {
            for j in i + 1..n {
                let (a, b) = (&v[i * d..(i + 1) * d], &v[j * d..(j + 1) * d]);
                let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
                let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
                sum += (dot / (na * nb)) as f64;
                pairs += 1;
            }
        }
        sum / pairs as f64
    };
    let visual = &rows[30_523 * h..];
    assert!(mean_cosine(leaves, 24) > 0.9, "{}", mean_cosine(leaves, 24));
    assert!(mean_cosine(visual, h) > 0.9, "{}", mean_cosine(visual, h));
    let (_, centred) =
        from_text_bert(minilm, &book, VisualInit::CentredCentroids, 0, &device).unwrap();
    let centred_rows: Vec<f32> = word_rows(&centred);
    let c = mean_cosine(&centred_rows[30_523 * h..], h);
    assert!(c < 0.2, "{c}");
    // Centroids all equal: nothing is left to centre, a clear error rather than zero rows.
    let mut equal = book.clone();
    for level in equal.centres.iter_mut() {
        let first = level[..24].to_vec();
        for c in level.chunks_exact_mut(24) {
            c.copy_from_slice(&first);
        }
    }
    let Err(err) = from_text_bert(minilm, &equal, VisualInit::CentredCentroids, 0, &device) else {
        panic!("equal centroids must be refused");
    };
    assert!(err.to_string().contains("are all equal"), "{err}");
    // Saved and read back: the same network.
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), &cfg, &model).unwrap();
    let (cfg2, back) = load(dir.path(), &device).unwrap();
    assert_eq!(cfg2, cfg);
    let c: Vec<f32> = common::values(back.forward(&batch, &device).into_data());
    assert!(common::max_diff(&a, &c) < 1e-7);
}

#[test]
fn pretraining_learns_the_narration_and_the_run_directory_is_a_model_directory() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let bin = env!("CARGO_BIN_EXE_tessera");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        common::assert_success(&out);
        out
    };
    let dino = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dinov2-tiny");
    run(&[
        "data",
        "videos",
        "--output",
        &p("v"),
        "--count",
        "60",
        "--seed",
        "4",
        "--json",
    ]);
    run(&[
        "video",
        "features",
        "--backbone",
        dino,
        "--input",
        &p("v"),
        "--output",
        &p("f"),
        "--json",
    ]);
    run(&[
        "video",
        "codebook",
        "--features",
        &p("f"),
        "--levels",
        "2",
        "--k",
        "4",
        "--output",
        &p("book.safetensors"),
    ]);
    run(&[
        "video",
        "tokenize",
        "--codebook",
        &p("book.safetensors"),
        "--features",
        &p("f"),
        "--narration",
        &format!("{}/narration.tsv", p("v")),
        "--output",
        &p("w.jsonl"),
    ]);
    run(&[
        "videobert",
        "pretrain",
        "--words",
        &p("w.jsonl"),
        "--codebook",
        &p("book.safetensors"),
        "--run-dir",
        &p("run"),
        "--epochs",
        "10",
        "--valid-videos",
        "10",
        "--lr",
        "5e-4",
        "--batch-size",
        "16",
        "--json",
    ]);
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(p("run/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let loss = |r: &serde_json::Value| r["loss"].as_f64().unwrap();
    let (first, last) = (&rows[0], rows.last().unwrap());
    assert!(
        loss(last) < 0.5 * loss(first),
        "loss {} -> {}",
        loss(first),
        loss(last)
    );
    // The majority baseline of masked text tokens: the held-out narration's most frequent token.
    let tok =
        tessera::text::tokenize::TextTokenizer::from_dir(std::path::Path::new("data/minilm"), 512)
            .unwrap();
    let narration = tessera::corpora::narration::read_narration_tsv(std::path::Path::new(
        &format!("{}/narration.tsv", p("v")),
    ))
    .unwrap();
    let texts: Vec<&str> = narration
        .iter()
        .filter(|(id, _)| id.parse::<usize>().unwrap() >= 50)
        .flat_map(|(_, s)| s.iter().map(|g| g.text.as_str()))
        .collect();
    let mut freq = std::collections::HashMap::new();
    let mut n = 0;
    for ids in tok.encode_plain(&texts).unwrap() {
        for id in ids {
            *freq.entry(id).or_insert(0usize) += 1;
            n += 1;
        }
    }
    let majority = *freq.values().max().unwrap() as f64 / n as f64;
    let acc = last["valid_mlm_accuracy"].as_f64().unwrap();
    assert!(
        acc > majority + 0.08,
        "masked-token accuracy {acc} vs majority {majority}"
    );
    // The video-use diagnostic: the held-out masked text scored with its own and with another
    // sequence's visual words, per masked token.
    for key in ["valid_mlm_loss_own_video", "valid_mlm_loss_other_video"] {
        let v = last[key].as_f64().unwrap_or(f64::NAN);
        assert!(v.is_finite() && v > 0.0, "{key} = {v}");
    }
    // A model directory: config, weights, tokenizer, codebook; our loader reads it back.
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "codebook.safetensors",
    ] {
        assert!(dir.path().join("run").join(f).is_file(), "{f}");
    }
    let device = tessera::core::device::device_from_name("cpu").unwrap();
    let (cfg, _) = tessera::videobert::model::load(&dir.path().join("run"), &device).unwrap();
    assert_eq!((cfg.text_vocab_size, cfg.visual_words), (30_522, 16));

    // Frozen visual embeddings: after an epoch the visual rows are the initial ones (the
    // centroids through the projection, seed 0) while the text rows have moved.
    // Without the alignment objective (and so no mismatched pairs) the untrained head's
    // accuracy is not reported; with it, it is.
    assert!(last["valid_alignment_accuracy"].as_f64().is_some());
    std::fs::write(
        p("freeze.toml"),
        "freeze_visual_embeddings = true\nalignment_weight = 0.0\n[data]\nmisaligned_prob = 0.0\n",
    )
    .unwrap();
    run(&[
        "videobert",
        "pretrain",
        "--words",
        &p("w.jsonl"),
        "--codebook",
        &p("book.safetensors"),
        "--run-dir",
        &p("frozen"),
        "--config",
        &p("freeze.toml"),
        "--epochs",
        "1",
        "--valid-videos",
        "10",
        "--lr",
        "5e-4",
        "--batch-size",
        "16",
        "--json",
    ]);
    let frozen_rows = std::fs::read_to_string(p("frozen/metrics.jsonl")).unwrap();
    let frozen_last: serde_json::Value =
        serde_json::from_str(frozen_rows.lines().last().unwrap()).unwrap();
    assert!(frozen_last["valid_mlm_accuracy"].as_f64().is_some());
    assert!(
        frozen_last.get("valid_alignment_accuracy").is_none(),
        "{frozen_last}"
    );
    let codebook =
        tessera::video::words::load_codebook(std::path::Path::new(&p("book.safetensors"))).unwrap();
    let (_, init) = tessera::videobert::model::from_text_bert(
        std::path::Path::new("data/minilm"),
        &codebook,
        tessera::videobert::model::VisualInit::Centroids,
        0,
        &device,
    )
    .unwrap();
    let init: Vec<f32> = word_rows(&init);
    let (_, trained) =
        tessera::videobert::model::load(&dir.path().join("frozen"), &device).unwrap();
    let trained: Vec<f32> = word_rows(&trained);
    let h = 384;
    let first_visual = (30_522 + 1) * h;
    assert_eq!(
        init[first_visual..],
        trained[first_visual..],
        "visual rows moved"
    );
    let text_moved = common::max_diff(&init[..30_522 * h], &trained[..30_522 * h]);
    assert!(text_moved > 1e-4, "text rows did not train ({text_moved})");
}

/// The captioner learns to describe segments from their clip features: on held-out segments
/// whose features name the verb and the object (through a random projection, with noise), its
/// greedy captions beat the same captioner trained with the features zeroed (the language
/// prior) by a wide margin in CIDEr-D and BLEU-4, and its training loss falls.
#[test]
fn captioner_learns_captions_from_clip_features_beyond_the_language_prior() {
    use rand::Rng;
    use tessera::core::run::RunDir;
    use tessera::core::trainer::{FinetuneConfig, RunOptions};
    use tessera::corpora::narration::AnnotatedVideo;
    use tessera::video::features::ClipFeatures;
    use tessera::videobert::caption::{
        caption, caption_log_prob, examples, score, train_captioner, Captioner, CaptionerConfig,
        Decoding, WordVocab,
    };
    let verbs = ["slide", "lift", "spin", "drop"];
    let objects = ["bag", "shoe", "seven", "dress", "three"];
    let f = 24;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let projection: Vec<f32> = (0..(verbs.len() + objects.len()) * f)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let make = |n: usize, rng: &mut rand::rngs::StdRng| {
        let mut videos = Vec::new();
        let mut feats = Vec::new();
        for k in 0..n {
            let (v, o) = (
                rng.random_range(0..verbs.len()),
                rng.random_range(0..objects.len()),
            );
            let mut rows = Vec::new();
            for _ in 0..3 {
                for j in 0..f {
                    let signal = projection[v * f + j] + projection[(verbs.len() + o) * f + j];
                    rows.push(signal + rng.random_range(-0.3..0.3));
                }
            }
            let id = format!("{k:04}");
            feats.push(ClipFeatures {
                video: id.clone(),
                dim: f,
                features: rows,
                times: vec![[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]],
                duration: 3.0,
            });
            videos.push(AnnotatedVideo {
                id,
                subset: "training".into(),
                recipe_type: "synthetic".into(),
                duration: Some(3.0),
                segments: vec![Segment {
                    start: 0.0,
                    end: 3.0,
                    text: format!("{} the {} now", verbs[v], objects[o]),
                }],
            });
        }
        (videos, feats)
    };
    let (train_videos, train_feats) = make(400, &mut rng);
    let (test_videos, test_feats) = make(100, &mut rng);
    let vocab = WordVocab::build(
        train_videos
            .iter()
            .flat_map(|v| v.segments.iter().map(|s| s.text.as_str())),
        1,
    );
    let source = std::path::Path::new("synthetic");
    let d = Decoding {
        beam: 1,
        length_penalty: 0.0,
        max_words: 8,
    };
    let device = burn::tensor::Device::flex();
    let mut results = Vec::new();
    for blind in [false, true] {
        let mut cfg = CaptionerConfig::new(f, vocab.len());
        cfg.hidden = 32;
        cfg.heads = 2;
        cfg.intermediate = 64;
        cfg.encoder_layers = 1;
        cfg.decoder_layers = 1;
        cfg.max_words = 8;
        cfg.blind = blind;
        let train = examples(&train_videos, &train_feats, &vocab, &cfg, source).unwrap();
        let test = examples(&test_videos, &test_feats, &vocab, &cfg, source).unwrap();
        let tc = FinetuneConfig {
            epochs: 12,
            batch_size: 32,
            lr: 2e-3,
            warmup_steps: 10,
            blind,
            ..FinetuneConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(dir.path()).unwrap();
        device.seed(0);
        let model = Captioner::new(&cfg, &device);
        let out = train_captioner(
            model,
            &cfg,
            &vocab,
            &train,
            &[],
            &tc,
            &run,
            &device,
            &RunOptions {
                quiet: true,
                ..RunOptions::default()
            },
        )
        .unwrap();
        let (first, last) = (out.records[0].loss, out.records.last().unwrap().loss);
        let (model, _, _) =
            tessera::videobert::caption::load_model_dir(dir.path(), &device).unwrap();
        let caps = caption(&model, &vocab, &test, blind, &d, 16, &device, &|_| {});
        let beam = caption(
            &model,
            &vocab,
            &test,
            blind,
            &Decoding { beam: 3, ..d },
            16,
            &device,
            &|_| {},
        );
        let s = score(&test, &caps);
        let sb = score(&test, &beam);
        // Beam search finds captions at least as likely as the greedy ones.
        if blind {
            for (k, e) in test.iter().enumerate().take(20) {
                let ids = |c: &str| vocab.encode(c, 8);
                let g = caption_log_prob(&model, e, blind, &ids(&caps[k]), &device);
                let b = caption_log_prob(&model, e, blind, &ids(&beam[k]), &device);
                assert!(b >= g - 1e-4, "segment {k}: beam {b} < greedy {g}");
            }
        }
        println!(
            "blind {blind}: loss {first:.3} -> {last:.3}; greedy BLEU-4 {:.3} CIDEr {:.3}; beam 3 BLEU-4 {:.3} CIDEr {:.3}; e.g. `{}` for `{}`",
            s.bleu[3], s.cider, sb.bleu[3], sb.cider, caps[0], test[0].reference
        );
        assert!(last < 0.7 * first, "loss {first} -> {last}");
        results.push((s.cider, s.bleu[3], sb.cider));
    }
    let (seeing, blind) = (results[0], results[1]);
    // The prior can only guess the commonest verb and object: 1/4 and 1/5 of the segments.
    assert!(seeing.0 > 5.0, "CIDEr-D with features {}", seeing.0);
    assert!(seeing.0 > 2.0 * blind.0, "{seeing:?} vs {blind:?}");
    assert!(seeing.1 > blind.1 + 0.3, "{seeing:?} vs {blind:?}");
    assert!(seeing.2 > 5.0, "beam search CIDEr-D {}", seeing.2);
}

/// The shipped pretraining configs parse (no unknown keys) and pass the checks `pretrain` runs,
/// and the frozen-words one is the setting docs/results.md reports: no alignment objective.
#[test]
fn the_shipped_pretraining_configs_parse_and_validate() {
    let mut seen = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/configs")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("videobert-") {
            continue;
        }
        let cfg: tessera::videobert::train::PretrainConfig =
            toml::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        cfg.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        if name == "videobert-generated-frozen.toml" {
            assert_eq!((cfg.alignment_weight, cfg.data.misaligned_prob), (0.0, 0.0));
            assert!(cfg.freeze_visual_embeddings);
        }
        seen += 1;
    }
    assert_eq!(seen, 3, "videobert configs");
}
