//! The x axis of graphite's `LineGraph`: rrdtool's table of grid and label steps by seconds per
//! pixel (`xAxisConfigs`), and tick times in the graph's `tz` as graphite's pytz arithmetic has
//! them (the start's UTC offset for every tick).

use chrono::{Duration, NaiveDateTime, Offset, TimeZone};

use super::LineGraph;
use crate::error::Result;

pub(super) const SEC: i64 = 1;
pub(super) const MIN: i64 = 60;
pub(super) const HOUR: i64 = 3600;
pub(super) const DAY: i64 = 86_400;

/// One of graphite's `xAxisConfigs` (rrdtool's): which grid and labels suit a seconds-per-pixel.
pub(super) struct XConf {
    pub(super) seconds: f64,
    pub(super) minor_unit: i64,
    pub(super) minor_step: f64,
    pub(super) major_unit: i64,
    pub(super) major_step: f64,
    pub(super) label_unit: i64,
    pub(super) label_step: f64,
    pub(super) format: &'static str,
    pub(super) max_interval: Option<i64>,
}

macro_rules! xconf {
    ($s:expr, $mu:expr, $ms:expr, $ju:expr, $js:expr, $lu:expr, $ls:expr, $f:expr, $mi:expr) => {
        XConf {
            seconds: $s,
            minor_unit: $mu,
            minor_step: $ms,
            major_unit: $ju,
            major_step: $js,
            label_unit: $lu,
            label_step: $ls,
            format: $f,
            max_interval: $mi,
        }
    };
}

/// graphite's `DATE_FORMAT` is `%m/%d`.
pub(super) const X_CONFIGS: &[XConf] = &[
    xconf!(
        0.00,
        SEC,
        5.0,
        MIN,
        1.0,
        SEC,
        5.0,
        "%H:%M:%S",
        Some(10 * MIN)
    ),
    xconf!(
        0.07,
        SEC,
        10.0,
        MIN,
        1.0,
        SEC,
        10.0,
        "%H:%M:%S",
        Some(20 * MIN)
    ),
    xconf!(
        0.14,
        SEC,
        15.0,
        MIN,
        1.0,
        SEC,
        15.0,
        "%H:%M:%S",
        Some(30 * MIN)
    ),
    xconf!(0.27, SEC, 30.0, MIN, 2.0, MIN, 1.0, "%H:%M", Some(2 * HOUR)),
    xconf!(0.5, MIN, 1.0, MIN, 2.0, MIN, 1.0, "%H:%M", Some(2 * HOUR)),
    xconf!(1.2, MIN, 1.0, MIN, 4.0, MIN, 2.0, "%H:%M", Some(3 * HOUR)),
    xconf!(2.0, MIN, 1.0, MIN, 10.0, MIN, 5.0, "%H:%M", Some(6 * HOUR)),
    xconf!(
        5.0,
        MIN,
        2.0,
        MIN,
        10.0,
        MIN,
        10.0,
        "%H:%M",
        Some(12 * HOUR)
    ),
    xconf!(10.0, MIN, 5.0, MIN, 20.0, MIN, 20.0, "%H:%M", Some(DAY)),
    xconf!(
        30.0,
        MIN,
        10.0,
        HOUR,
        1.0,
        HOUR,
        1.0,
        "%H:%M",
        Some(2 * DAY)
    ),
    xconf!(
        60.0,
        MIN,
        30.0,
        HOUR,
        2.0,
        HOUR,
        2.0,
        "%H:%M",
        Some(2 * DAY)
    ),
    xconf!(
        100.0,
        HOUR,
        2.0,
        HOUR,
        4.0,
        HOUR,
        4.0,
        "%a %H:%M",
        Some(6 * DAY)
    ),
    xconf!(
        255.0,
        HOUR,
        6.0,
        HOUR,
        12.0,
        HOUR,
        12.0,
        "%m/%d %H:%M",
        Some(10 * DAY)
    ),
    xconf!(
        600.0,
        HOUR,
        6.0,
        DAY,
        1.0,
        DAY,
        1.0,
        "%m/%d",
        Some(14 * DAY)
    ),
    xconf!(
        1000.0,
        HOUR,
        12.0,
        DAY,
        1.0,
        DAY,
        1.0,
        "%m/%d",
        Some(365 * DAY)
    ),
    xconf!(
        2000.0,
        DAY,
        1.0,
        DAY,
        2.0,
        DAY,
        2.0,
        "%m/%d",
        Some(365 * DAY)
    ),
    xconf!(
        4000.0,
        DAY,
        2.0,
        DAY,
        4.0,
        DAY,
        4.0,
        "%m/%d",
        Some(365 * DAY)
    ),
    xconf!(
        8000.0,
        DAY,
        3.5,
        DAY,
        7.0,
        DAY,
        7.0,
        "%m/%d",
        Some(365 * DAY)
    ),
    xconf!(
        16000.0,
        DAY,
        7.0,
        DAY,
        14.0,
        DAY,
        14.0,
        "%m/%d",
        Some(365 * DAY)
    ),
    xconf!(
        32000.0,
        DAY,
        15.0,
        DAY,
        30.0,
        DAY,
        30.0,
        "%m/%d",
        Some(365 * DAY)
    ),
    xconf!(64000.0, DAY, 30.0, DAY, 60.0, DAY, 60.0, "%m/%d %Y", None),
    xconf!(100000.0, DAY, 60.0, DAY, 120.0, DAY, 120.0, "%m/%d %Y", None),
    xconf!(120000.0, DAY, 120.0, DAY, 240.0, DAY, 240.0, "%m/%d %Y", None),
];

impl LineGraph {
    /// The `tz` offset at the start; graphite falls back to its TIME_ZONE (UTC here) for a
    /// zone pytz does not know.
    pub(super) fn tz_offset(&self) -> i64 {
        let Some(tz) = self
            .g
            .p
            .str("tz")
            .and_then(|name| name.parse::<chrono_tz::Tz>().ok())
        else {
            return 0;
        };
        tz.timestamp_opt(self.start, 0)
            .earliest()
            .map_or(0, |d| i64::from(d.offset().fix().local_minus_utc()))
    }

    pub(super) fn setup_x_axis(&mut self) -> Result<()> {
        self.offset = self.tz_offset();
        let seconds_per_pixel = self.time_range as f64 / self.graph_width;
        self.x_scale = self.graph_width / self.time_range as f64;
        self.conf = X_CONFIGS
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.seconds <= seconds_per_pixel
                    && c.max_interval.is_none_or(|m| m >= self.time_range)
            })
            .map(|(i, _)| i)
            .next_back()
            .unwrap_or(X_CONFIGS.len() - 1);
        Ok(())
    }

    pub(super) fn local(&self, t: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(t + self.offset, 0)
            .map(|d| d.naive_utc())
            .unwrap_or_default()
    }

    /// graphite's `find_x_times`: the first tick at or after the start, and the tick distance,
    /// in local time with the start's UTC offset (as pytz arithmetic has it).
    pub(super) fn x_times(&self, unit: i64, step: f64) -> (NaiveDateTime, Duration) {
        use chrono::Timelike;
        let start = self.local(self.start);
        let istep = step as u32;
        let mut dt = match unit {
            SEC => start.with_second(start.second() - start.second() % istep.max(1)),
            MIN => start
                .with_second(0)
                .and_then(|d| d.with_minute(start.minute() - start.minute() % istep.max(1))),
            HOUR => start
                .with_second(0)
                .and_then(|d| d.with_minute(0))
                .and_then(|d| d.with_hour(start.hour() - start.hour() % istep.max(1))),
            _ => start.date().and_hms_opt(0, 0, 0),
        }
        .unwrap_or(start);
        let delta = Duration::milliseconds((unit as f64 * step * 1000.0) as i64);
        while dt < start {
            match dt.checked_add_signed(delta) {
                Some(d) => dt = d,
                None => break,
            }
        }
        (dt, delta)
    }

    /// The instant a local tick stands for, for `dt < end_dt` (aware datetimes compare in UTC).
    pub(super) fn before_end(&self, dt: NaiveDateTime) -> bool {
        dt.and_utc().timestamp() - self.offset < self.end
    }

    pub(super) fn x_of(&self, dt: NaiveDateTime) -> f64 {
        let start = self.local(self.start);
        self.g.area.xmin + (dt - start).num_seconds() as f64 * self.x_scale
    }
}
