//! The command-line tools some tests make and check media with (ffmpeg, cwebp, dwebp,
//! exiftool, ...), for the binaries that include this file by path (tests/media_files.rs,
//! tests/vp8.rs): whether they are installed, a work directory, running one.

use std::path::PathBuf;
use std::process::Command;

/// Whether every tool is here; if not, says which is missing (and fails under CI=true).
pub fn have(tools: &[&str]) -> bool {
    let missing: Vec<_> = tools
        .iter()
        .filter(|t| {
            Command::new("sh").args(["-c", &format!("command -v {t}")]).output().map_or(true, |o| !o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("SKIPPED: {missing:?} not installed (scripts/setup installs them)");
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("{why}");
    false
}

/// A fresh directory under the system's temporary one, named for the test binary's `prefix`,
/// this process and `name`.
pub fn workdir(prefix: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `cmd` with `args`, which must succeed; its standard output.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
