//! The `berth` executable and the built site the fixtures run, refused when older than the
//! sources they are built from: a stale binary would test yesterday's code and pass or fail
//! for reasons that are no longer true.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

/// The checkout this kit belongs to.
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, else `target` in the checkout.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The `berth` executable: `BERTH_BIN` when set (taken as given: its sources are not known
/// here), else the debug build in the target directory, which must be newer than every file
/// under `server/src`, `app/src` and `migrations`.
///
/// `cargo test -p server` builds it before its tests; `cargo test -p end2end` does not, so
/// this is what catches a forgotten `cargo build -p server`.
pub fn berth() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("BERTH_BIN") {
            let bin = PathBuf::from(bin);
            assert!(bin.is_file(), "BERTH_BIN={} is not a file", bin.display());
            return bin;
        }
        let root = workspace_root();
        let bin = target_dir().join("debug/berth");
        let sources = [root.join("server/src"), root.join("app/src"), root.join("migrations")];
        if let Err(problem) = check_current(&bin, &sources) {
            panic!("{problem}: run `cargo build -p server` (or `make build`) first");
        }
        bin
    })
}

/// The site (`target/site`: wasm, JavaScript, CSS) the portal serves, which must be newer than
/// every file under `app/src`, `frontend/src`, `style` and `public`.
pub fn site() -> &'static Path {
    static SITE: OnceLock<PathBuf> = OnceLock::new();
    SITE.get_or_init(|| {
        let root = workspace_root();
        let site = target_dir().join("site");
        // Written last by the site build, so its age is the build's.
        let wasm = site.join("hash.txt");
        let sources = [root.join("app/src"), root.join("frontend/src"), root.join("style"), root.join("public")];
        if let Err(problem) = check_current(&wasm, &sources) {
            panic!("{problem}: run `scripts/build-site.sh` (or `make build`) first");
        }
        site
    })
}

/// `Ok` when `built` exists and is at least as new as every file under `sources`.
pub fn check_current(built: &Path, sources: &[PathBuf]) -> Result<(), String> {
    let built_at = std::fs::metadata(built)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{} is missing ({e})", built.display()))?;
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for source in sources {
        newest_file(source, &mut newest);
    }
    match newest {
        Some((at, path)) if at > built_at => {
            Err(format!("{} is older than {} (changed since the last build)", built.display(), path.display()))
        }
        _ => Ok(()),
    }
}

fn newest_file(path: &Path, newest: &mut Option<(SystemTime, PathBuf)>) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            newest_file(&entry.path(), newest);
        }
    } else if let Ok(at) = meta.modified() {
        if newest.as_ref().is_none_or(|(t, _)| at > *t) {
            *newest = Some((at, path.to_path_buf()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_older_than_a_source_is_refused_and_a_newer_one_passes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src/deep");
        std::fs::create_dir_all(&src).unwrap();
        let source = src.join("lib.rs");
        let built = dir.path().join("berth");
        std::fs::write(&source, "fn main() {}").unwrap();
        std::fs::write(&built, "binary").unwrap();
        let set = |path: &Path, secs: u64| {
            let file = std::fs::File::options().write(true).open(path).unwrap();
            file.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)).unwrap();
        };
        set(&source, 2_000);
        set(&built, 1_000);
        let error = check_current(&built, &[dir.path().join("src")]).unwrap_err();
        assert!(error.ends_with("src/deep/lib.rs (changed since the last build)"), "{error}");
        set(&built, 3_000);
        assert_eq!(check_current(&built, &[dir.path().join("src")]), Ok(()));
        let missing = check_current(&dir.path().join("nothing"), &[]).unwrap_err();
        assert!(missing.contains("nothing is missing"), "{missing}");
    }
}
