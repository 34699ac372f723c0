//! metapath2vec: walks follow their meta-paths, dead ends and isolated nodes are handled,
//! plusplus negatives have the predicted type, embeddings recover planted communities, bad input
//! is reported with file and line, and single-thread training repeats exactly.

mod common;

use common::write;
use std::path::Path;
use std::process::Command;
use tessera::metapath2vec::config::{Metapath2VecConfig, Variant};
use tessera::metapath2vec::data::{read_aminer, read_edge_list, read_graph, GraphBuilder};
use tessera::metapath2vec::eval::{classify, cluster_nmi, join, nmi, NamedEmbeddings};
use tessera::metapath2vec::model::AliasTable;
use tessera::metapath2vec::train::{node_counts, sample_negatives, train, NoiseTables};
use tessera::metapath2vec::walk::{generate, parse_metapath, read_walks, write_walks, WalkConfig};

/// A bibliographic graph with `k` planted communities: each community has its own venues, and
/// authors publish (almost always) in their community's venues.
fn planted(
    k: usize,
    authors_per: usize,
    venues_per: usize,
    papers_per_author: usize,
    seed: u64,
) -> String {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut s = String::new();
    let mut paper = 0;
    for c in 0..k {
        for a in 0..authors_per {
            for _ in 0..papers_per_author {
                let comm = if rng.random::<f64>() < 0.95 {
                    c
                } else {
                    rng.random_range(0..k)
                };
                let v = rng.random_range(0..venues_per);
                s += &format!("paper p{paper} venue c{comm}v{v}\n");
                s += &format!("paper p{paper} author c{c}a{a}\n");
                // a co-author from the same community
                let co = rng.random_range(0..authors_per);
                s += &format!("paper p{paper} author c{c}a{co}\n");
                paper += 1;
            }
        }
    }
    s
}

#[test]
fn walks_follow_their_metapath_and_stop_at_dead_ends() {
    let d = tempfile::tempdir().unwrap();
    // a1 and a2 share p1 (venue v1), a1 also wrote p2 (v2); a3's paper p3 has no venue (a dead
    // end after A-P); a5 and a6 are linked to each other but to no paper (isolated for APVPA).
    let p = write(
        d.path(),
        "g.tsv",
        "author a1 paper p1\nauthor a2 paper p1\npaper p1 venue v1\nauthor a1 paper p2\npaper p2 venue v2\nauthor a3 paper p3\nauthor a5 author a6\n",
    );
    let g = read_edge_list(&p).unwrap();
    let mp = parse_metapath(&g, "APVPA").unwrap();
    let (walks, stats) = generate(
        &g,
        std::slice::from_ref(&mp),
        &WalkConfig {
            walks_per_node: 20,
            walk_length: 9,
            seed: 1,
        },
    );
    // authors a1, a2, a3, a5, a6 start walks
    assert_eq!(stats.walks, 5 * 20);
    for w in walks.iter() {
        for (i, &n) in w.iter().enumerate() {
            assert_eq!(
                g.node_type[n as usize],
                mp.types[i % 4],
                "walk {:?} breaks APVPA at {i}",
                w
            );
        }
        for pair in w.windows(2) {
            assert!(g
                .neighbors_of_type(pair[0], g.node_type[pair[1] as usize])
                .contains(&pair[1]));
        }
    }
    // a3's paper has no venue: its walks are a3 p3; a5/a6 have no paper: walks of length 1
    assert_eq!(stats.isolated_starts, 2);
    assert!(stats.ended_early >= 3 * 20);
    let lens: Vec<usize> = walks.iter().map(|w| w.len()).collect();
    assert!(lens.contains(&9) && lens.contains(&2) && lens.contains(&1));
    // deterministic for a seed
    let (again, _) = generate(
        &g,
        &[mp],
        &WalkConfig {
            walks_per_node: 20,
            walk_length: 9,
            seed: 1,
        },
    );
    assert_eq!(walks.tokens, again.tokens);
    // walk files round-trip with the original format
    let wf = d.path().join("w.txt");
    write_walks(&wf, &g, &walks).unwrap();
    let first = std::fs::read_to_string(&wf)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert!(first.starts_with('a') && first.contains(" p"));
    let (vocab, back) = read_walks(&wf).unwrap();
    assert_eq!(back.len(), walks.len());
    assert_eq!(vocab.type_codes.len(), 3);
}

#[test]
fn named_metapaths_and_bad_schemes() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "g.tsv",
        "user u1 movie m1\nuser u2 movie m1 2.5\n",
    );
    let g = read_edge_list(&p).unwrap();
    assert!(g.is_weighted());
    let mp = parse_metapath(&g, "movie-user-movie").unwrap();
    assert_eq!(mp.types.len(), 3);
    let err = parse_metapath(&g, "MUX").unwrap_err().to_string();
    assert!(err.contains("unknown node type `X`"), "{err}");
    let err = parse_metapath(&g, "MU").unwrap_err().to_string();
    assert!(err.contains("start and end with the same"), "{err}");
}

#[test]
fn weighted_edges_are_drawn_by_weight() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "g.tsv",
        "user u1 movie m1 1\nuser u1 movie m2 9\n",
    );
    let g = read_edge_list(&p).unwrap();
    let u = g.names.iter().position(|n| n == "uu1").unwrap() as u32;
    let m2 = g.names.iter().position(|n| n == "mm2").unwrap() as u32;
    let movie = g.type_by_name("movie").unwrap();
    let hits = (0..1000)
        .filter(|&i| g.pick_neighbor(u, movie, (i as f64 + 0.5) / 1000.0) == Some(m2))
        .count();
    assert_eq!(hits, 900);
}

#[test]
fn plusplus_negatives_have_the_predicted_type() {
    let text = planted(2, 20, 3, 4, 5);
    let d = tempfile::tempdir().unwrap();
    let g = read_edge_list(&write(d.path(), "g.tsv", &text)).unwrap();
    let mp = parse_metapath(&g, "APVPA").unwrap();
    let (walks, _) = generate(
        &g,
        &[mp],
        &WalkConfig {
            walks_per_node: 5,
            walk_length: 20,
            seed: 2,
        },
    );
    let counts = node_counts(&walks, g.num_nodes());
    let noise = NoiseTables::new(&counts, &g.node_type, g.num_types());
    for t in 0..g.num_types() as u8 {
        for n in sample_negatives(&noise, Some(t), 2000, 9) {
            assert_eq!(g.node_type[n as usize], t);
        }
    }
    // plain negatives cover every type
    let plain = sample_negatives(&noise, None, 5000, 9);
    for t in 0..g.num_types() as u8 {
        assert!(plain.iter().any(|&n| g.node_type[n as usize] == t));
    }
}

#[test]
fn alias_table_matches_its_distribution() {
    let t = AliasTable::new(vec![10, 20, 30], &[1.0, 2.0, 7.0]).unwrap();
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut c = [0usize; 3];
    for _ in 0..100_000 {
        let v = t.sample(rng.random(), rng.random::<f32>());
        c[(v / 10 - 1) as usize] += 1;
    }
    for (i, want) in [0.1, 0.2, 0.7].iter().enumerate() {
        assert!((c[i] as f64 / 1e5 - want).abs() < 0.01, "{c:?}");
    }
}

fn embed(
    text: &str,
    variant: Variant,
    threads: usize,
    seed: u64,
) -> (NamedEmbeddings, Vec<(String, String)>) {
    let d = tempfile::tempdir().unwrap();
    let g = read_edge_list(&write(d.path(), "g.tsv", text)).unwrap();
    let mp = parse_metapath(&g, "APVPA").unwrap();
    let cfg = Metapath2VecConfig {
        walks_per_node: 20,
        walk_length: 40,
        dim: 32,
        variant,
        seed,
        ..Default::default()
    };
    let (walks, _) = generate(
        &g,
        &[mp],
        &WalkConfig {
            walks_per_node: cfg.walks_per_node,
            walk_length: cfg.walk_length,
            seed,
        },
    );
    let (emb, stats) = train(&walks, &g.node_type, g.num_types(), &cfg, threads, &|_| {});
    assert_eq!(stats.words as usize, walks.tokens.len());
    // labels: authors by community
    let labels: Vec<(String, String)> = g
        .names
        .iter()
        .filter(|n| n.starts_with("aa") || n.starts_with("ac"))
        .map(|n| (n.clone(), n[1..3].to_string()))
        .collect();
    (
        NamedEmbeddings {
            names: g.names.clone(),
            dim: emb.dim,
            vectors: emb.vectors,
        },
        labels,
    )
}

#[test]
fn embeddings_recover_planted_communities_and_shuffled_ones_do_not() {
    let k = 4;
    let text = planted(k, 25, 3, 4, 11);
    for variant in [Variant::Plain, Variant::Plusplus] {
        let (emb, labels) = embed(&text, variant, 2, 3);
        let data = join(&emb, &labels);
        assert_eq!(data.classes.len(), k);
        let rows = classify(&data, &[0.5], 3, 0);
        // chance is 1/4 = 0.25
        assert!(
            rows[0].micro_f1 > 0.85,
            "{variant:?}: micro-F1 {}",
            rows[0].micro_f1
        );
        assert!(
            rows[0].macro_f1 > 0.85,
            "{variant:?}: macro-F1 {}",
            rows[0].macro_f1
        );
        let score = cluster_nmi(&data, 3, 0);
        assert!(score > 0.6, "{variant:?}: NMI {score}");

        // the same vectors given to the wrong nodes carry no signal
        let mut shuffled = emb.clone();
        let n = emb.names.len();
        let mut perm: Vec<usize> = (0..n).collect();
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        perm.shuffle(&mut rand::rngs::StdRng::seed_from_u64(1));
        shuffled.vectors = perm.iter().flat_map(|&i| emb.row(i).to_vec()).collect();
        let sdata = join(&shuffled, &labels);
        let srows = classify(&sdata, &[0.5], 3, 0);
        assert!(
            srows[0].micro_f1 < 0.45,
            "shuffled micro-F1 {}",
            srows[0].micro_f1
        );
        assert!(cluster_nmi(&sdata, 3, 0) < 0.15);
    }
}

#[test]
fn single_thread_training_repeats_exactly() {
    let text = planted(2, 10, 2, 3, 4);
    let (a, _) = embed(&text, Variant::Plusplus, 1, 7);
    let (b, _) = embed(&text, Variant::Plusplus, 1, 7);
    assert_eq!(a.vectors, b.vectors);
    let (c, _) = embed(&text, Variant::Plusplus, 1, 8);
    assert_ne!(a.vectors, c.vectors);
}

#[test]
fn nmi_matches_hand_computation() {
    assert!((nmi(&[0, 0, 1, 1], &[1, 1, 0, 0]) - 1.0).abs() < 1e-12);
    assert!(nmi(&[0, 1, 0, 1], &[0, 0, 1, 1]).abs() < 1e-12);
    // a = [0,0,0,1], b = [0,0,1,1], in nats:
    // I = 1/2 ln(4/3) + 1/4 ln(2/3) + 1/4 ln 2, H(a) = -(3/4 ln 3/4 + 1/4 ln 1/4), H(b) = ln 2
    let i = 0.5 * (4.0f64 / 3.0).ln() + 0.25 * (2.0f64 / 3.0).ln() + 0.25 * 2f64.ln();
    let ha = -(0.75 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
    let want = 2.0 * i / (ha + 2f64.ln());
    assert!((i - 0.215_761).abs() < 1e-6);
    assert!((nmi(&[0, 0, 0, 1], &[0, 0, 1, 1]) - want).abs() < 1e-6);
}

#[test]
fn malformed_inputs_name_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "bad.tsv", "user u1 movie m1\nuser u2 movie\n");
    let e = format!("{:#}", read_edge_list(&p).unwrap_err());
    assert!(e.contains("bad.tsv:2"), "{e}");
    let p = write(d.path(), "w.tsv", "user u1 movie m1 -3\n");
    let e = format!("{:#}", read_edge_list(&p).unwrap_err());
    assert!(e.contains("w.tsv:1: field `weight`"), "{e}");
    let p = write(d.path(), "c.tsv", "user u1 usr m1\n");
    assert!(format!("{:#}", read_edge_list(&p).unwrap_err()).contains("same character"));

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "id_author.txt", "1\taAlice\n2\taBob\n");
    write(dir.path(), "id_conf.txt", "10\tvKDD\n");
    write(
        dir.path(),
        "paper_author.txt",
        "100\t1\r\n100\t2\r\n101\t3\r\n",
    );
    write(dir.path(), "paper_conf.txt", "100\t10\r\n");
    let e = format!("{:#}", read_aminer(dir.path()).unwrap_err());
    assert!(e.contains("paper_author.txt:3: field `author id`"), "{e}");
    write(dir.path(), "paper_author.txt", "100\t1\r\n100\tx\r\n");
    let e = format!("{:#}", read_aminer(dir.path()).unwrap_err());
    assert!(e.contains("paper_author.txt:2"), "{e}");
    assert!(read_graph(&d.path().join("nope")).is_err());
    // Found by fuzzing: a word2vec header claiming more values than usize holds.
    let p = write(d.path(), "huge.txt", "2 34444444444444444444\nab 1\n");
    let e = format!("{:#}", tessera::metapath2vec::io::load(&p).unwrap_err());
    assert!(e.contains("huge.txt"), "{e}");
}

#[test]
fn aminer_duplicate_names_stay_distinct_and_latin1_decodes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("id_author.txt"),
        b"1\taJohnSmith\r\n2\taJohnSmith\r\n3\taSt\xe9phane\r\n",
    )
    .unwrap();
    write(dir.path(), "id_conf.txt", "10\tvKDD\r\n");
    write(
        dir.path(),
        "paper_author.txt",
        "100\t1\r\n100\t2\r\n101\t3\r\n",
    );
    write(dir.path(), "paper_conf.txt", "100\t10\r\n101\t10\r\n");
    let g = read_aminer(dir.path()).unwrap();
    assert_eq!(g.num_nodes(), 3 + 1 + 2);
    assert!(g.names.contains(&"aJohnSmith#1".to_string()));
    assert!(g.names.contains(&"aJohnSmith#2".to_string()));
    assert!(g.names.contains(&"aSt\u{e9}phane".to_string()));
    assert!(g.names.contains(&"vKDD".to_string()) && g.names.contains(&"p101".to_string()));
}

#[test]
fn dbis_reads_with_the_paper_counts() {
    let dbis = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/dbis");
    if !dbis.exists() {
        eprintln!("skipping: ../shared/data/dbis not present");
        return;
    }
    let g = read_aminer(&dbis).unwrap();
    let count = |t: &str| {
        let ty = g.type_by_name(t).unwrap();
        g.node_type.iter().filter(|&&x| x == ty).count()
    };
    assert_eq!(count("author"), 60_694);
    assert_eq!(count("venue"), 464);
    assert_eq!(count("paper"), 72_902);
}

#[test]
fn cli_walks_trains_evaluates_and_finds_neighbours() {
    let d = tempfile::tempdir().unwrap();
    let graph = write(d.path(), "g.tsv", &planted(3, 12, 2, 3, 2));
    let emb = d.path().join("emb.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "metapath2vec",
            "train",
            "--metapath",
            "APVPA",
            "--walks-per-node",
            "10",
            "--walk-length",
            "30",
            "--dim",
            "16",
            "--variant",
            "plusplus",
            "--json",
            "--graph",
        ])
        .arg(&graph)
        .arg("--output")
        .arg(&emb)
        .output()
        .unwrap();
    crate::common::assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["train"]["words_per_second"].as_f64().unwrap() > 0.0);
    let text = std::fs::read_to_string(&emb).unwrap();
    let header: Vec<usize> = text
        .lines()
        .next()
        .unwrap()
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(header[1], 16);
    assert_eq!(text.lines().count(), header[0] + 1);

    let labels: String = (0..3)
        .flat_map(|c| (0..12).map(move |a| format!("ac{c}a{a} c{c}\n")))
        .collect();
    let lf = write(d.path(), "labels.txt", &labels);
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "metapath2vec",
            "eval",
            "--repeats",
            "2",
            "--runs",
            "2",
            "--json",
            "--embeddings",
        ])
        .arg(&emb)
        .arg("--labels")
        .arg(&lf)
        .output()
        .unwrap();
    crate::common::assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["classification"].as_array().unwrap().len(), 10);
    assert!(v["nmi"].as_f64().unwrap() >= 0.0);

    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "metapath2vec",
            "similar",
            "--node",
            "vc0v0",
            "--k",
            "3",
            "--embeddings",
        ])
        .arg(&emb)
        .output()
        .unwrap();
    crate::common::assert_success(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "metapath2vec",
            "similar",
            "--node",
            "nobody",
            "--embeddings",
        ])
        .arg(&emb)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`nobody` is not in"));

    // safetensors output and walk files from the CLI
    let st = d.path().join("emb.safetensors");
    let walks = d.path().join("walks.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "metapath2vec",
            "walk",
            "--metapath",
            "APVPA",
            "--walks-per-node",
            "2",
            "--walk-length",
            "10",
            "--graph",
        ])
        .arg(&graph)
        .arg("--output")
        .arg(&walks)
        .output()
        .unwrap();
    crate::common::assert_success(&out);
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["metapath2vec", "train", "--dim", "8", "--walks"])
        .arg(&walks)
        .arg("--output")
        .arg(&st)
        .output()
        .unwrap();
    crate::common::assert_success(&out);
    let loaded = tessera::metapath2vec::io::load(&st).unwrap();
    assert_eq!(loaded.dim, 8);
    let _ = GraphBuilder::default();
}

fn m2v(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("metapath2vec")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn graph_training_equals_training_on_its_walk_file_and_min_count_drops_rare_nodes() {
    let d = tempfile::tempdir().unwrap();
    // A planted graph plus one author with a single paper in one venue: on APVPA walks of
    // length 5 from every author, it occurs in its own walks (5 of them) and rarely elsewhere.
    let mut text = planted(3, 12, 2, 3, 2);
    text += "paper ploner author loner\npaper ploner venue c0v0\n";
    let graph = write(d.path(), "g.tsv", &text);
    let p = |name: &str| d.path().join(name).to_string_lossy().into_owned();
    let common = [
        "--metapath",
        "APVPA",
        "--walks-per-node",
        "1",
        "--walk-length",
        "5",
        "--dim",
        "8",
        "--seed",
        "3",
        "--threads",
        "1",
        "--variant",
        "plusplus",
    ];
    let mut args = vec!["train", "--graph", graph.to_str().unwrap()];
    args.extend_from_slice(&common);
    let (direct, walks) = (p("direct.txt"), p("walks.txt"));
    args.extend_from_slice(&["--output", &direct, "--save-walks", &walks]);
    crate::common::assert_success(&m2v(&args));
    let mut args = vec!["train", "--walks", &walks];
    args.extend_from_slice(&common[4..]);
    let from_file = p("from_file.txt");
    args.extend_from_slice(&["--output", &from_file]);
    crate::common::assert_success(&m2v(&args));
    let a = std::fs::read_to_string(&direct).unwrap();
    assert_eq!(a, std::fs::read_to_string(&from_file).unwrap());

    // Occurrences of the lone author in the walks decide whether it gets an embedding.
    let count = std::fs::read_to_string(&walks)
        .unwrap()
        .split_whitespace()
        .filter(|t| *t == "aloner")
        .count();
    assert!(count >= 1);
    let has = |f: &str| {
        std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .any(|l| l.starts_with("aloner "))
    };
    assert_eq!(
        has(&direct),
        count >= 5,
        "{count} occurrences, default min-count 5"
    );
    let mut args = vec!["train", "--walks", &walks];
    args.extend_from_slice(&common[4..]);
    let all = p("all.txt");
    args.extend_from_slice(&["--min-count", "1", "--output", &all]);
    crate::common::assert_success(&m2v(&args));
    assert!(has(&all));
    // Every node of the walks is written with --min-count 1; fewer with the default.
    let rows = |f: &str| std::fs::read_to_string(f).unwrap().lines().count();
    assert!(rows(&all) >= rows(&direct));
    let mut args = vec!["train", "--walks", &walks];
    args.extend_from_slice(&common[4..]);
    args.extend_from_slice(&["--min-count", "1000000", "--output", &all]);
    let out = m2v(&args);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--min-count"));
}

#[test]
fn nodes_sharing_a_name_merge_into_one_token_unless_asked_not_to() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("dbis");
    std::fs::create_dir_all(&dir).unwrap();
    write(&dir, "id_author.txt", "1\taAda\r\n2\taBob\r\n");
    // One venue under two ids, as DBIS lists KDD.
    write(&dir, "id_conf.txt", "10\tvKDD\r\n11\tvKDD\r\n12\tvICDM\r\n");
    write(
        &dir,
        "paper_author.txt",
        "100\t1\r\n101\t1\r\n101\t2\r\n102\t2\r\n",
    );
    write(&dir, "paper_conf.txt", "100\t10\r\n101\t11\r\n102\t12\r\n");
    let walks = |merge: Option<&str>| {
        let out_path = d.path().join("w.txt");
        let mut args = vec![
            "walk",
            "--graph",
            dir.to_str().unwrap(),
            "--metapath",
            "VPAPV",
            "--walks-per-node",
            "3",
            "--walk-length",
            "9",
            "--output",
            out_path.to_str().unwrap(),
        ];
        if let Some(m) = merge {
            args.extend_from_slice(&["--merge-names", m]);
        }
        crate::common::assert_success(&m2v(&args));
        let text = std::fs::read_to_string(&out_path).unwrap();
        let mut venues: Vec<String> = text
            .split_whitespace()
            .filter(|t| t.starts_with('v'))
            .map(str::to_string)
            .collect();
        venues.sort();
        venues.dedup();
        venues
    };
    // Walks start from every venue id (three starts); the two KDD ids write one token.
    assert_eq!(walks(None), vec!["vICDM", "vKDD"]);
    assert_eq!(walks(Some("true")), vec!["vICDM", "vKDD"]);
    assert_eq!(walks(Some("false")), vec!["vICDM", "vKDD#10", "vKDD#11"]);
}
