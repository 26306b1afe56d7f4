//! The anomaly rules' thresholds (`policies/anomalies.toml`), parsed strictly (unknown keys
//! and values out of range are errors with file and line).

use serde::Deserialize;

use super::load::Source;
use crate::error::PolicyError;

/// A count of distinct things within a sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    /// How many (at least) make an anomaly.
    pub count: u32,
    /// The window, minutes.
    pub window_minutes: u32,
}

/// Working hours, local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    /// First working hour (0-23).
    pub start_hour: u32,
    /// First hour after work (1-24).
    pub end_hour: u32,
    /// Whether weekend releases count as outside working hours.
    pub weekends: bool,
}

/// Every rule's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// One official, many distinct citizens.
    pub official_many_citizens: Threshold,
    /// Releases outside working hours.
    pub off_hours: Hours,
    /// Refusals per agency.
    pub denials: Threshold,
    /// Break-glass grants per agency.
    pub break_glass: Threshold,
    /// Distinct agencies asking for one citizen.
    pub citizen_many_agencies: Threshold,
    /// Failed code checks per citizen.
    pub verify_failures: Threshold,
}

impl Default for Thresholds {
    fn default() -> Self {
        let t = |count, window_minutes| Threshold {
            count,
            window_minutes,
        };
        Self {
            official_many_citizens: t(25, 10),
            off_hours: Hours {
                start_hour: 7,
                end_hour: 19,
                weekends: true,
            },
            denials: t(10, 10),
            break_glass: t(3, 60),
            citizen_many_agencies: t(3, 60),
            verify_failures: t(5, 10),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    official_many_citizens: RawCitizens,
    off_hours: RawHours,
    denials: RawCount,
    break_glass: RawCount,
    citizen_many_agencies: RawAgencies,
    verify_failures: RawCount,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCount {
    count: toml::Spanned<u32>,
    window_minutes: toml::Spanned<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCitizens {
    citizens: toml::Spanned<u32>,
    window_minutes: toml::Spanned<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgencies {
    agencies: toml::Spanned<u32>,
    window_minutes: toml::Spanned<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHours {
    start_hour: toml::Spanned<u32>,
    end_hour: toml::Spanned<u32>,
    weekends: bool,
}

impl Thresholds {
    /// Parses `anomalies.toml` (`file` names it in errors).
    pub fn parse(file: &str, text: &str) -> Result<Self, PolicyError> {
        let src = Source {
            file: file.to_owned(),
            text,
        };
        let f: File = src.parse()?;
        let threshold = |count: &toml::Spanned<u32>, minutes: &toml::Spanned<u32>| {
            if *count.get_ref() < 1 {
                return Err(src.err(count.span(), "must be at least 1"));
            }
            if !(1..=10_080).contains(minutes.get_ref()) {
                return Err(src.err(
                    minutes.span(),
                    "window_minutes must be between 1 and 10080 (a week)",
                ));
            }
            Ok(Threshold {
                count: *count.get_ref(),
                window_minutes: *minutes.get_ref(),
            })
        };
        let h = &f.off_hours;
        if *h.start_hour.get_ref() > 23 {
            return Err(src.err(h.start_hour.span(), "start_hour must be between 0 and 23"));
        }
        if !(h.start_hour.get_ref() + 1..=24).contains(h.end_hour.get_ref()) {
            return Err(src.err(
                h.end_hour.span(),
                "end_hour must be after start_hour, at most 24",
            ));
        }
        Ok(Self {
            official_many_citizens: threshold(
                &f.official_many_citizens.citizens,
                &f.official_many_citizens.window_minutes,
            )?,
            off_hours: Hours {
                start_hour: *h.start_hour.get_ref(),
                end_hour: *h.end_hour.get_ref(),
                weekends: h.weekends,
            },
            denials: threshold(&f.denials.count, &f.denials.window_minutes)?,
            break_glass: threshold(&f.break_glass.count, &f.break_glass.window_minutes)?,
            citizen_many_agencies: threshold(
                &f.citizen_many_agencies.agencies,
                &f.citizen_many_agencies.window_minutes,
            )?,
            verify_failures: threshold(
                &f.verify_failures.count,
                &f.verify_failures.window_minutes,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repositorys_file_loads_and_bad_values_name_their_line() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/anomalies.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let t = Thresholds::parse("anomalies.toml", &text).unwrap();
        assert_eq!(t.denials.count, 10);
        let bad = text.replace("end_hour = 19", "end_hour = 5");
        let e = Thresholds::parse("anomalies.toml", &bad).unwrap_err();
        assert!(e.message.contains("end_hour") && e.line > 1, "{e}");
        let bad = text.replace("[denials]", "[denials]\nbogus = 1");
        assert!(
            Thresholds::parse("anomalies.toml", &bad)
                .unwrap_err()
                .message
                .contains("unknown field")
        );
    }
}
