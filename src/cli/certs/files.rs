//! The files `botbus certs` reads and writes: a certificate and its key side by side, the
//! key created with mode 0600 (never chmod-ed after, so it is not readable for a moment),
//! nothing replaced without `--force`, and a replaced file swapped in whole by a rename.

use crate::certs::{Issued, Role};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A private key: its owner only.
const KEY_MODE: u32 = 0o600;
/// A certificate is public.
const CERT_MODE: u32 = 0o644;
/// A directory `botbus certs ca` creates holds private keys: its owner only.
const DIR_MODE: u32 = 0o700;

/// Why `botbus certs` failed other than by its arguments (exit code 1): its files, DIR's
/// CA, or rcgen.
#[derive(Debug, Error)]
pub enum CertsRunError {
    #[error(transparent)]
    Make(crate::certs::CertsError),
    #[error("{} already exists; pass --force to replace it", .0.display())]
    Exists(PathBuf),
    #[error(
        "{} is the {taken} identity `{name}`; a {wanted} cannot have the same name, because \
         the broker tells identities apart by name alone",
        path.display()
    )]
    NameTaken {
        path: PathBuf,
        name: String,
        taken: Role,
        wanted: Role,
    },
    #[error(
        "no CA in {dir}: {} is missing; make one first with `botbus certs ca {dir}`",
        missing.display()
    )]
    NoCa { dir: String, missing: PathBuf },
    #[error("{}: {why}", path.display())]
    BadCa {
        path: PathBuf,
        why: crate::certs::CertsError,
    },
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] io::Error),
    #[error("cannot write {}", .0.display())]
    Write(PathBuf, #[source] io::Error),
    #[error("cannot create the directory {}", .0.display())]
    CreateDir(PathBuf, #[source] io::Error),
}

/// `<dir>/<stem>.crt` and `<dir>/<stem>.key`.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pair {
    pub fn new(dir: &Path, stem: &str) -> Pair {
        Pair {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        }
    }

    /// Refuses when either file exists, unless `force`: checked before anything is
    /// written, so a refusal never leaves half a pair.
    pub fn check_free(&self, force: bool) -> Result<(), CertsRunError> {
        if force {
            return Ok(());
        }
        match [&self.cert, &self.key].into_iter().find(|p| exists(p)) {
            Some(p) => Err(CertsRunError::Exists(p.clone())),
            None => Ok(()),
        }
    }

    /// Refuses to put a `wanted` identity where a certificate of another role made by
    /// `botbus certs` is, even with `--force`: the new one would get the old one's access.
    pub fn check_role(&self, name: &str, wanted: Role) -> Result<(), CertsRunError> {
        let Ok(pem) = fs::read_to_string(&self.cert) else {
            return Ok(());
        };
        match crate::certs::summary(&pem).and_then(|s| s.role) {
            Some(taken) if taken != wanted => Err(CertsRunError::NameTaken {
                path: self.cert.clone(),
                name: name.to_string(),
                taken,
                wanted,
            }),
            _ => Ok(()),
        }
    }

    /// Writes the key, then the certificate. When the certificate cannot be written, a key
    /// this call created is removed again, so that running the command again works.
    pub fn write(&self, issued: &Issued, force: bool) -> Result<(), CertsRunError> {
        write_file(&self.key, &issued.key_pem, KEY_MODE, force)?;
        write_file(&self.cert, &issued.cert_pem, CERT_MODE, force).inspect_err(|_| {
            if !force {
                let _ = fs::remove_file(&self.key);
            }
        })
    }
}

/// Whether anything, even a dangling symlink, is at `path`.
fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Creates `path` with `mode`; with `force`, writes a sibling and renames it over `path`,
/// so the new file has `mode` from its creation (an old file's looser mode does not carry
/// over, as it would when truncating) and a reader never sees half a key.
fn write_file(path: &Path, text: &str, mode: u32, force: bool) -> Result<(), CertsRunError> {
    let fail = |e| CertsRunError::Write(path.to_path_buf(), e);
    if !force {
        return create(path, text, mode).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => CertsRunError::Exists(path.to_path_buf()),
            _ => fail(e),
        });
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    let done = create(&tmp, text, mode).and_then(|()| fs::rename(&tmp, path));
    if done.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    done.map_err(fail)
}

/// A new file (never an existing one) with `mode`, holding `text`, synced to disk.
fn create(path: &Path, text: &str, mode: u32) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Creates `dir` (and its parents) with mode 0700 when it does not exist.
pub fn create_dir(dir: &Path) -> Result<(), CertsRunError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| CertsRunError::CreateDir(dir.to_path_buf(), e))
}

/// The text of `path`, or `None` when there is no such file.
pub fn read_optional(path: &Path) -> Result<Option<String>, CertsRunError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CertsRunError::Read(path.to_path_buf(), e)),
    }
}
