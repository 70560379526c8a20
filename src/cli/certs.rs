//! `botbus certs`: makes the certificates with [`crate::certs`], writes them with
//! its `files` module and prints each file written and the next step, so a team goes
//! from nothing to mutual TLS with per-robot ACLs by following the output.

mod files;

pub use files::CertsRunError;

use super::args::{CertsArgs, CertsCommand};
use super::{CliError, Output};
use crate::certs::{self, Ca, CertsError, Host, Identity, Issued, Role, Validity};
use files::Pair;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

/// The fleet user `config/mosquitto/acl` lists as shipped.
const SHIPPED_FLEET_USER: &str = "fleet";

/// The port of the TLS listener in `config/mosquitto/mosquitto.conf`.
const TLS_PORT: u16 = 8883;

/// Runs one `botbus certs` command at time `now`. Wrong arguments are usage errors (exit
/// 2); files that exist, a missing or unusable CA and I/O failures exit 1.
pub fn run(cmd: &CertsCommand, now: SystemTime, out: impl Write) -> Result<(), CliError> {
    let mut out = Output(out);
    match cmd {
        CertsCommand::Ca { dir, name, opts } => ca(dir, name, opts, now, &mut out),
        CertsCommand::Broker { dir, hosts, opts } => broker(dir, hosts, opts, now, &mut out),
        CertsCommand::Robot { dir, id, opts } => client(dir, Role::Robot, id, opts, now, &mut out),
        CertsCommand::Fleet { dir, name, opts } => {
            client(dir, Role::Fleet, name, opts, now, &mut out)
        }
    }
}

/// The user's arguments are wrong: exit code 2; anything else exits 1.
fn from_certs(e: CertsError) -> CliError {
    if e.is_input() {
        CliError::Usage(e.to_string())
    } else {
        CliError::Certs(CertsRunError::Make(e))
    }
}

fn validity(now: SystemTime, opts: &CertsArgs, default: u32) -> Result<Validity, CliError> {
    Validity::new(now, opts.days.unwrap_or(default)).map_err(from_certs)
}

fn ca(
    dir: &Path,
    name: &str,
    opts: &CertsArgs,
    now: SystemTime,
    out: &mut Output<impl Write>,
) -> Result<(), CliError> {
    let validity = validity(now, opts, certs::CA_DAYS)?;
    let issued = certs::new_ca(name, &validity).map_err(from_certs)?;
    let pair = Pair::new(dir, "ca");
    pair.check_free(opts.force)?;
    files::create_dir(dir)?;
    pair.write(&issued, opts.force)?;
    wrote(out, &pair, &format!("the CA \"{name}\""), &validity)?;
    writeln!(
        out,
        "  keep {} off the broker and the robots: whoever has it can make identities\n",
        pair.key.display()
    )?;
    writeln!(
        out,
        "next: the broker's certificate, with every name and address clients reach it by:\n  \
         botbus certs broker {} --host broker.example --host 10.0.0.5",
        dir.display()
    )
}

fn broker(
    dir: &Path,
    hosts: &[String],
    opts: &CertsArgs,
    now: SystemTime,
    out: &mut Output<impl Write>,
) -> Result<(), CliError> {
    let hosts = hosts
        .iter()
        .map(|h| Host::parse(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(from_certs)?;
    let validity = validity(now, opts, certs::LEAF_DAYS)?;
    let pair = Pair::new(dir, "broker");
    let ca = issue(dir, &pair, opts, |ca| ca.broker(&hosts, &validity))?;
    let names: Vec<String> = hosts.iter().map(Host::to_string).collect();
    let what = format!(
        "the broker {} (server certificate), signed by \"{}\"",
        names.join(", "),
        ca.name()
    );
    wrote(out, &pair, &what, &validity)?;
    let ca_pair = Pair::new(dir, "ca");
    writeln!(
        out,
        "\nnext, on the broker (the files of config/mosquitto/, see the README's security \
         section):\n  \
         sudo install -m 644 {} {} /etc/mosquitto/certs/\n  \
         sudo install -m 600 -o mosquitto {} /etc/mosquitto/certs/\n  \
         sudo install -m 644 config/mosquitto/mosquitto.conf /etc/mosquitto/conf.d/botbus.conf\n  \
         sudo install -m 644 config/mosquitto/acl /etc/mosquitto/acl\n  \
         sudo systemctl restart mosquitto\n\
         then a certificate for each robot:\n  \
         botbus certs robot {} <robot id>",
        ca_pair.cert.display(),
        pair.cert.display(),
        pair.key.display(),
        dir.display()
    )
}

fn client(
    dir: &Path,
    role: Role,
    name: &str,
    opts: &CertsArgs,
    now: SystemTime,
    out: &mut Output<impl Write>,
) -> Result<(), CliError> {
    let id = Identity::new(role, name).map_err(from_certs)?;
    let validity = validity(now, opts, certs::LEAF_DAYS)?;
    let pair = Pair::new(dir, name);
    pair.check_role(name, role)?;
    let ca = issue(dir, &pair, opts, |ca| ca.client(&id, &validity))?;
    let what = match role {
        Role::Robot => format!("robot {name}"),
        _ => format!("the fleet identity {name}"),
    };
    let what = format!("{what} (client certificate), signed by \"{}\"", ca.name());
    wrote(out, &pair, &what, &validity)?;
    let url = format!("mqtts://{}:{TLS_PORT}", broker_host(dir)?);
    match role {
        Role::Robot => robot_next(out, &pair, name, &url, dir),
        _ => fleet_next(out, &pair, name, &url, dir),
    }
}

/// Loads DIR's CA, checks that `pair` may be written, makes the certificate with `make`
/// and writes it; returns the CA for the message.
fn issue(
    dir: &Path,
    pair: &Pair,
    opts: &CertsArgs,
    make: impl FnOnce(&Ca) -> Result<Issued, CertsError>,
) -> Result<Ca, CliError> {
    let ca = load_ca(dir)?;
    pair.check_free(opts.force)?;
    let issued = make(&ca).map_err(from_certs)?;
    pair.write(&issued, opts.force)?;
    Ok(ca)
}

/// DIR's CA, from `ca.crt` and `ca.key`; an error names the file at fault.
fn load_ca(dir: &Path) -> Result<Ca, CertsRunError> {
    let pair = Pair::new(dir, "ca");
    let read = |path: &Path| {
        files::read_optional(path)?.ok_or_else(|| CertsRunError::NoCa {
            dir: dir.display().to_string(),
            missing: path.to_path_buf(),
        })
    };
    let (cert, key) = (read(&pair.cert)?, read(&pair.key)?);
    Ca::from_pem(&cert, &key).map_err(|why| {
        let path = match why {
            CertsError::CaKey(_) | CertsError::CaKeyMismatch => pair.key,
            _ => pair.cert,
        };
        CertsRunError::BadCa { path, why }
    })
}

/// The host of DIR's broker certificate for a URL (its first SAN), or a placeholder.
fn broker_host(dir: &Path) -> Result<String, CertsRunError> {
    let pem = files::read_optional(&Pair::new(dir, "broker").cert)?;
    let host = pem
        .as_deref()
        .and_then(certs::summary)
        .and_then(|s| s.hosts.into_iter().next().or(s.common_name));
    Ok(match host {
        Some(h) if h.contains(':') => format!("[{h}]"),
        Some(h) => h,
        None => "<broker host>".to_string(),
    })
}

fn wrote(
    out: &mut Output<impl Write>,
    pair: &Pair,
    what: &str,
    validity: &Validity,
) -> Result<(), CliError> {
    writeln!(
        out,
        "wrote {}: {what}, valid until {}",
        pair.cert.display(),
        validity.until()
    )?;
    writeln!(
        out,
        "wrote {}: its private key (mode 0600)",
        pair.key.display()
    )
}

fn robot_next(
    out: &mut Output<impl Write>,
    pair: &Pair,
    id: &str,
    url: &str,
    dir: &Path,
) -> Result<(), CliError> {
    let on_robot = |file: &str| format!("/etc/botbus/certs/{file}");
    writeln!(
        out,
        "\nnext, on robot {id} (the daemon runs as the user botbus):\n  \
         sudo install -d /etc/botbus/certs\n  \
         sudo install -m 644 {} {} /etc/botbus/certs/\n  \
         sudo install -m 600 -o botbus {} /etc/botbus/certs/\n\
         and in its botbus.toml (/etc/botbus/botbus.toml):\n  \
         [mqtt]\n  \
         url = \"{url}\"\n  \
         ca_file = \"{}\"\n  \
         cert_file = \"{}\"\n  \
         key_file = \"{}\"",
        Pair::new(dir, "ca").cert.display(),
        pair.cert.display(),
        pair.key.display(),
        on_robot("ca.crt"),
        on_robot(&format!("{id}.crt")),
        on_robot(&format!("{id}.key")),
    )
}

fn fleet_next(
    out: &mut Output<impl Write>,
    pair: &Pair,
    name: &str,
    url: &str,
    dir: &Path,
) -> Result<(), CliError> {
    if name == SHIPPED_FLEET_USER {
        writeln!(
            out,
            "\nnext: the shipped config/mosquitto/acl already gives `{name}` fleet access"
        )?;
    } else {
        writeln!(
            out,
            "\nnext: give {name} fleet access in the broker's /etc/mosquitto/acl, then \
             `sudo systemctl reload mosquitto`:\n  \
             user {name}\n  \
             topic readwrite robot/#"
        )?;
    }
    writeln!(
        out,
        "and use it with the fleet tools, e.g.:\n  \
         botbus topic list --url {url} --ca-file {} --cert-file {} --key-file {}",
        Pair::new(dir, "ca").cert.display(),
        pair.cert.display(),
        pair.key.display()
    )
}

#[cfg(test)]
mod tests;
