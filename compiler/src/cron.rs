//! Cron expressions as `on schedule` takes them: five fields (minute hour
//! day month weekday), six with seconds first, or a macro (`@daily`).
//! Parsed into sets of the values each field allows; the runtime finds fire
//! times from them in the schedule's time zone.
//!
//! A day matches as Vixie cron decides: when both the day-of-month and the
//! weekday fields are restricted (neither starts with `*`), either may
//! match; otherwise both must.

/// The macros and the fields they stand for.
const MACROS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cron {
    /// Bit `n` set: second `n` (0-59) fires. Only `0` for five fields.
    pub seconds: u64,
    pub minutes: u64,
    pub hours: u32,
    /// Bits 1-31.
    pub days: u32,
    /// Bits 1-12.
    pub months: u16,
    /// Bits 0-6, Sunday = 0 (a written 7 is Sunday too).
    pub weekdays: u8,
    /// Both day fields are restricted: a day matches when either does.
    pub day_or: bool,
}

struct FieldSpec {
    what: &'static str,
    lo: u32,
    hi: u32,
    names: &'static [&'static str],
}

const SECOND: FieldSpec = FieldSpec {
    what: "second",
    lo: 0,
    hi: 59,
    names: &[],
};
const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        what: "minute",
        lo: 0,
        hi: 59,
        names: &[],
    },
    FieldSpec {
        what: "hour",
        lo: 0,
        hi: 23,
        names: &[],
    },
    FieldSpec {
        what: "day of month",
        lo: 1,
        hi: 31,
        names: &[],
    },
    FieldSpec {
        what: "month",
        lo: 1,
        hi: 12,
        names: MONTHS,
    },
    FieldSpec {
        what: "day of week",
        lo: 0,
        hi: 7,
        names: WEEKDAYS,
    },
];

impl Cron {
    pub fn parse(s: &str) -> Result<Cron, String> {
        let s = s.trim();
        let expanded = if s.starts_with('@') {
            match MACROS.iter().find(|(m, _)| *m == s) {
                Some((_, fields)) => *fields,
                None => {
                    let names: Vec<&str> = MACROS.iter().map(|(m, _)| *m).collect();
                    return Err(format!("unknown schedule `{s}`: expected one of {}", names.join(", ")));
                }
            }
        } else {
            s
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let (seconds, rest) = match parts.len() {
            5 => (1, &parts[..]),
            6 => (field(parts[0], &SECOND)?, &parts[1..]),
            n => {
                return Err(format!(
                    "a schedule has 5 fields (minute hour day month weekday), or 6 with seconds first; this one has {n}"
                ))
            }
        };
        let mut sets = [0u64; 5];
        for (i, (part, spec)) in rest.iter().zip(FIELDS.iter()).enumerate() {
            sets[i] = field(part, spec)?;
        }
        // Sunday may be written 7.
        let mut weekdays = sets[4];
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        Ok(Cron {
            seconds,
            minutes: sets[0],
            hours: sets[1] as u32,
            days: sets[2] as u32,
            months: sets[3] as u16,
            weekdays: weekdays as u8,
            day_or: !rest[2].starts_with('*') && !rest[4].starts_with('*'),
        })
    }

    /// Whether a calendar day (month 1-12, day 1-31, weekday 0-6 with
    /// Sunday 0) can fire.
    pub fn day_matches(&self, month: u32, day: u32, weekday: u32) -> bool {
        if self.months & (1 << month) == 0 {
            return false;
        }
        let by_day = self.days & (1 << day) != 0;
        let by_weekday = self.weekdays & (1 << weekday) != 0;
        if self.day_or {
            by_day || by_weekday
        } else {
            by_day && by_weekday
        }
    }

    /// The values set in a field's bits, in order.
    pub fn values(bits: u64) -> impl Iterator<Item = u32> {
        (0..64).filter(move |i| bits & (1u64 << i) != 0)
    }
}

/// One field's set of values, as bits.
fn field(part: &str, spec: &FieldSpec) -> Result<u64, String> {
    let what = spec.what;
    let mut bits = 0u64;
    for item in part.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, st)) => match st.parse::<u32>() {
                Ok(n) if n > 0 => (r, n),
                _ => return Err(format!("`{st}` is not a valid step in the {what} field")),
            },
            None => (item, 1),
        };
        let value = |v: &str| -> Result<u32, String> {
            let lower = v.to_ascii_lowercase();
            if let Some(i) = spec.names.iter().position(|n| *n == lower) {
                return Ok(i as u32 + spec.lo);
            }
            match v.parse::<u32>() {
                Ok(n) if (spec.lo..=spec.hi).contains(&n) => Ok(n),
                _ => Err(format!(
                    "`{v}` is out of range for the {what} field ({}-{})",
                    spec.lo, spec.hi
                )),
            }
        };
        let (a, b) = if range == "*" {
            (spec.lo, spec.hi)
        } else {
            match range.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (value(a)?, value(b)?);
                    if a > b {
                        return Err(format!("range `{range}` in the {what} field goes backwards"));
                    }
                    (a, b)
                }
                // `a/step` runs from `a` to the end of the field.
                None if step > 1 => (value(range)?, spec.hi),
                None => {
                    let v = value(range)?;
                    (v, v)
                }
            }
        };
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_become_sets() {
        let c = Cron::parse("*/15 0-6 * * mon-fri").unwrap();
        assert_eq!(Cron::values(c.minutes).collect::<Vec<_>>(), [0, 15, 30, 45]);
        assert_eq!(c.hours, 0b111_1111);
        assert_eq!(c.weekdays, 0b011_1110);
        assert_eq!(c.seconds, 1);
        assert!(!c.day_or);
        let c = Cron::parse("30 */20 8 1 * 7").unwrap();
        assert_eq!(Cron::values(c.seconds).collect::<Vec<_>>(), [30]);
        assert_eq!(Cron::values(c.minutes).collect::<Vec<_>>(), [0, 20, 40]);
        assert_eq!(c.weekdays, 1, "7 is Sunday");
        assert!(c.day_or);
        assert_eq!(Cron::parse("@daily").unwrap(), Cron::parse("0 0 * * *").unwrap());
        assert_eq!(Cron::parse("0 0 1 JAN,jul *").unwrap().months, (1 << 1) | (1 << 7));
        assert_eq!(
            Cron::values(Cron::parse("5/20 * * * *").unwrap().minutes).collect::<Vec<_>>(),
            [5, 25, 45]
        );
    }

    #[test]
    fn days_match_as_vixie_cron() {
        // The 13th, or any Friday.
        let c = Cron::parse("0 0 13 * 5").unwrap();
        assert!(c.day_matches(1, 13, 2));
        assert!(c.day_matches(1, 10, 5));
        assert!(!c.day_matches(1, 10, 4));
        // Every Friday (the day of month unrestricted).
        let c = Cron::parse("0 0 * * fri").unwrap();
        assert!(!c.day_matches(1, 13, 2));
        assert!(c.day_matches(1, 10, 5));
    }

    #[test]
    fn mistakes_are_named() {
        for (bad, msg) in [
            ("0 25 * * *", "`25` is out of range for the hour field (0-23)"),
            ("* * *", "this one has 3"),
            ("*/0 * * * *", "not a valid step"),
            ("5-1 * * * *", "goes backwards"),
            ("@sometimes", "unknown schedule"),
            ("61 * * * * *", "second field"),
        ] {
            let e = Cron::parse(bad).unwrap_err();
            assert!(e.contains(msg), "{bad}: {e}");
        }
    }
}
