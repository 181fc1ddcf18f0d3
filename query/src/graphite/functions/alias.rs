//! Naming series (alias, aliasByNode, aliasSub, aliasByTags, cactiStyle, legendValue).

use regex::Regex;

use crate::error::Result;
use crate::graphite::args::Args;
use crate::graphite::eval::Value;
use crate::graphite::py_number::py_optional;

use super::agg::agg_func;
use super::names::agg_key;

pub(crate) fn alias(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let name = a.str(1, "newName")?;
    for s in &mut list {
        s.name = name.clone();
    }
    Ok(Value::Series(list))
}

pub(crate) fn alias_by_node(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let nodes = a.values_from(1)?;
    for s in &mut list {
        s.name = agg_key(s, &nodes);
    }
    Ok(Value::Series(list))
}

pub(crate) fn alias_by_metric(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    for s in &mut list {
        let base = super::names::first_path_expression(&s.name).unwrap_or_else(|| s.name.clone());
        let base = base.split(';').next().unwrap_or(&base).to_owned();
        s.name = base.rsplit('.').next().unwrap_or(&base).to_owned();
    }
    Ok(Value::Series(list))
}

/// Python `re.sub` replacement syntax (`\1`, `\g<1>`, `\g<name>`) in Rust's (`${1}`).
pub(crate) fn python_replacement(repl: &str) -> String {
    let mut out = String::new();
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    let mut n = String::new();
                    while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                        n.push(d);
                        chars.next();
                        if n.len() == 2 {
                            break;
                        }
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                Some('g') => {
                    chars.next();
                    if chars.peek() == Some(&'<') {
                        chars.next();
                        let name: String = chars.by_ref().take_while(|&c| c != '>').collect();
                        out.push_str(&format!("${{{name}}}"));
                    } else {
                        out.push_str("\\g");
                    }
                }
                Some('n') => {
                    chars.next();
                    out.push('\n');
                }
                Some('t') => {
                    chars.next();
                    out.push('\t');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn alias_sub(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let search = a.str(1, "search")?;
    let replace = python_replacement(&a.str(2, "replace")?);
    let re = Regex::new(&search).map_err(|e| a.err(format!("bad regex \"{search}\": {e}")))?;
    for s in &mut list {
        s.name = re.replace_all(&s.name, replace.as_str()).into_owned();
    }
    Ok(Value::Series(list))
}

pub(crate) fn alias_by_tags(a: &Args) -> Result<Value> {
    alias_by_node(a)
}

pub(crate) fn cacti_style(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let units = a.opt_str(2, "units")?;
    let fmt = |v: f64| match &units {
        Some(u) => format!("{v:.2} {u}"),
        None => format!("{v:.2}"),
    };
    let last = |v: &[Option<f64>]| v.iter().rev().find_map(|x| *x);
    let max = |v: &[Option<f64>]| v.iter().flatten().copied().reduce(f64::max);
    let min = |v: &[Option<f64>]| v.iter().flatten().copied().reduce(f64::min);
    // graphite: len(fmt(int(x or 3))) + 3, where a zero or missing x counts as 3.
    let width_of = |x: Option<f64>| {
        fmt(match x {
            Some(v) if v != 0.0 => v.trunc(),
            _ => 3.0,
        })
        .len()
    };
    let name_len = list.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let width = |f: &dyn Fn(&[Option<f64>]) -> Option<f64>| {
        list.iter()
            .map(|s| width_of(f(&s.values())))
            .max()
            .unwrap_or(0)
            + 3
    };
    let (last_len, max_len, min_len) = (width(&last), width(&max), width(&min));
    for s in &mut list {
        let v = s.values();
        let show = |x: Option<f64>| x.map_or_else(|| "nan".to_owned(), fmt);
        s.name = format!(
            "{:<nw$} Current:{:<lw$} Max:{:<xw$} Min:{:<mw$} ",
            s.name,
            show(last(&v)),
            show(max(&v)),
            show(min(&v)),
            nw = name_len,
            lw = last_len,
            xw = max_len,
            mw = min_len
        );
    }
    Ok(Value::Series(list))
}

pub(crate) fn legend_value(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let mut types: Vec<String> = a
        .values_from(1)?
        .into_iter()
        .filter_map(|v| if let Value::Str(s) = v { Some(s) } else { None })
        .collect();
    let system = types
        .last()
        .filter(|t| *t == "si" || *t == "binary")
        .cloned();
    if system.is_some() {
        types.pop();
    }
    for t in &types {
        let f = agg_func(t);
        for s in &mut list {
            let value = f.map(|f| f(&s.values()));
            s.name = match (&system, value) {
                (None, None) => format!("{} ({t}: (?))", s.name),
                (None, Some(v)) => format!("{} ({t}: {})", s.name, py_optional(v)),
                (Some(_), v) => {
                    let formatted = match v {
                        None => "(?)".to_owned(),
                        Some(None) => "None".to_owned(),
                        Some(Some(x)) => format!("{x:.2}"),
                    };
                    format!("{:<20}{:<5}{:<10}", s.name, t, formatted)
                }
            };
        }
    }
    Ok(Value::Series(list))
}
