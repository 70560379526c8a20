//! When to ping the tasks and when to feed systemd's watchdog, apart from time and I/O.
//! Pings go out often (a quarter of the feeding period) and one at a time; `WATCHDOG=1`
//! goes out every half `WATCHDOG_USEC`, but only once every task has answered a ping
//! sent since the last feed. A task busy for longer than one check still lets the feed
//! go out as soon as it answers; a task that never answers stops the feeding for good.

use std::time::{Duration, Instant};

/// The watchdog's state between checks.
#[derive(Debug)]
pub struct Feeder {
    /// Half of `WATCHDOG_USEC`: how often to feed.
    half: Duration,
    last_fed: Instant,
    /// When the outstanding ping went out.
    pinged_at: Option<Instant>,
    /// Every task answered a ping since the last feed.
    answered: bool,
    /// A ping has been outstanding for `half` or more (and the log said so).
    withheld: bool,
}

/// What one check decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Send a new ping.
    pub ping: bool,
    /// Send `WATCHDOG=1`.
    pub feed: bool,
    /// A task has just gone half a period without answering: log which.
    pub withheld: bool,
    /// Every task answers again after a withheld period.
    pub recovered: bool,
}

impl Feeder {
    pub fn new(half: Duration, now: Instant) -> Feeder {
        Feeder {
            half,
            last_fed: now,
            pinged_at: None,
            answered: false,
            withheld: false,
        }
    }

    /// How often to check, for a watchdog timeout of `watchdog`: a quarter of the feeding
    /// period, so a feed goes out at most that late.
    pub fn check_every(watchdog: Duration) -> Duration {
        (watchdog / 8).max(Duration::from_millis(5))
    }

    /// One check at `now`; `all_answered` is whether every task answered the last ping.
    pub fn check(&mut self, now: Instant, all_answered: bool) -> Decision {
        let mut d = Decision::default();
        match self.pinged_at {
            Some(_) if all_answered => {
                self.pinged_at = None;
                self.answered = true;
                d.recovered = std::mem::take(&mut self.withheld);
            }
            Some(at) if now.duration_since(at) >= self.half && !self.withheld => {
                self.withheld = true;
                d.withheld = true;
            }
            _ => {}
        }
        if self.pinged_at.is_none() {
            self.pinged_at = Some(now);
            d.ping = true;
        }
        if self.answered && now.duration_since(self.last_fed) >= self.half {
            self.answered = false;
            self.last_fed = now;
            d.feed = true;
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HALF: Duration = Duration::from_millis(400);
    const Q: Duration = Duration::from_millis(100);

    /// Runs checks every `Q` for `n` checks; `answers(k)` says whether every task had
    /// answered by check `k`. Returns the check numbers that fed.
    fn feeds(n: u32, answers: impl Fn(u32) -> bool) -> (Vec<u32>, Vec<Decision>) {
        let t0 = Instant::now();
        let mut f = Feeder::new(HALF, t0);
        let mut fed = Vec::new();
        let mut all = Vec::new();
        for k in 1..=n {
            let d = f.check(t0 + Q * k, answers(k));
            if d.feed {
                fed.push(k);
            }
            all.push(d);
        }
        (fed, all)
    }

    #[test]
    fn tasks_that_always_answer_get_a_feed_every_half_period() {
        let (fed, _) = feeds(16, |_| true);
        assert_eq!(fed, vec![4, 8, 12, 16]);
    }

    #[test]
    fn a_task_that_never_answers_is_never_fed_and_is_reported_once() {
        let (fed, all) = feeds(20, |_| false);
        assert!(fed.is_empty());
        assert_eq!(
            all.iter().filter(|d| d.ping).count(),
            1,
            "one ping at a time"
        );
        assert_eq!(all.iter().filter(|d| d.withheld).count(), 1);
    }

    #[test]
    fn a_task_wedged_after_a_while_stops_the_feeds() {
        // The ping of check 8 is answered at check 9, which proves the tasks alive after
        // the feed of check 8 and earns one more feed; the ping of check 9 never is.
        let (fed, _) = feeds(30, |k| k < 10);
        assert_eq!(fed, vec![4, 8, 12], "no feed once the pings go unanswered");
    }

    #[test]
    fn a_task_busy_longer_than_a_check_delays_the_feed_only_until_it_answers() {
        // Busy from check 3 to check 6: the ping of check 3 is answered at check 6.
        let (fed, all) = feeds(12, |k| !(3..6).contains(&k));
        assert_eq!(fed, vec![4, 8, 12]);
        assert!(all.iter().all(|d| !d.withheld), "{all:?}");
        // Busy for more than half a period: reported, then recovered, and fed at once.
        let (fed, all) = feeds(16, |k| !(3..9).contains(&k));
        assert_eq!(fed, vec![4, 9, 13]);
        assert_eq!(all.iter().filter(|d| d.withheld).count(), 1);
        assert!(all[8].recovered);
    }
}
