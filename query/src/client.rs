//! A typed client of a Tally (or graphite-web) `/render` endpoint, for the programs that read a
//! running store from outside: `tally check` (the Nagios plugin) and `tally rules test`.
//!
//! It asks for `format=raw`, which carries each series' exact start, end and step, so nothing
//! is guessed from the spacing of the points (a series of one point has a step too). Over
//! `https://` it verifies the store against a CA file when given one, and presents a client
//! certificate to a store that requires one (`tally_common::tls::ClientFiles`).

use std::time::Duration;

use tally_common::tls::ClientFiles;

/// One series as `/render` returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedSeries {
    pub name: String,
    /// Timestamp of the first value.
    pub start: i64,
    /// Seconds between values.
    pub step: i64,
    /// One per step from `start`; `None` where there is no value.
    pub values: Vec<Option<f64>>,
}

/// What went wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url} does not answer: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// The CA file or the client certificate did not load.
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{url}: line {line} of the raw answer is not `name,start,end,step|values`: {text:?}")]
    Malformed {
        url: String,
        line: usize,
        text: String,
    },
}

/// A client of one store's render API.
#[derive(Debug, Clone)]
pub struct RenderClient {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl RenderClient {
    /// A client of the store at `base` (`http://127.0.0.1:8080`), sending `token` as a bearer
    /// token when given, giving up on a request after `timeout`.
    pub fn new(
        base: &str,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<RenderClient, ClientError> {
        RenderClient::with_tls(base, token, timeout, &ClientFiles::default())
    }

    /// Like [`RenderClient::new`], verifying the store and identifying itself with `tls`'s
    /// files; their names in messages are the flags `--ca-file`, `--client-cert`,
    /// `--client-key`.
    pub fn with_tls(
        base: &str,
        token: Option<&str>,
        timeout: Duration,
        tls: &ClientFiles,
    ) -> Result<RenderClient, ClientError> {
        let mut builder = reqwest::blocking::Client::builder().timeout(timeout);
        if tls.is_set() {
            let config = tls
                .load(["--ca-file", "--client-cert", "--client-key"])
                .map_err(ClientError::Tls)?;
            builder = builder.use_preconfigured_tls(config);
        }
        let http = builder.build().map_err(|source| ClientError::Unreachable {
            url: base.to_string(),
            source,
        })?;
        Ok(RenderClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
            http,
        })
    }

    /// The series `target` yields over `[from, until]`.
    pub fn render(
        &self,
        target: &str,
        from: i64,
        until: i64,
    ) -> Result<Vec<RenderedSeries>, ClientError> {
        let (from, until) = (from.to_string(), until.to_string());
        let query = [
            ("target", target),
            ("from", &from),
            ("until", &until),
            ("format", "raw"),
        ];
        let body = self.get("/render", &query)?;
        parse_raw(&body).map_err(|(line, text)| ClientError::Malformed {
            url: self.base.clone(),
            line,
            text,
        })
    }

    /// The lines Atlas expression `q` yields over `[from, until]` (`/api/v1/graph`,
    /// `format=std.json`, UTC), each named by its legend.
    pub fn atlas(
        &self,
        q: &str,
        from: i64,
        until: i64,
    ) -> Result<Vec<RenderedSeries>, ClientError> {
        self.graph(q, from, until, None, false)
    }

    /// The lines an Atlas alert rule's program yields over `[from, until]`, as the alert
    /// engine evaluates them: at the data's own step (the widest width, so a rule's window is
    /// never consolidated) and named by their tags.
    pub fn atlas_alert_lines(
        &self,
        q: &str,
        from: i64,
        until: i64,
    ) -> Result<Vec<RenderedSeries>, ClientError> {
        self.graph(q, from, until, Some("10000"), true)
    }

    fn graph(
        &self,
        q: &str,
        from: i64,
        until: i64,
        width: Option<&str>,
        by_tags: bool,
    ) -> Result<Vec<RenderedSeries>, ClientError> {
        let (from, until) = (from.to_string(), until.to_string());
        let mut query = vec![
            ("q", q),
            ("s", &from),
            ("e", &until),
            ("tz", "UTC"),
            ("format", "std.json"),
        ];
        if let Some(w) = width {
            query.push(("w", w));
        }
        let body = self.get("/api/v1/graph", &query)?;
        parse_std_json_named(&body, by_tags).map_err(|text| ClientError::Malformed {
            url: self.base.clone(),
            line: 1,
            text,
        })
    }

    /// The body of a successful GET of `path` with `query`, the token sent when there is one.
    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<String, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.get(&url).query(query);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let unreachable = |source| ClientError::Unreachable {
            url: self.base.clone(),
            source,
        };
        let resp = req.send().map_err(unreachable)?;
        let status = resp.status();
        let body = resp.text().map_err(unreachable)?;
        if !status.is_success() {
            return Err(ClientError::Status {
                url: self.base.clone(),
                status: status.as_u16(),
                body: body.trim().to_string(),
            });
        }
        Ok(body)
    }
}

/// Parses Atlas's `std.json` graph answer into one series per line (`"NaN"` is `None`).
pub fn parse_std_json(body: &str) -> Result<Vec<RenderedSeries>, String> {
    parse_std_json_named(body, false)
}

/// [`parse_std_json`], each line named by its tags (`k=v, ...`, as the alert engine names an
/// Atlas line) when `by_tags` and it has any, else by its legend.
pub fn parse_std_json_named(body: &str, by_tags: bool) -> Result<Vec<RenderedSeries>, String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let start = v["start"].as_i64().ok_or("no start")? / 1000;
    let step = v["step"].as_i64().ok_or("no step")? / 1000;
    let legend = v["legend"].as_array().ok_or("no legend")?;
    let rows = v["values"].as_array().ok_or("no values")?;
    let metrics = v["metrics"].as_array();
    let mut out: Vec<RenderedSeries> = legend
        .iter()
        .enumerate()
        .map(|(i, l)| RenderedSeries {
            name: metrics
                .and_then(|m| m.get(i))
                .and_then(|m| m.as_object())
                .filter(|m| by_tags && !m.is_empty())
                .map_or_else(
                    || l.as_str().unwrap_or_default().to_string(),
                    |m| {
                        let tags: crate::atlas::query::Tags = m
                            .iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect();
                        crate::atlas::expr::to_label(&tags)
                    },
                ),
            start,
            step,
            values: Vec::with_capacity(rows.len()),
        })
        .collect();
    for row in rows {
        let row = row.as_array().ok_or("a row is not a list")?;
        for (s, x) in out.iter_mut().zip(row) {
            s.values.push(x.as_f64().filter(|f| f.is_finite()));
        }
    }
    Ok(out)
}

/// Parses graphite's `format=raw`: one `name,start,end,step|v1,v2,...` line per series, `None`
/// for a missing value. The name may hold commas and pipes; the numbers never do. A bad line is
/// returned as its number and (cut) text.
pub fn parse_raw(body: &str) -> Result<Vec<RenderedSeries>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in body.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let bad = || (i + 1, line.chars().take(200).collect::<String>());
        let (head, values) = line.rsplit_once('|').ok_or_else(bad)?;
        let mut fields = head.rsplitn(4, ',');
        let (Some(step), Some(_end), Some(start), Some(name)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad());
        };
        let start: i64 = start.parse().map_err(|_| bad())?;
        let step: i64 = step.parse().map_err(|_| bad())?;
        let values = if values.is_empty() {
            Vec::new()
        } else {
            values
                .split(',')
                .map(|v| match v {
                    "None" => Ok(None),
                    v => v.parse::<f64>().map(Some).map_err(|_| bad()),
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        out.push(RenderedSeries {
            name: name.to_string(),
            start,
            step,
            values,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_lines_carry_their_own_step() {
        let got = parse_raw("sumSeries(a.*,b|c),60,120,60|1.0\nx,0,30,10|None,inf,-2.5\n")
            .expect("parses");
        assert_eq!(
            got,
            vec![
                RenderedSeries {
                    name: "sumSeries(a.*,b|c)".into(),
                    start: 60,
                    step: 60,
                    values: vec![Some(1.0)],
                },
                RenderedSeries {
                    name: "x".into(),
                    start: 0,
                    step: 10,
                    values: vec![None, Some(f64::INFINITY), Some(-2.5)],
                },
            ]
        );
        assert_eq!(parse_raw("").expect("empty"), vec![]);
        assert_eq!(
            parse_raw("e,0,0,10|\n").expect("no values")[0].values,
            vec![]
        );
    }

    #[test]
    fn a_bad_line_is_named() {
        assert_eq!(parse_raw("a,1,2,3|1.0\nnope\n"), Err((2, "nope".into())));
        assert_eq!(parse_raw("a,x,2,3|1.0\n"), Err((1, "a,x,2,3|1.0".into())));
        assert_eq!(parse_raw("a,1,2,3|1.0,zz\n").map_err(|e| e.0), Err(1));
    }

    #[test]
    fn it_reads_what_the_render_writer_writes() {
        let s = crate::TimeSeries::new("a.b", 60, 60, vec![Some(1.0), None, Some(0.5)]);
        let got = parse_raw(&crate::graphite::render::raw(&[s])).expect("parses");
        assert_eq!(got[0].values, vec![Some(1.0), None, Some(0.5)]);
        assert_eq!((got[0].start, got[0].step), (60, 60));
    }
}
