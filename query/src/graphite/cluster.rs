//! graphite-web 1.1.8's cluster formats: what one graphite-web asks of another with `local=1`
//! when it federates stores (`CLUSTER_SERVERS`), `format=pickle` and `format=msgpack` from
//! `/render` (`TimeSeries.getInfo()`) and `/metrics/find` (`pickle_nodes`, `msgpack_nodes`);
//! `../shared/contracts/graphite-api.md` section 9.
//!
//! Pickles are written by serde-pickle (protocol 2, plain lists, dicts, tuples and None), which
//! graphite's `SafeUnpickler` reads. One difference: graphite-web pickles a leaf's `intervals`
//! as its `IntervalSet` class; we send the list of `(start, end)` tuples its msgpack format
//! sends, which its `RemoteFinder` turns into the same `IntervalSet`.

use serde::Serialize;

use crate::error::{QueryError, Result};
use crate::series::TimeSeries;

/// One series as `TimeSeries.getInfo()` describes it.
#[derive(Serialize)]
struct SeriesInfo<'a> {
    name: &'a str,
    start: i64,
    end: i64,
    step: i64,
    values: Vec<Option<f64>>,
    #[serde(rename = "pathExpression")]
    path_expression: &'a str,
    #[serde(rename = "valuesPerPoint")]
    values_per_point: usize,
    #[serde(rename = "consolidationFunc")]
    consolidation_func: &'a str,
    #[serde(rename = "xFilesFactor")]
    x_files_factor: f64,
}

fn infos(series: &[TimeSeries]) -> Vec<SeriesInfo<'_>> {
    series
        .iter()
        .map(|s| SeriesInfo {
            name: &s.name,
            start: s.start,
            end: s.end,
            step: s.step,
            values: s.values(),
            path_expression: &s.path_expression,
            values_per_point: s.values_per_point.max(1),
            consolidation_func: s.consolidation.name(),
            x_files_factor: s.x_files_factor,
        })
        .collect()
}

/// One node as `pickle_nodes`/`msgpack_nodes` describe it: a leaf carries its intervals.
#[derive(Serialize)]
pub(crate) struct NodeInfo {
    pub path: String,
    pub is_leaf: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Vec<(f64, f64)>>,
}

fn pickle<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_pickle::to_vec(v, serde_pickle::SerOptions::new().proto_v2())
        .map_err(|e| QueryError::Internal(format!("pickle encoding failed: {e}")))
}

fn msgpack<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    rmp_serde::to_vec_named(v)
        .map_err(|e| QueryError::Internal(format!("msgpack encoding failed: {e}")))
}

/// `/render?format=pickle`.
pub(crate) fn render_pickle(series: &[TimeSeries]) -> Result<Vec<u8>> {
    pickle(&infos(series))
}

/// `/render?format=msgpack`.
pub(crate) fn render_msgpack(series: &[TimeSeries]) -> Result<Vec<u8>> {
    msgpack(&infos(series))
}

/// `/metrics/find?format=pickle`.
pub(crate) fn find_pickle(nodes: &[NodeInfo]) -> Result<Vec<u8>> {
    pickle(&nodes)
}

/// `/metrics/find?format=msgpack`.
pub(crate) fn find_msgpack(nodes: &[NodeInfo]) -> Result<Vec<u8>> {
    msgpack(&nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_pickle::{HashableValue as H, Value as V};

    #[test]
    fn render_pickle_is_graphites_get_info() {
        let mut s = TimeSeries::new("a.b", 60, 60, vec![Some(1.0), None]);
        s.path_expression = "a.*".into();
        let bytes = render_pickle(&[s.clone()]).expect("pickles");
        assert_eq!(bytes[..2], [0x80, 2], "protocol 2");
        let v: V = serde_pickle::value_from_slice(&bytes, Default::default()).expect("unpickles");
        let V::List(list) = v else { panic!("{v:?}") };
        let V::Dict(d) = &list[0] else {
            panic!("{list:?}")
        };
        let get = |k: &str| d.get(&H::String(k.into())).cloned();
        assert_eq!(get("name"), Some(V::String("a.b".into())));
        assert_eq!(get("pathExpression"), Some(V::String("a.*".into())));
        assert_eq!(get("start"), Some(V::I64(60)));
        assert_eq!(get("end"), Some(V::I64(180)));
        assert_eq!(get("step"), Some(V::I64(60)));
        assert_eq!(get("values"), Some(V::List(vec![V::F64(1.0), V::None])));
        assert_eq!(get("valuesPerPoint"), Some(V::I64(1)));
        assert_eq!(get("consolidationFunc"), Some(V::String("average".into())));
        assert_eq!(get("xFilesFactor"), Some(V::F64(0.0)));
        assert_eq!(d.len(), 9);
        let m: Vec<serde_json::Value> =
            rmp_serde::from_slice(&render_msgpack(&[s]).expect("packs")).expect("unpacks");
        assert_eq!(m[0]["values"], serde_json::json!([1.0, null]));
        assert_eq!(m[0]["consolidationFunc"], "average");
    }
}
