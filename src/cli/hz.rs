//! `botbus topic hz`: subscribe to a filter and print every topic's rate, gaps and lost
//! messages once a second, like `ros2 topic hz`.

use super::{CliError, Output};
use crate::bus::Incoming;
use crate::fleet::client::valid_filter;
use crate::fleet::hz::Hz;
use crate::fleet::{FleetClient, FleetOptions};
use std::future::Future;
use std::io::Write;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How often the statistics are printed.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Connects, runs [`watch`] on `filter` until `seconds` pass or `stop` resolves, and
/// disconnects.
pub async fn topic_hz(
    opts: FleetOptions,
    filter: &str,
    window: usize,
    seconds: Option<Duration>,
    stop: impl Future<Output = ()>,
    out: impl Write,
) -> Result<(), CliError> {
    if !valid_filter(filter) {
        return Err(CliError::Usage(format!(
            "`{filter}` is not a valid MQTT topic filter"
        )));
    }
    let fleet = FleetClient::connect(opts).await?;
    let watched = match fleet.subscribe_raw(filter).await {
        Ok(mut rx) => watch(&mut rx, filter, window, seconds, stop, out).await,
        Err(e) => Err(e.into()),
    };
    fleet.close().await;
    watched
}

/// Records each message of `rx` and prints the statistics every [`REPORT_EVERY`], until
/// `seconds` pass, `stop` resolves or `rx` closes. Time is tokio's, so tests can pause it.
pub async fn watch(
    rx: &mut mpsc::Receiver<Incoming>,
    filter: &str,
    window: usize,
    seconds: Option<Duration>,
    stop: impl Future<Output = ()>,
    out: impl Write,
) -> Result<(), CliError> {
    let mut out = Output(out);
    let mut hz = Hz::new(window);
    let mut tick = tokio::time::interval(REPORT_EVERY);
    // An interval's first tick is at once; the first report is due after a full period.
    tick.tick().await;
    let end = seconds.map(|s| Instant::now() + s);
    tokio::pin!(stop);
    // Whether messages arrived since the last report.
    let mut unreported = false;
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(m) => {
                    hz.record(&m.topic, &m.payload, Instant::now().into_std());
                    unreported = true;
                }
                None => break,
            },
            _ = tick.tick() => {
                unreported = false;
                let lines = hz.report();
                if lines.is_empty() {
                    writeln!(out, "(no messages yet on {filter})")?;
                }
                for l in lines {
                    writeln!(out, "{l}")?;
                }
            }
            _ = sleep_until(end), if end.is_some() => break,
            _ = &mut stop => break,
        }
    }
    // A last report covers what arrived since the previous one.
    if unreported {
        for l in hz.report() {
            writeln!(out, "{l}")?;
        }
    }
    Ok(())
}

/// Sleeps until `end`, or forever without one.
async fn sleep_until(end: Option<Instant>) {
    match end {
        Some(end) => tokio::time::sleep_until(end).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::failing::ClosedPipe;

    fn msg(topic: &str, seq: u64) -> Incoming {
        let payload =
            rmp_serde::to_vec_named(&serde_json::json!({"header": {"seq": seq}, "data": 1.0}))
                .unwrap();
        Incoming {
            topic: topic.into(),
            payload: payload.into(),
            qos: crate::bus::QoS::AtMostOnce,
            retain: false,
            oversized: None,
        }
    }

    /// Sends `seqs` on `topic` every 100 ms from `first` on (tokio time).
    fn publish(
        tx: mpsc::Sender<Incoming>,
        topic: &'static str,
        first: Duration,
        seqs: Vec<u64>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let t0 = Instant::now() + first;
            for (i, seq) in seqs.into_iter().enumerate() {
                tokio::time::sleep_until(t0 + Duration::from_millis(100) * i as u32).await;
                let _ = tx.send(msg(topic, seq)).await;
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn hz_says_when_nothing_has_arrived_yet_once_a_second() {
        let (_tx, mut rx) = mpsc::channel(8);
        let mut out = Vec::new();
        let run = watch(
            &mut rx,
            "robot/+/imu",
            100,
            Some(Duration::from_millis(2500)),
            std::future::pending(),
            &mut out,
        );
        run.await.unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "(no messages yet on robot/+/imu)\n(no messages yet on robot/+/imu)\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn hz_reports_each_topics_rate_and_lost_messages_every_second() {
        let (tx, mut rx) = mpsc::channel(64);
        // 10 Hz between the reports, with seq 3 and 4 missing on imu.
        let imu = publish(
            tx.clone(),
            "robot/r1/imu",
            Duration::from_millis(50),
            vec![0, 1, 2, 5, 6, 7, 8, 9, 10, 11],
        );
        let gps = publish(
            tx.clone(),
            "robot/r1/gps/fix",
            Duration::from_millis(60),
            (0..10).collect(),
        );
        let mut out = Vec::new();
        let seconds = Some(Duration::from_millis(1500));
        watch(
            &mut rx,
            "robot/r1/#",
            100,
            seconds,
            std::future::pending(),
            &mut out,
        )
        .await
        .unwrap();
        imu.await.unwrap();
        gps.await.unwrap();
        // `tx` stayed open, so the run ended at its deadline, not because the channel closed.
        drop(tx);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "robot/r1/gps/fix: rate 10.00 Hz  gap mean 100.0 ms  min 100.0 ms  max 100.0 ms  n 10  lost 0\n\
             robot/r1/imu: rate 10.00 Hz  gap mean 100.0 ms  min 100.0 ms  max 100.0 ms  n 10  lost 2\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn hz_ends_when_stop_resolves_or_the_subscription_closes() {
        let (_tx, mut rx) = mpsc::channel(8);
        let mut out = Vec::new();
        watch(&mut rx, "t", 10, None, std::future::ready(()), &mut out)
            .await
            .unwrap();
        assert!(out.is_empty());

        let (tx, mut rx) = mpsc::channel(8);
        drop(tx);
        watch(&mut rx, "t", 10, None, std::future::pending(), &mut out)
            .await
            .unwrap();
        assert!(out.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn hz_ends_quietly_when_its_reader_goes_away() {
        let (_tx, mut rx) = mpsc::channel(8);
        let err = watch(&mut rx, "t", 10, None, std::future::pending(), ClosedPipe)
            .await
            .unwrap_err();
        assert!(matches!(err, CliError::StdoutClosed), "{err:?}");
    }

    #[tokio::test]
    async fn hz_refuses_a_filter_with_a_misplaced_wildcard_before_connecting() {
        // Port 1 is never a broker; a connection attempt would fail with another error.
        let opts = FleetOptions::new("mqtt://127.0.0.1:1").unwrap();
        let err = topic_hz(
            opts,
            "robot/#/imu",
            10,
            None,
            std::future::pending(),
            Vec::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.stderr_lines(),
            ["`robot/#/imu` is not a valid MQTT topic filter"]
        );
    }
}
