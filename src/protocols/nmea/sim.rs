//! A GPS receiver that drives a 20 m circle once a minute, sending GGA and RMC at 5 Hz.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

pub const BASE_LAT: f64 = 47.397742;
pub const BASE_LON: f64 = 8.545594;
pub const ALTITUDE_MSL: f64 = 488.2;
pub const GEOID_SEPARATION: f64 = 47.4;
const RADIUS_M: f64 = 20.0;
const PERIOD_S: f64 = 60.0;

pub fn checksum(body: &str) -> u8 {
    body.bytes().fold(0, |a, b| a ^ b)
}

/// `$body*hh\r\n`.
pub fn sentence(body: &str) -> String {
    format!("${body}*{:02X}\r\n", checksum(body))
}

fn dm(value: f64, deg_digits: usize) -> (String, bool) {
    let neg = value < 0.0;
    let v = value.abs();
    let deg = v.floor();
    let min = (v - deg) * 60.0;
    (
        format!("{:0w$}{:08.5}", deg as u32, min, w = deg_digits),
        neg,
    )
}

/// The fix at `t` seconds into the simulation.
pub fn position(t: f64) -> (f64, f64) {
    let a = t / PERIOD_S * std::f64::consts::TAU;
    let lat = BASE_LAT + RADIUS_M * a.cos() / 111_320.0;
    let lon = BASE_LON + RADIUS_M * a.sin() / (111_320.0 * BASE_LAT.to_radians().cos());
    (lat, lon)
}

/// GGA + RMC for `t` seconds into the run, stamped with the wall clock.
pub fn epoch(t: f64, now: SystemTime) -> String {
    let (lat, lon) = position(t);
    // Rounded to what the sentence carries, so the published value is exactly this.
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let day_s = secs.as_secs() % 86_400;
    let hund = secs.subsec_millis() / 10;
    let time = format!(
        "{:02}{:02}{:02}.{:02}",
        day_s / 3600,
        day_s / 60 % 60,
        day_s % 60,
        hund
    );
    let days = secs.as_secs() / 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let date = format!("{:02}{:02}{:02}", d, m, y % 100);
    let (lat_s, south) = dm(lat, 2);
    let (lon_s, west) = dm(lon, 3);
    let ns = if south { 'S' } else { 'N' };
    let ew = if west { 'W' } else { 'E' };
    let speed_knots = RADIUS_M * std::f64::consts::TAU / PERIOD_S * 1.943_844;
    let course = (t / PERIOD_S * 360.0 + 90.0) % 360.0;
    let mut out = String::new();
    let gga = format!(
        "GPGGA,{time},{lat_s},{ns},{lon_s},{ew},1,10,0.9,{ALTITUDE_MSL:.1},M,{GEOID_SEPARATION:.1},M,,"
    );
    let rmc =
        format!("GPRMC,{time},A,{lat_s},{ns},{lon_s},{ew},{speed_knots:.2},{course:.1},{date},,,A");
    let _ = write!(out, "{}{}", sentence(&gga), sentence(&rmc));
    out
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::nmea::check_sentence;

    #[test]
    fn simulated_sentences_pass_our_checks_and_parse() {
        let text = epoch(
            12.5,
            UNIX_EPOCH + std::time::Duration::from_secs(1_764_000_000),
        );
        for line in text.lines() {
            let (s, junk) = check_sentence(line.as_bytes()).unwrap();
            assert_eq!(junk, 0);
            nmea::parse_str(s.text).unwrap();
        }
        assert!(text.contains(",241125,"), "{text}");
    }

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
    }
}
