//! Shared building blocks against references computed elsewhere: PyTorch for attention and the
//! encoder layers (fixture made by scripts/make_fixtures.py), hand computation for metrics.

mod common;

use burn::module::Module;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tessera::core::attention::AttentionConfig;
use tessera::core::checkpoint::{
    load_named, load_safetensors, named_tensors, rename, save_safetensors,
};
use tessera::core::encoder::{EncoderConfig, NormPlacement};
use tessera::core::masking::{mask_last, ClozeMasker, MaskStyle};
use tessera::core::metrics::{f1_scores, rank_of, RankingMetrics};
use tessera::core::optim::{Decay, Schedule};

fn fixture() -> Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/encoder_reference.json"),
    )
    .expect("fixture present");
    serde_json::from_str(&text).unwrap()
}

fn tensor_data(v: &Value) -> TensorData {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    let data: Vec<f32> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    TensorData::new(data, shape)
}

fn named(v: &Value) -> BTreeMap<String, TensorData> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, t)| (k.clone(), tensor_data(t)))
        .collect()
}

fn inputs(f: &Value, dev: &Device) -> (Tensor<3>, Tensor<2, Bool>) {
    let x = Tensor::<3>::from_data(tensor_data(&f["input"]), dev);
    let rows = f["key_padding"].as_array().unwrap();
    let l = rows[0].as_array().unwrap().len();
    let flat: Vec<bool> = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|b| b.as_bool().unwrap()))
        .collect();
    let pad = Tensor::<2, Bool>::from_data(TensorData::new(flat, [rows.len(), l]), dev);
    (x, pad)
}

fn max_abs_diff(a: Tensor<3>, expected: &Value) -> f32 {
    let got: Vec<f32> = a.into_data().try_to_vec().unwrap();
    let want = tensor_data(expected);
    assert_eq!(got.len(), want.num_elements());
    let want: Vec<f32> = want.try_to_vec().unwrap();
    got.iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max)
}

#[test]
fn attention_matches_pytorch_multihead_attention() {
    let f = fixture();
    let dev = Device::flex();
    let (x, pad) = inputs(&f, &dev);
    let d = f["hidden"].as_u64().unwrap() as usize;
    let h = f["heads"].as_u64().unwrap() as usize;
    let mha = AttentionConfig {
        hidden: d,
        heads: h,
        dropout: 0.0,
        init_std: 0.02,
    }
    .init(&dev);
    let mha = load_named(
        mha,
        &named(&f["attention"]["tensors"]),
        &[],
        &dev,
        Path::new("fixture"),
    )
    .unwrap();
    let y = mha.forward(x.clone(), x, Some(pad));
    let diff = max_abs_diff(y, &f["attention"]["output"]);
    assert!(diff < 1e-5, "max abs diff {diff}");
}

/// The fixture's encoder layer `name` (no dropout), loaded on `dev`.
fn fixture_layer(
    f: &Value,
    name: &str,
    norm: NormPlacement,
    dev: &Device,
) -> tessera::core::encoder::EncoderLayer {
    let cfg = EncoderConfig {
        hidden: f["hidden"].as_u64().unwrap() as usize,
        heads: f["heads"].as_u64().unwrap() as usize,
        intermediate: f["intermediate"].as_u64().unwrap() as usize,
        layers: 1,
        hidden_dropout: 0.0,
        attention_dropout: 0.0,
        norm,
        layer_norm_eps: f["eps"].as_f64().unwrap(),
        init_std: 0.02,
        layer_scale: None,
    };
    load_named(
        cfg.init_layer(dev),
        &named(&f[name]["tensors"]),
        &[],
        dev,
        Path::new("fixture"),
    )
    .unwrap()
}

fn encoder_case(name: &str, norm: NormPlacement) {
    let f = fixture();
    let dev = Device::flex();
    let (x, pad) = inputs(&f, &dev);
    let layer = fixture_layer(&f, name, norm, &dev);
    let y = layer.forward(x, Some(pad));
    let diff = max_abs_diff(y, &f[name]["output"]);
    assert!(diff < 1e-5, "{name}: max abs diff {diff}");
}

#[test]
fn post_norm_encoder_layer_matches_pytorch() {
    encoder_case("post_norm", NormPlacement::Post);
    encoder_gradient_case("post_norm", NormPlacement::Post);
}

fn flat_diff(got: Vec<f32>, expected: &Value) -> f32 {
    let want: Vec<f32> = tensor_data(expected).try_to_vec().unwrap();
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max)
}

/// Gradients through the layer (attention, LayerNorm, the fused GELU) against PyTorch autograd.
fn encoder_gradient_case(name: &str, norm: NormPlacement) {
    let f = fixture();
    let ad = Device::flex().autodiff();
    let (x, pad) = inputs(&f, &ad);
    let x = x.require_grad();
    let layer = fixture_layer(&f, name, norm, &ad);
    let probe = Tensor::<3>::from_data(tensor_data(&f["probe"]), &ad);
    let y = layer.forward(x.clone(), Some(pad));
    let grads = (y * probe).sum().backward();
    let gx: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
    let diff = flat_diff(gx, &f[name]["grad_input"]);
    assert!(diff < 1e-5, "{name}: input gradient max abs diff {diff}");
    // Ours is stored [in, out]; PyTorch's [out, in].
    let gw = layer
        .intermediate
        .weight
        .grad(&grads)
        .unwrap()
        .transpose()
        .into_data()
        .try_to_vec()
        .unwrap();
    let diff = flat_diff(gw, &f[name]["grad_intermediate_weight"]);
    assert!(diff < 1e-5, "{name}: weight gradient max abs diff {diff}");
    let gb: Vec<f32> = layer
        .intermediate
        .bias
        .as_ref()
        .unwrap()
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    let diff = flat_diff(gb, &f[name]["grad_intermediate_bias"]);
    assert!(diff < 1e-5, "{name}: bias gradient max abs diff {diff}");
    // LayerNorm scale and shift (the fused LayerNorm's own backward).
    for (norm, key) in [
        (&layer.attention_norm, "norm1"),
        (&layer.output_norm, "norm2"),
    ] {
        for (param, which) in [(&norm.gamma, "weight"), (&norm.beta, "bias")] {
            let g: Vec<f32> = param
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec()
                .unwrap();
            let diff = flat_diff(g, &f[name][format!("grad_{key}_{which}").as_str()]);
            assert!(
                diff < 1e-5,
                "{name}: {key}.{which} gradient max abs diff {diff}"
            );
        }
    }
}

#[test]
fn fused_gelu_and_its_derivative_match_pytorch() {
    use tessera::core::fused::gelu;
    let f = &fixture()["gelu"];
    for dev in [Device::flex(), Device::flex().autodiff()] {
        let mut x = Tensor::<1>::from_data(tensor_data(&f["x"]), &dev);
        if dev.is_autodiff() {
            x = x.require_grad();
        }
        let y = gelu(x.clone());
        let got: Vec<f32> = y.clone().into_data().try_to_vec().unwrap();
        let diff = flat_diff(got, &f["y"]);
        assert!(diff < 5e-7, "GELU max abs diff {diff}");
        if dev.is_autodiff() {
            let grads = y.sum().backward();
            let dy: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
            let diff = flat_diff(dy, &f["dy"]);
            assert!(diff < 5e-7, "GELU derivative max abs diff {diff}");
        }
    }
}

#[test]
fn fused_exp_is_accurate() {
    use tessera::core::fused::exp_f32;
    let mut worst = 0.0f64;
    for i in 0..=1_750_000 {
        let x = -87.0 + i as f64 * 1e-4;
        let got = exp_f32(x as f32) as f64;
        // The f64 reference at the f32 input actually used.
        let want_at = (x as f32 as f64).exp();
        worst = worst.max(((got - want_at) / want_at).abs());
    }
    assert!(worst < 3e-7, "max relative error {worst}");
}

#[test]
fn fused_cross_entropy_matches_pytorch_and_a_hand_case() {
    use tessera::core::fused::cross_entropy;
    let ad = Device::flex().autodiff();
    // By hand: logits (0, ln 3), target 1: p = (1/4, 3/4), loss -ln(3/4), gradient p - e_1.
    let logits = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 3f32.ln()], [1, 2]), &ad)
        .require_grad();
    let loss = cross_entropy(logits.clone(), &[1]);
    let v = loss.clone().into_scalar::<f32>();
    assert!((v - (4.0f32 / 3.0).ln()).abs() < 1e-6, "{v}");
    let g: Vec<f32> = logits
        .grad(&loss.backward())
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    assert!(
        (g[0] - 0.25).abs() < 1e-6 && (g[1] + 0.25).abs() < 1e-6,
        "{g:?}"
    );

    let f = &fixture()["cross_entropy"];
    let targets: Vec<u32> = f["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();
    for dev in [Device::flex(), ad] {
        let mut logits = Tensor::<2>::from_data(tensor_data(&f["logits"]), &dev);
        if dev.is_autodiff() {
            logits = logits.require_grad();
        }
        let loss = cross_entropy(logits.clone(), &targets);
        let v = loss.clone().into_scalar::<f32>() as f64;
        let want = f["loss"].as_f64().unwrap();
        assert!((v - want).abs() < 1e-5, "loss {v} vs {want}");
        if dev.is_autodiff() {
            let g: Vec<f32> = logits
                .grad(&loss.backward())
                .unwrap()
                .into_data()
                .try_to_vec()
                .unwrap();
            let diff = flat_diff(g, &f["grad"]);
            assert!(diff < 1e-6, "gradient max abs diff {diff}");
        }
    }
    // Label smoothing 0.1 against PyTorch's `label_smoothing`.
    let ad = Device::flex().autodiff();
    let logits = Tensor::<2>::from_data(tensor_data(&f["logits"]), &ad).require_grad();
    let loss = tessera::core::fused::cross_entropy_smoothed(logits.clone(), &targets, 0.1);
    let v = loss.clone().into_scalar::<f32>() as f64;
    let want = f["smoothed_0.1"]["loss"].as_f64().unwrap();
    assert!((v - want).abs() < 1e-5, "smoothed loss {v} vs {want}");
    let g: Vec<f32> = logits
        .grad(&loss.backward())
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    let diff = flat_diff(g, &f["smoothed_0.1"]["grad"]);
    assert!(diff < 1e-6, "smoothed gradient max abs diff {diff}");
}

#[test]
fn pre_norm_encoder_layer_matches_pytorch() {
    encoder_case("pre_norm", NormPlacement::Pre);
    encoder_gradient_case("pre_norm", NormPlacement::Pre);
}

#[test]
fn padding_keys_do_not_change_outputs() {
    // Changing the input at padded positions must not change the outputs at real positions.
    let f = fixture();
    let dev = Device::flex();
    let (x, pad) = inputs(&f, &dev);
    let cfg = EncoderConfig {
        hidden: 8,
        heads: 2,
        intermediate: 16,
        layers: 2,
        hidden_dropout: 0.0,
        attention_dropout: 0.0,
        norm: NormPlacement::Post,
        layer_norm_eps: 1e-12,
        init_std: 0.2,
        layer_scale: None,
    };
    let enc = cfg.init(&dev);
    let y1: Vec<f32> = enc
        .forward(x.clone(), Some(pad.clone()))
        .into_data()
        .try_to_vec()
        .unwrap();
    let noise = Tensor::<3>::ones([2, 5, 8], &dev).mul_scalar(7.0);
    let keep = pad.clone().bool_not().float().unsqueeze_dim::<3>(2);
    let x2 = x.clone() * keep.clone() + noise * (keep.neg().add_scalar(1.0));
    let y2: Vec<f32> = enc.forward(x2, Some(pad)).into_data().try_to_vec().unwrap();
    // batch row 1 positions 0..3 are real
    for p in 0..3 {
        for c in 0..8 {
            let i = (5 + p) * 8 + c;
            assert!((y1[i] - y2[i]).abs() < 1e-5, "position {p} changed");
        }
    }
    // and the padded positions do see the change (the test can fail)
    assert!((y1[(5 + 4) * 8] - y2[(5 + 4) * 8]).abs() > 1e-3);
}

#[test]
fn ranking_metrics_match_hand_computation() {
    let mut m = RankingMetrics::new(&[1, 5, 10]);
    // ranks 0, 2, 9, 30 (0-based)
    for r in [0, 2, 9, 30] {
        m.add(r);
    }
    assert!((m.hr(1) - 0.25).abs() < 1e-12);
    assert!((m.hr(5) - 0.5).abs() < 1e-12);
    assert!((m.hr(10) - 0.75).abs() < 1e-12);
    // NDCG@10 = (1/log2(2) + 1/log2(4) + 1/log2(11)) / 4
    let want = (1.0 + 0.5 + 1.0 / 11f64.log2()) / 4.0;
    assert!((m.ndcg(10) - want).abs() < 1e-12);
    let want_mrr = (1.0 + 1.0 / 3.0 + 0.1 + 1.0 / 31.0) / 4.0;
    assert!((m.mrr() - want_mrr).abs() < 1e-12);
    let map = m.to_map();
    assert!(map.contains_key("NDCG@5") && !map.contains_key("NDCG@1"));
}

#[test]
fn rank_breaks_ties_by_index_and_ignores_excluded() {
    let s = [0.5, 0.9, 0.5, f32::NEG_INFINITY, 0.1];
    assert_eq!(rank_of(&s, 1), 0);
    assert_eq!(rank_of(&s, 0), 1);
    assert_eq!(rank_of(&s, 2), 2); // tie with index 0 goes first
    assert_eq!(rank_of(&s, 4), 3); // the -inf item never outranks
}

#[test]
fn f1_matches_hand_computation() {
    // truth 0 0 1 1 2, pred 0 1 1 1 0
    let s = f1_scores(&[0, 0, 1, 1, 2], &[0, 1, 1, 1, 0], 3);
    // class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn0 -> 0.8; class 2: tp0 fp0 fn1 -> 0
    assert!((s.macro_f1 - (0.5 + 0.8 + 0.0) / 3.0).abs() < 1e-12);
    assert!((s.micro_f1 - 0.6).abs() < 1e-12);
}

#[test]
fn cloze_mask_never_masks_padding_and_masks_the_expected_proportion() {
    let mut rng = StdRng::seed_from_u64(7);
    let (pad, mask) = (0u32, 99u32);
    let mut masked_total = 0usize;
    let mut real_total = 0usize;
    for n_real in 1..=60usize {
        let mut seq: Vec<u32> = (1..=n_real as u32).collect();
        seq.extend(std::iter::repeat_n(pad, 20));
        let m = ClozeMasker {
            pad,
            mask_token: mask,
            p: 0.2,
            max_predictions: 1000,
            style: MaskStyle::ALWAYS_MASK,
            random_range: 1..=98,
            never_mask: vec![],
        }
        .mask(&seq, &mut rng);
        let expected = ((0.2 * n_real as f64).round() as usize).max(1);
        assert_eq!(m.targets.len(), expected, "n_real {n_real}");
        for &(p, orig) in &m.targets {
            assert!(p < n_real, "masked a padding position");
            assert_eq!(seq[p], orig);
            assert_eq!(m.input[p], mask);
        }
        for p in n_real..seq.len() {
            assert_eq!(m.input[p], pad);
        }
        masked_total += m.targets.len();
        real_total += n_real;
    }
    let frac = masked_total as f64 / real_total as f64;
    assert!((frac - 0.2).abs() < 0.02, "masked fraction {frac}");
    let cap = ClozeMasker {
        pad,
        mask_token: mask,
        p: 0.5,
        max_predictions: 10,
        style: MaskStyle::ALWAYS_MASK,
        random_range: 1..=98,
        never_mask: vec![],
    }
    .mask(&[5; 100], &mut rng);
    assert_eq!(cap.targets.len(), 10);
    let last = mask_last(&[3, 4, 5, 0, 0], pad, mask);
    assert_eq!(last.input, vec![3, 4, mask, 0, 0]);
    assert_eq!(last.targets, vec![(2, 5)]);
}

#[test]
fn bert_style_masking_keeps_roughly_80_10_10() {
    let mut rng = StdRng::seed_from_u64(3);
    let seq: Vec<u32> = (1..=50).collect();
    let (mut masked, mut random, mut kept) = (0, 0, 0);
    for _ in 0..400 {
        let m = ClozeMasker {
            pad: 0,
            mask_token: 999,
            p: 0.2,
            max_predictions: 1000,
            style: MaskStyle::BERT_80_10_10,
            random_range: 1..=50,
            never_mask: vec![],
        }
        .mask(&seq, &mut rng);
        for &(p, orig) in &m.targets {
            match m.input[p] {
                999 => masked += 1,
                x if x == orig => kept += 1,
                _ => random += 1,
            }
        }
    }
    let n = (masked + random + kept) as f64;
    assert!((masked as f64 / n - 0.8).abs() < 0.03);
    // a random draw can hit the original token (1 in 50), so "random" is slightly under 10%
    assert!((random as f64 / n - 0.098).abs() < 0.02);
    assert!((kept as f64 / n - 0.102).abs() < 0.02);
}

#[test]
fn schedule_warms_up_then_decays() {
    let s = Schedule {
        lr: 1.0,
        warmup_steps: 10,
        decay: Decay::Linear,
        total_steps: 110,
    };
    assert!((s.lr_at(5) - 0.5).abs() < 1e-12);
    assert!((s.lr_at(10) - 1.0).abs() < 1e-12);
    assert!((s.lr_at(60) - 0.5).abs() < 1e-12);
    assert_eq!(s.lr_at(500), 0.0);
}

#[test]
fn checkpoint_round_trip_uses_pytorch_layout_and_names() {
    let dev = Device::flex();
    let cfg = EncoderConfig {
        hidden: 8,
        heads: 2,
        intermediate: 16,
        layers: 2,
        hidden_dropout: 0.1,
        attention_dropout: 0.1,
        norm: NormPlacement::Post,
        layer_norm_eps: 1e-12,
        init_std: 0.02,
        layer_scale: None,
    };
    let enc = cfg.init(&dev);
    let renames = tessera::core::encoder::HF_BERT_LAYER_RENAMES;
    let tensors = named_tensors(&enc, renames);
    let names: HashMap<String, Vec<usize>> = tensors
        .iter()
        .map(|(n, d)| (n.clone(), d.shape().to_vec()))
        .collect();
    assert_eq!(names["layer.0.attention.self.query.weight"], vec![8, 8]);
    assert_eq!(names["layer.1.intermediate.dense.weight"], vec![16, 8]); // [out, in]
    assert_eq!(names["layer.1.output.dense.weight"], vec![8, 16]);
    assert!(names.contains_key("layer.0.attention.output.LayerNorm.weight"));
    assert!(names.contains_key("layer.0.output.LayerNorm.bias"));
    assert_eq!(
        rename("layer.0.output.bias", renames),
        "layer.0.output.dense.bias"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enc.safetensors");
    save_safetensors(&path, &tensors, HashMap::from([("k".into(), "v".into())])).unwrap();
    let (loaded, meta) = load_safetensors(&path).unwrap();
    assert_eq!(meta["k"], "v");
    let fresh = load_named(cfg.init(&dev), &loaded, renames, &dev, &path).unwrap();
    let again = named_tensors(&fresh, renames);
    for ((n1, d1), (n2, d2)) in tensors.iter().zip(&again) {
        assert_eq!(n1, n2);
        assert_eq!(d1, d2, "{n1} differs after round trip");
    }
    // no temp file left beside it
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1);

    // a checkpoint of another shape is refused with the tensor named
    let other = EncoderConfig {
        intermediate: 32,
        ..cfg.clone()
    };
    let err = load_named(other.init(&dev), &loaded, renames, &dev, &path)
        .expect_err("shape mismatch must fail")
        .to_string();
    assert!(err.contains("intermediate.dense.weight"), "{err}");
    let _ = enc.num_params();
}

#[test]
fn dropout_drops_the_asked_fraction_rescales_and_repeats_for_a_seed() {
    use tessera::core::dropout::{dropout_stream, Dropout};
    let dev = Device::flex();
    let dropout = Dropout::new(0.2);
    // identity off the training (autodiff) device
    let x = Tensor::<2>::ones([100, 1000], &dev);
    let y: Vec<f32> = dropout.forward(x).into_data().try_to_vec().unwrap();
    assert!(y.iter().all(|&v| v == 1.0));

    let ad = dev.autodiff();
    let draw = |seed: u64| -> Vec<f32> {
        let _stream = dropout_stream(seed);
        dropout
            .forward(Tensor::<2>::ones([100, 1000], &ad))
            .into_data()
            .try_to_vec()
            .unwrap()
    };
    let y1 = draw(5);
    let zeros = y1.iter().filter(|&&v| v == 0.0).count() as f64 / y1.len() as f64;
    assert!((zeros - 0.2).abs() < 0.01, "dropped {zeros}");
    assert!(y1.iter().all(|&v| v == 0.0 || (v - 1.25).abs() < 1e-6));
    let mean = y1.iter().map(|&v| v as f64).sum::<f64>() / y1.len() as f64;
    assert!((mean - 1.0).abs() < 0.02, "mean {mean}");
    // The same stream seed repeats the mask, whatever ran on this thread before; another
    // seed gives another mask; a stream opened inside another leaves the outer one intact.
    assert_eq!(y1, draw(5));
    assert_ne!(y1, draw(6));
    let outer = dropout_stream(5);
    let _ = draw(7);
    let y3: Vec<f32> = dropout
        .forward(Tensor::<2>::ones([100, 1000], &ad))
        .into_data()
        .try_to_vec()
        .unwrap();
    drop(outer);
    assert_eq!(y1, y3);
}

/// The fused host operations against burn's own (decomposed) operations, on non-contiguous
/// inputs, in inference and under autodiff (values and the gradients of every input).
#[test]
fn fused_linear_layer_norm_and_softmax_match_burns_operations() {
    use burn::nn::LinearConfig;
    use burn::tensor::activation::softmax;
    use burn::tensor::Distribution;
    use tessera::core::fused_ops;
    use tessera::core::norm::LayerNorm;
    let plain = Device::flex();
    plain.seed(7);
    let vals = |t: Tensor<3>| -> Vec<f32> { t.into_data().try_to_vec().unwrap() };
    let check = |a: Vec<f32>, b: Vec<f32>, what: &str| {
        let d = common::max_diff(&a, &b);
        assert!(d < 2e-5, "{what}: max abs diff {d}");
    };
    // [2, 5, 12] made non-contiguous by a transpose of a [2, 12, 5] tensor.
    let x0: Tensor<3> = Tensor::random([2, 12, 5], Distribution::Normal(0.0, 1.0), &plain);
    let linear = LinearConfig::new(12, 7).init(&plain);
    let mut norm = LayerNorm::new(12, 1e-5, &plain);
    norm.gamma = norm.gamma.map(|g| g.add_scalar(0.5).mul_scalar(1.3));
    norm.beta = norm.beta.map(|b| b.add_scalar(-0.2));
    let x = x0.clone().swap_dims(1, 2);
    check(
        vals(fused_ops::linear(&linear, x.clone())),
        vals(linear.forward(x.clone())),
        "linear (inference)",
    );
    check(
        vals(fused_ops::softmax(x.clone())),
        vals(softmax(x.clone(), 2)),
        "softmax (inference)",
    );

    let ad = plain.clone().autodiff();
    let linear = tessera::core::parallel::trainable(linear);
    let norm = tessera::core::parallel::trainable(norm);
    let probe: Tensor<3> = Tensor::random([2, 5, 7], Distribution::Normal(0.0, 1.0), &ad);
    let run = |fused: bool| {
        let x0 = Tensor::<3>::from_data(x0.to_data(), &ad).require_grad();
        let x = x0.clone().swap_dims(1, 2);
        let (n, s) = if fused {
            (norm.forward(x.clone()), fused_ops::softmax(x))
        } else {
            (
                burn::tensor::module::layer_norm(
                    x.clone(),
                    norm.gamma.val(),
                    Some(norm.beta.val()),
                    1e-5,
                ),
                softmax(x, 2),
            )
        };
        let h = n * s.add_scalar(1.0);
        let y = if fused {
            fused_ops::linear(&linear, h)
        } else {
            linear.forward(h)
        };
        let grads = (y.clone() * probe.clone()).sum().backward();
        let g = |p: &burn::module::Param<Tensor<1>>| -> Vec<f32> {
            p.grad(&grads).unwrap().into_data().try_to_vec().unwrap()
        };
        (
            vals(y),
            vals(x0.grad(&grads).unwrap()),
            linear
                .weight
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
            g(linear.bias.as_ref().unwrap()),
            g(&norm.gamma),
            g(&norm.beta),
        )
    };
    let (ours, theirs) = (run(true), run(false));
    check(ours.0, theirs.0, "output");
    check(ours.1, theirs.1, "input gradient");
    check(ours.2, theirs.2, "linear weight gradient");
    check(ours.3, theirs.3, "linear bias gradient");
    check(ours.4, theirs.4, "LayerNorm gamma gradient");
    check(ours.5, theirs.5, "LayerNorm beta gradient");
}

/// BLEU, ROUGE-L and CIDEr against pycocoevalcap 1.2 on 60 random captions (1-5 references,
/// an empty candidate among them), and our tokenizer against its Java PTB tokenizer on the raw
/// text (fixture: scripts/make_caption_metric_fixtures.py).
#[test]
fn caption_metrics_match_pycocoevalcap() {
    use tessera::core::caption_metrics::{caption_scores, tokenize_caption, CaptionPair};
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/captions/captions.json"),
    )
    .unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let items = fixture["items"].as_array().unwrap();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let mut candidates = Vec::new();
    let mut references = Vec::new();
    for item in items {
        let raw = item["candidate"].as_str().unwrap();
        let tokens = item["candidate_tokens"].as_str().unwrap();
        assert_eq!(tokenize_caption(raw), tokens, "candidate {raw:?}");
        for (raw, tokens) in strings(&item["references"])
            .iter()
            .zip(strings(&item["references_tokens"]))
        {
            assert_eq!(tokenize_caption(raw), tokens, "reference {raw:?}");
        }
        candidates.push(tokens.to_string());
        references.push(strings(&item["references_tokens"]));
    }
    let pairs: Vec<CaptionPair> = candidates
        .iter()
        .zip(&references)
        .map(|(c, r)| CaptionPair {
            candidate: c,
            references: r,
        })
        .collect();
    let ours = caption_scores(&pairs);
    let expected = &fixture["scores"];
    for k in 0..4 {
        let want = expected["bleu"][k].as_f64().unwrap();
        assert!(
            (ours.bleu[k] - want).abs() < 1e-6,
            "BLEU-{}: {} vs {want}",
            k + 1,
            ours.bleu[k]
        );
    }
    let close = |a: f64, b: &Value, what: &str| {
        let b = b.as_f64().unwrap();
        assert!((a - b).abs() < 1e-6, "{what}: {a} vs {b}");
    };
    close(ours.rouge_l, &expected["rouge_l"], "ROUGE-L");
    close(ours.cider, &expected["cider"], "CIDEr");
    for (i, (r, c)) in ours
        .per_caption_rouge_l
        .iter()
        .zip(&ours.per_caption_cider)
        .enumerate()
    {
        close(
            *r,
            &expected["rouge_l_each"][i],
            &format!("ROUGE-L of caption {i}"),
        );
        close(
            *c,
            &expected["cider_each"][i],
            &format!("CIDEr of caption {i}"),
        );
    }
    // The scores are not trivially 0 or 1.
    assert!(ours.bleu[3] > 0.1 && ours.bleu[3] < 0.9 && ours.cider > 0.5);
}

/// The decoder layers (masked self-attention, attention over the memory, feed-forward, post-norm)
/// equal two stacked `torch.nn.TransformerDecoderLayer`s with a causal mask and padding on both
/// sides (fixture: scripts/make_decoder_fixture.py).
#[test]
fn decoder_matches_pytorch_transformer_decoder_layers() {
    use tessera::core::decoder::DecoderConfig;
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/decoder/decoder.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let device = Device::flex();
    let (tensors, _) = load_safetensors(&path).unwrap();
    let weights: BTreeMap<String, TensorData> = tensors
        .into_iter()
        .filter(|(k, _)| k.starts_with("layer."))
        .collect();
    let decoder = DecoderConfig {
        hidden: 16,
        heads: 4,
        intermediate: 32,
        layers: 2,
        hidden_dropout: 0.0,
        attention_dropout: 0.0,
        layer_norm_eps: 1e-5,
        init_std: 0.02,
    }
    .init(&device);
    let decoder = load_named(decoder, &weights, &[], &device, &path).unwrap();
    let t = |name: &str, dims: [usize; 3]| {
        Tensor::<3>::from_data(
            TensorData::new(common::tensor_f32(&st, name), dims),
            &device,
        )
    };
    let pad = |name: &str, dims: [usize; 2]| {
        let v: Vec<bool> = common::tensor_f32(&st, name)
            .iter()
            .map(|&x| x > 0.5)
            .collect();
        Tensor::<2, Bool>::from_data(TensorData::new(v, dims), &device)
    };
    let out = decoder.forward(
        t("input.target", [2, 5, 16]),
        Some(pad("input.target_padding", [2, 5])),
        t("input.memory", [2, 4, 16]),
        Some(pad("input.memory_padding", [2, 4])),
    );
    let ours = common::values(out.into_data());
    let theirs = common::tensor_f32(&st, "output");
    let diff = common::max_diff(&ours, &theirs);
    let largest = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
    println!("decoder vs torch: largest difference {diff:.2e} (values up to {largest:.2})");
    assert!(diff < 1e-5, "largest difference {diff}");
    // Causal: changing the later target words leaves the first position's output alone (and
    // changes the last one's).
    let mut changed = common::tensor_f32(&st, "input.target");
    for v in changed[16..5 * 16].iter_mut() {
        *v += 1.0;
    }
    let out2 = decoder.forward(
        Tensor::<3>::from_data(TensorData::new(changed, [2, 5, 16]), &device),
        Some(pad("input.target_padding", [2, 5])),
        t("input.memory", [2, 4, 16]),
        Some(pad("input.memory_padding", [2, 4])),
    );
    let again = common::values(out2.into_data());
    assert!(common::max_diff(&again[..16], &ours[..16]) < 1e-6);
    assert!(common::max_diff(&again[4 * 16..5 * 16], &ours[4 * 16..5 * 16]) > 1e-3);
    assert!(largest > 0.1);
}

/// METEOR 1.5 against the jar pycocoevalcap runs (`java -jar meteor-1.5.jar - - -stdio -l en
/// -norm`): on the 60 tokenized captions above, raw sentences for the normaliser, and 120
/// captions reaching the stem, synonym and paraphrase modules, the statistics of every caption
/// (lengths, function words, per-module matches, chunks) equal the jar's, and the per-caption
/// and corpus scores agree to 1e-6 (fixture: scripts/make_caption_metric_fixtures.py; resources:
/// `scripts/fetch-data.sh meteor`).
#[test]
fn meteor_matches_pycocoevalcap() {
    use tessera::core::meteor::{Meteor, MeteorStats};
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/captions/meteor.json"),
    )
    .unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let items = fixture["items"].as_array().unwrap();
    let cands: Vec<String> = items
        .iter()
        .map(|it| it["candidate"].as_str().unwrap().to_string())
        .collect();
    let refs: Vec<Vec<String>> = items
        .iter()
        .map(|it| {
            it["references"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    let texts = cands
        .iter()
        .map(String::as_str)
        .chain(refs.iter().flatten().map(String::as_str));
    let meteor = Meteor::load(Path::new("data/meteor"), texts).unwrap();
    let mut modules = [0.0; 4];
    for (i, it) in items.iter().enumerate() {
        let v: Vec<f64> = it["stats"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(v.len(), 23);
        let mut want = MeteorStats {
            test_length: v[0],
            reference_length: v[1],
            test_function_words: v[2],
            reference_function_words: v[3],
            chunks: v[20],
            test_word_matches: v[21],
            reference_word_matches: v[22],
            ..Default::default()
        };
        for m in 0..4 {
            want.test_content[m] = v[4 + 4 * m];
            want.reference_content[m] = v[5 + 4 * m];
            want.test_function[m] = v[6 + 4 * m];
            want.reference_function[m] = v[7 + 4 * m];
            modules[m] += v[4 + 4 * m] + v[6 + 4 * m];
        }
        let ours = meteor.stats(&cands[i], &refs[i]);
        assert_eq!(
            ours, want,
            "caption {i}: {:?} against {:?}",
            cands[i], refs[i]
        );
    }
    // Every module matched something in the fixture.
    assert!(modules.iter().all(|&m| m > 0.0), "{modules:?}");
    let pairs: Vec<(&str, &[String])> = cands
        .iter()
        .zip(&refs)
        .map(|(c, r)| (c.as_str(), r.as_slice()))
        .collect();
    let scores = meteor.score(&pairs);
    for (i, (ours, want)) in scores
        .per_caption
        .iter()
        .zip(fixture["meteor_each"].as_array().unwrap())
        .enumerate()
    {
        let want = want.as_f64().unwrap();
        assert!((ours - want).abs() < 1e-6, "caption {i}: {ours} vs {want}");
    }
    let want = fixture["meteor"].as_f64().unwrap();
    assert!(
        (scores.corpus - want).abs() < 1e-6,
        "corpus METEOR {} vs {want}",
        scores.corpus
    );
    assert!(scores.corpus > 0.1 && scores.corpus < 0.9);
}

/// CBT's contrastive losses (`core::losses`) and their gradients against PyTorch autograd on the
/// paper's formulas (scripts/make_contrastive_loss_fixtures.py), including a negative equal to
/// the positive, a tied score and a small temperature; a batch with no negatives is an error.
#[test]
fn contrastive_losses_and_gradients_match_pytorch() {
    use tessera::core::losses::{contrastive_nce, cross_modal_nce, info_nce};
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cbt/contrastive.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ad = Device::flex().autodiff();
    let t2 = |name: &str| {
        let view = st.tensor(name).unwrap();
        let dims = [view.shape()[0], view.shape()[1]];
        Tensor::<2>::from_data(TensorData::new(common::tensor_f32(&st, name), dims), &ad)
            .require_grad()
    };
    let scalar = |name: &str| common::tensor_f32(&st, name)[0] as f64;
    // The loss and its gradient with respect to each input against the fixture's.
    let check = |case: &str, loss: Tensor<1>, inputs: &[(&Tensor<2>, &str)]| {
        let got = loss.clone().into_scalar::<f32>() as f64;
        let want = scalar(&format!("{case}.loss"));
        assert!((got - want).abs() < 1e-5, "{case}: loss {got} vs {want}");
        eprintln!("{case}: loss {got:.7} (PyTorch {want:.7})");
        let grads = loss.backward();
        for (x, which) in inputs {
            let want = common::tensor_f32(&st, &format!("{case}.grad_{which}"));
            let got: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
            let diff = common::max_diff(&got, &want);
            assert!(
                diff < 1e-5,
                "{case}: gradient of the {which}: max abs diff {diff}"
            );
            eprintln!("{case}: gradient of the {which}: max abs diff {diff:.1e}");
        }
    };
    for case in ["visual", "visual_tie", "visual_tau"] {
        let q = t2(&format!("{case}.queries"));
        let k = t2(&format!("{case}.keys"));
        let positives: Vec<usize> = common::tensor_f32(&st, &format!("{case}.positives"))
            .iter()
            .map(|&p| p as usize)
            .collect();
        let loss = info_nce(
            q.clone(),
            k.clone(),
            &positives,
            scalar(&format!("{case}.temperature")),
        )
        .unwrap();
        check(case, loss, &[(&q, "queries"), (&k, "keys")]);
    }
    for case in ["cross", "cross_tie"] {
        let s = t2(&format!("{case}.scores"));
        let loss = cross_modal_nce(s.clone()).unwrap();
        check(case, loss, &[(&s, "scores")]);
    }

    // No negatives: a clear error, never a NaN or a silent 0.
    let dev = Device::flex();
    let one = Tensor::<2>::ones([1, 4], &dev);
    let err = info_nce(one.clone(), one.clone(), &[0], 1.0).unwrap_err();
    assert!(err.to_string().contains("no negatives"), "{err}");
    let err = cross_modal_nce(Tensor::<2>::ones([1, 1], &dev)).unwrap_err();
    assert!(err.to_string().contains("no negatives"), "{err}");
    let two = Tensor::<2>::ones([2, 4], &dev);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(
            info_nce(two.clone(), two.clone(), &[0, 1], bad).is_err(),
            "{bad}"
        );
    }
    assert!(contrastive_nce(Tensor::<2>::ones([2, 3], &dev), &[0, 3]).is_err());
    assert!(contrastive_nce(Tensor::<2>::ones([2, 3], &dev), &[0]).is_err());
    assert!(cross_modal_nce(Tensor::<2>::ones([2, 3], &dev)).is_err());
    assert!(info_nce(two.clone(), Tensor::<2>::ones([2, 5], &dev), &[0, 1], 1.0).is_err());
    // No masked position: 0.
    let none = contrastive_nce(Tensor::<2>::ones([0, 3], &dev), &[]).unwrap();
    assert_eq!(none.into_scalar::<f32>(), 0.0);
}
