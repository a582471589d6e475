//! The maintenance window (`[policy.window]`) against a clock: open now or not, and when
//! it opens next, in the device's time zone (DST handled by jiff: a window that starts
//! in a skipped hour starts at the first instant after it).

use ferry_agent::policy::{ClockTime, Window};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use crate::error::DaemonError;

/// Where the window stands at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowState {
    /// Open now.
    pub open: bool,
    /// When it opens next (now or later), if it ever does.
    pub next_open: Option<Zoned>,
}

/// The time zone the window is in: its own, else the system's.
pub fn time_zone(window: &Window) -> Result<TimeZone, DaemonError> {
    match &window.time_zone {
        Some(name) => TimeZone::get(name).map_err(|e| DaemonError::TimeZone {
            name: name.clone(),
            reason: e.to_string(),
        }),
        None => Ok(TimeZone::system()),
    }
}

/// Whether `window` is open at `now`, and when it opens next.
pub fn state(window: &Window, now: Timestamp) -> Result<WindowState, DaemonError> {
    let tz = time_zone(window)?;
    let here = now.to_zoned(tz.clone());
    let today = here.date();
    // A window that crosses midnight and opened yesterday may still be open.
    let mut next_open = None;
    for offset in -1i32..=7 {
        let Ok(day) = today.checked_add(jiff::Span::new().days(offset)) else {
            continue;
        };
        if !opens_on(window, day) {
            continue;
        }
        let (start, end) = bounds(window, day, &tz)?;
        if start <= here && here < end {
            return Ok(WindowState {
                open: true,
                next_open: Some(here),
            });
        }
        if start > here && next_open.is_none() {
            next_open = Some(start);
        }
    }
    Ok(WindowState {
        open: false,
        next_open,
    })
}

fn opens_on(window: &Window, day: Date) -> bool {
    let index = day.weekday().to_monday_zero_offset() as usize;
    window.days.iter().any(|d| d.index() == index)
}

/// The window that opens on `day`: its start, and its end (the next day when it crosses
/// midnight; a whole day when start equals end).
fn bounds(window: &Window, day: Date, tz: &TimeZone) -> Result<(Zoned, Zoned), DaemonError> {
    let at = |day: Date, time: ClockTime| {
        day.at(time.hour() as i8, time.minute() as i8, 0, 0)
            .to_zoned(tz.clone())
            .map_err(|e| DaemonError::TimeZone {
                name: tz.iana_name().unwrap_or("system").to_owned(),
                reason: e.to_string(),
            })
    };
    let start = at(day, window.start)?;
    let end_day = if window.end <= window.start {
        day.tomorrow().map_err(|e| DaemonError::TimeZone {
            name: tz.iana_name().unwrap_or("system").to_owned(),
            reason: e.to_string(),
        })?
    } else {
        day
    };
    Ok((start, at(end_day, window.end)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_agent::policy::Weekday;

    fn window(days: &[Weekday], start: &str, end: &str, tz: &str) -> Window {
        Window {
            days: days.to_vec(),
            start: start.parse().unwrap(),
            end: end.parse().unwrap(),
            time_zone: Some(tz.into()),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_night_window_in_berlin_opens_and_closes_in_local_time() {
        // 2026-03-20 is a Friday; Berlin is UTC+1 then.
        let w = window(&Weekday::ALL, "02:00", "05:00", "Europe/Berlin");
        let inside = state(&w, at("2026-03-20T02:30:00Z")).unwrap();
        assert!(inside.open, "03:30 Berlin");
        let before = state(&w, at("2026-03-20T00:30:00Z")).unwrap();
        assert!(!before.open, "01:30 Berlin");
        assert_eq!(
            before.next_open.unwrap().timestamp(),
            at("2026-03-20T01:00:00Z")
        );
        let after = state(&w, at("2026-03-20T04:00:00Z")).unwrap();
        assert!(!after.open, "05:00 Berlin: closed");
        assert_eq!(
            after.next_open.unwrap().timestamp(),
            at("2026-03-21T01:00:00Z")
        );
    }

    #[test]
    fn a_window_across_midnight_belongs_to_the_day_it_opens_on() {
        let w = window(&[Weekday::Fri], "22:00", "04:00", "UTC");
        assert!(
            state(&w, at("2026-03-20T23:00:00Z")).unwrap().open,
            "Fri 23:00"
        );
        assert!(
            state(&w, at("2026-03-21T03:00:00Z")).unwrap().open,
            "Sat 03:00"
        );
        assert!(
            !state(&w, at("2026-03-21T23:00:00Z")).unwrap().open,
            "Sat 23:00"
        );
        let thursday = state(&w, at("2026-03-19T12:00:00Z")).unwrap();
        assert_eq!(
            thursday.next_open.unwrap().timestamp(),
            at("2026-03-20T22:00:00Z")
        );
    }

    #[test]
    fn a_window_on_the_day_dst_starts_still_opens() {
        // 2026-03-29: Berlin skips 02:00–03:00.
        let w = window(&[Weekday::Sun], "02:30", "04:00", "Europe/Berlin");
        let s = state(&w, at("2026-03-28T12:00:00Z")).unwrap();
        let opens = s.next_open.unwrap();
        assert_eq!(opens.timestamp(), at("2026-03-29T01:30:00Z"));
    }

    #[test]
    fn an_unknown_time_zone_is_an_error_with_a_code() {
        let w = window(&Weekday::ALL, "02:00", "05:00", "Mars/Olympus");
        let e = state(&w, at("2026-03-20T02:30:00Z")).unwrap_err();
        assert_eq!(ferry_types::Diagnose::code(&e), "WINDOW_TIME_ZONE");
    }
}
