//! Timer schedules in systemd's calendar-event syntax (systemd.time(7)), checked before
//! anything changes. The check accepts a subset of what systemd accepts, so that what
//! passes here always loads: the shorthands (`daily`, `hourly`, …), and
//! `[WEEKDAYS] [DATE] [TIME] [UTC]` whose parts are `*`, values, ranges `a..b`, lists
//! `a,b` and repetitions `a/n`. The lab runs every accepted example through
//! `systemd-analyze calendar`.

/// Longest schedule: a calendar event is one line.
const MAX_SCHEDULE: usize = 256;

const SHORTHANDS: &[&str] = &[
    "minutely",
    "hourly",
    "daily",
    "monthly",
    "weekly",
    "yearly",
    "annually",
    "quarterly",
    "semiannually",
];

const WEEKDAYS: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

/// Checks a schedule; the reason it is refused.
pub fn schedule(s: &str) -> Result<(), String> {
    let bad = |why: String| {
        Err(format!(
            "{s:?} is not a schedule this node accepts: {why} (e.g. \"daily\", \"*-*-* 02:30:00\", \"Mon..Fri 09:00\")"
        ))
    };
    if s.len() > MAX_SCHEDULE {
        return bad(format!("longer than {MAX_SCHEDULE} bytes"));
    }
    if s.chars().any(|c| c.is_control()) {
        return bad("it holds a control character".into());
    }
    if SHORTHANDS.contains(&s.to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    let s = s.strip_suffix(" UTC").unwrap_or(s);
    if s.is_empty() {
        return bad("it is empty".into());
    }
    let parts: Vec<&str> = s.split(' ').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return bad("its parts are separated by more than one space".into());
    }
    let mut parts = parts.into_iter().peekable();
    let mut any = false;
    if let Some(p) = parts.next_if(|p| p.starts_with(|c: char| c.is_ascii_alphabetic())) {
        weekdays(p).or_else(bad)?;
        any = true;
    }
    if let Some(p) = parts.next_if(|p| p.contains('-')) {
        date(p).or_else(bad)?;
        any = true;
    }
    if let Some(p) = parts.next_if(|p| p.contains(':')) {
        time(p).or_else(bad)?;
        any = true;
    }
    if let Some(rest) = parts.next() {
        return bad(format!(
            "{rest:?} is not a weekday, a date or a time in its place"
        ));
    }
    if !any {
        return bad("it names no time".into());
    }
    Ok(())
}

fn weekdays(p: &str) -> Result<(), String> {
    let day = |d: &str| {
        let d = d.to_ascii_lowercase();
        WEEKDAYS
            .iter()
            .position(|(short, long)| d == *short || d == *long)
            .ok_or_else(|| format!("{d:?} is not a weekday"))
    };
    for item in p.split(',') {
        match item.split_once("..") {
            Some((a, b)) => {
                if day(a)? >= day(b)? {
                    return Err(format!("the weekday range {item} does not run forwards"));
                }
            }
            None => {
                day(item)?;
            }
        }
    }
    Ok(())
}

/// A field's range and name.
type Field = (u32, u32, &'static str);

const YEAR: Field = (1970, 2199, "year");
const MONTH: Field = (1, 12, "month");
const DAY: Field = (1, 31, "day");
const HOUR: Field = (0, 23, "hour");
const MINUTE: Field = (0, 59, "minute");
const SECOND: Field = (0, 59, "second");

fn date(p: &str) -> Result<(), String> {
    fields(
        p,
        '-',
        &[&[MONTH, DAY], &[YEAR, MONTH, DAY]],
        "a date (YYYY-MM-DD or MM-DD)",
    )
}

fn time(p: &str) -> Result<(), String> {
    fields(
        p,
        ':',
        &[&[HOUR, MINUTE], &[HOUR, MINUTE, SECOND]],
        "a time (HH:MM or HH:MM:SS)",
    )
}

/// `sep`-separated components, as many as one of `shapes` has, each within its field.
fn fields(p: &str, sep: char, shapes: &[&[Field]], kind: &str) -> Result<(), String> {
    let parts: Vec<&str> = p.split(sep).collect();
    let shape = shapes
        .iter()
        .find(|s| s.len() == parts.len())
        .ok_or_else(|| format!("{p:?} is not {kind}"))?;
    parts
        .iter()
        .zip(shape.iter())
        .try_for_each(|(part, (lo, hi, what))| component(part, *lo, *hi, what))
}

/// `*`, or a comma list of `N` or `N..M` (N < M), each with an optional `/R`
/// repetition that stays within the field (and the range), as systemd requires.
fn component(p: &str, lo: u32, hi: u32, what: &str) -> Result<(), String> {
    let value = |v: &str| -> Result<u32, String> {
        let n: u32 = (!v.is_empty() && v.len() <= 4 && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse().ok())
            .flatten()
            .ok_or_else(|| format!("{v:?} is not a {what}"))?;
        (lo..=hi)
            .contains(&n)
            .then_some(n)
            .ok_or_else(|| format!("{what} {n} is out of range ({lo} to {hi})"))
    };
    if p == "*" {
        return Ok(());
    }
    for item in p.split(',') {
        let (base, repeat) = match item.split_once('/') {
            Some((base, r)) => (base, Some(r)),
            None => (item, None),
        };
        let (start, end) = match base.split_once("..") {
            Some((a, b)) => {
                let (a, b) = (value(a)?, value(b)?);
                if a >= b {
                    return Err(format!("the {what} range {a}..{b} does not run forwards"));
                }
                (a, b)
            }
            None => (value(base)?, hi),
        };
        if let Some(r) = repeat {
            let fits = r
                .parse::<u32>()
                .is_ok_and(|n| n >= 1 && n <= hi - lo && start + n <= end);
            if !fits {
                return Err(format!(
                    "{r:?} is not a repetition of {what}s that fits {item}"
                ));
            }
        }
    }
    Ok(())
}

/// Schedules of every form this check accepts; the lab has systemd load each one.
pub const EXAMPLES: &[&str] = &[
    "daily",
    "Hourly",
    "weekly",
    "*-*-* 02:30:00",
    "*-*-* 02:30",
    "Mon..Fri 09:00",
    "Sat,Sun *-*-* 10:00:00",
    "*-*-1 00:00:00",
    "2030-01-01 00:00:00 UTC",
    "*:0/15",
    "*:*:0/5",
    "*-*-* *:*:*",
    "12-25 08:00",
    "Monday *-*-* 23:59:59",
    "*-1,4,7,10-1 00:00",
    "*-*-* 08..18:00",
];

#[cfg(test)]
mod tests {
    use super::{EXAMPLES, schedule};

    #[test]
    fn accepts_every_example() {
        for s in EXAMPLES {
            assert_eq!(schedule(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn refuses_with_the_reason() {
        for (s, why) in [
            ("", "empty"),
            ("nightly", "not a weekday"),
            ("*-*-* 25:00", "hour 25 is out of range"),
            ("*-13-01", "month 13 is out of range"),
            ("*-*-* 10:61", "minute 61 is out of range"),
            ("Mon..Funday 10:00", "not a weekday"),
            (
                "*-*-* 10:00 Europe/Berlin",
                "not a weekday, a date or a time",
            ),
            ("*-*-* 10..08:00", "does not run forwards"),
            ("*-*-* 08..08:00", "does not run forwards"),
            ("Fri..Mon 10:00", "does not run forwards"),
            ("*:0/0", "not a repetition"),
            ("*:*/5", "\"*\" is not a minute"),
            ("*:30/45", "not a repetition"),
            ("*:0..10/20", "not a repetition"),
            ("*-*-1/31", "not a repetition"),
            ("\ndaily", "control character"),
            ("Mon\n09:00", "control character"),
            ("*-*-* 10:00  UTC", "more than one space"),
            ("1-2-3-4", "not a date"),
            ("10:00:00:00", "not a time"),
            ("*-*-* 1:2:x", "\"x\" is not a second"),
        ] {
            let err = schedule(s).unwrap_err();
            assert!(err.contains(why), "{s:?}: {err}");
        }
        assert!(schedule(&"*".repeat(300)).is_err());
    }
}
