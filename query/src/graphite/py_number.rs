//! How Python writes numbers, since graphite-web's output is Python's: series names such as
//! `scale(x,0.5)` or `constantLine(100.0)`, the csv and raw formats, legends. One place, so every
//! name and format agrees with graphite-web to the character.

/// Python's `repr(float)`/`str(float)`: shortest round trip, `.0` on integral values.
pub(crate) fn py_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v.fract() == 0.0 && v.abs() < 1e16 {
        return format!("{v:.1}");
    }
    let s = format!("{v}");
    if v.abs() >= 1e16 || (v != 0.0 && v.abs() < 1e-4) {
        // Python switches to exponent form here.
        let e = format!("{v:e}");
        let (m, exp) = e.split_once('e').unwrap_or((&e, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        return format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    s
}

/// Python's `%g`.
pub(crate) fn py_g(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let exp = v.abs().log10().floor() as i32;
    let exp = {
        // Rounding to 6 significant digits can bump the exponent (999999.5 -> 1e+06).
        let rounded: f64 = format!("{:.5e}", v).parse().unwrap_or(v);
        if rounded.abs() >= 10f64.powi(exp + 1) {
            exp + 1
        } else {
            exp
        }
    };
    if !(-4..6).contains(&exp) {
        let e = format!("{:.5e}", v);
        let (m, x) = e.split_once('e').unwrap_or((&e, "0"));
        let m = m.trim_end_matches('0').trim_end_matches('.');
        let x: i32 = x.parse().unwrap_or(0);
        return format!("{m}e{}{:02}", if x < 0 { '-' } else { '+' }, x.abs());
    }
    let decimals = (5 - exp).max(0) as usize;
    let s = format!("{:.*}", decimals, v);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Python's `str()` of a number as written in a target: `2` for an int literal, `2.0`/`2.5` for
/// a float (graphite keeps the literal's type).
pub(crate) fn py_number(v: f64, int: bool) -> String {
    if int {
        format!("{}", v as i64)
    } else {
        py_float(v)
    }
}

/// Python's `str()` of an optional float: `None` for a gap.
pub(crate) fn py_optional(v: Option<f64>) -> String {
    v.map_or_else(|| "None".to_owned(), py_float)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_number_formats() {
        for (v, want) in [
            (2.0, "2"),
            (0.5, "0.5"),
            (1e-5, "1e-05"),
            (123456.0, "123456"),
            (1234567.0, "1.23457e+06"),
            (-2.25, "-2.25"),
            (0.0001, "0.0001"),
            (100.0, "100"),
        ] {
            assert_eq!(py_g(v), want, "%g of {v}");
        }
        for (v, want) in [
            (2.0, "2.0"),
            (0.1, "0.1"),
            (1e-5, "1e-05"),
            (1e20, "1e+20"),
            (-3.5, "-3.5"),
        ] {
            assert_eq!(py_float(v), want, "repr of {v}");
        }
        assert_eq!(py_number(2.0, true), "2");
        assert_eq!(py_number(2.0, false), "2.0");
        assert_eq!(py_number(-0.5, false), "-0.5");
        assert_eq!(py_optional(None), "None");
        assert_eq!(py_optional(Some(f64::INFINITY)), "inf");
    }
}
