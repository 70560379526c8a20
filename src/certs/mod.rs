//! `botbus certs` as library code: a CA, the broker's server certificate and one client
//! certificate per robot or fleet identity, for mutual TLS with per-robot ACLs. Sans-IO:
//! every function takes PEM text and the current time and returns PEM text, so what a
//! certificate holds is unit-tested by parsing it back; the CLI (`src/cli/certs.rs`) reads
//! and writes the files.
//!
//! The broker (mosquitto with `use_identity_as_username`) knows a client by its
//! certificate's common name alone, so a robot's CN is its robot id and the ACL's `%u`
//! pattern confines it to `robot/<id>/...`.

mod issue;
mod names;

pub use issue::{new_ca, summary, Ca, Issued, Summary, Validity};
pub use names::{Host, Identity, Role};

use thiserror::Error;

/// The default validity of a CA, in days: about ten years, since replacing it means
/// reissuing every certificate it signed.
pub const CA_DAYS: u32 = 3650;

/// The default validity of a broker, robot or fleet certificate, in days (the 825 days
/// browsers once allowed for server certificates).
pub const LEAF_DAYS: u32 = 825;

/// The longest validity accepted, in days (100 years).
pub const MAX_DAYS: u32 = 36_500;

/// Why a certificate cannot be made. [`CertsError::is_input`] tells the user's arguments
/// (a host, a name, a number of days) from a CA that cannot be used.
#[derive(Debug, Error)]
pub enum CertsError {
    #[error("`{host}` is not a host name or IP address: {why}")]
    BadHost { host: String, why: &'static str },
    #[error("`{name}` is not a valid {}: {why}", .role.name_kind())]
    BadName {
        role: Role,
        name: String,
        why: &'static str,
    },
    #[error(
        "a broker certificate needs at least one --host (a name or IP address robots connect to)"
    )]
    NoHost,
    #[error("{0} days is not a validity from 1 to {MAX_DAYS} days")]
    BadDays(u32),
    #[error("not a PEM X.509 certificate ({0})")]
    CaCert(String),
    #[error("not a CA certificate (its basicConstraints do not say CA:TRUE)")]
    NotACa,
    #[error("not a usable private key ({0}); a CA key must be PKCS#8 (`BEGIN PRIVATE KEY`), as `botbus certs ca` writes it")]
    CaKey(String),
    #[error("the CA key does not belong to the CA certificate")]
    CaKeyMismatch,
    /// rcgen failed (its message follows as the cause).
    #[error("cannot make the certificate")]
    Make(#[from] rcgen::Error),
}

impl CertsError {
    /// Whether the user's arguments are wrong (as opposed to the CA's files).
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            CertsError::BadHost { .. }
                | CertsError::BadName { .. }
                | CertsError::NoHost
                | CertsError::BadDays(_)
        )
    }
}

#[cfg(test)]
mod tests;
