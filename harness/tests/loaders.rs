//! The data loaders on small files written here: IDX (plain and gzip) and
//! CIFAR-10 binary, and the clear errors on truncated or missing files.

mod common;

use gradcodec_harness::data::{load_cifar_dir, Dataset, DatasetKind};

#[test]
fn idx_plain_and_gzip_load_the_same_data() {
    let tmp = tempfile::tempdir().unwrap();
    let (plain, gz) = (tmp.path().join("plain"), tmp.path().join("gz"));
    common::write_idx_dataset(&plain, 50, 20, false);
    common::write_idx_dataset(&gz, 50, 20, true);
    let a = Dataset::load(DatasetKind::Mnist, Some(&plain)).unwrap();
    let b = Dataset::load(DatasetKind::Mnist, Some(&gz)).unwrap();
    assert_eq!(
        (a.channels, a.height, a.width, a.num_classes),
        (1, 28, 28, 10)
    );
    assert_eq!(a.train.len(), 50);
    assert_eq!(a.test.len(), 20);
    assert_eq!(a.train, b.train);
    assert_eq!(a.test, b.test);
    let (px, labels) = common::images(50, 28, 1, 1);
    assert_eq!(a.train.images, px);
    assert_eq!(a.train.labels, labels);
}

#[test]
fn truncated_idx_files_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    common::write_idx_dataset(dir, 30, 10, false);
    let f = dir.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 100]).unwrap();
    let err = Dataset::load(DatasetKind::Mnist, Some(dir))
        .unwrap_err()
        .to_string();
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");
    assert!(err.contains("truncated IDX data"), "{err}");

    // A truncated gzip stream is reported as such.
    let gz = tmp.path().join("gz");
    common::write_idx_dataset(&gz, 30, 10, true);
    let f = gz.join("t10k-labels-idx1-ubyte.gz");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let err = Dataset::load(DatasetKind::Mnist, Some(&gz))
        .unwrap_err()
        .to_string();
    assert!(err.contains("t10k-labels-idx1-ubyte.gz"), "{err}");
    assert!(err.contains("gzip"), "{err}");

    // Images and labels that disagree.
    let mix = tmp.path().join("mix");
    common::write_idx_dataset(&mix, 30, 10, false);
    let other = tmp.path().join("other");
    common::write_idx_dataset(&other, 31, 10, false);
    std::fs::copy(
        other.join("train-labels-idx1-ubyte"),
        mix.join("train-labels-idx1-ubyte"),
    )
    .unwrap();
    let err = Dataset::load(DatasetKind::Mnist, Some(&mix))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("30 images but") && err.contains("31 labels"),
        "{err}"
    );
}

#[test]
fn missing_files_name_what_was_looked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Dataset::load(DatasetKind::Mnist, Some(tmp.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");
    let err = load_cifar_dir(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("data_batch_1.bin"), "{err}");
}

#[test]
fn cifar_batches_load_and_truncation_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cifar-10-batches-bin");
    common::write_cifar_dataset(&dir, 2, 20, 10);
    // The parent folder works too (the archive's subfolder is found).
    let ds = Dataset::load(DatasetKind::Cifar10, Some(tmp.path())).unwrap();
    assert_eq!((ds.channels, ds.height, ds.width), (3, 32, 32));
    assert_eq!(ds.train.len(), 40);
    assert_eq!(ds.test.len(), 10);
    let (px, labels) = common::images(20, 32, 3, 2);
    assert_eq!(&ds.train.images[20 * 3072..], &px[..]);
    assert_eq!(&ds.train.labels[20..], &labels[..]);

    let f = dir.join("data_batch_2.bin");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 1000]).unwrap();
    let err = load_cifar_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("data_batch_2.bin"), "{err}");
    assert!(err.contains("truncated CIFAR-10 batch"), "{err}");
}
