//! Free space on the filesystems Berth writes to (the database, workspace storage), and
//! creating Berth's own private files and directories.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and missing parents) readable by Berth's user alone. The mode is set again
/// after creation because the one given at creation is narrowed by whatever umask Berth runs
/// under. An existing directory is left as its administrator made it.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Creates an empty `file` with mode 0600 unless it exists. SQLite gives its `-wal` and `-shm`
/// files the mode of the database file, so creating that one first keeps all three private.
pub fn create_private_file(file: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(file) {
        Ok(_) => std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Space an unprivileged user may still write on the filesystem holding `path`. Root's reserve
/// is left out: workspace users cannot use it, and a database needs more than a reserve.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is NUL-terminated and stat is a properly sized out-parameter.
    if unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let stat = unsafe { stat.assume_init() };
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_of_a_real_directory_and_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        let missing = dir.path().join("missing");
        assert_eq!(free_bytes(&missing).unwrap_err().kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn private_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/data");
        create_private_dir(&data).unwrap();
        create_private_file(&data.join("berth.db")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("berth.db")), 0o600);
        std::fs::write(data.join("berth.db"), "kept").unwrap();
        create_private_file(&data.join("berth.db")).unwrap();
        assert_eq!(std::fs::read_to_string(data.join("berth.db")).unwrap(), "kept", "an existing file is not truncated");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).unwrap();
        create_private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o750, "an existing directory keeps its mode");
    }
}
