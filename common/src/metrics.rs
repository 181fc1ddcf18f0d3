//! The counters a program keeps about itself, and the one Prometheus text writer for them.
//!
//! [`counters!`](crate::counters) declares a struct of relaxed atomics (cheap enough for the
//! ingest path) together with each counter's kind and help text, and gives it a `samples()`
//! method; [`write_text`] turns samples into the Prometheus text exposition format (0.0.4) that
//! `/metrics` serves, and the same samples become the program's own `tally.<program>.*` series.
//!
//! Why not the `prometheus-client` crate: it writes OpenMetrics, which renames every counter
//! with a `_total` suffix and ends with `# EOF`; Tally's metric names are already read by
//! dashboards, alert rules and tests, and what is needed here is a list of atomics and a
//! 40-line writer, not a registry of dynamic families.

use std::fmt::Write;

/// A sample's Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (until the program restarts).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    /// The name in a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One value of one metric, with its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The name below the program's prefix: `points_received`.
    pub name: &'static str,
    pub kind: Kind,
    /// One sentence for `# HELP`.
    pub help: &'static str,
    /// Label pairs, for a metric with one sample per label value (`rule="beacons"`).
    pub labels: Vec<(&'static str, String)>,
    pub value: u64,
}

impl Sample {
    /// An unlabelled sample.
    pub fn new(name: &'static str, kind: Kind, help: &'static str, value: u64) -> Sample {
        Sample {
            name,
            kind,
            help,
            labels: Vec::new(),
            value,
        }
    }

    /// The same sample with one more label.
    pub fn label(mut self, key: &'static str, value: impl Into<String>) -> Sample {
        self.labels.push((key, value.into()));
        self
    }
}

/// Appends `samples` in the Prometheus text format, each name as `<prefix>_<name>`. Samples
/// of one name must be adjacent; they share one `# HELP` and `# TYPE`.
pub fn write_text(out: &mut String, prefix: &str, samples: &[Sample]) {
    let mut last: Option<&str> = None;
    for s in samples {
        if last != Some(s.name) {
            let help = s.help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(out, "# HELP {prefix}_{} {help}", s.name);
            let _ = writeln!(out, "# TYPE {prefix}_{} {}", s.name, s.kind.as_str());
            last = Some(s.name);
        }
        let _ = write!(out, "{prefix}_{}", s.name);
        if !s.labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in s.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(out, "{k}=\"{v}\"");
            }
            out.push('}');
        }
        let _ = writeln!(out, " {}", s.value);
    }
}

/// Declares a struct of counters (relaxed `AtomicU64`s) with their kind and help, deriving
/// `Debug` and `Default`, and a `samples()` method listing them in declaration order. Fields
/// after `extra` are carried along as they are (they must implement `Default`).
///
/// ```
/// tally_common::counters! {
///     /// What the demo counts.
///     pub struct Stats {
///         lines_read: Counter = "Lines read.",
///         files_open: Gauge = "Files followed now.",
///     }
/// }
/// let s = Stats::default();
/// s.lines_read.fetch_add(3, std::sync::atomic::Ordering::Relaxed);
/// assert_eq!(s.samples()[0].value, 3);
/// ```
#[macro_export]
macro_rules! counters {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$fmeta:meta])* $field:ident: $kind:ident = $help:literal,)*
        }
        $(extra {
            $($(#[$emeta:meta])* $evis:vis $efield:ident: $ety:ty,)*
        })?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        $vis struct $name {
            $(
                #[doc = $help]
                $(#[$fmeta])*
                pub $field: ::std::sync::atomic::AtomicU64,
            )*
            $($($(#[$emeta])* $evis $efield: $ety,)*)?
        }

        impl $name {
            /// Every counter's current value, in declaration order.
            pub fn samples(&self) -> ::std::vec::Vec<$crate::metrics::Sample> {
                ::std::vec![$(
                    $crate::metrics::Sample::new(
                        stringify!($field),
                        $crate::metrics::Kind::$kind,
                        $help,
                        self.$field.load(::std::sync::atomic::Ordering::Relaxed),
                    ),
                )*]
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    crate::counters! {
        struct Demo {
            reads: Counter = "Reads done.",
            open: Gauge = "Open now.",
        }
        extra {
            names: Vec<String>,
        }
    }

    #[test]
    fn the_text_format_groups_samples_of_one_name() {
        let d = Demo::default();
        d.reads.fetch_add(20, Relaxed);
        d.open.store(2, Relaxed);
        assert!(d.names.is_empty());
        let mut samples = d.samples();
        samples.push(Sample::new("matched", Kind::Counter, "Per rule.", 4).label("rule", "a\"b"));
        samples.push(Sample::new("matched", Kind::Counter, "Per rule.", 5).label("rule", "c"));
        let mut out = String::new();
        write_text(&mut out, "tally_x", &samples);
        assert_eq!(
            out,
            "# HELP tally_x_reads Reads done.\n# TYPE tally_x_reads counter\ntally_x_reads 20\n\
             # HELP tally_x_open Open now.\n# TYPE tally_x_open gauge\ntally_x_open 2\n\
             # HELP tally_x_matched Per rule.\n# TYPE tally_x_matched counter\n\
             tally_x_matched{rule=\"a\\\"b\"} 4\ntally_x_matched{rule=\"c\"} 5\n"
        );
    }
}
