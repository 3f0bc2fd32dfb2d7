//! A temporary directory for targets that open a store: in memory
//! (`/dev/shm`) when possible, since opening a store syncs files and
//! directories. Included by the targets with `#[path]`; not a target.

/// A new temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("temp dir")
}
