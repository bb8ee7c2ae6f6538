//! Fire times of `on schedule` triggers: the instants after a given one at
//! which a cron expression fires, read in the schedule's IANA time zone.
//!
//! Days are walked forward (at most [`HORIZON_DAYS`]) and, on a day that
//! matches, its hours, minutes and seconds in order, so an expression that
//! fires rarely costs a few thousand day checks, never a walk over minutes.
//! Daylight-saving changes follow jiff's `compatible` rule: a local time
//! skipped by a spring-forward fires at the same offset after the gap
//! (02:30 → 03:30), and one that happens twice fires once, the first time.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use kflow_compiler::cron::Cron;

/// How far ahead a next fire time is looked for: past leap days, since
/// `0 0 29 2 *` fires once in four years (eight across a skipped leap
/// year such as 2100).
pub const HORIZON_DAYS: i32 = 366 * 9;

/// A schedule ready to compute fire times.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub cron: Cron,
    pub tz: TimeZone,
}

impl Schedule {
    /// The expression and zone as a trigger writes them (`None`: UTC).
    pub fn new(expr: &str, timezone: Option<&str>) -> Result<Schedule, String> {
        let cron = Cron::parse(expr)?;
        let tz = match timezone {
            None => TimeZone::UTC,
            Some(name) => jiff::tz::db()
                .get(name)
                .map_err(|_| format!("unknown time zone `{name}`"))?,
        };
        Ok(Schedule { cron, tz })
    }

    /// The first fire time strictly after `after`, if any within the horizon.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = after.to_zoned_datetime(self.tz.clone());
        let first_day = start.date();
        for offset in 0..HORIZON_DAYS {
            let day: Date = first_day.checked_add(offset.days()).ok()?;
            let weekday = day.weekday().to_sunday_zero_offset() as u32;
            if !self.cron.day_matches(day.month() as u32, day.day() as u32, weekday) {
                continue;
            }
            if let Some(t) = self.first_on(day, after) {
                return Some(t);
            }
        }
        None
    }

    /// The first fire time on `day` after `after`.
    fn first_on(&self, day: Date, after: Timestamp) -> Option<Timestamp> {
        for h in Cron::values(u64::from(self.cron.hours)) {
            for m in Cron::values(self.cron.minutes) {
                for s in Cron::values(self.cron.seconds) {
                    let local = DateTime::new(day.year(), day.month(), day.day(), h as i8, m as i8, s as i8, 0).ok()?;
                    let Ok(zoned) = self.tz.to_ambiguous_zoned_datetime(local).compatible() else {
                        continue;
                    };
                    let t = zoned.timestamp();
                    if t > after {
                        return Some(t);
                    }
                }
            }
        }
        None
    }

    /// Up to `n` fire times after `after`, in order.
    pub fn upcoming(&self, after: Timestamp, n: usize) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(n);
        let mut at = after;
        while out.len() < n {
            match self.next_after(at) {
                Some(t) => {
                    out.push(t);
                    at = t;
                }
                None => break,
            }
        }
        out
    }

    /// The fire times in `(from, to]` that `catchup` asks to run after a
    /// pause (a restart, downtime): none, the newest, or all of them (at
    /// most `limit`, the newest kept).
    pub fn missed(&self, from: Timestamp, to: Timestamp, catchup: Catchup, limit: usize) -> Vec<Timestamp> {
        if catchup == Catchup::None {
            return Vec::new();
        }
        let mut all = std::collections::VecDeque::new();
        let mut at = from;
        while let Some(t) = self.next_after(at).filter(|t| *t <= to) {
            all.push_back(t);
            if catchup == Catchup::Last || all.len() > limit {
                // Only the newest ones are kept.
                while all.len() > if catchup == Catchup::Last { 1 } else { limit } {
                    all.pop_front();
                }
            }
            at = t;
        }
        all.into()
    }
}

/// What a schedule does with fire times missed while it could not fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catchup {
    None,
    Last,
    All,
}

impl Catchup {
    /// As a trigger writes it; absent is `last`.
    pub fn from_word(w: Option<&str>) -> Catchup {
        match w {
            Some("none") => Catchup::None,
            Some("all") => Catchup::All,
            _ => Catchup::Last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn times(sched: &Schedule, after: &str, n: usize) -> Vec<String> {
        sched.upcoming(ts(after), n).iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn fire_times_in_utc() {
        let s = Schedule::new("*/15 0-6 * * mon-fri", None).unwrap();
        // 2026-12-05 is a Saturday: next is Monday 00:00.
        assert_eq!(
            times(&s, "2026-12-05T12:00:00Z", 3),
            ["2026-12-07T00:00:00Z", "2026-12-07T00:15:00Z", "2026-12-07T00:30:00Z"]
        );
        // Strictly after.
        assert_eq!(times(&s, "2026-12-07T00:00:00Z", 1), ["2026-12-07T00:15:00Z"]);
        let s = Schedule::new("30 0 3 * * *", None).unwrap();
        assert_eq!(times(&s, "2026-12-05T03:00:29Z", 1), ["2026-12-05T03:00:30Z"]);
    }

    #[test]
    fn a_leap_day_schedule_finds_its_day() {
        let s = Schedule::new("0 0 29 2 *", None).unwrap();
        assert_eq!(
            times(&s, "2026-12-05T00:00:00Z", 2),
            ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]
        );
        // Never: 31 February.
        let s = Schedule::new("0 0 31 2 *", None).unwrap();
        assert!(s.next_after(ts("2026-01-01T00:00:00Z")).is_none());
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        let s = Schedule::new("0 3 * * *", Some("Europe/Berlin")).unwrap();
        // Winter: UTC+1.
        assert_eq!(times(&s, "2026-12-05T12:00:00Z", 1), ["2026-12-06T02:00:00Z"]);
        // 2026-03-29 02:30 does not exist in Berlin: it fires at 03:30 local.
        let s = Schedule::new("30 2 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            times(&s, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"]
        );
        // 2026-10-25 02:30 happens twice in Berlin: it fires once, the first time.
        assert_eq!(
            times(&s, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
        assert!(Schedule::new("0 3 * * *", Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn missed_fire_times_follow_catchup() {
        let s = Schedule::new("0 * * * *", None).unwrap();
        let (from, to) = (ts("2026-12-05T00:30:00Z"), ts("2026-12-05T04:10:00Z"));
        assert!(s.missed(from, to, Catchup::None, 100).is_empty());
        let last: Vec<String> = s
            .missed(from, to, Catchup::Last, 100)
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(last, ["2026-12-05T04:00:00Z"]);
        let all = s.missed(from, to, Catchup::All, 100);
        assert_eq!(all.len(), 4);
        // A long outage runs at most `limit`, the newest.
        let capped = s.missed(from, to, Catchup::All, 2);
        assert_eq!(capped, all[2..]);
    }
}
