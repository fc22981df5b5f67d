//! Image loaders against files written here in each format: IDX (raw and gzipped),
//! CIFAR-10 binary batches, and PNG class folders; and their errors.

mod common;

use std::io::Write;
use std::path::Path;

use rlcpc::data::images::{load, load_cifar10_dir, load_image_folder, read_idx, Part};

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_files_load_raw_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..3 * 2 * 4).map(|i| (i * 10) as u8).collect();
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        idx(&[3, 2, 4], &pixels),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("train-labels-idx1-ubyte.gz"),
        gz(&idx(&[3], &[7, 0, 2])),
    )
    .unwrap();
    let set = load(dir.path(), Part::Train).unwrap();
    assert_eq!(
        (set.len(), set.height, set.width, set.channels),
        (3, 2, 4, 1)
    );
    assert_eq!(set.labels, vec![7, 0, 2]);
    assert_eq!(set.classes.len(), 8, "classes 0..=max label");
    assert_eq!(set.image(1)[0], 80.0 / 255.0);
    // No test part here.
    let e = load(dir.path(), Part::Test).unwrap_err().to_string();
    assert!(e.contains("t10k-images"), "{e}");
    // A count that does not match the dimensions, and a file that is no IDX.
    let bad = dir.path().join("bad");
    std::fs::write(&bad, idx(&[3, 2, 4], &pixels[..20])).unwrap();
    let e = read_idx(&bad).unwrap_err().to_string();
    assert!(e.contains("need 24 bytes") && e.contains("holds 20"), "{e}");
    std::fs::write(&bad, b"PK\x03\x04 zip").unwrap();
    assert!(read_idx(&bad)
        .unwrap_err()
        .to_string()
        .contains("not an IDX file"));
}

#[test]
fn cifar10_records_become_channels_last_images() {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = vec![3u8];
    for c in 0..3u8 {
        rec.extend(std::iter::repeat_n(10 * (c + 1), 1024)); // R = 10, G = 20, B = 30
    }
    rec[1 + 1023] = 255; // red of the last pixel
    let two = [rec.clone(), rec].concat();
    std::fs::write(dir.path().join("data_batch_1.bin"), &two).unwrap();
    std::fs::write(
        dir.path().join("batches.meta.txt"),
        "airplane\nautomobile\nbird\ncat\n",
    )
    .unwrap();
    let set = load(dir.path(), Part::Train).unwrap();
    assert_eq!(
        (set.len(), set.height, set.width, set.channels),
        (2, 32, 32, 3)
    );
    assert_eq!(set.labels, vec![3, 3]);
    assert_eq!(set.classes[3], "cat");
    let img = set.image(0);
    assert_eq!(&img[..3], &[10.0 / 255.0, 20.0 / 255.0, 30.0 / 255.0]);
    assert_eq!(img[3 * 1023], 1.0, "last pixel's red");
    std::fs::write(dir.path().join("data_batch_1.bin"), &two[..100]).unwrap();
    let e = load_cifar10_dir(dir.path(), Part::Train)
        .unwrap_err()
        .to_string();
    assert!(e.contains("3073-byte"), "{e}");
}

fn png(path: &Path, w: u32, h: u32, rgb: bool, v: u8) {
    if rgb {
        image::RgbImage::from_pixel(w, h, image::Rgb([v, 0, 255]))
            .save(path)
            .unwrap();
    } else {
        image::GrayImage::from_pixel(w, h, image::Luma([v]))
            .save(path)
            .unwrap();
    }
}

#[test]
fn image_folders_label_by_sub_folder_and_refuse_mixed_sizes() {
    let dir = tempfile::tempdir().unwrap();
    for (class, v) in [("cats", 0u8), ("dogs", 255u8)] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
        for i in 0..2 {
            png(
                &dir.path().join(class).join(format!("{i}.png")),
                5,
                3,
                true,
                v,
            );
        }
    }
    std::fs::write(dir.path().join("dogs/notes.txt"), "not an image").unwrap();
    let set = load_image_folder(dir.path()).unwrap();
    assert_eq!(
        (set.len(), set.height, set.width, set.channels),
        (4, 3, 5, 3)
    );
    assert_eq!(set.classes, vec!["cats", "dogs"]);
    assert_eq!(set.labels, vec![0, 0, 1, 1]);
    assert_eq!(&set.image(2)[..3], &[1.0, 0.0, 1.0]);
    // The train and test parts of one tree are disjoint, stratified, and the test part
    // is what the set records as held out.
    let (tr, te) = (
        load(dir.path(), Part::Train).unwrap(),
        load(dir.path(), Part::Test).unwrap(),
    );
    assert_eq!((tr.len(), te.len()), (2, 2));
    assert_eq!(
        (tr.labels.clone(), te.labels.clone()),
        (vec![0, 1], vec![0, 1])
    );
    let held = te.held_out.clone().unwrap();
    assert_eq!(tr.held_out.as_ref(), Some(&held));
    assert_eq!(held.len(), 2);
    png(&dir.path().join("dogs/big.png"), 6, 3, true, 9);
    let e = load_image_folder(dir.path()).unwrap_err().to_string();
    assert!(e.contains("big.png") && e.contains("6x3"), "{e}");
    let grey = tempfile::tempdir().unwrap();
    std::fs::create_dir(grey.path().join("a")).unwrap();
    png(&grey.path().join("a/x.png"), 2, 2, false, 51);
    let set = load_image_folder(grey.path()).unwrap();
    assert_eq!((set.channels, set.image(0)[0]), (1, 0.2));
    let empty = tempfile::tempdir().unwrap();
    assert!(load(empty.path(), Part::Train)
        .unwrap_err()
        .to_string()
        .contains("no class sub-folders"));
}

#[test]
fn an_image_linked_into_another_class_is_refused_and_a_duplicate_link_counted_once() {
    // Review 3, N11: a link from one class folder into another counted images twice,
    // under both labels.
    let dir = tempfile::tempdir().unwrap();
    for class in ["cats", "dogs"] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
        png(&dir.path().join(class).join("0.png"), 4, 4, true, 7);
    }
    let cat = dir.path().join("cats/0.png");
    std::os::unix::fs::symlink(&cat, dir.path().join("cats/again.png")).unwrap();
    assert_eq!(load_image_folder(dir.path()).unwrap().len(), 2);
    std::os::unix::fs::symlink(dir.path().join("cats"), dir.path().join("dogs/more")).unwrap();
    let e = load_image_folder(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("'cats'") && e.contains("'dogs'") && e.contains("one class"),
        "{e}"
    );
}

#[test]
fn an_image_that_does_not_decode_is_left_out_and_reported_or_refused_under_strict() {
    // Review 3: leniency for images as for texts and audio files.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a")).unwrap();
    png(&dir.path().join("a/good.png"), 4, 4, true, 7);
    std::fs::write(dir.path().join("a/bad.png"), b"\x89PNG but not really").unwrap();
    let set = load_image_folder(dir.path()).unwrap();
    assert_eq!((set.len(), set.skipped.len()), (1, 1));
    assert!(set.skipped[0].0.ends_with("a/bad.png"));
    set.report_skipped(false).unwrap();
    let e = set.report_skipped(true).unwrap_err().to_string();
    assert!(e.contains("bad.png") && e.contains("--strict"), "{e}");
    // Nothing readable at all is an error that says why.
    std::fs::remove_file(dir.path().join("a/good.png")).unwrap();
    let e = load_image_folder(dir.path()).unwrap_err().to_string();
    assert!(e.contains("no readable") && e.contains("bad.png"), "{e}");
}

mod patches {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarBuilder;
    use rand::{Rng, SeedableRng};
    use rlcpc::nn::init::Init;
    use rlcpc::nn::patches::{
        as_sequences, extract, extract_augmented, grid, layer_norm, Augment, CausalContext,
        Direction, PatchEncoder,
    };
    use rlcpc_envs::SeededRng;

    #[test]
    fn grids_of_the_paper_and_of_small_images() {
        assert_eq!(grid(256, 256, 64, 32), Ok((7, 7)), "the paper's 7×7");
        assert_eq!(grid(28, 28, 8, 4), Ok((6, 6)));
        assert_eq!(grid(32, 32, 8, 4), Ok((7, 7)));
        assert!(grid(28, 28, 8, 6).unwrap_err().contains("exactly"));
        assert!(grid(6, 6, 8, 4).is_err());
    }

    #[test]
    fn patches_hold_the_pixels_under_them() {
        let (n, h, w, c) = (2, 12, 8, 2);
        let img: Vec<f32> = (0..n * h * w * c).map(|i| i as f32).collect();
        let (p, s) = (4, 4);
        let out = extract(&img, (n, h, w, c), p, s).unwrap();
        let (gh, gw) = grid(h, w, p, s).unwrap();
        assert_eq!(out.len(), n * gh * gw * p * p * c);
        for k in 0..n {
            for gi in 0..gh {
                for gj in 0..gw {
                    for y in 0..p {
                        for x in 0..p {
                            for ch in 0..c {
                                let got =
                                    out[((((k * gh + gi) * gw + gj) * p + y) * p + x) * c + ch];
                                let want = img[((k * h + gi * s + y) * w + gj * s + x) * c + ch];
                                assert_eq!(got, want);
                            }
                        }
                    }
                }
            }
        }
        assert!(extract(&img[1..], (n, h, w, c), p, s).is_err());
    }

    fn grid_tensor(v: &[f32], shape: (usize, usize, usize, usize)) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn the_context_sees_only_rows_above_and_its_own() {
        let dev = Device::Cpu;
        let (b, rows, cols, d, layers) = (2, 7, 4, 16, 2);
        let mut init = Init::new(1, &dev);
        CausalContext::init(d, layers, &mut init, "ctx").unwrap();
        let vb = VarBuilder::from_varmap(&init.varmap, DType::F32, &dev);
        let ctx = CausalContext::new(d, layers, vb.pp("ctx")).unwrap();
        let mut rng = SeededRng::seed_from_u64(2);
        let z: Vec<f32> = (0..b * rows * cols * d)
            .map(|_| rng.random_range(0.0..1.0))
            .collect();
        let base = ctx.forward(&grid_tensor(&z, (b, rows, cols, d))).unwrap();
        assert_eq!(base.dims(), &[b, rows, cols, d]);
        // Perturb row r of image 0: rows above are untouched, row r changes, and rows
        // more than `layers` below are out of reach.
        let r = 2;
        let mut z2 = z.clone();
        for j in 0..cols {
            for k in 0..d {
                z2[((r * cols) + j) * d + k] += 1.0;
            }
        }
        let moved = ctx.forward(&grid_tensor(&z2, (b, rows, cols, d))).unwrap();
        let diff = (moved - &base)
            .unwrap()
            .abs()
            .unwrap()
            .sum((2, 3))
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (i, &dv) in diff[0].iter().enumerate() {
            if i < r || i > r + layers {
                assert_eq!(dv, 0.0, "row {i} depends on row {r}");
            }
        }
        assert!(diff[0][r] > 0.0, "row {r} ignores itself: {diff:?}");
        assert!(diff[1].iter().all(|&v| v == 0.0), "images are independent");
    }

    #[test]
    fn grid_columns_become_cpc_sequences_down_the_rows() {
        let (b, rows, cols, d) = (2, 3, 4, 1);
        let v: Vec<f32> = (0..b * rows * cols * d).map(|i| i as f32).collect();
        let s = as_sequences(&grid_tensor(&v, (b, rows, cols, d))).unwrap();
        assert_eq!(s.dims(), &[rows, b * cols, d]);
        let s = s.to_vec3::<f32>().unwrap();
        for k in 0..b {
            for i in 0..rows {
                for j in 0..cols {
                    assert_eq!(s[i][k * cols + j][0], v[(k * rows + i) * cols + j]);
                }
            }
        }
    }

    #[test]
    fn the_patch_encoder_gives_one_vector_per_patch() {
        let dev = Device::Cpu;
        let mut init = Init::new(3, &dev);
        PatchEncoder::init(1, 16, 2, false, &mut init, "enc").unwrap();
        let vb = VarBuilder::from_varmap(&init.varmap, DType::F32, &dev);
        let enc = PatchEncoder::new(1, 16, 2, false, vb.pp("enc")).unwrap();
        let x = Tensor::ones((5, 8, 8, 1), DType::F32, &dev).unwrap();
        assert_eq!(enc.forward(&x).unwrap().dims(), &[5, 16]);
    }

    #[test]
    fn image_cpc_loss_runs_through_the_shared_cpc_code_into_every_layer() {
        use rlcpc::config::Negatives;
        use rlcpc::contrastive::cpc::{cpc_loss, CpcSampling, Predictor, PredictorDims};
        let dev = Device::Cpu;
        let (n, h, w, c, p, s, width) = (3, 16, 16, 1, 8, 4, 8);
        let (gh, gw) = grid(h, w, p, s).unwrap();
        let mut init = Init::new(4, &dev);
        PatchEncoder::init(c, width, 2, true, &mut init, "enc").unwrap();
        CausalContext::init(width, 2, &mut init, "ctx").unwrap();
        Predictor::init(
            PredictorDims {
                horizon: 2,
                z_dim: width,
                c_dim: width,
            },
            &mut init,
            "cpc",
        )
        .unwrap();
        let vb = VarBuilder::from_varmap(&init.varmap, DType::F32, &dev);
        let enc = PatchEncoder::new(c, width, 2, true, vb.pp("enc")).unwrap();
        let ctx = CausalContext::new(width, 2, vb.pp("ctx")).unwrap();
        let pred = Predictor::new(
            PredictorDims {
                horizon: 2,
                z_dim: width,
                c_dim: width,
            },
            vb.pp("cpc"),
        )
        .unwrap();
        let mut rng = SeededRng::seed_from_u64(5);
        let img: Vec<f32> = (0..n * h * w * c)
            .map(|_| rng.random_range(0.0..1.0))
            .collect();
        let patches = extract(&img, (n, h, w, c), p, s).unwrap();
        let x = Tensor::from_vec(patches, (n * gh * gw, p, p, c), &dev).unwrap();
        let z = enc
            .forward(&x)
            .unwrap()
            .reshape((n, gh, gw, width))
            .unwrap();
        let cg = ctx.forward(&z).unwrap();
        let sampling = CpcSampling {
            horizon: 2,
            negatives: Negatives::Both,
            num_negatives: 5,
            start_times: 0,
            horizons: 0,
            skip: 0,
            groups: Vec::new(),
            shuffled: false,
        };
        let r = cpc_loss(
            &pred,
            &as_sequences(&z).unwrap(),
            &as_sequences(&cg).unwrap(),
            &vec![0.0; gh * n * gw],
            &sampling,
            &mut rng,
        )
        .unwrap()
        .expect("pairs fit in a 3-row grid");
        // Rows 0 and 1 predict 1 and 2 rows below: (2 + 1) pairs per column.
        assert_eq!(r.pairs.len(), 3 * n * gw);
        let loss = r.loss.to_scalar::<f32>().unwrap();
        assert!(loss.is_finite() && loss > 0.0);
        let grads = r.loss.backward().unwrap();
        for (name, var) in init.varmap.data().lock().unwrap().iter() {
            let norm = crate::common::grad_norm_sq(&grads, var, name);
            assert!(norm > 0.0, "zero gradient for {name}");
        }
    }

    #[test]
    fn layer_norm_matches_its_formula_per_patch() {
        let dev = Device::Cpu;
        let (n, h, w, c) = (3, 2, 3, 4);
        let mut rng = SeededRng::seed_from_u64(9);
        let x: Vec<f32> = (0..n * h * w * c)
            .map(|_| rng.random_range(-2.0..3.0))
            .collect();
        let gain: Vec<f32> = (0..c).map(|i| 0.5 + i as f32).collect();
        let bias: Vec<f32> = (0..c).map(|i| i as f32 - 1.0).collect();
        let got = layer_norm(
            &grid_tensor(&x, (n, h, w, c)),
            &Tensor::new(gain.as_slice(), &dev).unwrap(),
            &Tensor::new(bias.as_slice(), &dev).unwrap(),
        )
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
        for (k, item) in x.chunks(h * w * c).enumerate() {
            let m = item.iter().map(|&v| v as f64).sum::<f64>() / item.len() as f64;
            let var = item.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / item.len() as f64;
            for (i, &v) in item.iter().enumerate() {
                let want =
                    (v as f64 - m) / (var + 1e-5).sqrt() * gain[i % c] as f64 + bias[i % c] as f64;
                let g = got[k * h * w * c + i] as f64;
                assert!((g - want).abs() < 1e-4, "item {k} value {i}: {g} vs {want}");
            }
        }
    }

    #[test]
    fn augmented_patches_are_moved_mirrored_or_colour_dropped_copies() {
        let (n, h, w, c, p, s) = (2, 12, 12, 3, 4, 4);
        let img: Vec<f32> = (0..n * h * w * c).map(|i| 1.0 + i as f32).collect();
        let (gh, gw) = grid(h, w, p, s).unwrap();
        let plain = extract(&img, (n, h, w, c), p, s).unwrap();
        let mut rng = SeededRng::seed_from_u64(1);
        let off = extract_augmented(&img, (n, h, w, c), p, s, &Augment::default(), &mut rng);
        assert_eq!(off.unwrap(), plain, "no augmentation: the plain patches");
        // The pixel of image k at (y, x), channel ch.
        let px = |k: usize, y: usize, x: usize, ch: usize| img[((k * h + y) * w + x) * c + ch];
        let aug = Augment {
            crop: 2,
            flip: true,
            color_drop: true,
        };
        let (mut flipped, mut moved) = (0, 0);
        for _ in 0..5 {
            let out = extract_augmented(&img, (n, h, w, c), p, s, &aug, &mut rng).unwrap();
            for (q, patch) in out.chunks(p * p * c).enumerate() {
                let (k, gi, gj) = (q / (gh * gw), q / gw % gh, q % gw);
                // Exactly one channel survives, the same over the patch.
                let kept: Vec<usize> = (0..c).filter(|&ch| patch[ch] != 0.0).collect();
                assert_eq!(kept.len(), 1, "patch {q}");
                let ch = kept[0];
                // Some offset within ±2 (inside the image), mirrored or not, explains it.
                let mut found = false;
                for y0 in (gi * s).saturating_sub(2)..=(gi * s + 2).min(h - p) {
                    for x0 in (gj * s).saturating_sub(2)..=(gj * s + 2).min(w - p) {
                        for flip in [false, true] {
                            let ok = (0..p).all(|y| {
                                (0..p).all(|x| {
                                    let sx = if flip { x0 + p - 1 - x } else { x0 + x };
                                    (0..c).all(|cc| {
                                        let want =
                                            if cc == ch { px(k, y0 + y, sx, cc) } else { 0.0 };
                                        patch[(y * p + x) * c + cc] == want
                                    })
                                })
                            });
                            if ok && !found {
                                found = true;
                                flipped += flip as usize;
                                moved += usize::from((y0, x0) != (gi * s, gj * s));
                            }
                        }
                    }
                }
                assert!(found, "patch {q} is no moved/mirrored copy");
            }
        }
        assert!(flipped > 0 && moved > 0, "flips {flipped}, moves {moved}");
    }

    #[test]
    fn directions_turn_the_grid_so_that_the_future_runs_down() {
        let (b, rows, cols) = (1, 2, 3);
        let v: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let g = grid_tensor(&v, (b, rows, cols, 1));
        let turned = |d: Direction| {
            d.orient(&g)
                .unwrap()
                .squeeze(3)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        };
        assert_eq!(
            turned(Direction::Down),
            vec![vec![0., 1., 2.], vec![3., 4., 5.]]
        );
        assert_eq!(
            turned(Direction::Up),
            vec![vec![3., 4., 5.], vec![0., 1., 2.]]
        );
        // Left to right: each grid row becomes a column read downwards.
        assert_eq!(
            turned(Direction::Right),
            vec![vec![0., 3.], vec![1., 4.], vec![2., 5.]]
        );
        assert_eq!(
            turned(Direction::Left),
            vec![vec![2., 5.], vec![1., 4.], vec![0., 3.]]
        );
        assert_eq!(Direction::Right.steps(rows, cols), cols);
    }
}

#[test]
fn grid_pooling_averages_cells_like_adaptive_average_pooling() {
    use candle_core::{Device, Tensor};
    use rlcpc::probe::image::pool_grid;
    // One image, a 5×6 grid of 2-vectors: value (r, c) → [10r + c, -1].
    let (rows, cols) = (5, 6);
    let v: Vec<f32> = (0..rows * cols)
        .flat_map(|i| [(10 * (i / cols) + i % cols) as f32, -1.0])
        .collect();
    let g = Tensor::from_vec(v, (1, rows, cols, 2), &Device::Cpu).unwrap();
    let mean = pool_grid(&g, 1).unwrap();
    assert_eq!(
        mean[0],
        vec![22.5, -1.0],
        "1x1: the mean of rows 0..5 and cols 0..6"
    );
    // 2×2: rows split 0..3 | 2..5 (PyTorch's floor/ceil bounds), cols 0..3 | 3..6.
    let p = pool_grid(&g, 2).unwrap();
    let cell = |r0: usize, r1: usize, c0: usize, c1: usize| {
        let (mut s, mut n) = (0.0, 0.0);
        for r in r0..r1 {
            for c in c0..c1 {
                s += (10 * r + c) as f32;
                n += 1.0;
            }
        }
        s / n
    };
    assert_eq!(
        p[0],
        vec![
            cell(0, 3, 0, 3),
            -1.0,
            cell(0, 3, 3, 6),
            -1.0,
            cell(2, 5, 0, 3),
            -1.0,
            cell(2, 5, 3, 6),
            -1.0
        ]
    );
    assert!(pool_grid(&g, 6).is_err(), "more cells than rows");
}
