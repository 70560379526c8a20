//! The broker's address as a user writes it (`mqtt://host:port`), checked once, so an
//! error names the URL but never a password written into it.

use thiserror::Error;

/// Why a broker URL cannot be used; each quotes the URL with any credentials hidden.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum BrokerUrlError {
    #[error("`{url}` is not a URL: {source}")]
    NotAUrl {
        url: String,
        source: url::ParseError,
    },
    #[error("`{url}`: credentials in the URL are not used; set mqtt.username and mqtt.password_file (or BOTBUS_MQTT__PASSWORD)")]
    Credentials { url: String },
    #[error("`{url}`: scheme `{scheme}` is not mqtt://, mqtts://, tcp:// or ssl://")]
    Scheme { url: String, scheme: String },
    #[error("`{url}` has no host")]
    NoHost { url: String },
    #[error("`{url}`: a broker URL has no path")]
    Path { url: String },
}

/// `mqtt://host:port`, `mqtts://host:port` (also `tcp://`, `ssl://`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl BrokerUrl {
    pub fn parse(text: &str) -> Result<BrokerUrl, BrokerUrlError> {
        // Errors quote the URL, but never a password written into it.
        let (shown, has_credentials) = match (text.find("://"), text.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                (format!("{}://***@{}", &text[..s], &text[at + 1..]), true)
            }
            _ => (text.to_string(), false),
        };
        let url = url::Url::parse(&shown).map_err(|source| BrokerUrlError::NotAUrl {
            url: shown.clone(),
            source,
        })?;
        if has_credentials {
            return Err(BrokerUrlError::Credentials { url: shown });
        }
        let tls = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" | "tls" => true,
            s => {
                return Err(BrokerUrlError::Scheme {
                    scheme: s.to_string(),
                    url: shown,
                })
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| BrokerUrlError::NoHost { url: shown.clone() })?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if url.path() != "" && url.path() != "/" {
            return Err(BrokerUrlError::Path { url: shown });
        }
        let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
        Ok(BrokerUrl { host, port, tls })
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_with_default_ports() {
        assert_eq!(
            BrokerUrl::parse("mqtt://localhost").unwrap(),
            BrokerUrl {
                host: "localhost".into(),
                port: 1883,
                tls: false
            }
        );
        let u = BrokerUrl::parse("mqtts://broker.example:9999").unwrap();
        assert!(u.tls && u.port == 9999);
        assert_eq!(BrokerUrl::parse("ssl://[::1]").unwrap().host, "::1");
        assert_eq!(
            BrokerUrl::parse("http://x").unwrap_err().to_string(),
            "`http://x`: scheme `http` is not mqtt://, mqtts://, tcp:// or ssl://"
        );
        assert!(BrokerUrl::parse("nonsense").is_err());
        let e = BrokerUrl::parse("mqtt://user:s3cr3t@host:1883")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mqtt.username") && !e.contains("s3cr3t"), "{e}");
        let e = BrokerUrl::parse("mqtt://user:s3cr3t@bad host")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
    }
}
