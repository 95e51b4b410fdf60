//! `datetime("1/2/2006, 3:04:05.000 PM")`: the Go layout KFL uses, to epoch
//! milliseconds (UTC).

/// The layout, as shown in error messages.
pub(crate) const LAYOUT: &str = "1/2/2006, 3:04:05.000 PM";

/// Parses `M/D/YYYY, h:mm:ss[.fff] AM|PM` (month and day with one or two
/// digits, a four-digit year, a 12-hour clock with one or two digits, minutes
/// and seconds with two, an optional fraction of one to nine digits truncated
/// to milliseconds, `AM`/`PM` in any case) as UTC, to epoch milliseconds.
pub(crate) fn parse_datetime(text: &str) -> Result<i64, String> {
    let bad = |what: &str| {
        format!("invalid datetime {text:?}: {what} (expected the layout \"{LAYOUT}\")")
    };
    let mut c = Cursor {
        s: text.as_bytes(),
        i: 0,
    };
    let month = c.digits(1, 2).ok_or_else(|| bad("expected the month"))?;
    c.expect(b'/')
        .ok_or_else(|| bad("expected `/` after the month"))?;
    let day = c.digits(1, 2).ok_or_else(|| bad("expected the day"))?;
    c.expect(b'/')
        .ok_or_else(|| bad("expected `/` after the day"))?;
    let year = c
        .digits(4, 4)
        .ok_or_else(|| bad("expected a four-digit year"))?;
    c.expect(b',')
        .ok_or_else(|| bad("expected `,` after the year"))?;
    c.spaces();
    let hour = c.digits(1, 2).ok_or_else(|| bad("expected the hour"))?;
    c.expect(b':')
        .ok_or_else(|| bad("expected `:` after the hour"))?;
    let minute = c
        .digits(2, 2)
        .ok_or_else(|| bad("expected two-digit minutes"))?;
    c.expect(b':')
        .ok_or_else(|| bad("expected `:` after the minutes"))?;
    let second = c
        .digits(2, 2)
        .ok_or_else(|| bad("expected two-digit seconds"))?;
    let mut millis = 0;
    if c.expect(b'.').is_some() {
        let start = c.i;
        let frac = c
            .digits(1, 9)
            .ok_or_else(|| bad("expected digits after `.`"))?;
        let len = c.i - start;
        // Keep the first three digits (milliseconds), truncating.
        millis = match len {
            1 => frac * 100,
            2 => frac * 10,
            n => frac / 10_i64.pow(n as u32 - 3),
        };
    }
    if c.spaces() == 0 {
        return Err(bad("expected a space before AM/PM"));
    }
    let meridiem = &text[c.i.min(text.len())..];
    let pm = if meridiem.eq_ignore_ascii_case("AM") {
        false
    } else if meridiem.eq_ignore_ascii_case("PM") {
        true
    } else {
        return Err(bad("expected AM or PM at the end"));
    };
    if !(1..=12).contains(&month) {
        return Err(bad("month out of range"));
    }
    if !(1..=days_in_month(year, month)).contains(&day) {
        return Err(bad("day out of range"));
    }
    if !(1..=12).contains(&hour) {
        return Err(bad("hour out of range (1 to 12)"));
    }
    if minute > 59 || second > 59 {
        return Err(bad("minutes or seconds out of range"));
    }
    let hour24 = (hour % 12) + if pm { 12 } else { 0 };
    let days = days_from_civil(year, month, day);
    Ok(((days * 24 + hour24) * 60 + minute) * 60_000 + second * 1_000 + millis)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    /// Between `min` and `max` ASCII digits as a number.
    fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let start = self.i;
        let mut n: i64 = 0;
        while self.i - start < max && self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
            n = n * 10 + i64::from(self.s[self.i] - b'0');
            self.i += 1;
        }
        (self.i - start >= min).then_some(n)
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.s.get(self.i) == Some(&b)).then(|| self.i += 1)
    }

    fn spaces(&mut self) -> usize {
        let start = self.i;
        while self.s.get(self.i) == Some(&b' ') {
            self.i += 1;
        }
        self.i - start
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_reference_time() {
        // Mon Jan 2 15:04:05 2006 UTC = 1136214245 s.
        assert_eq!(
            parse_datetime("1/2/2006, 3:04:05.000 PM"),
            Ok(1_136_214_245_000)
        );
        assert_eq!(parse_datetime("1/1/1970, 12:00:00.000 AM"), Ok(0));
        assert_eq!(parse_datetime("1/1/1970, 12:00:00.5 pm"), Ok(43_200_500));
        assert_eq!(
            parse_datetime("02/29/2024, 11:59:59.999999 PM"),
            Ok(1_709_251_199_999)
        );
        assert_eq!(parse_datetime("12/31/1969, 11:59:59 PM"), Ok(-1_000));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "2006-01-02",
            "13/2/2006, 3:04:05.000 PM",
            "2/30/2006, 3:04:05.000 PM",
            "2/29/2023, 3:04:05.000 PM",
            "1/2/2006, 0:04:05.000 PM",
            "1/2/2006, 13:04:05.000 PM",
            "1/2/2006, 3:4:05.000 PM",
            "1/2/2006, 3:04:60 PM",
            "1/2/2006, 3:04:05.000",
            "1/2/2006, 3:04:05.000 XM",
            "1/2/2006, 3:04:05. PM",
            "1/2/06, 3:04:05 PM",
            "1/2/2006 3:04:05 PM",
        ] {
            let err = parse_datetime(bad).unwrap_err();
            assert!(err.contains(LAYOUT), "{bad}: {err}");
        }
    }
}
