//! The CIFAR-10 binary format.
//!
//! Each record is one label byte (0..=9) followed by a 32×32 image as 3072 bytes:
//! the red plane, then green, then blue, each row-major. The training set is
//! `data_batch_1.bin` .. `data_batch_5.bin`, the test set `test_batch.bin`, each
//! 10,000 records (any whole number of records is accepted).

use std::path::Path;

use super::DataError;

/// Side of a CIFAR-10 image.
pub const SIDE: usize = 32;
/// Bytes of one image (3 channels × 32 × 32).
pub const IMAGE_BYTES: usize = 3 * SIDE * SIDE;
/// Bytes of one record (label + image).
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// Number of classes.
pub const CLASSES: u8 = 10;

/// Records of one or more batch files: images in CHW order and labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CifarRecords {
    /// `count × 3072` bytes, each image as R, G, B planes.
    pub images: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
}

/// Reads one batch file (plain or gzip) and appends its records to `out`.
pub fn read_batch_file(path: &Path, out: &mut CifarRecords) -> Result<(), DataError> {
    let bytes = super::read_maybe_gzip(path)?;
    parse_batch(&bytes, out).map_err(|message| DataError::Malformed {
        path: path.to_path_buf(),
        message,
    })
}

/// Parses the bytes of one batch file and appends its records to `out`.
pub fn parse_batch(bytes: &[u8], out: &mut CifarRecords) -> Result<(), String> {
    if bytes.is_empty() {
        return Err("empty CIFAR-10 batch file".into());
    }
    if !bytes.len().is_multiple_of(RECORD_BYTES) {
        return Err(format!(
            "truncated CIFAR-10 batch: {} bytes is not a whole number of {RECORD_BYTES}-byte records \
             ({} complete, {} bytes left over)",
            bytes.len(),
            bytes.len() / RECORD_BYTES,
            bytes.len() % RECORD_BYTES
        ));
    }
    for (i, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = record[0];
        if label >= CLASSES {
            return Err(format!(
                "record {i} has label {label}, CIFAR-10 labels are 0..=9"
            ));
        }
        out.labels.push(label);
        out.images.extend_from_slice(&record[1..]);
    }
    Ok(())
}

/// Serializes records in the batch format; used by tests and tools.
pub fn encode_batch(images: &[u8], labels: &[u8]) -> Vec<u8> {
    assert_eq!(images.len(), labels.len() * IMAGE_BYTES);
    let mut out = Vec::with_capacity(labels.len() * RECORD_BYTES);
    for (label, image) in labels.iter().zip(images.chunks_exact(IMAGE_BYTES)) {
        out.push(*label);
        out.extend_from_slice(image);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_and_rejects_truncation_and_bad_labels() {
        let images: Vec<u8> = (0..2 * IMAGE_BYTES).map(|i| (i % 251) as u8).collect();
        let bytes = encode_batch(&images, &[3, 9]);
        let mut recs = CifarRecords::default();
        parse_batch(&bytes, &mut recs).unwrap();
        assert_eq!(recs.labels, vec![3, 9]);
        assert_eq!(recs.images, images);
        let err = parse_batch(&bytes[..bytes.len() - 5], &mut CifarRecords::default()).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        let mut bad = bytes;
        bad[0] = 10;
        let err = parse_batch(&bad, &mut CifarRecords::default()).unwrap_err();
        assert!(err.contains("label 10"), "{err}");
    }
}
