//! Business-hours calendars for SLA clocks: a weekly schedule in a time zone, with holidays.
//!
//! `policy.toml`:
//!
//! ```toml
//! [calendar.office]
//! timezone = "Europe/Berlin"
//! hours = { mon = "08:00-18:00", tue = "08:00-18:00", wed = "08:00-18:00",
//!           thu = "08:00-18:00", fri = "08:00-16:00" }   # days left out are closed
//! holidays = ["2026-12-24", "2026-12-25", "2026-12-26"]
//! ```
//!
//! The time zone database is compiled in (jiff's bundled tzdb), so the engine stays free of
//! I/O; daylight-saving changes are honoured (an 08:00-18:00 day is 10 hours of local time).

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use serde::Deserialize;

use crate::time::Millis;

/// How far ahead (in days) a due time is searched before giving up.
const HORIZON_DAYS: usize = 3 * 366;

/// A calendar as written in the policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// Day (`mon` .. `sun`) -> `"HH:MM-HH:MM"`, several ranges separated by commas.
    #[serde(default)]
    pub hours: BTreeMap<String, String>,
    /// Closed all day (`YYYY-MM-DD`, local dates).
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// A validated calendar.
#[derive(Debug, Clone)]
pub struct Calendar {
    tz: TimeZone,
    /// Open ranges per weekday (Monday first), minutes after local midnight, sorted.
    week: [Vec<(u16, u16)>; 7],
    holidays: BTreeSet<Date>,
}

fn weekday_index(day: &str) -> Option<usize> {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .position(|d| *d == day)
}

fn parse_clock(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

impl Calendar {
    /// Validate a calendar; the message names it.
    pub fn from_config(name: &str, c: &CalendarConfig) -> Result<Calendar, String> {
        let tz = TimeZone::get(&c.timezone).map_err(|_| {
            format!(
                "calendar {name:?}: unknown time zone {:?} (use an IANA name like Europe/Berlin)",
                c.timezone
            )
        })?;
        let mut week: [Vec<(u16, u16)>; 7] = Default::default();
        for (day, ranges) in &c.hours {
            let i = weekday_index(day).ok_or_else(|| {
                format!("calendar {name:?}: {day:?} is not a day (use mon, tue, wed, thu, fri, sat, sun)")
            })?;
            for range in ranges.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                let parsed = range
                    .split_once('-')
                    .and_then(|(a, b)| Some((parse_clock(a)?, parse_clock(b)?)));
                match parsed {
                    Some((a, b)) if a < b => week[i].push((a, b)),
                    _ => {
                        return Err(format!(
                            "calendar {name:?}: {day} = {range:?} is not a range like 08:00-18:00"
                        ));
                    }
                }
            }
            week[i].sort_unstable();
            if week[i].windows(2).any(|w| w[0].1 > w[1].0) {
                return Err(format!("calendar {name:?}: the ranges of {day} overlap"));
            }
        }
        if week.iter().all(Vec::is_empty) {
            return Err(format!("calendar {name:?}: no business hours on any day"));
        }
        let mut holidays = BTreeSet::new();
        for h in &c.holidays {
            let date: Date = h.parse().map_err(|_| {
                format!("calendar {name:?}: holiday {h:?} is not a date like 2026-12-25")
            })?;
            holidays.insert(date);
        }
        Ok(Calendar { tz, week, holidays })
    }

    /// The open intervals (epoch ms) of the local day `date`.
    fn open_on(&self, date: Date) -> Vec<(Millis, Millis)> {
        if self.holidays.contains(&date) {
            return Vec::new();
        }
        let day = match date.weekday() {
            Weekday::Monday => 0,
            Weekday::Tuesday => 1,
            Weekday::Wednesday => 2,
            Weekday::Thursday => 3,
            Weekday::Friday => 4,
            Weekday::Saturday => 5,
            Weekday::Sunday => 6,
        };
        self.week[day]
            .iter()
            .filter_map(|&(a, b)| Some((self.instant(date, a)?, self.instant(date, b)?)))
            .filter(|(a, b)| a < b)
            .collect()
    }

    /// Epoch ms of local `minutes` after midnight of `date` (24:00 is the next midnight).
    fn instant(&self, date: Date, minutes: u16) -> Option<Millis> {
        let (date, minutes) = if minutes >= 24 * 60 {
            (date.tomorrow().ok()?, minutes - 24 * 60)
        } else {
            (date, minutes)
        };
        let hour = i8::try_from(minutes / 60).ok()?;
        let minute = i8::try_from(minutes % 60).ok()?;
        let dt = date.at(hour, minute, 0, 0);
        let zoned = self.tz.to_ambiguous_zoned(dt).compatible().ok()?;
        Some(zoned.timestamp().as_millisecond())
    }

    fn local_date(&self, at: Millis) -> Option<Date> {
        let ts = Timestamp::from_millisecond(at).ok()?;
        Some(ts.to_zoned(self.tz.clone()).date())
    }

    /// Business time in `[from, to)`, in ms.
    pub fn business_ms(&self, from: Millis, to: Millis) -> Millis {
        if to <= from {
            return 0;
        }
        let Some(mut date) = self.local_date(from) else {
            return 0;
        };
        let mut total = 0;
        for _ in 0..=HORIZON_DAYS {
            for (a, b) in self.open_on(date) {
                let (a, b) = (a.max(from), b.min(to));
                if a < b {
                    total += b - a;
                }
            }
            match (self.instant(date, 24 * 60), date.tomorrow()) {
                (Some(end), Ok(next)) if end < to => date = next,
                _ => break,
            }
        }
        total
    }

    /// The moment `budget` ms of business time have passed since `from` (None when the
    /// calendar has no such moment within three years).
    pub fn due(&self, from: Millis, budget: Millis) -> Option<Millis> {
        let mut left = budget.max(0);
        let mut date = self.local_date(from)?;
        for _ in 0..HORIZON_DAYS {
            for (a, b) in self.open_on(date) {
                let a = a.max(from);
                if a >= b {
                    continue;
                }
                if left <= b - a {
                    return Some(a + left);
                }
                left -= b - a;
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn office() -> Calendar {
        let c: CalendarConfig = toml::from_str(
            r#"
            timezone = "Europe/Berlin"
            hours = { mon = "08:00-18:00", tue = "08:00-18:00", wed = "08:00-18:00", thu = "08:00-18:00", fri = "08:00-12:00,13:00-16:00" }
            holidays = ["2026-12-25"]
            "#,
        )
        .expect("toml");
        Calendar::from_config("office", &c).expect("valid")
    }

    /// Epoch ms of a local Berlin time.
    fn berlin(s: &str) -> Millis {
        let dt: jiff::civil::DateTime = s.parse().expect("datetime");
        TimeZone::get("Europe/Berlin")
            .expect("tz")
            .to_ambiguous_zoned(dt)
            .compatible()
            .expect("zoned")
            .timestamp()
            .as_millisecond()
    }

    const H: Millis = 3_600_000;

    #[test]
    fn due_times_skip_nights_weekends_and_holidays() {
        let cal = office();
        // (from, budget, expected due), local Berlin times. 2026-11-27 is a Friday.
        let table: &[(&str, Millis, &str)] = &[
            ("2026-11-26T10:00", 4 * H, "2026-11-26T14:00"),
            ("2026-11-26T16:00", 4 * H, "2026-11-27T10:00"),
            ("2026-11-27T11:00", 2 * H, "2026-11-27T14:00"), // lunch break closed
            ("2026-11-27T15:00", 2 * H, "2026-11-30T09:00"), // over the weekend
            ("2026-11-28T12:00", H, "2026-11-30T09:00"),     // starts on a Saturday
            ("2026-12-24T17:00", 2 * H, "2026-12-28T09:00"), // Christmas Day is a holiday; the 26th a Saturday
            ("2026-11-26T07:00", 0, "2026-11-26T08:00"), // before opening: the clock starts at 08:00
        ];
        for (from, budget, want) in table {
            assert_eq!(
                cal.due(berlin(from), *budget),
                Some(berlin(want)),
                "from {from} + {budget} ms"
            );
        }
    }

    #[test]
    fn business_time_between_two_moments() {
        let cal = office();
        let table: &[(&str, &str, Millis)] = &[
            ("2026-11-26T10:00", "2026-11-26T12:30", 2 * H + H / 2),
            ("2026-11-26T17:00", "2026-11-27T09:00", 2 * H),
            ("2026-11-27T08:00", "2026-11-30T08:00", 7 * H),
            ("2026-11-28T00:00", "2026-11-29T23:59", 0),
            ("2026-11-26T12:00", "2026-11-26T11:00", 0),
        ];
        for (a, b, want) in table {
            assert_eq!(cal.business_ms(berlin(a), berlin(b)), *want, "{a} .. {b}");
        }
    }

    #[test]
    fn a_business_day_across_a_daylight_saving_change_is_its_local_hours() {
        let c: CalendarConfig = toml::from_str(
            r#"
            timezone = "Europe/Berlin"
            hours = { sun = "00:00-24:00" }
            "#,
        )
        .expect("toml");
        let cal = Calendar::from_config("dst", &c).expect("valid");
        // 2026-03-29: clocks go forward, the Sunday has 23 hours; 2026-10-25 has 25.
        let spring = berlin("2026-03-29T00:00");
        assert_eq!(cal.business_ms(spring, spring + 48 * H), 23 * H);
        let autumn = berlin("2026-10-25T00:00");
        assert_eq!(cal.business_ms(autumn, autumn + 48 * H), 25 * H);
    }

    #[test]
    fn refuses_bad_calendars() {
        for text in [
            "timezone = \"Mars/Olympus\"\nhours = { mon = \"08:00-18:00\" }",
            "timezone = \"UTC\"\nhours = { monday = \"08:00-18:00\" }",
            "timezone = \"UTC\"\nhours = { mon = \"18:00-08:00\" }",
            "timezone = \"UTC\"\nhours = { mon = \"8-18\" }",
            "timezone = \"UTC\"\nhours = { mon = \"08:00-12:00,11:00-13:00\" }",
            "timezone = \"UTC\"",
            "timezone = \"UTC\"\nhours = { mon = \"08:00-18:00\" }\nholidays = [\"Christmas\"]",
        ] {
            let c: CalendarConfig = toml::from_str(text).expect("toml shape");
            let err = Calendar::from_config("x", &c).expect_err(text);
            assert!(
                err.starts_with("calendar \"x\": ") && !err.contains('\n'),
                "{err}"
            );
        }
    }
}
