//! How functions name series and pick nodes: `aggKey`, `formatPathExpressions`, and the first
//! path expression inside a wrapped name (`aliasByNode(sumSeries(a.b.*), 1)` reads `a.b.*`).

use crate::graphite::eval::Value;
use crate::graphite::expr::{parse, Expr};
use crate::graphite::py_number::py_number;
use crate::series::TimeSeries;

/// The unique path expressions of a list, in order, joined by commas.
pub(crate) fn format_path_expressions(list: &[TimeSeries]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for s in list {
        if !seen.contains(&s.path_expression.as_str()) {
            seen.push(&s.path_expression);
        }
    }
    seen.join(",")
}

/// The first path expression in a name that looks like a function call.
pub(crate) fn first_path_expression(name: &str) -> Option<String> {
    let mut e = parse(name).ok()?;
    loop {
        match e {
            Expr::Path(p) => return Some(p),
            Expr::Call(c) => e = c.args.into_iter().next()?,
            _ => return None,
        }
    }
}

/// A node (integer index, negative from the end) or a tag value, as graphite's `getNodeOrTag`.
pub(crate) fn node_or_tag(s: &TimeSeries, n: &Value, path: Option<&str>) -> String {
    if let Value::Number(v, _) = n {
        if v.fract() == 0.0 {
            let base = path.unwrap_or(&s.name);
            let base = base.split(';').next().unwrap_or(base);
            let parts: Vec<&str> = base.split('.').collect();
            let i = *v as i64;
            let idx = if i < 0 { parts.len() as i64 + i } else { i };
            if let Some(p) = usize::try_from(idx).ok().and_then(|i| parts.get(i)) {
                return (*p).to_owned();
            }
        }
    }
    let key = match n {
        Value::Str(t) => t.clone(),
        Value::Number(v, int) => py_number(*v, *int),
        _ => String::new(),
    };
    s.tags.get(&key).cloned().unwrap_or_default()
}

/// graphite's `aggKey`: the chosen nodes/tags joined by dots.
pub(crate) fn agg_key(s: &TimeSeries, nodes: &[Value]) -> String {
    let path = if s.name.ends_with(')') {
        first_path_expression(&s.name)
    } else {
        None
    };
    nodes
        .iter()
        .map(|n| node_or_tag(s, n, path.as_deref()))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_and_first_paths() {
        let s = TimeSeries::new("sumSeries(servers.web1.cpu)", 0, 10, vec![]);
        assert_eq!(
            first_path_expression(&s.name).as_deref(),
            Some("servers.web1.cpu")
        );
        assert_eq!(agg_key(&s, &[Value::Number(1.0, true)]), "web1");
        assert_eq!(
            agg_key(&s, &[Value::Number(-1.0, true), Value::Number(0.0, true)]),
            "cpu.servers"
        );
        let t = TimeSeries::new("req;host=w1", 0, 10, vec![]);
        assert_eq!(agg_key(&t, &[Value::Str("host".into())]), "w1");
        assert_eq!(agg_key(&t, &[Value::Number(0.0, true)]), "req");
    }
}
