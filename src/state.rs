//! Persistent state under `[state] dir`: the boot counter (like Sparkplug's bdSeq), which
//! rises by one at every start so fleets can tell restarts apart.

use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The robot's own folder in the state directory, created if needed.
pub fn robot_dir(state_dir: &Path, robot_id: &str) -> Result<PathBuf, StateError> {
    let dir = state_dir.join(robot_id);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(dir)
}

/// Increments and returns the boot counter, written atomically (temp file, fsync, rename)
/// so a power cut leaves the old or the new value, never a torn one.
pub fn next_boot(state_dir: &Path, robot_id: &str) -> Result<u64, StateError> {
    let dir = robot_dir(state_dir, robot_id)?;
    let path = dir.join("boot");
    let previous = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().unwrap_or_else(|_| {
            tracing::warn!(path = %path.display(), "boot counter unreadable; starting again from 0");
            0
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io(&path)(e)),
    };
    let boot = previous + 1;
    let tmp = dir.join("boot.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    writeln!(f, "{boot}").map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(boot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_counter_rises_by_one_per_start_and_per_robot() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_boot(dir.path(), "r1").unwrap(), 1);
        assert_eq!(next_boot(dir.path(), "r1").unwrap(), 2);
        assert_eq!(next_boot(dir.path(), "r2").unwrap(), 1);
        std::fs::write(dir.path().join("r1/boot"), "garbage").unwrap();
        assert_eq!(next_boot(dir.path(), "r1").unwrap(), 1);
    }
}
