//! The embedded default data set: Fashion-MNIST (60k + 10k images, Expat
//! licence), obtained from Debian's `dataset-fashion-mnist` package on first use
//! and cached.
//!
//! The cache folder is `$GRADCODEC_DATA_DIR/fashion-mnist` when that variable is
//! set, else `.data/fashion-mnist` in the workspace the harness was built from (or
//! in the current directory when that workspace is gone). The package is fetched
//! with `apt-get download` (after `apt-get update` if the first try fails) and
//! unpacked with `dpkg-deb -x`, without installing anything system-wide.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::DataError;

/// The four files of an MNIST-style data set, gzip-compressed.
pub const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// The Debian package that ships Fashion-MNIST.
pub const DEBIAN_PACKAGE: &str = "dataset-fashion-mnist";
/// Where the package puts the files.
const PACKAGE_DIR: &str = "usr/share/datasets/fashion-mnist";

/// The root of the data cache.
pub fn data_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("GRADCODEC_DATA_DIR") {
        return PathBuf::from(dir);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if workspace.join("Cargo.toml").is_file() {
        return workspace.join(".data");
    }
    PathBuf::from(".data")
}

/// The folder holding Fashion-MNIST, fetched into the cache when absent.
pub fn fashion_mnist_dir() -> Result<PathBuf, DataError> {
    let dir = data_root().join("fashion-mnist");
    if IDX_FILES.iter().all(|f| dir.join(f).is_file()) {
        return Ok(dir);
    }
    fetch_fashion_mnist(&dir)?;
    Ok(dir)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Downloads the Debian package and unpacks the IDX files into `dest`.
pub fn fetch_fashion_mnist(dest: &Path) -> Result<(), DataError> {
    let err = |message: String| DataError::Fetch {
        dataset: "fashion-mnist".into(),
        message,
    };
    eprintln!(
        "fetching Fashion-MNIST (Debian package {DEBIAN_PACKAGE}) into {}",
        dest.display()
    );
    let work = tempfile_dir().map_err(|e| err(format!("cannot make a temporary folder: {e}")))?;
    let download = || {
        run(Command::new("apt-get")
            .args(["download", DEBIAN_PACKAGE])
            .current_dir(&work))
    };
    if download().is_err() {
        run(Command::new("apt-get").arg("update")).map_err(err)?;
        download().map_err(err)?;
    }
    let deb = std::fs::read_dir(&work)
        .map_err(|e| err(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| err("apt-get download produced no .deb".into()))?;
    let unpacked = work.join("x");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked)).map_err(err)?;
    std::fs::create_dir_all(dest).map_err(|e| err(format!("{}: {e}", dest.display())))?;
    for f in IDX_FILES {
        let src = unpacked.join(PACKAGE_DIR).join(f);
        let partial = dest.join(format!("{f}.partial"));
        std::fs::copy(&src, &partial).map_err(|e| err(format!("{}: {e}", src.display())))?;
        std::fs::rename(&partial, dest.join(f)).map_err(|e| err(e.to_string()))?;
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn tempfile_dir() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir().join(format!("gradcodec-fetch-{}", std::process::id()));
    std::fs::create_dir_all(&base)?;
    Ok(base)
}
