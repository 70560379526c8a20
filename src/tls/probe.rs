//! `botbus check --probe`: a real connection to the broker, reported line by line: the TLS
//! version, the server's chain (names, version, validity) against the URL's host, and
//! whether the broker accepts our certificate and login.

use super::doctor::Finding;
use super::inspect::{date, CertInfo, Validity};
use super::{diagnose, ClientTls};
use crate::bus::link::{self, LinkError, Stream};
use crate::bus::BusConfig;
use std::time::Duration;

/// Connects as `cfg` says (its client id should not be the robot's own, or the probe would
/// take over the running daemon's session) and reports what it saw.
pub async fn probe(cfg: &BusConfig, timeout: Duration) -> Vec<Finding> {
    let addr = format!("{}:{}", cfg.url.host, cfg.url.port);
    let mut out = Vec::new();
    if tokio::time::timeout(timeout, run(cfg, &addr, &mut out))
        .await
        .is_err()
    {
        out.push(Finding::error(format!(
            "broker {addr}: no answer within {} s",
            timeout.as_secs()
        )));
    }
    out
}

async fn run(cfg: &BusConfig, addr: &str, out: &mut Vec<Finding>) {
    let tcp = match link::connect_tcp(cfg, addr).await {
        Ok(t) => t,
        Err(e) => return out.push(Finding::error(e.to_string())),
    };
    if !cfg.url.tls {
        let mut stream: Box<dyn Stream> = Box::new(tcp);
        let r = link::mqtt_connect(&mut stream, cfg, None, addr).await;
        return out.push(connack(r, addr, "(plain, unencrypted)"));
    }
    let tls = match ClientTls::new(&cfg.tls) {
        Ok(t) => t,
        Err(e) => return out.push(Finding::error(e.to_string())),
    };
    let shook = link::handshake(&tls, tcp, cfg, addr).await;
    chain(&tls, &cfg.url.host, shook.is_ok(), out);
    let stream = match shook {
        Ok(s) => s,
        Err(e) => return out.push(Finding::error(e.to_string())),
    };
    let (_, conn) = stream.get_ref();
    out.push(Finding::fine(format!(
        "broker {addr}: TLS handshake done, {}, {}",
        conn.protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default(),
        conn.negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default()
    )));
    let mut stream: Box<dyn Stream> = Box::new(stream);
    let r = link::mqtt_connect(&mut stream, cfg, Some(&tls), addr).await;
    out.push(connack(r, addr, "over TLS"));
}

/// The server chain as presented, leaf first; after a good handshake, that the leaf names
/// the host and whether it ends soon (after a failed one, the failure says what is wrong).
fn chain(tls: &ClientTls, host: &str, verified: bool, out: &mut Vec<Finding>) {
    let mut leaf = None;
    for (i, der) in tls.server_chain().iter().enumerate() {
        let info = match CertInfo::parse(der) {
            Ok(info) => info,
            Err(e) => {
                out.push(Finding::error(format!(
                    "server chain[{i}]: cannot be read ({e})"
                )));
                continue;
            }
        };
        out.push(Finding::fine(format!(
            "server chain[{i}]: {}, issued by {}, X.509 v{}, names {}, valid {} to {}",
            info.subject,
            info.issuer,
            info.version,
            info.names(),
            date(info.not_before),
            date(info.not_after)
        )));
        if i == 0 {
            leaf = Some(info);
        }
    }
    let Some(leaf) = leaf.filter(|_| verified) else {
        return;
    };
    out.push(Finding::fine(format!(
        "server certificate names {host}, the host in mqtt.url"
    )));
    if leaf.validity_at(super::inspect::now_s()) == Validity::EndingSoon {
        out.push(Finding::warning(format!(
            "the broker's certificate ({}) expires on {}; {}",
            leaf.subject,
            date(leaf.not_after),
            diagnose::reissue(host)
        )));
    }
}

fn connack(r: Result<bytes::BytesMut, LinkError>, addr: &str, how: &str) -> Finding {
    match r {
        Ok(_) => Finding::fine(format!("broker {addr}: MQTT CONNECT accepted {how}")),
        Err(e) => Finding::error(e.to_string()),
    }
}
