//! The working-day calendar of `policies/calendar.toml`: which days are weekends, the public
//! holidays of each year it covers (the lunar ones as dates), and the city's UTC offset. Legal
//! deadlines (a data-subject request acknowledged within 2 working days, …) are computed here
//! from a `Timestamp`, never from the wall clock. A deadline that would need a year the file
//! does not cover is refused (`CalendarGap`) rather than guessed: the file is extended each
//! year from the government's announcement.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use toml::Spanned;

use super::load::Source;
use super::value::parse_date;
use crate::clock::{Timestamp, civil_from_days, days_from_civil};
use crate::error::PolicyError;

/// Day names as the file spells them, Monday first.
const DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarFile {
    utc_offset_minutes: Spanned<i32>,
    weekend: Spanned<Vec<Spanned<String>>>,
    holidays: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
}

/// A deadline needed a year the calendar does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the working-day calendar has no holidays for {year}")]
pub struct CalendarGap {
    /// The missing year.
    pub year: i64,
}

/// The working-day calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// Weekend days, Monday first.
    weekend: [bool; 7],
    /// Holidays, as days since 1970-01-01 (local dates).
    holidays: BTreeSet<i64>,
    /// Years the file lists (their holidays are known, possibly none).
    years: BTreeSet<i64>,
    /// The city's offset from UTC, minutes (Vietnam: +420, no daylight saving).
    utc_offset_minutes: i32,
}

impl Calendar {
    /// Parses `calendar.toml` (`file` names it in errors, with line and column).
    pub fn parse(file: &str, text: &str) -> Result<Self, PolicyError> {
        let src = Source {
            file: file.to_owned(),
            text,
        };
        let raw: CalendarFile = src.parse()?;
        let offset = *raw.utc_offset_minutes.get_ref();
        if !(-14 * 60..=14 * 60).contains(&offset) {
            return Err(src.err(
                raw.utc_offset_minutes.span(),
                "utc_offset_minutes must be within -840..=840",
            ));
        }
        let mut weekend = [false; 7];
        for day in raw.weekend.get_ref() {
            let i = DAY_NAMES
                .iter()
                .position(|n| n == day.get_ref())
                .ok_or_else(|| {
                    src.err(
                        day.span(),
                        format!("unknown day `{}` (monday … sunday)", day.get_ref()),
                    )
                })?;
            if std::mem::replace(&mut weekend[i], true) {
                return Err(src.err(day.span(), "a weekend day is named twice"));
            }
        }
        if weekend.iter().all(|w| *w) {
            return Err(src.err(raw.weekend.span(), "every day cannot be a weekend day"));
        }
        let (mut holidays, mut years) = (BTreeSet::new(), BTreeSet::new());
        for (year, dates) in &raw.holidays {
            let y: i64 = year
                .parse()
                .ok()
                .filter(|y| (1900..=9999).contains(y) && year.len() == 4)
                .ok_or_else(|| src.err(dates.span(), format!("`{year}` is not a year (YYYY)")))?;
            years.insert(y);
            for d in dates.get_ref() {
                let (dy, m, dd) = parse_date(d.get_ref())
                    .ok_or_else(|| src.err(d.span(), "expected a date YYYY-MM-DD"))?;
                if i64::from(dy) != y {
                    return Err(src.err(d.span(), format!("a date of another year under {y}")));
                }
                if !holidays.insert(days_from_civil(y, m, dd)) {
                    return Err(src.err(d.span(), "a holiday is listed twice"));
                }
            }
        }
        Ok(Self {
            weekend,
            holidays,
            years,
            utc_offset_minutes: offset,
        })
    }

    /// The local day (days since 1970-01-01) of an instant.
    fn local_day(&self, t: Timestamp) -> i64 {
        let local_ms = t
            .as_millis()
            .saturating_add(i64::from(self.utc_offset_minutes) * 60_000);
        local_ms.div_euclid(86_400_000)
    }

    /// The instant a local day ends (its last millisecond).
    fn end_of_local_day(&self, day: i64) -> Timestamp {
        let next_local_ms = day.saturating_add(1).saturating_mul(86_400_000);
        Timestamp::from_millis(next_local_ms - i64::from(self.utc_offset_minutes) * 60_000 - 1)
    }

    /// The years whose holidays the file lists.
    pub fn years(&self) -> impl Iterator<Item = i64> + '_ {
        self.years.iter().copied()
    }

    /// Whether a local day is a working day.
    pub fn is_working_day(&self, day: i64) -> Result<bool, CalendarGap> {
        let (year, _, _) = civil_from_days(day);
        if !self.years.contains(&year) {
            return Err(CalendarGap { year });
        }
        // 1970-01-01 was a Thursday (index 3, Monday first).
        let weekday = usize::try_from((day + 3).rem_euclid(7)).unwrap_or(0);
        Ok(!self.weekend[weekday] && !self.holidays.contains(&day))
    }

    /// The end of the `n`-th working day after the local day of `from` (the day of `from`
    /// itself does not count): "within `n` working days".
    pub fn working_days_after(&self, from: Timestamp, n: u32) -> Result<Timestamp, CalendarGap> {
        let mut day = self.local_day(from);
        let mut left = n;
        while left > 0 {
            day += 1;
            if self.is_working_day(day)? {
                left -= 1;
            }
        }
        Ok(self.end_of_local_day(day))
    }

    /// The end of the local day `n` days after the day of `from`: "within `n` days".
    pub fn days_after(&self, from: Timestamp, n: u32) -> Timestamp {
        self.end_of_local_day(self.local_day(from) + i64::from(n))
    }

    /// "Within `n` days" as a legal period: `days_after`, moved to the end of the next
    /// working day when the last day is a weekend day or a holiday (Civil Code 2015,
    /// Article 148).
    pub fn period_end(&self, from: Timestamp, n: u32) -> Result<Timestamp, CalendarGap> {
        let mut day = self.local_day(from) + i64::from(n);
        while !self.is_working_day(day)? {
            day += 1;
        }
        Ok(self.end_of_local_day(day))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
utc_offset_minutes = 420
weekend = ["saturday", "sunday"]

[holidays]
2026 = ["2026-01-01", "2026-02-16", "2026-02-17", "2026-02-18", "2026-02-19", "2026-02-20",
        "2026-04-27", "2026-04-30", "2026-05-01", "2026-09-01", "2026-09-02"]
"#;

    /// Local (UTC+7) wall time to an instant.
    fn local(y: i64, m: u32, d: u32, h: i64) -> Timestamp {
        Timestamp::from_millis((days_from_civil(y, m, d) * 24 + h - 7) * 3_600_000)
    }

    #[test]
    fn working_days_skip_weekends_and_holidays_in_local_time() {
        let c = Calendar::parse("calendar.toml", FILE).unwrap();
        // Friday 2026-02-13 at 10:00: the next working days are Monday 23 and Tuesday 24
        // (the weekend, then the Tết holidays 16-20, then the weekend again).
        let due = c.working_days_after(local(2026, 2, 13, 10), 2).unwrap();
        assert_eq!(
            due,
            Timestamp::from_millis(local(2026, 2, 25, 0).as_millis() - 1)
        );
        assert_eq!(
            due.to_string(),
            "2026-02-24T16:59:59.999Z",
            "23:59:59.999 in Hanoi"
        );
        // 23:30 local on a Wednesday is still that Wednesday (UTC says Wednesday 16:30).
        let late = c.working_days_after(local(2026, 3, 4, 23), 1).unwrap();
        assert_eq!(
            late,
            Timestamp::from_millis(local(2026, 3, 6, 0).as_millis() - 1)
        );
        // Calendar days count every day.
        assert_eq!(
            c.days_after(local(2026, 3, 4, 9), 15),
            Timestamp::from_millis(local(2026, 3, 20, 0).as_millis() - 1)
        );
        assert!(!c.is_working_day(days_from_civil(2026, 4, 30)).unwrap());
        assert!(c.is_working_day(days_from_civil(2026, 4, 29)).unwrap());
    }

    #[test]
    fn a_period_ending_on_a_day_off_ends_on_the_next_working_day() {
        let c = Calendar::parse("calendar.toml", FILE).unwrap();
        // 15 days after Monday 2026-04-13 is Tuesday 28: a working day, kept.
        assert_eq!(
            c.period_end(local(2026, 4, 13, 9), 15).unwrap(),
            Timestamp::from_millis(local(2026, 4, 29, 0).as_millis() - 1)
        );
        // 15 days after Wednesday 15 is Thursday 30 April (a holiday), then 1 May (a
        // holiday), then the weekend: the period ends on Monday 4 May.
        assert_eq!(
            c.period_end(local(2026, 4, 15, 9), 15).unwrap(),
            Timestamp::from_millis(local(2026, 5, 5, 0).as_millis() - 1)
        );
    }

    #[test]
    fn a_deadline_in_a_year_the_file_does_not_list_is_refused() {
        let c = Calendar::parse("calendar.toml", FILE).unwrap();
        assert_eq!(
            c.working_days_after(local(2026, 12, 30, 9), 5),
            Err(CalendarGap { year: 2027 })
        );
    }

    #[test]
    fn bad_files_are_refused_with_their_line() {
        for (text, line, what) in [
            (
                "utc_offset_minutes = 420\nweekend = [\"saturday\", \"funday\"]\n[holidays]\n",
                2,
                "unknown day",
            ),
            (
                "utc_offset_minutes = 420\nweekend = [\"sunday\"]\n[holidays]\n2026 = [\"2026-02-30\"]\n",
                4,
                "expected a date",
            ),
            (
                "utc_offset_minutes = 420\nweekend = [\"sunday\"]\n[holidays]\n2026 = [\"2027-01-01\"]\n",
                4,
                "another year",
            ),
            (
                "utc_offset_minutes = 420\nweekend = [\"sunday\"]\n[holidays]\n2026 = [\"2026-01-01\", \"2026-01-01\"]\n",
                4,
                "twice",
            ),
            (
                "utc_offset_minutes = 9999\nweekend = []\n[holidays]\n",
                1,
                "utc_offset_minutes",
            ),
            (
                "utc_offset_minutes = 420\nweekend = []\nholiday = 1\n[holidays]\n",
                3,
                "unknown field",
            ),
        ] {
            let e = Calendar::parse("calendar.toml", text).unwrap_err();
            assert_eq!((e.file.as_str(), e.line), ("calendar.toml", line), "{e}");
            assert!(e.message.contains(what), "{e}");
        }
    }

    #[test]
    fn the_repositorys_calendar_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/calendar.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let c = Calendar::parse("calendar.toml", &text).unwrap();
        assert!(c.years.contains(&2026));
        assert!(!c.is_working_day(days_from_civil(2026, 9, 2)).unwrap());
    }
}
