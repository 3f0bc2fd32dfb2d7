//! The free space of the data directory's filesystem, and the reserve
//! writes keep.
//!
//! Writes are refused (HTTP 507) while the filesystem has less than the
//! reserve free ([`super::TsdbConfig::min_free_bytes`]), so the WAL, the
//! meta store and block cuts do not meet a full disk in the middle of a
//! write: the meta store (sled) cannot recover from a failed flush without
//! a restart. A write that meets a full disk anyway (another process took
//! the reserve) fails with the same status, and the WAL cuts its torn
//! record off.

use crate::model::StorageError;
use std::path::Path;

/// Bytes available to unprivileged users on the filesystem of `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st: libc::statvfs = unsafe {
        // SAFETY: statvfs is a plain C struct of integers; all zeros is a
        // valid value, and statvfs below overwrites it.
        std::mem::zeroed()
    };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid, writable
    // statvfs that outlives the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The field types differ between platforms (u64 on 64-bit Linux).
    #[allow(clippy::useless_conversion)]
    let (avail, frsize) = (u64::from(st.f_bavail), u64::from(st.f_frsize));
    Ok(avail.saturating_mul(frsize))
}

/// Refuses a write while `dir`'s filesystem has less than `reserve` bytes
/// free. A failed `statvfs` does not refuse anything (the write itself
/// will tell).
pub fn check_reserve(dir: &Path, reserve: u64) -> Result<(), StorageError> {
    if reserve == 0 {
        return Ok(());
    }
    match free_bytes(dir) {
        Ok(free) if free < reserve => Err(StorageError {
            part: "disk",
            message: format!(
                "the data directory's filesystem ({}) has {free} bytes free, less than the \
                 reserve of {reserve} bytes (min_free_bytes): writes are refused until space \
                 is freed; queries still work",
                dir.display()
            ),
            no_space: true,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read_and_the_reserve_refuses_with_507_material() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0);
        assert!(check_reserve(dir.path(), 0).is_ok());
        assert!(check_reserve(dir.path(), 1).is_ok());
        let e = check_reserve(dir.path(), u64::MAX).unwrap_err();
        assert!(e.no_space);
        assert!(e.message.contains("min_free_bytes"), "{}", e.message);
        assert!(free_bytes(Path::new("/nonexistent/profstore")).is_err());
    }
}
