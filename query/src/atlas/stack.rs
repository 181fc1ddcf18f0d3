//! The stack language (`stacklang/Interpreter.scala` and the vocabularies): a program is
//! comma-separated tokens; a token starting with `:` is a word that pops its arguments and
//! pushes its result, `(` … `)` is a list, anything else is pushed as a string.
//!
//! Words are tried against the stack as Atlas does: a word has several forms (`:sum` of a
//! query is a data aggregate, of an expression a math one) and the first whose arguments are
//! on the stack runs. A bare query where an expression is wanted is its `:sum`, a number its
//! `:const`. Errors say the word, its position in the program and what the stack held.

use std::collections::HashMap;

use super::expr::{
    Af, BinOp, Cf, DataExpr, DataKind, Expr, OthersAf, Priority, Stat, Stateful, TimeSpan, UnOp,
    MAX_WINDOW_SIZE, TIME_MODES,
};
use super::query::Query;
use super::time::{parse_duration, parse_tz};

/// How a line is drawn and named (`StyleExpr`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Style {
    /// `:legend`, with `$key` / `$(key)` replaced by each line's tag value.
    pub legend: Option<String>,
    /// `:s` and `:decode`: the rewrites of the legend, in the order written (`sed`).
    pub sed: Vec<Sed>,
    pub color: Option<String>,
    pub alpha: Option<String>,
    pub axis: Option<u32>,
    /// `line`, `area`, `stack`, `vspan`, `heatmap`.
    pub line_style: Option<String>,
    pub line_width: Option<f64>,
    /// `:sort`: `legend`, or a statistic.
    pub sort: Option<String>,
    /// `:order`: `asc` or `desc`.
    pub order: Option<String>,
    pub limit: Option<usize>,
    pub palette: Option<String>,
    /// Style `:offset`: the expression drawn again shifted by each (seconds).
    pub offsets: Vec<i64>,
}

/// One rewrite of a legend (`StyleExpr.sed`).
#[derive(Debug, Clone, PartialEq)]
pub enum Sed {
    /// `:s`: every match of the regex replaced.
    Replace(String, String),
    /// `:decode`: `hex` (`_21` is `!`) or `none`.
    Decode(String),
}

/// The encodings `:decode` knows (`StyleExpr.decode`).
pub const DECODINGS: &[&str] = &["hex", "none"];

/// An expression as drawn: the expression and its style.
#[derive(Debug, Clone, PartialEq)]
pub struct Styled {
    pub expr: Expr,
    pub style: Style,
}

/// What the stack holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Str(String),
    List(Vec<Item>),
    Query(Query),
    Expr(Expr),
    Styled(Box<Styled>),
}

impl Item {
    fn kind(&self) -> &'static str {
        match self {
            Item::Str(_) => "String",
            Item::List(_) => "List",
            Item::Query(_) => "Query",
            Item::Expr(Expr::Data(_)) => "DataExpr",
            Item::Expr(_) => "TimeSeriesExpr",
            Item::Styled(_) => "StyleExpr",
        }
    }

    fn as_query(&self) -> Option<Query> {
        match self {
            Item::Query(q) => Some(q.clone()),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Item::Str(s) => Some(s),
            _ => None,
        }
    }

    /// `DataType.DoubleType`: a number, or a constant (`IsNumber`).
    fn as_number(&self) -> Option<f64> {
        match self {
            Item::Expr(Expr::Const(v)) => Some(*v),
            _ => self.as_str().and_then(parse_number),
        }
    }

    /// `DataType.IntType`: a whole number, or a constant's `intValue` (truncated, saturating,
    /// NaN as 0); Tally's counts are never negative.
    fn as_int(&self) -> Option<usize> {
        match self {
            Item::Expr(Expr::Const(v)) => usize::try_from(*v as i32).ok(),
            _ => self.as_str().and_then(|s| s.parse().ok()),
        }
    }

    /// A time series expression: an expression, a query (its `:sum`) or a number (`:const`).
    fn as_expr(&self) -> Option<Expr> {
        match self {
            Item::Expr(e) => Some(e.clone()),
            Item::Query(q) => Some(Expr::Data(DataExpr::aggregate(Af::Sum, q.clone()))),
            Item::Str(s) => parse_number(s).map(Expr::Const),
            _ => None,
        }
    }

    fn as_styled(&self) -> Option<Styled> {
        match self {
            Item::Styled(s) => Some((**s).clone()),
            other => other.as_expr().map(|expr| Styled {
                expr,
                style: Style::default(),
            }),
        }
    }

    fn as_list(&self) -> Option<&[Item]> {
        match self {
            Item::List(l) => Some(l),
            _ => None,
        }
    }

    fn strings(&self) -> Option<Vec<String>> {
        self.as_list()?
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect()
    }
}

/// Numbers as Java's `Double.parseDouble` reads them, with `NaN` and `Infinity`.
fn parse_number(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" | "+Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ if s
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
            && s.bytes().any(|b| b.is_ascii_digit()) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

/// A mistake in a program: which token, where, and what was wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct StackError {
    pub token: String,
    /// Byte offset of the token in the program.
    pub pos: usize,
    pub message: String,
}

impl std::fmt::Display for StackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (at \"{}\", position {})",
            self.message, self.token, self.pos
        )
    }
}

/// Most items the stack may hold, and the deepest `:call`/`:each`/`:map` nesting (Atlas's
/// limits: 1024 and 10).
const MAX_STACK: usize = 1024;
const MAX_CALL_DEPTH: usize = 10;
/// Most tokens a program may have, and the deepest list nesting.
const MAX_TOKENS: usize = 100_000;
const MAX_LIST_DEPTH: usize = 64;
/// The deepest expression a word may build (`1,:abs,:abs,…`: every pass over it recurses, so
/// depth is what a worker's stack must hold), the deepest query (`:and`/`:or`/`:not` chains,
/// whose frames are small) and the most nodes one item may have (`1,:dup,:add,:dup,:add,…`
/// doubles it with every pair of words).
pub const MAX_EXPR_DEPTH: usize = 64;
pub const MAX_QUERY_DEPTH: usize = 256;
pub const MAX_ITEM_NODES: usize = 4096;

/// The tokens of a program with their byte offsets: split on commas, trimmed, empty ones
/// dropped (`Interpreter.splitAndTrim`).
pub fn tokens(program: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    for part in program.split(',') {
        let trimmed = part.trim();
        if !trimmed.is_empty() {
            let lead = part.len() - part.trim_start().len();
            out.push((at + lead, trimmed.to_owned()));
        }
        at += part.len() + 1;
    }
    out
}

/// One program's run: the stack, the variables, and the frozen part of the stack.
#[derive(Debug, Default)]
pub struct Run {
    pub stack: Vec<Item>,
    vars: HashMap<String, Item>,
    frozen: Vec<Item>,
    depth: usize,
}

impl Run {
    /// Runs `program` from an empty stack; the stack is what it left, bottom first.
    pub fn program(program: &str) -> Result<Vec<Item>, StackError> {
        Run::program_with(program, HashMap::new())
    }

    /// [`Run::program`] with variables already set, as Atlas's graph API sets `tz` to the
    /// graph's time zone (`Grapher`), which `:time-span` reads.
    pub fn program_with(
        program: &str,
        vars: HashMap<String, Item>,
    ) -> Result<Vec<Item>, StackError> {
        let toks = tokens(program);
        if toks.len() > MAX_TOKENS {
            return Err(StackError {
                token: String::new(),
                pos: 0,
                message: format!("the program has more than {MAX_TOKENS} tokens"),
            });
        }
        let items = lists(&toks)?;
        let mut run = Run {
            vars,
            ..Run::default()
        };
        run.exec(&items)?;
        let mut out = std::mem::take(&mut run.frozen);
        out.append(&mut run.stack);
        Ok(out)
    }

    fn exec(&mut self, program: &[(usize, Item)]) -> Result<(), StackError> {
        if self.depth > MAX_CALL_DEPTH {
            return Err(StackError {
                token: String::new(),
                pos: program.first().map_or(0, |p| p.0),
                message: "looping detected".into(),
            });
        }
        self.depth += 1;
        for (pos, item) in program {
            match item {
                Item::Str(t) if t.starts_with(':') && t.len() > 1 => {
                    let err = |message: String| StackError {
                        token: t.clone(),
                        pos: *pos,
                        message,
                    };
                    self.word(&t[1..], *pos).map_err(err)?;
                    if let Some(top) = self.stack.last() {
                        weigh(top).map_err(err)?;
                    }
                }
                Item::Str(t) => self.stack.push(Item::Str(unescape(t))),
                other => self.stack.push(other.clone()),
            }
            if self.stack.len() > MAX_STACK {
                return Err(StackError {
                    token: String::new(),
                    pos: *pos,
                    message: format!("stack overflow: stack size exceeds limit of {MAX_STACK}"),
                });
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// A list item run as a program (`:call`, `:each`, `:map`).
    fn call(&mut self, list: &[Item], pos: usize) -> Result<(), String> {
        let program: Vec<(usize, Item)> = list.iter().map(|i| (pos, i.clone())).collect();
        self.exec(&program).map_err(|e| e.message)
    }

    fn top(&self, n: usize) -> Option<&Item> {
        self.stack.len().checked_sub(n + 1).map(|i| &self.stack[i])
    }

    fn pop(&mut self) -> Item {
        self.stack.pop().unwrap_or(Item::List(Vec::new()))
    }

    fn push_expr(&mut self, e: Expr) {
        self.stack.push(Item::Expr(e));
    }

    fn summary(&self) -> String {
        let kinds: Vec<&str> = self.stack.iter().rev().take(4).map(Item::kind).collect();
        format!("[{}]", kinds.join(", "))
    }

    /// Runs word `name`, or says why it cannot run on this stack. The words that run lists
    /// (`:call`, `:fcall`, `:each`, `:map`) recurse through here, so they are kept apart from
    /// the large dispatch of every other word, whose stack frame stays out of the recursion.
    fn word(&mut self, name: &str, pos: usize) -> Result<(), String> {
        match name {
            "call" | "fcall" | "each" | "map" => self.control(name, pos),
            _ => self.simple(name, pos),
        }
    }

    fn control(&mut self, name: &str, pos: usize) -> Result<(), String> {
        let no_match = |run: &Run, wants: &str| {
            format!(
                "no matches for word ':{name}' with stack {}, candidates: [{wants}]",
                run.summary()
            )
        };
        let (t0, t1) = (self.top(0), self.top(1));
        match name {
            "call" => {
                if !matches!(t0, Some(Item::List(_))) {
                    return Err(no_match(self, "List -- ..."));
                }
                if let Item::List(l) = self.pop() {
                    self.call(&l, pos)?;
                }
            }
            "fcall" => {
                if t0.and_then(Item::as_str).is_none() {
                    return Err(no_match(self, "k -- ..."));
                }
                self.simple("get", pos)?;
                self.control("call", pos)?;
            }
            _ => {
                if !matches!((t0, t1), (Some(Item::List(_)), Some(Item::List(_)))) {
                    return Err(no_match(self, "items:List f:List -- ..."));
                }
                let (Item::List(f), Item::List(items)) = (self.pop(), self.pop()) else {
                    return Err(no_match(self, "items:List f:List"));
                };
                let mut mapped = Vec::new();
                for v in items {
                    let before = self.stack.len();
                    self.stack.push(v);
                    self.call(&f, pos)?;
                    if name == "map" {
                        if self.stack.len() <= before {
                            return Err(":map: the function left nothing on the stack".into());
                        }
                        mapped.push(self.pop());
                    }
                }
                if name == "map" {
                    self.stack.push(Item::List(mapped));
                }
            }
        }
        Ok(())
    }

    #[inline(never)]
    fn simple(&mut self, name: &str, pos: usize) -> Result<(), String> {
        let no_match = |run: &Run, wants: &str| {
            format!(
                "no matches for word ':{name}' with stack {}, candidates: [{wants}]",
                run.summary()
            )
        };
        macro_rules! need {
            ($cond:expr, $wants:expr) => {
                if !$cond {
                    return Err(no_match(self, $wants));
                }
            };
        }
        let t0 = self.top(0).cloned();
        let t1 = self.top(1).cloned();
        let t2 = self.top(2).cloned();
        let q_and_v = |s: &Run| {
            s.top(0).and_then(Item::as_str).is_some() && s.top(1).and_then(Item::as_str).is_some()
        };
        match name {
            // ---- stack ----
            "dup" => {
                need!(t0.is_some(), "a -- a a");
                self.stack.push(t0.unwrap_or(Item::List(Vec::new())));
            }
            "swap" => {
                need!(t1.is_some(), "a b -- b a");
                let n = self.stack.len();
                self.stack.swap(n - 1, n - 2);
            }
            "drop" => {
                need!(t0.is_some(), "a --");
                self.pop();
            }
            "over" => {
                need!(t1.is_some(), "a b -- a b a");
                self.stack.push(t1.unwrap_or(Item::List(Vec::new())));
            }
            "2over" => {
                need!(t1.is_some(), "a b -- a b a b");
                let (a, b) = (
                    t1.unwrap_or(Item::List(Vec::new())),
                    t0.unwrap_or(Item::List(Vec::new())),
                );
                self.stack.push(a);
                self.stack.push(b);
            }
            "nip" => {
                need!(t1.is_some(), "a b -- b");
                let b = self.pop();
                self.pop();
                self.stack.push(b);
            }
            "tuck" => {
                need!(t1.is_some(), "a b -- b a b");
                let b = self.pop();
                let a = self.pop();
                self.stack.push(b.clone());
                self.stack.push(a);
                self.stack.push(b);
            }
            "rot" => {
                need!(t0.is_some(), "a ... b -- ... b a");
                let bottom = self.stack.remove(0);
                self.stack.push(bottom);
            }
            "-rot" => {
                need!(t0.is_some(), "* a b -- b * a");
                let top = self.pop();
                self.stack.insert(0, top);
            }
            "clear" => self.stack.clear(),
            "depth" => self.stack.push(Item::Str(self.stack.len().to_string())),
            "pick" | "roll" => {
                let n = t0.as_ref().and_then(Item::as_int);
                need!(
                    n.is_some_and(|n| n + 1 < self.stack.len()),
                    "aN ... a0 N -- ..."
                );
                let n = n.unwrap_or(0);
                self.pop();
                let i = self.stack.len() - 1 - n;
                let item = if name == "pick" {
                    self.stack[i].clone()
                } else {
                    self.stack.remove(i)
                };
                self.stack.push(item);
            }
            "ndrop" => {
                let n = t0.as_ref().and_then(Item::as_int);
                need!(n.is_some(), "a0 ... aN N --");
                self.pop();
                let keep = self.stack.len().saturating_sub(n.unwrap_or(0));
                self.stack.truncate(keep);
            }
            "nlist" => {
                let n = t0.as_ref().and_then(Item::as_int);
                need!(n.is_some(), "a0 ... aN N -- List(a0 ... aN)");
                self.pop();
                let at = self.stack.len().saturating_sub(n.unwrap_or(0));
                let list = self.stack.split_off(at);
                self.stack.push(Item::List(list));
            }
            "list" => {
                let all = std::mem::take(&mut self.stack);
                self.stack.push(Item::List(all));
            }
            "freeze" => {
                let mut all = std::mem::take(&mut self.stack);
                self.frozen.append(&mut all);
            }
            "set" => {
                need!(t1.as_ref().and_then(Item::as_str).is_some(), "k v --");
                let v = self.pop();
                let k = self.pop();
                if let Item::Str(k) = k {
                    self.vars.insert(k, v);
                }
            }
            "sset" => {
                need!(
                    t0.as_ref().and_then(Item::as_str).is_some() && t1.is_some(),
                    "v k --"
                );
                let k = self.pop();
                let v = self.pop();
                if let Item::Str(k) = k {
                    self.vars.insert(k, v);
                }
            }
            "get" => {
                need!(t0.as_ref().and_then(Item::as_str).is_some(), "k -- v");
                let k = self.pop();
                let k = k.as_str().unwrap_or_default().to_owned();
                match self.vars.get(&k) {
                    Some(v) => self.stack.push(v.clone()),
                    None => return Err(format!("no variable named \"{k}\"")),
                }
            }
            "format" => {
                need!(
                    t0.as_ref().and_then(Item::as_list).is_some()
                        && t1.as_ref().and_then(Item::as_str).is_some(),
                    "pattern:String args:List -- String"
                );
                let args = self.pop();
                let pattern = self.pop();
                let mut out = pattern.as_str().unwrap_or_default().to_owned();
                for a in args.as_list().unwrap_or_default() {
                    let s = a.as_str().map_or_else(|| format!("{a:?}"), str::to_owned);
                    out = out.replacen("%s", &s, 1);
                }
                self.stack.push(Item::Str(out));
            }

            // ---- query ----
            "true" => self.stack.push(Item::Query(Query::True)),
            "false" => self.stack.push(Item::Query(Query::False)),
            // String comparisons of tag values when both are strings; otherwise the math form.
            "lt" | "le" | "gt" | "ge" if q_and_v(self) => {
                let v = self.pop().as_str().unwrap_or_default().to_owned();
                let k = self.pop().as_str().unwrap_or_default().to_owned();
                let q = match name {
                    "lt" => Query::Lt(k, v),
                    "le" => Query::Le(k, v),
                    "gt" => Query::Gt(k, v),
                    _ => Query::Ge(k, v),
                };
                self.stack.push(Item::Query(q));
            }
            "eq" | "re" | "reic" | "contains" | "starts" | "ends" => {
                need!(q_and_v(self), "k:String v:String -- Query");
                let v = self.pop().as_str().unwrap_or_default().to_owned();
                let k = self.pop().as_str().unwrap_or_default().to_owned();
                let q = match name {
                    "eq" => Query::Eq(k, v),
                    "re" => Query::regex(&k, &v, false)?,
                    "reic" => Query::regex(&k, &v, true)?,
                    "contains" => Query::contains(&k, &v)?,
                    "starts" => Query::starts(&k, &v)?,
                    _ => Query::ends(&k, &v)?,
                };
                self.stack.push(Item::Query(q));
            }
            "in" => {
                let vs = t0.as_ref().and_then(Item::strings);
                need!(
                    vs.is_some() && t1.as_ref().and_then(Item::as_str).is_some(),
                    "k:String vs:List -- Query"
                );
                self.pop();
                let k = self.pop().as_str().unwrap_or_default().to_owned();
                let vs = vs.unwrap_or_default();
                let q = match vs.len() {
                    0 => Query::False,
                    1 => Query::Eq(k, vs[0].clone()),
                    _ => Query::In(k, vs),
                };
                self.stack.push(Item::Query(q));
            }
            "has" => {
                need!(
                    t0.as_ref().and_then(Item::as_str).is_some(),
                    "k:String -- Query"
                );
                let k = self.pop().as_str().unwrap_or_default().to_owned();
                self.stack.push(Item::Query(Query::Has(k)));
            }
            "not" if matches!(t0, Some(Item::Query(_))) => {
                let q = self.pop().as_query().unwrap_or(Query::True);
                self.stack.push(Item::Query(q.not()));
            }
            "and" | "or" if matches!((&t0, &t1), (Some(Item::Query(_)), Some(Item::Query(_)))) => {
                let b = self.pop().as_query().unwrap_or(Query::True);
                let a = self.pop().as_query().unwrap_or(Query::True);
                self.stack
                    .push(Item::Query(if name == "and" { a.and(b) } else { a.or(b) }));
            }
            "cq" => {
                let q = t0.as_ref().and_then(Item::as_query);
                need!(q.is_some() && t1.is_some(), "expr q:Query -- expr");
                self.pop();
                let q = q.unwrap_or(Query::True);
                let below = self.pop();
                let item = match below {
                    Item::Query(x) => Item::Query(x.and(q)),
                    Item::Expr(e) => Item::Expr(map_data(e, &|mut d| {
                        d.query = d.query.and(q.clone());
                        d
                    })),
                    Item::Styled(mut s) => {
                        s.expr = map_data(s.expr, &|mut d| {
                            d.query = d.query.and(q.clone());
                            d
                        });
                        Item::Styled(s)
                    }
                    other => other,
                };
                self.stack.push(item);
            }

            // ---- data ----
            "sum" | "count" | "min" | "max" if matches!(t0, Some(Item::Query(_))) => {
                let q = self.pop().as_query().unwrap_or(Query::True);
                self.push_expr(Expr::Data(DataExpr::aggregate(af(name), q)));
            }
            "all" => {
                need!(matches!(t0, Some(Item::Query(_))), "q:Query -- DataExpr");
                let q = self.pop().as_query().unwrap_or(Query::True);
                self.push_expr(Expr::Data(DataExpr {
                    kind: DataKind::All,
                    query: q,
                    cf: None,
                    offset: 0,
                }));
            }
            "by" => {
                let keys = t0.as_ref().and_then(Item::strings);
                need!(keys.is_some() && t1.is_some(), "expr keys:List -- expr");
                let keys = keys.unwrap_or_default();
                self.pop();
                let below = self.pop();
                let grouped = match below {
                    Item::Query(q) => Expr::Data(DataExpr {
                        kind: DataKind::GroupBy(Af::Sum, keys),
                        query: q,
                        cf: None,
                        offset: 0,
                    }),
                    Item::Expr(Expr::Data(DataExpr {
                        kind: DataKind::Aggregate(a),
                        query,
                        cf,
                        offset,
                    })) => Expr::Data(DataExpr {
                        kind: DataKind::GroupBy(a, keys),
                        query,
                        cf,
                        offset,
                    }),
                    Item::Expr(Expr::Aggr(a, inner)) => Expr::GroupBy(a, inner, keys),
                    Item::Expr(Expr::Named(n, inner)) => {
                        // `:avg`, `:stddev`… by keys: the macro over the grouped input.
                        return self.named_by(&n, *inner, keys, pos);
                    }
                    other => {
                        self.stack.push(other);
                        self.stack
                            .push(Item::List(keys.into_iter().map(Item::Str).collect()));
                        return Err(no_match(
                            self,
                            "q:Query keys:List], [af:AggregateFunction keys:List], [af:AggrMathExpr keys:List",
                        ));
                    }
                };
                self.push_expr(grouped);
            }
            "offset" => {
                if let Some(list) = t0.as_ref().and_then(Item::strings) {
                    // The style form: the line drawn again at each offset.
                    need!(
                        t1.as_ref().and_then(Item::as_styled).is_some(),
                        "expr offsets:List -- StyleExpr"
                    );
                    let offsets = list
                        .iter()
                        .map(|d| parse_duration(d).map(|ms| ms / 1000))
                        .collect::<Result<Vec<_>, _>>()?;
                    self.pop();
                    let mut s = self.pop().as_styled().unwrap_or_else(unreachable_styled);
                    s.style.offsets = offsets;
                    self.stack.push(Item::Styled(Box::new(s)));
                } else {
                    let d = t0.as_ref().and_then(Item::as_str).map(parse_duration);
                    need!(
                        matches!(d, Some(Ok(_))) && t1.as_ref().and_then(Item::as_expr).is_some(),
                        "expr d:Duration -- expr"
                    );
                    let secs = d.and_then(Result::ok).unwrap_or(0) / 1000;
                    self.pop();
                    let e = self.pop().as_expr().unwrap_or(Expr::Const(f64::NAN));
                    self.push_expr(map_data(e, &|mut d| {
                        d.offset = secs;
                        d
                    }));
                }
            }
            "cf-avg" | "cf-sum" | "cf-min" | "cf-max" => {
                let e = t0.as_ref().and_then(Item::as_expr);
                need!(e.is_some(), "expr -- expr");
                self.pop();
                let cf = match name {
                    "cf-avg" => Cf::Avg,
                    "cf-sum" => Cf::Sum,
                    "cf-min" => Cf::Min,
                    _ => Cf::Max,
                };
                self.push_expr(map_data(e.unwrap_or(Expr::Const(f64::NAN)), &|mut d| {
                    d.cf = Some(cf);
                    d
                }));
            }

            // ---- math ----
            "add" | "sub" | "mul" | "div" | "pow" | "fadd" | "fsub" | "fmul" | "fdiv" | "gt"
            | "ge" | "lt" | "le" | "and" | "or" => {
                let (b, a) = (
                    t0.as_ref().and_then(Item::as_expr),
                    t1.as_ref().and_then(Item::as_expr),
                );
                need!(
                    a.is_some() && b.is_some(),
                    "a:TimeSeriesExpr b:TimeSeriesExpr -- TimeSeriesExpr"
                );
                self.pop();
                self.pop();
                let (a, b) = (
                    a.unwrap_or(Expr::Const(f64::NAN)),
                    b.unwrap_or(Expr::Const(f64::NAN)),
                );
                check_grouping(name, &a, &b)?;
                // `BinaryWord`: math on two constants is precomputed into a constant.
                self.push_expr(match (&a, &b) {
                    (Expr::Const(x), Expr::Const(y)) => Expr::Const(binop(name).apply(*x, *y)),
                    _ => Expr::Binary(binop(name), Box::new(a), Box::new(b)),
                });
            }
            "abs" | "neg" | "sqrt" | "sin" | "per-step" => self.unary(name, |e| {
                let op = match name {
                    "abs" => UnOp::Abs,
                    "neg" => UnOp::Neg,
                    "sqrt" => UnOp::Sqrt,
                    "sin" => UnOp::Sin,
                    _ => UnOp::PerStep,
                };
                // `UnaryWord`: math on a constant is precomputed into a constant (`:per-step`'s
                // `apply` is the identity; only its `eval` multiplies by the step).
                Ok(match e {
                    Expr::Const(v) => Expr::Const(match op {
                        UnOp::Abs => v.abs(),
                        UnOp::Neg => -v,
                        UnOp::Sqrt => v.sqrt(),
                        UnOp::Sin => v.sin(),
                        _ => v,
                    }),
                    e => Expr::Unary(op, Box::new(e)),
                })
            })?,
            "clamp-min" | "clamp-max" => {
                let v = t0.as_ref().and_then(Item::as_number);
                need!(
                    v.is_some() && t1.as_ref().and_then(Item::as_expr).is_some(),
                    "expr v:Double -- expr"
                );
                self.pop();
                let v = v.unwrap_or(f64::NAN);
                let op = if name == "clamp-min" {
                    UnOp::ClampMin(v)
                } else {
                    UnOp::ClampMax(v)
                };
                self.unary(name, |e| Ok(Expr::Unary(op, Box::new(e))))?;
            }
            "const" => {
                let v = t0.as_ref().and_then(Item::as_number);
                need!(v.is_some(), "v:Double -- TimeSeriesExpr");
                self.pop();
                self.push_expr(Expr::Const(v.unwrap_or(f64::NAN)));
            }
            "pi" => self.push_expr(Expr::Const(std::f64::consts::PI)),
            "random" => self.push_expr(Expr::Random(None)),
            "srandom" => {
                // `DataType.IntType`: a string as Java's `toInt` reads it, or a constant's
                // `intValue` (truncated, saturating, NaN as 0).
                let seed = match &t0 {
                    Some(Item::Str(v)) => v.parse::<i32>().ok(),
                    Some(Item::Expr(Expr::Const(v))) => Some(*v as i32),
                    _ => None,
                };
                need!(seed.is_some(), "seed:Int -- TimeSeriesExpr");
                self.pop();
                self.push_expr(Expr::Random(seed));
            }
            "time" => {
                let mode = t0.as_ref().and_then(Item::as_str).map(str::to_owned);
                need!(mode.is_some(), "mode:String -- TimeSeriesExpr");
                let mode = mode.unwrap_or_default();
                if !TIME_MODES.contains(&mode.as_str()) {
                    return Err(format!(
                        "unknown time mode \"{mode}\"; one of {}",
                        TIME_MODES.join(", ")
                    ));
                }
                self.pop();
                self.push_expr(Expr::Time(mode));
            }
            "time-span" => {
                need!(q_and_v(self), "s:String e:String -- TimeSeriesExpr");
                let e = self.pop().as_str().unwrap_or_default().to_owned();
                let s = self.pop().as_str().unwrap_or_default().to_owned();
                // The `tz` variable, else UTC (`MathVocabulary.TimeSpan`).
                let tz = match self.vars.get("tz") {
                    Some(Item::Str(z)) => parse_tz(z)?,
                    _ => chrono_tz::Tz::UTC,
                };
                // Atlas checks the references when it evaluates; they are known now.
                TimeSpan::check(&s, &e)?;
                self.push_expr(Expr::TimeSpan(Box::new(TimeSpan { s, e, tz })));
            }
            "as" => {
                need!(
                    q_and_v(self) && t2.as_ref().and_then(Item::as_expr).is_some(),
                    "expr original:String replacement:String -- expr"
                );
                let to = self.pop().as_str().unwrap_or_default().to_owned();
                let from = self.pop().as_str().unwrap_or_default().to_owned();
                let e = self.pop().as_expr().unwrap_or(Expr::Const(f64::NAN));
                self.push_expr(Expr::As(Box::new(e), from, to));
            }
            "sum" | "count" | "min" | "max" => {
                let e = t0.as_ref().and_then(Item::as_expr);
                need!(e.is_some(), "q:Query], [expr:TimeSeriesExpr");
                self.pop();
                self.push_expr(Expr::Aggr(
                    af(name),
                    Box::new(e.unwrap_or(Expr::Const(f64::NAN))),
                ));
            }
            "percentiles" => {
                let pcts: Option<Vec<f64>> = t0
                    .as_ref()
                    .and_then(Item::as_list)
                    .and_then(|l| l.iter().map(Item::as_number).collect());
                let data = match &t1 {
                    Some(Item::Query(q)) => Some(DataExpr::aggregate(Af::Sum, q.clone())),
                    Some(Item::Expr(Expr::Data(d))) if d.kind != DataKind::All => Some(d.clone()),
                    _ => None,
                };
                need!(
                    pcts.is_some() && data.is_some(),
                    "DataExpr percentiles:List -- Expr"
                );
                let pcts = pcts.unwrap_or_default();
                if let Some(p) = pcts.iter().find(|p| !(0.0..=100.0).contains(*p)) {
                    return Err(format!(
                        "invalid percentile {p}, value must be 0.0 <= p <= 100.0"
                    ));
                }
                let Some(mut d) = data else {
                    return Err(no_match(self, "DataExpr percentiles:List"));
                };
                // Always the sum of the buckets, grouped by bucket and the keys asked for.
                d.kind = match d.kind {
                    DataKind::GroupBy(_, keys) => {
                        let mut k = vec!["percentile".to_string()];
                        k.extend(keys.into_iter().filter(|k| k != "percentile"));
                        DataKind::GroupBy(Af::Sum, k)
                    }
                    _ => DataKind::GroupBy(Af::Sum, vec!["percentile".to_string()]),
                };
                d.cf = None;
                self.pop();
                self.pop();
                self.push_expr(Expr::Percentiles(d, pcts));
            }
            "median" => {
                need!(
                    matches!(t0, Some(Item::Query(_)) | Some(Item::Expr(Expr::Data(_)))),
                    "DataExpr -- Expr"
                );
                self.stack.push(Item::List(vec![Item::Str("50".into())]));
                self.simple("percentiles", pos)?;
            }
            "avg" | "stddev" | "pct" => {
                let e = t0.as_ref().and_then(Item::as_expr);
                need!(e.is_some(), "expr:TimeSeriesExpr");
                self.pop();
                let e = e.unwrap_or(Expr::Const(f64::NAN));
                let made = macro_over(name, e)?;
                self.push_expr(made);
            }
            "dist-avg" | "dist-max" | "dist-stddev" => {
                need!(
                    matches!(t0, Some(Item::Query(_))),
                    "Query -- TimeSeriesExpr"
                );
                let q = self.pop().as_query().unwrap_or(Query::True);
                self.push_expr(dist_macro(name, q));
            }

            // ---- stateful ----
            "rolling-count" | "rolling-min" | "rolling-max" | "rolling-sum" | "delay" => {
                let n = t0.as_ref().and_then(Item::as_int);
                need!(
                    n.is_some() && t1.as_ref().and_then(Item::as_styled).is_some(),
                    "expr n:Int -- expr"
                );
                let n = n.unwrap_or(1);
                // `RollingBuffer` refuses an empty window and one over `MaxWindowSize`.
                if n == 0 || n > MAX_WINDOW_SIZE {
                    return Err(format!(
                        ":{name}: window size must be between 1 and {MAX_WINDOW_SIZE}: {n}"
                    ));
                }
                self.pop();
                let s = match name {
                    "rolling-count" => Stateful::RollingCount(n),
                    "rolling-min" => Stateful::RollingMin(n),
                    "rolling-max" => Stateful::RollingMax(n),
                    "rolling-sum" => Stateful::RollingSum(n),
                    _ => Stateful::Delay(n),
                };
                self.unary(name, |e| Ok(Expr::Stateful(s, Box::new(e))))?;
            }
            "rolling-mean" => {
                let (m, n) = (
                    t0.as_ref().and_then(Item::as_int),
                    t1.as_ref().and_then(Item::as_int),
                );
                need!(
                    m.is_some() && n.is_some() && t2.as_ref().and_then(Item::as_styled).is_some(),
                    "expr n:Int minNumValues:Int -- expr"
                );
                let (n, m) = (n.unwrap_or(1), m.unwrap_or(1));
                if n > MAX_WINDOW_SIZE {
                    return Err(format!(
                        ":rolling-mean: window size must be between 1 and {MAX_WINDOW_SIZE}: {n}"
                    ));
                }
                if m == 0 || m > n {
                    return Err(format!(
                        ":rolling-mean: the minimum number of values must be between 1 and the window size ({n}), not {m}"
                    ));
                }
                self.pop();
                self.pop();
                self.unary(name, |e| {
                    Ok(Expr::Stateful(Stateful::RollingMean(n, m), Box::new(e)))
                })?;
            }
            "integral" | "derivative" | "cumulative-max" => {
                let s = match name {
                    "integral" => Stateful::Integral,
                    "derivative" => Stateful::Derivative,
                    _ => Stateful::CumulativeMax,
                };
                self.unary(name, |e| Ok(Expr::Stateful(s, Box::new(e))))?;
            }
            "trend" => {
                let d = t0.as_ref().and_then(Item::as_str).map(parse_duration);
                need!(
                    matches!(d, Some(Ok(_))) && t1.as_ref().and_then(Item::as_styled).is_some(),
                    "expr window:Duration -- expr"
                );
                let secs = d.and_then(Result::ok).unwrap_or(0) / 1000;
                self.pop();
                self.unary(name, |e| {
                    Ok(Expr::Stateful(Stateful::Trend(secs), Box::new(e)))
                })?;
            }
            "des" | "sdes" => {
                let nums: Vec<Option<f64>> = (0..3)
                    .map(|i| self.top(i).and_then(Item::as_number))
                    .collect();
                need!(
                    nums.iter().all(Option::is_some)
                        && self.top(3).and_then(Item::as_styled).is_some(),
                    "expr training:Int alpha:Double beta:Double -- expr"
                );
                let beta = nums[0].unwrap_or(0.0);
                let alpha = nums[1].unwrap_or(0.0);
                let training = nums[2].unwrap_or(0.0);
                if training < 0.0 || training.fract() != 0.0 {
                    return Err(format!(
                        ":{name}: training must be a whole number of datapoints"
                    ));
                }
                let training = training as usize;
                // `OnlineSlidingDes` switches every `training` values (Atlas divides by it).
                if name == "sdes" && training == 0 {
                    return Err(":sdes: training must be at least 1".to_string());
                }
                for _ in 0..3 {
                    self.pop();
                }
                let s = if name == "des" {
                    Stateful::Des {
                        training,
                        alpha,
                        beta,
                    }
                } else {
                    Stateful::Sdes {
                        training,
                        alpha,
                        beta,
                    }
                };
                self.unary(name, |e| Ok(Expr::Stateful(s, Box::new(e))))?;
            }
            "des-simple" | "des-fast" | "des-slower" | "des-slow" | "sdes-simple" | "sdes-fast"
            | "sdes-slower" | "sdes-slow" => {
                let (training, alpha, beta) =
                    match name.trim_start_matches('s').trim_start_matches("des-") {
                        "simple" => ("10", "0.1", "0.5"),
                        "fast" => ("10", "0.1", "0.02"),
                        "slower" => ("10", "0.05", "0.03"),
                        _ => ("10", "0.03", "0.04"),
                    };
                for v in [training, alpha, beta] {
                    self.stack.push(Item::Str(v.into()));
                }
                self.word(
                    if name.starts_with("sdes") {
                        "sdes"
                    } else {
                        "des"
                    },
                    pos,
                )?;
            }

            // ---- filter ----
            "stat" => {
                let stat = t0.as_ref().and_then(Item::as_str).and_then(Stat::parse);
                need!(
                    stat.is_some() && t1.as_ref().and_then(Item::as_expr).is_some(),
                    "expr stat:String -- expr"
                );
                self.pop();
                let e = self.pop().as_expr().unwrap_or(Expr::Const(f64::NAN));
                self.push_expr(Expr::Stat(Box::new(e), stat.unwrap_or(Stat::Avg)));
            }
            "stat-avg" | "stat-max" | "stat-min" | "stat-last" | "stat-count" | "stat-total" => {
                let stat = Stat::parse(&name[5..]).unwrap_or(Stat::Avg);
                self.push_expr(Expr::StatPlaceholder(stat));
            }
            "stat-min-mf" | "stat-max-mf" | "stat-avg-mf" => {
                // Shorthand for filtering on a statistic with the math form: `:stat-max-mf`.
                let stat = Stat::parse(&name[5..8]).unwrap_or(Stat::Avg);
                self.push_expr(Expr::StatPlaceholder(stat));
            }
            "filter" => {
                let (c, e) = (
                    t0.as_ref().and_then(Item::as_expr),
                    t1.as_ref().and_then(Item::as_expr),
                );
                need!(
                    c.is_some() && e.is_some(),
                    "expr cond:TimeSeriesExpr -- expr"
                );
                self.pop();
                self.pop();
                let (e, c) = (
                    e.unwrap_or(Expr::Const(f64::NAN)),
                    c.unwrap_or(Expr::Const(f64::NAN)),
                );
                if !e.is_grouped() && c.is_grouped() {
                    return Err("filter grouping must match expr grouping".into());
                }
                let c = c.bind_stats(&e);
                self.push_expr(Expr::Filter(Box::new(e), Box::new(c)));
            }
            "topk" | "bottomk" | "topk-others-min" | "topk-others-max" | "topk-others-sum"
            | "topk-others-avg" | "bottomk-others-min" | "bottomk-others-max"
            | "bottomk-others-sum" | "bottomk-others-avg" => {
                let k = t0.as_ref().and_then(Item::as_int);
                let stat = t1.as_ref().and_then(Item::as_str).and_then(Stat::parse);
                need!(
                    k.is_some() && stat.is_some() && t2.as_ref().and_then(Item::as_expr).is_some(),
                    "expr stat:String k:Int -- expr"
                );
                let k = k.unwrap_or(1);
                if k == 0 {
                    return Err(format!("k must be positive ({k} <= 0)"));
                }
                self.pop();
                self.pop();
                let e = self.pop().as_expr().unwrap_or(Expr::Const(f64::NAN));
                let others = match name.rsplit('-').next() {
                    Some("min") => Some(OthersAf::Min),
                    Some("max") => Some(OthersAf::Max),
                    Some("sum") => Some(OthersAf::Sum),
                    Some("avg") => Some(OthersAf::Avg),
                    _ => None,
                };
                self.push_expr(Expr::Priority(
                    Box::new(e),
                    Priority {
                        top: name.starts_with("topk"),
                        stat: stat.unwrap_or(Stat::Avg),
                        k,
                        others,
                    },
                ));
            }
            "consolidate" => {
                let d = t0.as_ref().and_then(Item::as_str).map(parse_duration);
                let cf = t1.as_ref().and_then(Item::as_str).and_then(|c| match c {
                    "avg" => Some(Cf::Avg),
                    "sum" => Some(Cf::Sum),
                    "min" => Some(Cf::Min),
                    "max" => Some(Cf::Max),
                    _ => None,
                });
                need!(
                    matches!(d, Some(Ok(ms)) if ms >= 1000)
                        && cf.is_some()
                        && t2.as_ref().and_then(Item::as_expr).is_some(),
                    "expr cf:String step:Duration -- expr"
                );
                let step = d.and_then(Result::ok).unwrap_or(60_000) / 1000;
                self.pop();
                self.pop();
                let e = self.pop().as_expr().unwrap_or(Expr::Const(f64::NAN));
                self.push_expr(Expr::Consolidate(Box::new(e), cf.unwrap_or(Cf::Avg), step));
            }

            // ---- style ----
            "legend" | "color" | "alpha" | "ls" | "palette" | "sort" | "order" => {
                let v = t0.as_ref().and_then(Item::as_str).map(str::to_owned);
                need!(
                    v.is_some() && t1.as_ref().and_then(Item::as_styled).is_some(),
                    "expr v:String -- StyleExpr"
                );
                let v = v.unwrap_or_default();
                match name {
                    "ls" if !["line", "area", "stack", "vspan", "heatmap"]
                        .contains(&v.as_str()) =>
                    {
                        return Err(format!(
                            "unknown line style \"{v}\"; one of line, area, stack, vspan, heatmap"
                        ))
                    }
                    "order" if v != "asc" && v != "desc" => {
                        return Err(format!("unknown order \"{v}\"; asc or desc"))
                    }
                    "sort" if v != "legend" && Stat::parse(&v).is_none() => {
                        return Err(format!(
                            "unknown sort \"{v}\"; legend, min, max, avg, count, total or last"
                        ))
                    }
                    "color" if !is_color(&v) && !super::chart::is_named_color(&v) => {
                        return Err(format!(
                            "color must be a hex string [AA]RRGGBB or a named color (blue1, gray2, red3...), not \"{v}\""
                        ))
                    }
                    "alpha" if v.len() != 2 || u8::from_str_radix(&v, 16).is_err() => {
                        return Err(format!("alpha must be two hex digits, not \"{v}\""))
                    }
                    _ => {}
                }
                self.pop();
                let mut s = self.pop().as_styled().unwrap_or_else(unreachable_styled);
                let st = &mut s.style;
                match name {
                    "legend" => st.legend = Some(v),
                    "color" => st.color = Some(v),
                    "alpha" => st.alpha = Some(v),
                    "ls" => st.line_style = Some(v),
                    "palette" => st.palette = Some(v),
                    "sort" => st.sort = Some(v),
                    _ => st.order = Some(v),
                }
                self.stack.push(Item::Styled(Box::new(s)));
            }
            "line" | "area" | "stack" | "vspan" | "heatmap" => {
                need!(
                    t0.as_ref().and_then(Item::as_styled).is_some(),
                    "expr -- StyleExpr"
                );
                self.stack.push(Item::Str(name.into()));
                self.word("ls", pos)?;
            }
            "lw" | "axis" | "limit" | "head" => {
                let n = t0.as_ref().and_then(Item::as_number);
                need!(
                    n.is_some() && t1.as_ref().and_then(Item::as_styled).is_some(),
                    "expr n:Int -- StyleExpr"
                );
                let n = n.unwrap_or(1.0);
                if name == "axis" && !(0.0..=4.0).contains(&n) {
                    return Err(format!("axis must be between 0 and 4, not {n}"));
                }
                if n < 0.0 || n.fract() != 0.0 && name != "lw" {
                    return Err(format!(":{name}: expected a whole number, not {n}"));
                }
                self.pop();
                let mut s = self.pop().as_styled().unwrap_or_else(unreachable_styled);
                match name {
                    "lw" => s.style.line_width = Some(n),
                    "axis" => s.style.axis = Some(n as u32),
                    _ => s.style.limit = Some(n as usize),
                }
                self.stack.push(Item::Styled(Box::new(s)));
            }
            "s" => {
                need!(
                    q_and_v(self) && t2.as_ref().and_then(Item::as_styled).is_some(),
                    "expr search:String replace:String -- StyleExpr"
                );
                let replace = self.pop().as_str().unwrap_or_default().to_owned();
                let search = self.pop().as_str().unwrap_or_default().to_owned();
                regex::Regex::new(&search).map_err(|e| format!("bad regex \"{search}\": {e}"))?;
                let mut s = self.pop().as_styled().unwrap_or_else(unreachable_styled);
                s.style.sed.push(Sed::Replace(search, replace));
                self.stack.push(Item::Styled(Box::new(s)));
            }
            "decode" => {
                let mode = t0.as_ref().and_then(Item::as_str).map(str::to_owned);
                need!(
                    mode.is_some() && t1.as_ref().and_then(Item::as_styled).is_some(),
                    "StyleExpr mode:String -- StyleExpr"
                );
                let mode = mode.unwrap_or_default();
                // Atlas finds an unknown encoding when it draws the legend; it is known now.
                if !DECODINGS.contains(&mode.as_str()) {
                    return Err(format!("unknown encoding '{mode}'"));
                }
                self.pop();
                let mut s = self.pop().as_styled().unwrap_or_else(unreachable_styled);
                s.style.sed.push(Sed::Decode(mode));
                self.stack.push(Item::Styled(Box::new(s)));
            }
            "strip-style" => {
                need!(
                    t0.as_ref().and_then(Item::as_styled).is_some(),
                    "expr -- expr"
                );
                let s = self.pop().as_styled().unwrap_or_else(unreachable_styled);
                self.push_expr(s.expr);
            }
            _ => return Err(format!("unknown word ':{name}'")),
        }
        Ok(())
    }

    /// A word of one expression that passes a style through (the stateful and math words):
    /// applied to the expression under its style.
    fn unary(
        &mut self,
        name: &str,
        f: impl FnOnce(Expr) -> Result<Expr, String>,
    ) -> Result<(), String> {
        match self.stack.pop() {
            Some(Item::Styled(mut s)) => {
                let expr = std::mem::replace(&mut s.expr, Expr::Const(f64::NAN));
                s.expr = f(expr)?;
                self.stack.push(Item::Styled(s));
            }
            Some(other) => match other.as_expr() {
                Some(e) => self.push_expr(f(e)?),
                None => {
                    let kind = other.kind();
                    self.stack.push(other);
                    return Err(format!(
                        "no matches for word ':{name}' with stack [{kind}], candidates: [expr:TimeSeriesExpr]"
                    ));
                }
            },
            None => {
                return Err(format!(
                "no matches for word ':{name}' with stack [], candidates: [expr:TimeSeriesExpr]"
            ))
            }
        }
        Ok(())
    }

    /// `:avg`, `:stddev` or `:pct` of a grouped data expression, by `keys`; `:dist-*` by
    /// `keys` (`NamedRewrite.groupBy`: every aggregate of the rewrite grouped by them), or
    /// once grouped, a `:sum` by `keys` of the groups (`MathVocabulary.GroupBy`).
    fn named_by(
        &mut self,
        name: &str,
        inner: Expr,
        keys: Vec<String>,
        _pos: usize,
    ) -> Result<(), String> {
        if name.starts_with("dist-") {
            let named = |e: Expr| Expr::Named(name.into(), Box::new(e));
            let e = if inner.is_grouped() {
                Expr::GroupBy(Af::Sum, Box::new(named(inner)), keys)
            } else {
                named(map_data(inner, &|mut d| {
                    if let DataKind::Aggregate(af) = d.kind {
                        d.kind = DataKind::GroupBy(af, keys.clone());
                    }
                    d
                }))
            };
            self.push_expr(e);
            return Ok(());
        }
        let Some(q) = first_query(&inner) else {
            return Err(format!(
                ":by: cannot group :{name} of an expression without data"
            ));
        };
        let grouped = |af: Af| {
            Expr::Data(DataExpr {
                kind: DataKind::GroupBy(af, keys.clone()),
                query: q.clone(),
                cf: None,
                offset: 0,
            })
        };
        let e = match name {
            "avg" => Expr::Binary(
                BinOp::Div,
                Box::new(grouped(Af::Sum)),
                Box::new(grouped(Af::Count)),
            ),
            _ => {
                return Err(format!(
                    ":by of :{name} is not supported; group the input first"
                ))
            }
        };
        self.push_expr(Expr::Named(name.into(), Box::new(e)));
        Ok(())
    }
}

fn unreachable_styled() -> Styled {
    Styled {
        expr: Expr::Const(f64::NAN),
        style: Style::default(),
    }
}

fn is_color(v: &str) -> bool {
    matches!(v.len(), 3 | 6 | 8) && v.bytes().all(|b| b.is_ascii_hexdigit())
}

fn af(name: &str) -> Af {
    match name {
        "count" => Af::Count,
        "min" => Af::Min,
        "max" => Af::Max,
        _ => Af::Sum,
    }
}

fn binop(name: &str) -> BinOp {
    match name {
        "add" => BinOp::Add,
        "sub" => BinOp::Sub,
        "mul" => BinOp::Mul,
        "div" => BinOp::Div,
        "pow" => BinOp::Pow,
        "fadd" => BinOp::FAdd,
        "fsub" => BinOp::FSub,
        "fmul" => BinOp::FMul,
        "fdiv" => BinOp::FDiv,
        "gt" => BinOp::Gt,
        "ge" => BinOp::Ge,
        "lt" => BinOp::Lt,
        "le" => BinOp::Le,
        "and" => BinOp::And,
        _ => BinOp::Or,
    }
}

/// Atlas refuses a binary operation whose sides are grouped by keys neither of which holds
/// the other, when the expression is made.
fn check_grouping(name: &str, a: &Expr, b: &Expr) -> Result<(), String> {
    if a.is_grouped() && b.is_grouped() {
        let (ga, gb) = (a.grouping(), b.grouping());
        if !ga.iter().all(|k| gb.contains(k)) && !gb.iter().all(|k| ga.contains(k)) {
            return Err(format!(
                ":{name}: both sides of binary operation must have the same grouping or one side must be a subset of the other [(,{},) ⊈ (,{},)]",
                ga.join(","),
                gb.join(",")
            ));
        }
    }
    Ok(())
}

/// Every data expression of `e` through `f` (`:offset`, `:cf-*`, `:cq`).
fn map_data(e: Expr, f: &dyn Fn(DataExpr) -> DataExpr) -> Expr {
    let m = |e: Box<Expr>| Box::new(map_data(*e, f));
    match e {
        Expr::Data(d) => Expr::Data(f(d)),
        Expr::Binary(op, a, b) => Expr::Binary(op, m(a), m(b)),
        Expr::Filter(a, b) => Expr::Filter(m(a), m(b)),
        Expr::Unary(op, e) => Expr::Unary(op, m(e)),
        Expr::Aggr(af, e) => Expr::Aggr(af, m(e)),
        Expr::GroupBy(af, e, k) => Expr::GroupBy(af, m(e), k),
        Expr::As(e, a, b) => Expr::As(m(e), a, b),
        Expr::Stateful(s, e) => Expr::Stateful(s, m(e)),
        Expr::Stat(e, s) => Expr::Stat(m(e), s),
        Expr::Priority(e, p) => Expr::Priority(m(e), p),
        Expr::Consolidate(e, cf, s) => Expr::Consolidate(m(e), cf, s),
        Expr::Named(n, e) => Expr::Named(n, m(e)),
        Expr::Percentiles(d, p) => Expr::Percentiles(f(d), p),
        e => e,
    }
}

fn first_query(e: &Expr) -> Option<Query> {
    let mut ds = Vec::new();
    e.data_exprs(&mut ds);
    ds.first().map(|d| d.query.clone())
}

/// `:avg`, `:stddev`, `:pct` (macros in `MathVocabulary`), built directly. Of a query or a
/// plain aggregate they are across the matching series; of a grouped data expression, per
/// group; of anything else, across its lines.
fn macro_over(name: &str, e: Expr) -> Result<Expr, String> {
    let sum_count = |e: &Expr| -> (Expr, Expr) {
        match e {
            Expr::Data(DataExpr {
                kind: DataKind::Aggregate(_),
                query,
                cf,
                offset,
            }) => {
                let d = |af| {
                    Expr::Data(DataExpr {
                        kind: DataKind::Aggregate(af),
                        query: query.clone(),
                        cf: *cf,
                        offset: *offset,
                    })
                };
                (d(Af::Sum), d(Af::Count))
            }
            Expr::Data(DataExpr {
                kind: DataKind::GroupBy(_, keys),
                query,
                cf,
                offset,
            }) => {
                let d = |af| {
                    Expr::Data(DataExpr {
                        kind: DataKind::GroupBy(af, keys.clone()),
                        query: query.clone(),
                        cf: *cf,
                        offset: *offset,
                    })
                };
                (d(Af::Sum), d(Af::Count))
            }
            other => (
                Expr::Aggr(Af::Sum, Box::new(other.clone())),
                Expr::Aggr(Af::Count, Box::new(other.clone())),
            ),
        }
    };
    let b = |op, x: Expr, y: Expr| Expr::Binary(op, Box::new(x), Box::new(y));
    let made = match name {
        "avg" => {
            let (s, c) = sum_count(&e);
            b(BinOp::Div, s, c)
        }
        "pct" => {
            // Each line as a percentage of the sum of all.
            let total = Expr::Aggr(Af::Sum, Box::new(e.clone()));
            b(BinOp::Mul, b(BinOp::Div, e, total), Expr::Const(100.0))
        }
        _ => {
            // sqrt((N * sum(x^2) - sum(x)^2) / N^2), over the lines of the input.
            let x = b(BinOp::FAdd, e, Expr::Const(0.0));
            let n = Expr::Aggr(Af::Count, Box::new(x.clone()));
            let sq = Expr::Aggr(Af::Sum, Box::new(b(BinOp::Mul, x.clone(), x.clone())));
            let s = Expr::Aggr(Af::Sum, Box::new(x));
            let var = b(
                BinOp::Div,
                b(
                    BinOp::Sub,
                    b(BinOp::Mul, n.clone(), sq),
                    b(BinOp::Mul, s.clone(), s),
                ),
                b(BinOp::Mul, n.clone(), n),
            );
            Expr::Unary(UnOp::Sqrt, Box::new(var))
        }
    };
    Ok(Expr::Named(name.into(), Box::new(made)))
}

/// `:dist-avg`, `:dist-max` and `:dist-stddev` (macros in `MathVocabulary`) of a query, built
/// as their bodies build them: the statistics of a timer or distribution summary summed
/// (`:max` for `max`), the query ANDed into each by `:cq`, all under the macro's name.
fn dist_macro(name: &str, q: Query) -> Expr {
    let stat = |s: Query, af: Af| Expr::Data(DataExpr::aggregate(af, s.and(q.clone())));
    let eq = |v: &str| Query::Eq("statistic".into(), v.into());
    let either = |a: &str, b: &str| Query::In("statistic".into(), vec![a.into(), b.into()]);
    let b = |op, x: Expr, y: Expr| Expr::Binary(op, Box::new(x), Box::new(y));
    let made = match name {
        // statistic,(,totalTime,totalAmount,),:in,:sum,statistic,count,:eq,:sum,:div
        "dist-avg" => b(
            BinOp::Div,
            stat(either("totalTime", "totalAmount"), Af::Sum),
            stat(eq("count"), Af::Sum),
        ),
        // statistic,max,:eq,:max
        "dist-max" => stat(eq("max"), Af::Max),
        // sqrt((N * sum(x^2) - sum(x)^2) / N^2) from count, totalOfSquares and the total.
        _ => {
            let n = || stat(eq("count"), Af::Sum);
            let total = stat(either("totalAmount", "totalTime"), Af::Sum);
            let var = b(
                BinOp::Div,
                b(
                    BinOp::Sub,
                    b(BinOp::Mul, n(), stat(eq("totalOfSquares"), Af::Sum)),
                    b(BinOp::Mul, total.clone(), total),
                ),
                b(BinOp::Mul, n(), n()),
            );
            Expr::Unary(UnOp::Sqrt, Box::new(var))
        }
    };
    Expr::Named(name.into(), Box::new(made))
}

/// Atlas's token escapes (`Strings.unescape`): `\uXXXX`, so a token can hold a comma
/// (`\u002C`) or be a literal parenthesis (`\u0028`).
fn unescape(t: &str) -> String {
    if !t.contains("\\u") {
        return t.to_owned();
    }
    let mut out = String::with_capacity(t.len());
    let mut rest = t;
    while let Some(i) = rest.find("\\u") {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 2..i + 6)
            .and_then(|h| u32::from_str_radix(h, 16).ok());
        match code.and_then(char::from_u32) {
            Some(c) => {
                out.push(c);
                rest = &rest[i + 6..];
            }
            None => {
                out.push_str("\\u");
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Checks that an item is within [`MAX_EXPR_DEPTH`], [`MAX_QUERY_DEPTH`] and
/// [`MAX_ITEM_NODES`]. The walk stops at the first bound passed, so it recurses at most one
/// level past a bound and visits at most one node past the count. Every word's result is
/// weighed as it is pushed, and words build items only from weighed ones, so no item on the
/// stack can be much past a bound and nothing later (evaluation, naming, dropping) recurses
/// deeper than that.
fn weigh(item: &Item) -> Result<(), String> {
    let mut nodes = 0;
    weigh_item(item, &mut nodes)
}

fn count(nodes: &mut usize) -> Result<(), String> {
    *nodes += 1;
    if *nodes > MAX_ITEM_NODES {
        return Err(format!(
            "the expression has more than {MAX_ITEM_NODES} parts"
        ));
    }
    Ok(())
}

fn weigh_item(item: &Item, nodes: &mut usize) -> Result<(), String> {
    match item {
        // A list of strings (`:in`'s values, `:by`'s keys) is data, not structure.
        Item::Str(_) => Ok(()),
        Item::List(l) => {
            count(nodes)?;
            l.iter().try_for_each(|i| weigh_item(i, nodes))
        }
        Item::Query(q) => weigh_query(q, 1, nodes),
        Item::Expr(e) => weigh_expr(e, 1, nodes),
        Item::Styled(s) => weigh_expr(&s.expr, 1, nodes),
    }
}

fn weigh_query(q: &Query, depth: usize, nodes: &mut usize) -> Result<(), String> {
    count(nodes)?;
    if depth > MAX_QUERY_DEPTH {
        return Err(format!(
            "queries nest deeper than {MAX_QUERY_DEPTH} levels of :and, :or and :not"
        ));
    }
    match q {
        Query::And(a, b) | Query::Or(a, b) => {
            weigh_query(a, depth + 1, nodes)?;
            weigh_query(b, depth + 1, nodes)
        }
        Query::Not(a) => weigh_query(a, depth + 1, nodes),
        _ => Ok(()),
    }
}

fn weigh_expr(e: &Expr, depth: usize, nodes: &mut usize) -> Result<(), String> {
    count(nodes)?;
    if depth > MAX_EXPR_DEPTH {
        return Err(format!(
            "expressions nest deeper than {MAX_EXPR_DEPTH} levels"
        ));
    }
    match e {
        Expr::Data(d) | Expr::Percentiles(d, _) => weigh_query(&d.query, 1, nodes),
        Expr::Const(_)
        | Expr::Time(_)
        | Expr::Random(_)
        | Expr::TimeSpan(_)
        | Expr::StatPlaceholder(_) => Ok(()),
        Expr::Binary(_, a, b) | Expr::Filter(a, b) => {
            weigh_expr(a, depth + 1, nodes)?;
            weigh_expr(b, depth + 1, nodes)
        }
        Expr::Unary(_, a)
        | Expr::Aggr(_, a)
        | Expr::GroupBy(_, a, _)
        | Expr::As(a, ..)
        | Expr::Stateful(_, a)
        | Expr::Stat(a, _)
        | Expr::Priority(a, _)
        | Expr::Consolidate(a, ..)
        | Expr::Named(_, a) => weigh_expr(a, depth + 1, nodes),
    }
}

/// Groups `(` … `)` into list items, checking they balance.
fn lists(toks: &[(usize, String)]) -> Result<Vec<(usize, Item)>, StackError> {
    let mut stack: Vec<(usize, Vec<(usize, Item)>)> = vec![(0, Vec::new())];
    for (pos, t) in toks {
        match t.as_str() {
            "(" => {
                if stack.len() > MAX_LIST_DEPTH {
                    return Err(StackError {
                        token: t.clone(),
                        pos: *pos,
                        message: format!("lists nest deeper than {MAX_LIST_DEPTH}"),
                    });
                }
                stack.push((*pos, Vec::new()));
            }
            ")" => {
                if stack.len() == 1 {
                    return Err(StackError {
                        token: t.clone(),
                        pos: *pos,
                        message: "unmatched closing parenthesis".into(),
                    });
                }
                let (at, items) = stack.pop().unwrap_or_default();
                let list = Item::List(items.into_iter().map(|(_, i)| i).collect());
                if let Some(parent) = stack.last_mut() {
                    parent.1.push((at, list));
                }
            }
            _ => {
                if let Some(cur) = stack.last_mut() {
                    cur.1.push((*pos, Item::Str(t.clone())));
                }
            }
        }
    }
    if stack.len() > 1 {
        let at = stack.last().map_or(0, |s| s.0);
        return Err(StackError {
            token: "(".into(),
            pos: at,
            message: "unmatched opening parenthesis".into(),
        });
    }
    Ok(stack.pop().map(|s| s.1).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: &str) -> Vec<Item> {
        Run::program(p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    fn strs(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Item::Str(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// The stack words' documented examples (`StandardVocabulary.scala`).
    #[test]
    fn stack_words() {
        for (p, want) in [
            ("a,:dup", vec!["a", "a"]),
            ("a,b,:swap", vec!["b", "a"]),
            ("a,b,:drop", vec!["a"]),
            ("a,b,:over", vec!["a", "b", "a"]),
            ("a,b,:2over", vec!["a", "b", "a", "b"]),
            ("a,b,:nip", vec!["b"]),
            ("a,b,:tuck", vec!["b", "a", "b"]),
            ("a,b,c,d,:rot", vec!["b", "c", "d", "a"]),
            ("a,b,c,d,:-rot", vec!["d", "a", "b", "c"]),
            ("a,b,:clear", vec![]),
            ("a,b,:depth", vec!["a", "b", "2"]),
            ("a,b,1,:pick", vec!["a", "b", "a"]),
            ("a,b,0,:roll", vec!["a", "b"]),
            ("a,b,1,:roll", vec!["b", "a"]),
            ("a,b,c,2,:ndrop", vec!["a"]),
            ("k,v,:set,k,:get,k,:get", vec!["v", "v"]),
            ("v,k,:sset,k,:get", vec!["v"]),
            ("(,a,:dup,),:call", vec!["a", "a"]),
            ("(,a,b,),(,:dup,),:each", vec!["a", "a", "b", "b"]),
            ("a,\\u002C,:dup", vec!["a", ",", ","]),
            ("\\u0028,\\u0029", vec!["(", ")"]),
            ("a,:freeze,b,:clear", vec!["a"]),
        ] {
            assert_eq!(strs(&run(p)), want, "{p}");
        }
        assert_eq!(
            run("a,b,2,:nlist"),
            vec![Item::List(vec![
                Item::Str("a".into()),
                Item::Str("b".into())
            ])]
        );
        assert_eq!(
            run("(,a,b,),(,:dup,:list,),:map").len(),
            1,
            "map collects one item per element"
        );
    }

    #[test]
    fn mistakes_name_the_word_and_where() {
        let e = Run::program("name,sps,:eq,:foo").expect_err("unknown");
        assert_eq!(e.token, ":foo");
        assert_eq!(e.pos, 13);
        assert_eq!(e.message, "unknown word ':foo'");
        let e = Run::program(":eq").expect_err("empty stack");
        assert!(
            e.message
                .starts_with("no matches for word ':eq' with stack []"),
            "{e}"
        );
        let e = Run::program("a,(,b").expect_err("unbalanced");
        assert_eq!(e.message, "unmatched opening parenthesis");
        let e = Run::program("a,)").expect_err("unbalanced");
        assert_eq!(
            (e.message.as_str(), e.pos),
            ("unmatched closing parenthesis", 2)
        );
        let e = Run::program("loop,(,loop,:fcall,),:set,loop,:fcall").expect_err("loops");
        assert_eq!(e.message, "looping detected");
        let e =
            Run::program("name,a,:eq,(,x,),:by,name,b,:eq,(,y,),:by,:add").expect_err("grouping");
        assert!(e.message.contains("must have the same grouping"), "{e}");
        assert!(Run::program(&"(,".repeat(100)).is_err());
        assert!(Run::program(&"a,".repeat(2000)).is_err(), "stack overflow");
    }

    fn one_expr(p: &str) -> Expr {
        match run(p).as_slice() {
            [Item::Expr(e)] => e.clone(),
            other => panic!("{p}: {other:?}"),
        }
    }

    fn refused(p: &str) -> String {
        Run::program(p).expect_err(p).message
    }

    /// `:random`, `:srandom` (`DataType.IntType` seeds) and `:time-span` (`MathVocabulary`).
    #[test]
    fn random_and_time_span_words() {
        assert_eq!(one_expr(":random"), Expr::Random(None));
        for (p, seed) in [
            ("42,:srandom", 42),
            ("0,:srandom", 0),
            ("-7,:srandom", -7),
            ("+7,:srandom", 7),
            ("2147483647,:srandom", i32::MAX),
            ("-2147483648,:srandom", i32::MIN),
            // A constant's `intValue`.
            ("42,:const,:srandom", 42),
            ("-2.9,:const,:srandom", -2),
        ] {
            assert_eq!(one_expr(p), Expr::Random(Some(seed)), "{p}");
        }
        for p in [
            ":srandom",
            "1.5,:srandom",
            "abc,:srandom",
            "2147483648,:srandom",
        ] {
            assert!(
                refused(p).starts_with("no matches for word ':srandom' with stack ["),
                "{p}"
            );
        }
        assert_eq!(
            refused("a,:srandom"),
            "no matches for word ':srandom' with stack [String], candidates: [seed:Int -- TimeSeriesExpr]"
        );
        let span = |s: &str, e: &str, tz: &str| {
            Expr::TimeSpan(Box::new(TimeSpan {
                s: s.into(),
                e: e.into(),
                tz: tz.parse().expect("zone"),
            }))
        };
        // The docs' examples; without a `tz` variable the times are UTC.
        assert_eq!(one_expr("e-30m,ge,:time-span"), span("e-30m", "ge", "UTC"));
        assert_eq!(
            one_expr("2014-02-20T13:00,s+30m,:time-span"),
            span("2014-02-20T13:00", "s+30m", "UTC")
        );
        assert_eq!(
            one_expr("tz,US/Pacific,:set,2014-02-20T13:00,s+30m,:time-span"),
            span("2014-02-20T13:00", "s+30m", "US/Pacific")
        );
        let vars = HashMap::from([("tz".to_string(), Item::Str("Europe/Berlin".into()))]);
        let got = Run::program_with("gs,ge,:time-span", vars).expect("runs");
        assert_eq!(got, [Item::Expr(span("gs", "ge", "Europe/Berlin"))]);
        // A `tz` that is not a string is UTC, as Atlas's match falls through.
        assert_eq!(
            one_expr("tz,(,a,),:set,gs,ge,:time-span"),
            span("gs", "ge", "UTC")
        );
        for (p, says) in [
            (
                "e-30m,s+5m,:time-span",
                "start and end time are relative to each other",
            ),
            ("s+1m,ge,:time-span", "start time is relative to itself"),
            ("gs,e-1m,:time-span", "end time is relative to itself"),
            (
                "tz,Mars/Olympus,:set,gs,ge,:time-span",
                "unknown time zone \"Mars/Olympus\"",
            ),
            (
                "ge,:time-span",
                "no matches for word ':time-span' with stack [String], candidates: [s:String e:String -- TimeSeriesExpr]",
            ),
        ] {
            assert_eq!(refused(p), says, "{p}");
        }
        let e = Run::program("gs,e-1m,:time-span").expect_err("relative to itself");
        assert_eq!((e.token.as_str(), e.pos), (":time-span", 8));
    }

    /// `:dist-avg`, `:dist-max`, `:dist-stddev` are their macro bodies (`MathVocabulary`),
    /// as `NamedRewriteSuite` checks them against the programs written out.
    #[test]
    fn distribution_macros_are_their_bodies() {
        let named = |p: &str, name: &str| match one_expr(p) {
            Expr::Named(n, e) if n == name => *e,
            other => panic!("{p}: {other:?}"),
        };
        assert_eq!(
            named("name,a,:eq,:dist-max", "dist-max"),
            one_expr("statistic,max,:eq,name,a,:eq,:and,:max")
        );
        assert_eq!(
            named("name,a,:eq,:dist-avg", "dist-avg"),
            one_expr(
                "statistic,(,totalTime,totalAmount,),:in,:sum,statistic,count,:eq,:sum,:div,name,a,:eq,:cq"
            )
        );
        assert_eq!(
            named("name,a,:eq,:dist-stddev", "dist-stddev"),
            one_expr(
                "statistic,count,:eq,:sum,statistic,totalOfSquares,:eq,:sum,:mul,statistic,(,totalAmount,totalTime,),:in,:sum,:dup,:mul,:sub,statistic,count,:eq,:sum,:dup,:mul,:div,:sqrt,name,a,:eq,:cq"
            )
        );
        // Grouped: every aggregate of the body by the keys, the name kept.
        assert_eq!(
            named("name,a,:eq,:dist-max,(,name,),:by", "dist-max"),
            one_expr("statistic,max,:eq,name,a,:eq,:and,:max,(,name,),:by")
        );
        assert_eq!(
            named("name,a,:eq,:dist-avg,(,name,),:by", "dist-avg"),
            one_expr(
                "statistic,(,totalTime,totalAmount,),:in,name,a,:eq,:and,:sum,(,name,),:by,statistic,count,:eq,name,a,:eq,:and,:sum,(,name,),:by,:div"
            )
        );
        // Once grouped, another :by sums the groups.
        assert!(matches!(
            one_expr("name,a,:eq,:dist-avg,(,name,host,),:by,(,name,),:by"),
            Expr::GroupBy(Af::Sum, ref e, ref k) if matches!(**e, Expr::Named(..)) && k == &["name"]
        ));
        // An offset and :cq reach every data expression of the body.
        let mut ds = Vec::new();
        let e = one_expr("name,a,:eq,:dist-stddev,1h,:offset,app,foo,:eq,:cq");
        e.data_exprs(&mut ds);
        assert_eq!(ds.len(), 6);
        assert!(ds.iter().all(|d| d.offset == 3600
            && d.query
                .to_string()
                .ends_with("name,a,:eq,:and,app,foo,:eq,:and")));
        for w in ["dist-avg", "dist-max", "dist-stddev"] {
            assert_eq!(
                refused(&format!("name,a,:eq,:sum,:{w}")),
                format!("no matches for word ':{w}' with stack [DataExpr], candidates: [Query -- TimeSeriesExpr]")
            );
            assert!(refused(&format!(":{w}")).contains("with stack []"));
        }
    }

    /// `:decode` and `:s` append to one chain, run in the order written (`StyleExpr.sed`).
    #[test]
    fn decode_joins_the_legend_rewrites() {
        let style = |p: &str| match run(p).as_slice() {
            [Item::Styled(s)] => s.style.clone(),
            other => panic!("{p}: {other:?}"),
        };
        let s = style("1,one_21_25_26_3F,:legend,hex,:decode");
        assert_eq!(s.legend.as_deref(), Some("one_21_25_26_3F"));
        assert_eq!(s.sed, [Sed::Decode("hex".into())]);
        let s = style("1,none,:decode,%,_25,:s,hex,:decode,:stack");
        assert_eq!(
            s.sed,
            [
                Sed::Decode("none".into()),
                Sed::Replace("%".into(), "_25".into()),
                Sed::Decode("hex".into())
            ]
        );
        assert_eq!(s.line_style.as_deref(), Some("stack"));
        assert_eq!(refused("1,base64,:decode"), "unknown encoding 'base64'");
        assert_eq!(refused("1,HEX,:decode"), "unknown encoding 'HEX'");
        assert_eq!(
            refused("hex,:decode"),
            "no matches for word ':decode' with stack [String], candidates: [StyleExpr mode:String -- StyleExpr]"
        );
        assert!(refused("(,a,),hex,:decode").starts_with("no matches for word ':decode'"));
    }

    #[test]
    fn queries_data_and_math() {
        let got = run("name,requests,:eq,status,5xx,:eq,:and,:sum,(,vhost,),:by");
        let Item::Expr(Expr::Data(d)) = &got[0] else {
            panic!("{got:?}");
        };
        assert_eq!(d.kind, DataKind::GroupBy(Af::Sum, vec!["vhost".into()]));
        assert_eq!(d.query.to_string(), "name,requests,:eq,status,5xx,:eq,:and");
        // A bare query is its :sum; a number is :const.
        let got = run("name,a,:eq,2,:mul");
        let Item::Expr(Expr::Binary(BinOp::Mul, a, b)) = &got[0] else {
            panic!("{got:?}");
        };
        assert!(matches!(
            **a,
            Expr::Data(DataExpr {
                kind: DataKind::Aggregate(Af::Sum),
                ..
            })
        ));
        assert_eq!(**b, Expr::Const(2.0));
        let got = run("name,a,:eq,1w,:offset,:cf-max");
        let Item::Expr(Expr::Data(d)) = &got[0] else {
            panic!("{got:?}");
        };
        assert_eq!((d.offset, d.cf), (604_800, Some(Cf::Max)));
        let got = run("name,a,:eq,:sum,$name,:legend,f00,:color,:stack,5,:rolling-count");
        let Item::Styled(s) = &got[0] else {
            panic!("{got:?}");
        };
        assert_eq!(s.style.legend.as_deref(), Some("$name"));
        assert_eq!(s.style.line_style.as_deref(), Some("stack"));
        assert!(
            matches!(s.expr, Expr::Stateful(Stateful::RollingCount(5), _)),
            "passed through the style"
        );
        let got = run("name,a,:eq,(,host,),:by,:stat-max,10,:gt,:filter");
        let Item::Expr(Expr::Filter(_, c)) = &got[0] else {
            panic!("{got:?}");
        };
        assert!(
            matches!(**c, Expr::Binary(BinOp::Gt, ref s, _) if matches!(**s, Expr::Stat(_, Stat::Max)))
        );
        assert!(Run::program("name,a,:eq,:sum,x,:color").is_err());
        let e = Run::program("k,[,:re").expect_err("bad regex");
        assert!(e.message.starts_with("bad regex \"[\""), "{e}");
    }
}
