//! Image loaders against files written here in each format: IDX (raw and gzipped),
//! CIFAR-10 binary batches, and PNG class folders; and their errors.

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
    let set = load(dir.path(), Part::Train).unwrap();
    assert_eq!(
        (set.len(), set.height, set.width, set.channels),
        (4, 3, 5, 3)
    );
    assert_eq!(set.classes, vec!["cats", "dogs"]);
    assert_eq!(set.labels, vec![0, 0, 1, 1]);
    assert_eq!(&set.image(2)[..3], &[1.0, 0.0, 1.0]);
    png(&dir.path().join("dogs/big.png"), 6, 3, true, 9);
    let e = load_image_folder(dir.path()).unwrap_err().to_string();
    assert!(e.contains("big.png") && e.contains("6x3"), "{e}");
    let grey = tempfile::tempdir().unwrap();
    std::fs::create_dir(grey.path().join("a")).unwrap();
    png(&grey.path().join("a/x.png"), 2, 2, false, 51);
    let set = load(grey.path(), Part::Train).unwrap();
    assert_eq!((set.channels, set.image(0)[0]), (1, 0.2));
    let empty = tempfile::tempdir().unwrap();
    assert!(load(empty.path(), Part::Train)
        .unwrap_err()
        .to_string()
        .contains("no class sub-folders"));
}
