//! graphite-web's "Graph" group: functions that say how a graph draws series (colour, width,
//! dashes, alpha, the second y axis, stacking, areas, vertical lines, thresholds). Each keeps
//! graphite's names, tags and values, so json answers as graphite-web does, and sets the
//! series' [`crate::series::Style`], which the PNG and SVG graphs draw.

use crate::error::Result;
use crate::graphite::args::Args;
use crate::graphite::eval::Value;
use crate::graphite::py_number::{py_float, py_g};
use crate::series::TimeSeries;
use crate::time::parse_time;

pub(crate) fn color(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let c = a.str(1, "theColor")?;
    for s in &mut list {
        s.style.color = Some(c.clone());
    }
    Ok(Value::Series(list))
}

pub(crate) fn alpha(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let v = a.num(1, "alpha")?;
    for s in &mut list {
        s.style.alpha = Some(v);
    }
    Ok(Value::Series(list))
}

pub(crate) fn line_width(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let w = a.num(1, "width")?;
    for s in &mut list {
        s.style.line_width = Some(w);
    }
    Ok(Value::Series(list))
}

pub(crate) fn second_y_axis(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    for s in &mut list {
        s.style.second_y_axis = true;
        s.tags.insert("secondYAxis".into(), "1".into());
        s.name = format!("secondYAxis({})", s.name);
    }
    Ok(Value::Series(list))
}

pub(crate) fn draw_as_infinite(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    for s in &mut list {
        s.style.draw_as_infinite = true;
        s.tags.insert("drawAsInfinite".into(), "1".into());
        s.name = format!("drawAsInfinite({})", s.name);
    }
    Ok(Value::Series(list))
}

pub(crate) fn dashed(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let given = a.opt_num(1, "dashLength")?;
    let len = given.unwrap_or(5.0);
    for s in &mut list {
        // Tags hold str(dashLength): "5" for the default int, "2.5" or "3.0" as written.
        s.tags
            .insert("dashed".into(), given.map_or_else(|| "5".into(), py_float));
        s.name = format!("dashed({}, {})", s.name, py_g(len));
        s.style.dashed = Some(len);
    }
    Ok(Value::Series(list))
}

/// `stacked(seriesLists, stackName='__DEFAULT__')`: each series on top of the ones before it,
/// in this target and the request's earlier targets of the same stack.
pub(crate) fn stacked(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let stack = a
        .opt_str(1, "stackName")?
        .or(a.opt_str(1, "stack")?)
        .unwrap_or_else(|| "__DEFAULT__".into());
    let default = stack == "__DEFAULT__";
    let out = a.ctx.with_stack(&stack, |total| {
        list.into_iter()
            .map(|mut s| {
                let values: Vec<Option<f64>> = s
                    .raw()
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        if total.len() <= i {
                            total.push(0.0);
                        }
                        v.map(|x| {
                            total[i] += x;
                            total[i]
                        })
                    })
                    .collect();
                let name = if default {
                    s.tags.insert("stacked".into(), stack.clone());
                    format!("stacked({})", s.name)
                } else {
                    s.name.clone()
                };
                let mut n = s.derive(name, values);
                n.style.stacked = true;
                n
            })
            .collect::<Vec<TimeSeries>>()
    });
    Ok(Value::Series(out))
}

/// `areaBetween(seriesList)`: the area between exactly two series (lower first).
pub(crate) fn area_between(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    if list.len() != 2 {
        return Err(a.err(format!(
            "areaBetween series argument must reference *exactly* 2 series, not {}",
            list.len()
        )));
    }
    let name = format!("areaBetween({})", list[1].path_expression);
    list[1].tags.insert("areaBetween".into(), "1".into());
    let tags = list[1].tags.clone();
    for (i, s) in list.iter_mut().enumerate() {
        s.style.stacked = true;
        s.style.invisible = i == 0;
        s.tags = tags.clone();
        s.name = name.clone();
    }
    Ok(Value::Series(list))
}

/// `threshold(value, label=None, color=None)`: `constantLine(value)`, named and coloured.
pub(crate) fn threshold(a: &Args) -> Result<Value> {
    let Value::Series(mut list) = super::transform::constant_line(a)? else {
        return Err(a.err("constantLine gave no series"));
    };
    let label = a.opt_str(1, "label")?;
    let color = a.opt_str(2, "color")?;
    for s in &mut list {
        if let Some(l) = label.as_ref().filter(|l| !l.is_empty()) {
            s.name = l.clone();
        }
        if let Some(c) = color.as_ref().filter(|c| !c.is_empty()) {
            s.style.color = Some(c.clone());
        }
    }
    Ok(Value::Series(list))
}

/// `verticalLine(ts, label=None, color=None)`: a line across the graph at a time in the range.
pub(crate) fn vertical_line(a: &Args) -> Result<Value> {
    let ts = match a.value(0, "ts")? {
        Some(Value::Str(s)) => s,
        Some(Value::Number(v, _)) => format!("{}", v as i64),
        _ => return Err(a.err("missing argument \"ts\"")),
    };
    let at = parse_time(&ts, tally_common::unix_now())?;
    if at < a.ctx.from {
        return Err(a.err(format!("timestamp {at} exists before start of range")));
    }
    if at > a.ctx.until {
        return Err(a.err(format!("timestamp {at} exists after end of range")));
    }
    // graphite names it the label, and a missing label None (we write an empty name).
    let label = a.opt_str(1, "label")?.unwrap_or_default();
    let mut s = TimeSeries::new(label, at, 1, vec![Some(1.0), Some(1.0)]);
    s.end = at;
    s.style.draw_as_infinite = true;
    s.style.color = a.opt_str(2, "color")?;
    Ok(Value::Series(vec![s]))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::fetch::Ctx;
    use crate::graphite::{evaluate, parse};
    use crate::source::MemSource;

    fn ctx() -> Ctx {
        let mut m = MemSource::default();
        m.add("a.b", 60, 60, vec![Some(1.0), None, Some(3.0)]);
        m.add("a.c", 60, 60, vec![Some(10.0), Some(20.0), Some(30.0)]);
        Ctx::new(Arc::new(m), 0, 240)
    }

    fn eval(ctx: &Ctx, t: &str) -> crate::error::Result<Vec<crate::series::TimeSeries>> {
        evaluate(ctx, &parse(t).expect("parses"))
    }

    /// graphite keeps one running total per stack for the whole request: a second target
    /// stacks on the first.
    #[test]
    fn stacked_across_targets_and_named_stacks() {
        let ctx = ctx();
        let first = eval(&ctx, "stacked(a.b)").expect("evaluates");
        assert_eq!(first[0].name, "stacked(a.b)");
        assert_eq!(
            first[0].tags.get("stacked").map(String::as_str),
            Some("__DEFAULT__")
        );
        assert!(first[0].style.stacked);
        let second = eval(&ctx, "stacked(a.c)").expect("evaluates");
        assert_eq!(second[0].raw(), [Some(11.0), Some(20.0), Some(33.0), None]);
        let other = eval(&ctx, "stacked(a.c, 'x')").expect("evaluates");
        assert_eq!(other[0].name, "a.c", "a named stack keeps the name");
        assert_eq!(other[0].raw(), [Some(10.0), Some(20.0), Some(30.0), None]);
    }

    #[test]
    fn area_between_threshold_and_vertical_line() {
        let ctx = ctx();
        let s = eval(&ctx, "areaBetween(a.*)").expect("evaluates");
        assert_eq!(s[0].name, "areaBetween(a.*)");
        assert!(s[0].style.invisible && s[0].style.stacked && !s[1].style.invisible);
        assert_eq!(s[0].tags.get("areaBetween").map(String::as_str), Some("1"));
        let e = eval(&ctx, "areaBetween(a.b)").expect_err("one series");
        assert!(e.to_string().contains("*exactly* 2 series"), "{e}");
        let t = eval(&ctx, "threshold(5, 'limit', 'red')").expect("evaluates");
        assert_eq!(
            (t[0].name.as_str(), t[0].style.color.as_deref()),
            ("limit", Some("red"))
        );
        let v = eval(&ctx, "verticalLine('120', 'deploy')").expect("evaluates");
        assert_eq!(
            (v[0].start, v[0].end, v[0].style.draw_as_infinite),
            (120, 120, true)
        );
        let e = eval(&ctx, "verticalLine('1000')").expect_err("after the range");
        assert_eq!(
            e.to_string(),
            "verticalLine: timestamp 1000 exists after end of range"
        );
        // derive() drops the style, as graphite's copy() drops options.
        let d = eval(&ctx, "scale(color(a.b, 'red'), 2)").expect("evaluates");
        assert_eq!(d[0].style.color, None);
        let k = eval(&ctx, "alias(color(a.b, 'red'), 'x')").expect("evaluates");
        assert_eq!(k[0].style.color.as_deref(), Some("red"));
    }
}
