//! systemd calendar expressions (`OnCalendar=`, systemd.time(7)), checked on the controller:
//! `[WEEKDAYS] [DATE] [TIME] [TIMEZONE]` or a shorthand (`daily`, `weekly`, ...).
//!
//! The grammar accepted is the one systemd documents, minus rarely used corners (`@epoch`);
//! anything else is refused with the rule, so a typo is a located inventory error instead
//! of a timer that never fires.

const SHORTHANDS: &[&str] = &[
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "quarterly",
    "semiannually",
    "yearly",
    "annually",
];

const WEEKDAYS: &[(&str, &str)] = &[
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

/// Check a systemd calendar expression.
pub(crate) fn calendar(s: &str) -> Result<(), String> {
    parse(s).map_err(|why| {
        format!(
            "{s:?} is not a systemd calendar expression ({why}); write e.g. `daily`, `*-*-* 02:00:00` or `Mon..Fri 03:30`"
        )
    })
}

fn parse(s: &str) -> Result<(), String> {
    if s.chars().any(|c| c.is_control()) {
        return Err("it contains a control character".into());
    }
    let words: Vec<&str> = s.split_whitespace().collect();
    if words.is_empty() {
        return Err("it is empty".into());
    }
    if words.len() == 1 && SHORTHANDS.contains(&words[0].to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    let mut rest = &words[..];
    let mut any = false;
    if let Some(w) = rest.first()
        && w.starts_with(|c: char| c.is_ascii_alphabetic())
        && weekdays(w).is_ok()
    {
        rest = &rest[1..];
        any = true;
    }
    if let Some(w) = rest.first()
        && !w.contains(':')
        && !w.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        date(w)?;
        rest = &rest[1..];
        any = true;
    }
    if let Some(w) = rest.first()
        && w.contains(':')
    {
        time(w)?;
        rest = &rest[1..];
        any = true;
    }
    if let Some(w) = rest.first()
        && any
        && timezone_word(w)
    {
        rest = &rest[1..];
    }
    if let Some(w) = rest.first() {
        return Err(format!(
            "`{w}` is not a weekday, date, time or time zone here"
        ));
    }
    if !any {
        return Err("no weekday, date or time".into());
    }
    Ok(())
}

fn timezone_word(w: &str) -> bool {
    w == "UTC" || crate::values::timezone(w).is_ok() && w.contains('/')
}

fn weekday(w: &str) -> Result<(), String> {
    let l = w.to_ascii_lowercase();
    if WEEKDAYS
        .iter()
        .any(|(short, long)| l == *short || l == *long)
    {
        Ok(())
    } else {
        Err(format!("`{w}` is not a weekday"))
    }
}

fn weekdays(w: &str) -> Result<(), String> {
    for item in w.split(',') {
        match item.split_once("..") {
            Some((a, b)) => {
                weekday(a)?;
                weekday(b)?;
            }
            None => weekday(item)?,
        }
    }
    Ok(())
}

/// `[YEAR-]MONTH-DAY`, each component a list of values, ranges and repetitions; `~` before
/// the day counts from the end of the month.
fn date(w: &str) -> Result<(), String> {
    let (head, day) = match w.rsplit_once('~') {
        Some((h, d)) => (h, d),
        None => match w.rsplit_once('-') {
            Some((h, d)) => (h, d),
            None => {
                return Err(format!(
                    "`{w}` is not a date (`*-*-*`, `2027-01-15`, `*-01-01`)"
                ));
            }
        },
    };
    let parts: Vec<&str> = head.split('-').collect();
    let (year, month) = match parts.as_slice() {
        [m] => (None, *m),
        [y, m] => (Some(*y), *m),
        _ => return Err(format!("`{w}` is not a date")),
    };
    if let Some(y) = year {
        component(y, 1970, 2199, "year")?;
    }
    component(month, 1, 12, "month")?;
    component(day, 1, 31, "day")?;
    Ok(())
}

/// `HOUR:MINUTE[:SECOND]`.
fn time(w: &str) -> Result<(), String> {
    let parts: Vec<&str> = w.split(':').collect();
    match parts.as_slice() {
        [h, m] => {
            component(h, 0, 23, "hour")?;
            component(m, 0, 59, "minute")
        }
        [h, m, s] => {
            component(h, 0, 23, "hour")?;
            component(m, 0, 59, "minute")?;
            seconds(s)
        }
        _ => Err(format!(
            "`{w}` is not a time (`02:00`, `02:00:00`, `*:0/15`)"
        )),
    }
}

fn seconds(s: &str) -> Result<(), String> {
    // Seconds may have a fraction: `05.5`.
    for item in s.split(',') {
        let (base, repeat) = match item.split_once('/') {
            Some((b, r)) => (b, Some(r)),
            None => (item, None),
        };
        let whole = base.split_once('.').map_or(base, |(w, f)| {
            if f.is_empty() || !f.chars().all(|c| c.is_ascii_digit()) {
                ""
            } else {
                w
            }
        });
        let rebuilt = match repeat {
            Some(r) => format!("{whole}/{r}"),
            None => whole.to_string(),
        };
        component(&rebuilt, 0, 60, "second")?;
    }
    Ok(())
}

/// A list (`,`) of `*`, `N`, `N..M`, each optionally `/STEP`.
fn component(s: &str, min: u32, max: u32, what: &str) -> Result<(), String> {
    let number = |n: &str| -> Result<u32, String> {
        if n.is_empty() || n.len() > 4 || !n.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("`{s}` is not a {what}"));
        }
        let v: u32 = n.parse().map_err(|_| format!("`{s}` is not a {what}"))?;
        if v < min || v > max {
            return Err(format!("{what} {v} is out of range {min}-{max}"));
        }
        Ok(v)
    };
    if s.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    for item in s.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((b, st)) => (b, Some(st)),
            None => (item, None),
        };
        if let Some(st) = step
            && (st.is_empty()
                || !st.chars().all(|c| c.is_ascii_digit())
                || st.len() > 4
                || st.parse::<u32>().is_ok_and(|n| n == 0))
        {
            return Err(format!(
                "`{item}`: the repetition must be a positive number"
            ));
        }
        if base == "*" {
            continue;
        }
        match base.split_once("..") {
            Some((a, b)) => {
                if number(a)? > number(b)? {
                    return Err(format!("`{base}` is an empty range"));
                }
            }
            None => {
                number(base)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_systemd_documents() {
        for s in [
            "daily",
            "weekly",
            "*-*-* 02:00:00",
            "*-*-* 03,15:00:00",
            "Mon..Fri 03:30",
            "Sat,Sun *-*-* 04:00:00",
            "2027-01-15 12:00",
            "*-01-01",
            "*-*~01 23:00",
            "*:0/15",
            "*-*-* *:00:00",
            "Mon *-*-* 02:00:00 UTC",
            "*-*-* 02:00:00 Asia/Shanghai",
            "*-*-1/2 00:00:00.5",
        ] {
            assert_eq!(calendar(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn refuses_prose_and_out_of_range_values() {
        for s in [
            "every tuesday at noon",
            "",
            "*-*-* 25:00:00",
            "*-13-01",
            "*-*-* 02:60",
            "Funday 02:00",
            "*-*-* 02:00:00\nOnCalendar=minutely",
            "*-*-* 02:00:00; rm -rf /",
            "*:0/0",
            "02:00 02:00",
            "%h",
        ] {
            assert!(calendar(s).is_err(), "{s:?} accepted");
        }
    }
}
