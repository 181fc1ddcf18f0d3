//! Target expressions, parsed with nom to graphite-web 1.1.8's grammar (render/grammar_unsafe.py).
//!
//! ```text
//! expression := (call | path) ( '|' call )*          # a pipe passes the left side as first arg
//! call       := name '(' [args] ')'                  # name: [A-Za-z_][A-Za-z0-9_]*
//! args       := arg (',' arg)*   arg := name '=' value | value   (keyword arguments last)
//! value      := true | false | number | none | string | inf | expression
//! number     := -?\d+ ( '.' \d+ )? ( [eE] -?\d+ )?   # followed by ',' or ')' or the end
//! string     := '...' | "..."                        # kept as written: "\1" stays \1
//! path       := element ('.' element)*, element: path characters, `\x` escapes and {a,b}
//! ```
//!
//! Path characters are printable ASCII except `(){},.'"\|` and whitespace; `=` and `;` are allowed,
//! so tagged names are paths. Whitespace is allowed between tokens. A syntax error names what
//! was expected and the byte position.

use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case, take_while, take_while1};
use nom::character::complete::{char, digit1, multispace0, satisfy};
use nom::combinator::{eof, map, opt, peek, recognize};
use nom::error::{ErrorKind, ParseError};
use nom::multi::{many0, separated_list1};
use nom::sequence::{delimited, pair, preceded, tuple};
use nom::IResult;

use crate::error::{QueryError, Result};

/// A parsed target expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A path expression (a glob over series names, or a tagged name).
    Path(String),
    Call(Call),
    /// A number; `int` when written without a fraction or exponent (graphite keeps the type).
    Number {
        value: f64,
        int: bool,
    },
    Str(String),
    Bool(bool),
    None,
    /// Series already evaluated, which a function passes to another (`reduceSeries` calls its
    /// reduce function on the series it grouped). The parser never makes one.
    Series(std::sync::Arc<Vec<crate::series::TimeSeries>>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: String,
    pub args: Vec<Expr>,
    pub kwargs: Vec<(String, Expr)>,
    /// The call as written (for `seriesByTag`, whose text is its identity).
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq)]
struct PErr<'a> {
    input: &'a str,
    expected: &'static str,
}

impl<'a> ParseError<&'a str> for PErr<'a> {
    fn from_error_kind(input: &'a str, _kind: ErrorKind) -> Self {
        PErr {
            input,
            expected: "an expression",
        }
    }
    fn append(_input: &'a str, _kind: ErrorKind, other: Self) -> Self {
        other
    }
    fn or(self, other: Self) -> Self {
        // Keep the error that got furthest (on a tie, the later, more specific alternative).
        if other.input.len() <= self.input.len() {
            other
        } else {
            self
        }
    }
}

type Res<'a, T> = IResult<&'a str, T, PErr<'a>>;

fn expect<'a, T>(
    what: &'static str,
    mut p: impl FnMut(&'a str) -> Res<'a, T>,
) -> impl FnMut(&'a str) -> Res<'a, T> {
    move |i| {
        p(i).map_err(|e| {
            e.map(|inner| {
                if inner.input.len() >= i.len() {
                    PErr {
                        input: i,
                        expected: what,
                    }
                } else {
                    inner
                }
            })
        })
    }
}

fn ws<'a, T>(p: impl FnMut(&'a str) -> Res<'a, T>) -> impl FnMut(&'a str) -> Res<'a, T> {
    delimited(multispace0, p, multispace0)
}

fn ident(i: &str) -> Res<'_, &str> {
    recognize(pair(
        satisfy(|c| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_'),
    ))(i)
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_graphic() && !"(){},.'\"\\|".contains(c)
}

fn partial(i: &str) -> Res<'_, String> {
    let (i, parts) = nom::multi::many1(alt((
        map(
            preceded(char('\\'), satisfy(|c| "(){},.'\"\\|=".contains(c))),
            |c| c.to_string(),
        ),
        map(take_while1(is_path_char), str::to_owned),
    )))(i)?;
    Ok((i, parts.concat()))
}

fn match_enum(i: &str) -> Res<'_, String> {
    let (i, alts) = delimited(char('{'), separated_list1(char(','), partial), char('}'))(i)?;
    Ok((i, format!("{{{}}}", alts.join(","))))
}

fn path(i: &str) -> Res<'_, Expr> {
    let element =
        |i| nom::multi::many1(alt((partial, match_enum)))(i).map(|(i, p)| (i, p.concat()));
    let (i, elems) = expect(
        "a path or a function call",
        separated_list1(char('.'), element),
    )(i)?;
    Ok((i, Expr::Path(elems.join("."))))
}

fn number(i: &str) -> Res<'_, Expr> {
    let (rest, text) = recognize(tuple((
        opt(char('-')),
        digit1,
        opt(pair(char('.'), digit1)),
        opt(tuple((alt((char('e'), char('E'))), opt(char('-')), digit1))),
    )))(i)?;
    // graphite: a number must be followed by ',' or ')' or the end (so `1a.b` is a path).
    peek(preceded(multispace0, alt((tag(","), tag(")"), eof))))(rest)?;
    let value: f64 = text.parse().map_err(|_| {
        nom::Err::Error(PErr {
            input: i,
            expected: "a number",
        })
    })?;
    let int = !text.contains(['.', 'e', 'E']);
    Ok((rest, Expr::Number { value, int }))
}

fn keyword<'a>(word: &'static str) -> impl FnMut(&'a str) -> Res<'a, &'a str> {
    move |i| {
        let (rest, w) = tag_no_case(word)(i)?;
        match rest.chars().next() {
            Some(c) if c.is_ascii_alphanumeric() || c == '_' || is_path_char(c) && c != '=' => {
                Err(nom::Err::Error(PErr {
                    input: i,
                    expected: word,
                }))
            }
            _ => Ok((rest, w)),
        }
    }
}

fn quoted(q: char, i: &str) -> Res<'_, Expr> {
    let (body, _) = char(q)(i)?;
    let mut escaped = false;
    for (n, c) in body.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == q {
            return Ok((&body[n + 1..], Expr::Str(body[..n].to_owned())));
        }
    }
    Err(nom::Err::Failure(PErr {
        input: i,
        expected: "a closing quote",
    }))
}

fn string(i: &str) -> Res<'_, Expr> {
    alt((|i| quoted('"', i), |i| quoted('\'', i)))(i)
}

fn value(i: &str) -> Res<'_, Expr> {
    alt((
        map(keyword("true"), |_| Expr::Bool(true)),
        map(keyword("false"), |_| Expr::Bool(false)),
        number,
        map(keyword("none"), |_| Expr::None),
        string,
        map(keyword("inf"), |_| Expr::Number {
            value: f64::INFINITY,
            int: false,
        }),
        expression,
    ))(i)
}

enum Arg {
    Pos(Expr),
    Kw(String, Expr),
}

fn arg(i: &str) -> Res<'_, Arg> {
    alt((
        map(pair(ws(ident), preceded(char('='), ws(value))), |(k, v)| {
            Arg::Kw(k.to_owned(), v)
        }),
        map(ws(value), Arg::Pos),
    ))(i)
}

fn call(i: &str) -> Res<'_, Expr> {
    let start = i;
    let (i, name) = ident(i)?;
    let (mut i, _) = preceded(multispace0, char('('))(i)?;
    // `name(` can only be a call (a path has no parenthesis): from here on, errors are final.
    let fail = |input, expected| nom::Err::Failure(PErr { input, expected });
    let mut args = Vec::new();
    let (rest, _) = multispace0(i)?;
    if let Ok((rest, _)) = char::<_, PErr>(')')(rest) {
        i = rest;
    } else {
        loop {
            let (rest, a) = match arg(i) {
                Ok(r) => r,
                Err(nom::Err::Error(e)) => {
                    let at = multispace0::<_, PErr>(i).map_or(i, |(r, _)| r);
                    return Err(fail(
                        if e.input.len() < at.len() {
                            e.input
                        } else {
                            at
                        },
                        if e.input.len() < at.len() {
                            e.expected
                        } else {
                            "an argument"
                        },
                    ));
                }
                Err(e) => return Err(e),
            };
            args.push((a, multispace0::<_, PErr>(i).map_or(i, |(r, _)| r)));
            let (rest, _) = multispace0(rest)?;
            if let Ok((rest, _)) = char::<_, PErr>(',')(rest) {
                i = rest;
                continue;
            }
            match char::<_, PErr>(')')(rest) {
                Ok((rest, _)) => {
                    i = rest;
                    break;
                }
                Err(_) => return Err(fail(rest, "',' or ')'")),
            }
        }
    }
    let raw = start[..start.len() - i.len()].to_owned();
    let (mut pos, mut kw) = (Vec::new(), Vec::new());
    for (a, at) in args {
        match a {
            Arg::Pos(e) if kw.is_empty() => pos.push(e),
            Arg::Pos(_) => return Err(fail(at, "keyword arguments after positional ones")),
            Arg::Kw(k, v) => kw.push((k, v)),
        }
    }
    Ok((
        i,
        Expr::Call(Call {
            name: name.to_owned(),
            args: pos,
            kwargs: kw,
            raw,
        }),
    ))
}

fn expression(i: &str) -> Res<'_, Expr> {
    let (i, first) = alt((call, path))(i)?;
    let (i, pipes) = many0(preceded(
        ws(char('|')),
        nom::combinator::cut(expect("a function call after '|'", call)),
    ))(i)?;
    let mut e = first;
    for p in pipes {
        if let Expr::Call(mut c) = p {
            c.args.insert(0, e);
            e = Expr::Call(c);
        }
    }
    Ok((i, e))
}

/// How deeply calls may nest, counting each pipe as one more level (`a|f()|g()` is `g(f(a))`).
/// The parser and the evaluator recurse once per level, so without a bound a 30 KB target of
/// nested calls overflows a worker's stack and takes the process down. graphite-web's own bound is
/// Python's recursion limit; real dashboards nest a handful of levels.
pub const MAX_DEPTH: usize = 64;

/// Refuses a target nested deeper than [`MAX_DEPTH`], before any recursion: a plain scan that
/// skips quoted strings and `\x` escapes the way the grammar does.
fn check_depth(target: &str) -> Result<()> {
    // Pipes seen at each open parenthesis level; the nesting is the levels plus their pipes.
    let mut pipes: Vec<usize> = vec![0];
    let mut depth = 1;
    let mut quote = None;
    let mut escaped = false;
    for (pos, c) in target.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match (quote, c) {
            (_, '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => {
                pipes.push(0);
                depth += 1;
            }
            (None, ')') if pipes.len() > 1 => depth -= 1 + pipes.pop().unwrap_or(0),
            (None, '|') => {
                if let Some(n) = pipes.last_mut() {
                    *n += 1;
                }
                depth += 1;
            }
            _ => {}
        }
        if depth > MAX_DEPTH {
            return Err(QueryError::Syntax {
                target: target.to_owned(),
                pos,
                expected: format!("at most {MAX_DEPTH} levels of nested calls and pipes"),
            });
        }
    }
    Ok(())
}

/// Parses one target.
pub fn parse(target: &str) -> Result<Expr> {
    check_depth(target)?;
    match tuple((multispace0, expression, multispace0, eof))(target) {
        Ok((_, (_, e, _, _))) => Ok(e),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
            let pos = target.len() - e.input.len();
            let found: String = e.input.chars().take(12).collect();
            Err(QueryError::Syntax {
                target: target.to_owned(),
                pos,
                expected: if e.input.is_empty() {
                    e.expected.to_owned()
                } else {
                    format!("{} before \"{found}\"", e.expected)
                },
            })
        }
        Err(nom::Err::Incomplete(_)) => Err(QueryError::Syntax {
            target: target.to_owned(),
            pos: target.len(),
            expected: "more input".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Expr {
        Expr::Path(s.to_owned())
    }
    fn n(v: f64) -> Expr {
        Expr::Number {
            value: v,
            int: v.fract() == 0.0,
        }
    }
    fn call(name: &str, args: Vec<Expr>, raw: &str) -> Expr {
        Expr::Call(Call {
            name: name.into(),
            args,
            kwargs: vec![],
            raw: raw.into(),
        })
    }

    #[test]
    fn paths() {
        for s in [
            "a.b.c",
            "servers.web*.cpu",
            "a.{b,c}.d",
            "a.[0-9].b",
            "req;host=web1",
            "a-b_c:d.e@f",
            "**",
        ] {
            assert_eq!(parse(s).ok(), Some(p(s)), "{s}");
        }
        assert_eq!(parse(r"a\(b\).c").ok(), Some(p("a(b).c")));
    }

    #[test]
    fn calls_and_values() {
        let e = parse("sumSeries(a.*, b.c)").expect("valid");
        assert_eq!(
            e,
            call("sumSeries", vec![p("a.*"), p("b.c")], "sumSeries(a.*, b.c)")
        );
        let e = parse(r#"aliasSub(x.y, "(^.*$)", "\1 A")"#).expect("valid");
        let Expr::Call(c) = e else { panic!() };
        assert_eq!(c.args[1], Expr::Str("(^.*$)".into()));
        assert_eq!(c.args[2], Expr::Str(r"\1 A".into()));
        let e = parse("scale(x, -1.5e2)").expect("valid");
        let Expr::Call(c) = e else { panic!() };
        assert_eq!(
            c.args[1],
            Expr::Number {
                value: -150.0,
                int: false
            }
        );
        let e = parse("f(a, 2, true, None, inf, 'q', g(b), key=3, k2=False)").expect("valid");
        let Expr::Call(c) = e else { panic!() };
        assert_eq!(c.args.len(), 7);
        assert_eq!(
            c.args[1],
            Expr::Number {
                value: 2.0,
                int: true
            }
        );
        assert_eq!(c.args[2], Expr::Bool(true));
        assert_eq!(c.args[3], Expr::None);
        assert_eq!(
            c.args[4],
            Expr::Number {
                value: f64::INFINITY,
                int: false
            }
        );
        assert_eq!(
            c.kwargs,
            vec![("key".into(), n(3.0)), ("k2".into(), Expr::Bool(false))]
        );
        assert!(matches!(parse("constantLine(100)"), Ok(Expr::Call(_))));
        assert!(matches!(parse("f()"), Ok(Expr::Call(Call { ref args, .. })) if args.is_empty()));
    }

    #[test]
    fn pipes() {
        let e = parse("a.b | scale(2) | alias('x')").expect("valid");
        let Expr::Call(outer) = e else { panic!() };
        assert_eq!(outer.name, "alias");
        let Expr::Call(inner) = &outer.args[0] else {
            panic!()
        };
        assert_eq!((inner.name.as_str(), &inner.args[0]), ("scale", &p("a.b")));
    }

    #[test]
    fn seriesbytag_keeps_its_text() {
        let Expr::Call(c) = parse("seriesByTag('name=req', 'status=~5..')").expect("valid") else {
            panic!()
        };
        assert_eq!(c.raw, "seriesByTag('name=req', 'status=~5..')");
    }

    #[test]
    fn syntax_errors_say_what_and_where() {
        for (t, pos, want) in [
            ("sumSeries(a.b", 13, "',' or ')'"),
            ("sumSeries(a.b,)", 14, "an argument before \")\""),
            ("f('abc)", 2, "closing quote"),
            ("a.b |", 5, "function call after '|'"),
            ("", 0, "path"),
            ("f(x=1, y)", 7, "keyword arguments after positional ones"),
        ] {
            let e = parse(t).expect_err(t);
            let QueryError::Syntax {
                pos: got,
                ref expected,
                ..
            } = e
            else {
                panic!("{e}")
            };
            assert_eq!(got, pos, "{t}: {e}");
            assert!(expected.contains(want), "{t}: {e}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_with_its_position() {
        let deep = format!("{}a.b{}", "absolute(".repeat(3000), ")".repeat(3000));
        let Err(QueryError::Syntax { pos, expected, .. }) = parse(&deep) else {
            panic!("3000 levels parsed")
        };
        assert_eq!(pos, 64 * 9 - 1, "{expected}");
        assert!(expected.contains("at most 64 levels"), "{expected}");
        assert!(parse(&"(".repeat(10_000)).is_err());
        let pipes = format!("a.b{}", "|absolute()".repeat(100));
        assert!(parse(&pipes).is_err());
        // Up to the bound it parses; quoted and escaped parentheses do not count.
        let fine = format!("{}a.b{}", "absolute(".repeat(63), ")".repeat(63));
        assert!(parse(&fine).is_ok());
        let quoted = format!("alias(a.b, '{}')", "(".repeat(500));
        assert!(parse(&quoted).is_ok(), "{:?}", parse(&quoted));
        let escaped = format!("a.b{}", "\\(".repeat(500));
        assert!(check_depth(&escaped).is_ok());
    }

    fn arg() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            Just("a.*".to_owned()),
            Just("a.x".to_owned()),
            Just("nothing.here".to_owned()),
            Just("time('t', 60)".to_owned()),
            Just("constantLine(2)".to_owned()),
            Just("None".to_owned()),
            Just("true".to_owned()),
            Just("inf".to_owned()),
            (-1000i64..1000).prop_map(|n| n.to_string()),
            (-1e6f64..1e6).prop_map(|f| format!("{f:.3}")),
            "[a-z0-9*. ]{0,6}".prop_map(|s| format!("'{s}'")),
            Just("'1h'".to_owned()),
            Just("'-5min'".to_owned()),
            Just("'sum'".to_owned()),
            Just("'(^.*$)'".to_owned()),
        ]
    }

    /// Parses and evaluates on a thread with a tokio worker's stack (2 MiB), where a stack overflow
    /// would abort the whole process.
    fn on_worker_stack(target: String) -> bool {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let Ok(e) = parse(&target) else { return false };
                let mut src = crate::source::MemSource::default();
                src.add("a.b", 0, 60, vec![Some(1.0), None, Some(-3.0)]);
                let ctx = crate::Ctx::new(std::sync::Arc::new(src), 0, 3600);
                let _ = crate::graphite::eval::evaluate(&ctx, &e);
                true
            })
            .expect("spawns")
            .join()
            .expect("no panic")
    }

    #[test]
    fn the_deepest_allowed_target_evaluates_on_a_worker_stack() {
        for f in [
            "absolute(",
            "sumSeries(",
            "movingAverage(",
            "alias(",
            "timeShift(",
        ] {
            let close = match f {
                "movingAverage(" => ", 2)",
                "alias(" => ", 'x')",
                "timeShift(" => ", '1min')",
                _ => ")",
            };
            let t = format!("{}a.b{}", f.repeat(63), close.repeat(63));
            assert!(on_worker_stack(t), "{f} x63 parses");
        }
        assert!(on_worker_stack(format!("a.b{}", "|absolute()".repeat(62))));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Deep and unbalanced inputs, far past the bound: refused or parsed, never a stack overflow.
        #[test]
        fn deep_targets_never_overflow(
            parts in proptest::collection::vec(
                proptest::sample::select(vec!["absolute(", "sumSeries(", ")", "|absolute()", "a.b", ",", "'('", "(", "x=", "{a,b}"]),
                0..6000,
            ),
        ) {
            let _ = on_worker_stack(parts.concat());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]
        /// Nothing a request can send makes the parser panic; any function of the library, with
        /// any arguments, evaluates without panicking over a small in-memory source (errors are
        /// fine: they become 400 answers).
        #[test]
        fn arbitrary_targets_never_panic(
            raw in "\\PC{0,40}",
            func in proptest::sample::select(crate::graphite::functions::SPECS.iter().map(|s| s.name).collect::<Vec<_>>()),
            args in proptest::collection::vec(arg(), 0..5),
            wrap in proptest::bool::ANY,
        ) {
            let _ = parse(&raw);
            let mut target = format!("{func}({})", args.join(", "));
            if wrap {
                target = format!("sumSeries({target})");
            }
            let e = parse(&target);
            proptest::prop_assert!(e.is_ok(), "{} does not parse: {:?}", target, e);
            let mut src = crate::source::MemSource::default();
            src.add("a.x", 0, 60, vec![Some(1.0), None, Some(3.0), Some(-2.0)]);
            src.add("a.y", 0, 60, vec![None, Some(5.0), Some(0.0), None]);
            let mut ctx = crate::Ctx::new(std::sync::Arc::new(src), 0, 3600);
            ctx.limits.max_time = std::time::Duration::from_secs(2);
            ctx.limits.max_points = 200_000;
            let _ = crate::graphite::eval::evaluate(&ctx, &e.expect("checked"));
        }
    }
}
