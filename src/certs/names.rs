//! The names that go into certificates, validated before anything is made: broker hosts
//! (IP addresses become IP SANs, names DNS SANs) and robot and fleet identities (a common
//! name that is also the broker's username and a file name).

use super::CertsError;
use std::fmt;
use std::net::IpAddr;

/// What a certificate is for; written as its subject's organizational unit, so a person
/// reading it with `openssl x509 -subject` (and `botbus certs`) can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Ca,
    Broker,
    Robot,
    Fleet,
}

impl Role {
    /// The subject's OU.
    pub fn unit(self) -> &'static str {
        match self {
            Role::Ca => "botbus ca",
            Role::Broker => "botbus broker",
            Role::Robot => "botbus robot",
            Role::Fleet => "botbus fleet",
        }
    }

    /// What a name of this role is called in messages.
    pub fn name_kind(self) -> &'static str {
        match self {
            Role::Ca => "CA name",
            Role::Broker => "broker name",
            Role::Robot => "robot id",
            Role::Fleet => "fleet name",
        }
    }

    pub fn from_unit(unit: &str) -> Option<Role> {
        [Role::Ca, Role::Broker, Role::Robot, Role::Fleet]
            .into_iter()
            .find(|r| r.unit() == unit)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Ca => "CA",
            Role::Broker => "broker",
            Role::Robot => "robot",
            Role::Fleet => "fleet",
        })
    }
}

/// The most characters a common name may have (RFC 5280's ub-common-name).
const MAX_CN: usize = 64;

/// A name or address robots reach the broker by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Dns(String),
}

impl Host {
    /// An IP address, or a host name of letters, digits and `-` in labels of 1 to 63
    /// characters. Wildcards are refused: TLS clients match them only one label deep, which
    /// surprises more than it helps for a single broker.
    pub fn parse(text: &str) -> Result<Host, CertsError> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        let bad = |why| CertsError::BadHost {
            host: text.to_string(),
            why,
        };
        if text.is_empty() || text.len() > 253 {
            return Err(bad("a host name has 1 to 253 characters"));
        }
        if text.contains('*') {
            return Err(bad(
                "wildcards are not supported; give each name with its own --host",
            ));
        }
        for label in text.split('.') {
            let ok_chars = label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if label.is_empty() || label.len() > 63 || !ok_chars {
                return Err(bad(
                    "use letters, digits and `-` in labels of 1 to 63 characters separated by `.`",
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(bad("a label cannot start or end with `-`"));
            }
        }
        // `10.0.0.256` is no address, and as a name it would be one no resolver gives out.
        if text
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad(
                "not a valid IP address, and a host name cannot end in a number",
            ));
        }
        Ok(Host::Dns(text.to_string()))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Dns(name) => f.write_str(name),
        }
    }
}

/// A robot or fleet identity: the certificate's common name, which mosquitto takes as the
/// username (`use_identity_as_username`) and which names the files `<name>.crt` and
/// `<name>.key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    role: Role,
    name: String,
}

impl Identity {
    /// A robot's id, valid as a robot file's `id` is (so the ACL's `robot/%u/#` is the
    /// robot's own topics), or a fleet name under the same rule (mosquitto refuses `%u`
    /// patterns for usernames with `+`, `#` or `/`).
    pub fn new(role: Role, name: &str) -> Result<Identity, CertsError> {
        let bad = |why| CertsError::BadName {
            role,
            name: name.to_string(),
            why,
        };
        if !crate::spec::valid_name(name, false) {
            return Err(bad(
                "use letters, digits, `_` or `-`, as in a robot file's `id`",
            ));
        }
        if name.len() > MAX_CN {
            return Err(bad(
                "a certificate's common name holds at most 64 characters",
            ));
        }
        // Their files would be the CA's and the broker's.
        if name == "ca" || name == "broker" {
            return Err(bad(
                "`ca` and `broker` name the CA's and the broker's files",
            ));
        }
        Ok(Identity {
            role,
            name: name.to_string(),
        })
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A CA's common name: any text of 1 to 64 characters without control characters.
pub(super) fn check_ca_name(name: &str) -> Result<(), CertsError> {
    let bad = |why| CertsError::BadName {
        role: Role::Ca,
        name: name.to_string(),
        why,
    };
    if name.trim().is_empty() || name.chars().count() > MAX_CN {
        return Err(bad("give 1 to 64 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("control characters are not allowed"));
    }
    Ok(())
}
