//! `botbus robots` and `botbus topic list`: listen on `<prefix>/#` for a while, then print
//! the robots (and the topics) seen, as tables or as JSON.

use super::{CliError, Output};
use crate::bus::Incoming;
use crate::fleet::list::{render_robots, render_topics, Listing};
use crate::fleet::{FleetClient, FleetOptions};
use std::io::Write;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Connects and listens on `<prefix>/#` for `window`: the retained status and catalogs
/// arrive at once, live traffic gives the rates.
pub async fn listen(opts: FleetOptions, window: Duration) -> Result<Listing, CliError> {
    let prefix = opts.topic_prefix.clone();
    let fleet = FleetClient::connect(opts).await?;
    let listing = match fleet.subscribe_raw(&format!("{prefix}/#")).await {
        Ok(mut rx) => Ok(collect(&prefix, &mut rx, window).await),
        Err(e) => Err(e.into()),
    };
    fleet.close().await;
    listing
}

/// Observes the messages of `rx` for `window` (tokio time), or until it closes.
pub async fn collect(prefix: &str, rx: &mut mpsc::Receiver<Incoming>, window: Duration) -> Listing {
    let mut listing = Listing::default();
    let end = Instant::now() + window;
    while let Ok(Some(m)) = tokio::time::timeout_at(end, rx.recv()).await {
        listing.observe(prefix, &m.topic, &m.payload, m.retain);
    }
    listing
}

/// `botbus robots`: the robot table, or a JSON array.
pub fn print_robots(listing: &Listing, json: bool, out: impl Write) -> Result<(), CliError> {
    let mut out = Output(out);
    let robots = listing.robots();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&robots)?)
    } else {
        out.text(&render_robots(&robots))
    }
}

/// `botbus topic list`: the robot table, a blank line and the topic table, or one JSON
/// object with both. `window` is how long the traffic was counted, for the rates.
pub fn print_topics(
    listing: &Listing,
    prefix: &str,
    window: Duration,
    json: bool,
    out: impl Write,
) -> Result<(), CliError> {
    let mut out = Output(out);
    let robots = listing.robots();
    let topics = listing.topics(prefix, window);
    if json {
        let both = serde_json::json!({"robots": robots, "topics": topics});
        writeln!(out, "{}", serde_json::to_string_pretty(&both)?)
    } else {
        out.text(&render_robots(&robots))?;
        writeln!(out)?;
        out.text(&render_topics(&topics))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::failing::ClosedPipe;
    use crate::meta::Status;

    fn incoming(topic: &str, payload: Vec<u8>, retain: bool) -> Incoming {
        Incoming {
            topic: topic.into(),
            payload: payload.into(),
            qos: crate::bus::QoS::AtLeastOnce,
            retain,
            oversized: None,
        }
    }

    fn status(state: &str, boot: u64) -> Vec<u8> {
        let s = Status {
            state: state.into(),
            boot,
            version: "0.1.0".into(),
        };
        rmp_serde::to_vec_named(&s).unwrap()
    }

    /// r1's retained status, then robot/r1/imu every 100 ms for 4 s (tokio time).
    async fn two_seconds_of_r1() -> Listing {
        let (tx, mut rx) = mpsc::channel(64);
        let sender = tokio::spawn(async move {
            let t0 = Instant::now();
            let _ = tx
                .send(incoming("robot/r1/status", status("online", 7), true))
                .await;
            for i in 0..40u32 {
                tokio::time::sleep_until(t0 + Duration::from_millis(50 + 100 * i as u64)).await;
                let _ = tx.send(incoming("robot/r1/imu", vec![0xc0], false)).await;
            }
        });
        let listing = collect("robot", &mut rx, Duration::from_secs(2)).await;
        sender.abort();
        listing
    }

    #[tokio::test(start_paused = true)]
    async fn only_traffic_inside_the_window_counts_toward_a_rate() {
        let listing = two_seconds_of_r1().await;
        let topics = listing.topics("robot", Duration::from_secs(2));
        let imu = topics.iter().find(|t| t.topic == "robot/r1/imu").unwrap();
        // 20 of the 40 messages arrive within the 2 s window.
        assert_eq!(imu.rate_hz, Some(10.0));
        assert_eq!(imu.kind, "unlisted");
    }

    #[tokio::test(start_paused = true)]
    async fn robots_prints_a_table_of_each_robot_with_its_state_and_boot() {
        let listing = two_seconds_of_r1().await;
        let mut out = Vec::new();
        print_robots(&listing, false, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ROBOT                    STATE      BOOT  VERSION\n\
             r1                       online        7  0.1.0\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn robots_prints_json_when_asked() {
        let listing = two_seconds_of_r1().await;
        let mut out = Vec::new();
        print_robots(&listing, true, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"robot": "r1", "state": "online", "boot": 7, "version": "0.1.0"}])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn topic_list_prints_the_robots_then_a_blank_line_then_the_topics() {
        let listing = two_seconds_of_r1().await;
        let mut out = Vec::new();
        print_topics(&listing, "robot", Duration::from_secs(2), false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (robots, topics) = text.split_once("\n\n").unwrap_or_else(|| panic!("{text}"));
        assert!(robots.starts_with("ROBOT "), "{text}");
        assert!(robots.contains("\nr1 "), "{text}");
        let topics: Vec<&str> = topics.lines().collect();
        assert!(topics[0].starts_with("TOPIC "), "{text}");
        assert!(
            topics[1].starts_with("robot/r1/imu ")
                && topics[1].ends_with("10.0 Hz    not in any catalog"),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn topic_list_prints_one_json_object_with_robots_and_topics() {
        let listing = two_seconds_of_r1().await;
        let mut out = Vec::new();
        print_topics(&listing, "robot", Duration::from_secs(2), true, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["robots"][0]["robot"], "r1");
        assert_eq!(v["topics"][0]["topic"], "robot/r1/imu");
        assert_eq!(v["topics"][0]["rate_hz"], 10.0);
    }

    #[test]
    fn an_empty_listing_says_no_robots_were_seen() {
        let mut out = Vec::new();
        print_robots(&Listing::default(), false, &mut out).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("\n(no robots seen)\n"));
        let err = print_robots(&Listing::default(), false, ClosedPipe).unwrap_err();
        assert!(matches!(err, CliError::StdoutClosed), "{err:?}");
    }
}
