//! The function library: one table says what exists (`SPECS`, which `/functions` serves in the
//! shape Grafana's function editor parses) and `call` dispatches by name. A test checks that
//! every listed function dispatches.

mod agg;
mod alias;
mod calc;
mod combine;
mod filter;
mod math;
pub(crate) mod names;
mod special;
mod style;
#[cfg(test)]
mod tests_issue12;
mod transform;

use serde_json::{json, Map, Value as Json};

use crate::error::{QueryError, Result};
use crate::fetch::Ctx;
use crate::graphite::args::Args;
use crate::graphite::eval::Value;
use crate::graphite::expr::Call;

/// A function as `/functions` describes it. `params`: comma-separated `name:type`, with `!` for
/// required, `*` for repeatable and `=x` for a default.
pub(crate) struct Spec {
    pub name: &'static str,
    pub group: &'static str,
    pub description: &'static str,
    pub params: &'static str,
}

macro_rules! specs {
    ($($name:literal, $group:literal, $params:literal, $desc:literal;)*) => {
        pub(crate) const SPECS: &[Spec] = &[$(Spec { name: $name, group: $group, params: $params, description: $desc },)*];
    };
}

specs! {
    "absolute", "Transform", "seriesList:seriesList!", "Absolute value of each point.";
    "aggregate", "Combine", "seriesList:seriesList!,func:aggFunc!,xFilesFactor:float", "Aggregate series with a function.";
    "alias", "Alias", "seriesList:seriesList!,newName:string!", "Rename every series.";
    "aliasByMetric", "Alias", "seriesList:seriesList!", "Rename to the last node of the path.";
    "aliasByNode", "Alias", "seriesList:seriesList!,nodes:nodeOrTag!*", "Rename to the given nodes or tags.";
    "aliasByTags", "Alias", "seriesList:seriesList!,tags:nodeOrTag!*", "Rename to the given tags or nodes.";
    "aliasSub", "Alias", "seriesList:seriesList!,search:string!,replace:string!", "Rename by regex substitution (Python \\1 references).";
    "alpha", "Graph", "seriesList:seriesList!,alpha:float!", "Draws the series with this opacity (0 to 1).";
    "areaBetween", "Graph", "seriesList:seriesList!", "Fills the area between exactly two series.";
    "asPercent", "Combine", "seriesList:seriesList!,total:any,nodes:nodeOrTag*", "Each series as a percent of a total.";
    "averageAbove", "Filter Series", "seriesList:seriesList!,n:float!", "Series whose average is above n.";
    "averageBelow", "Filter Series", "seriesList:seriesList!,n:float!", "Series whose average is at most n.";
    "averageSeries", "Combine", "seriesLists:seriesList!*", "Average of series, point by point.";
    "avg", "Combine", "seriesLists:seriesList!*", "Alias of averageSeries.";
    "cactiStyle", "Special", "seriesList:seriesList!,system:string,units:string", "Adds current, max and min to names.";
    "color", "Graph", "seriesList:seriesList!,theColor:string!", "Draws the series in this colour (a name or rrggbb[aa]).";
    "consolidateBy", "Special", "seriesList:seriesList!,consolidationFunc:string!", "How the series is consolidated for maxDataPoints.";
    "constantLine", "Special", "value:float!", "A horizontal line at a value.";
    "countSeries", "Combine", "seriesLists:seriesList*", "The number of series, at every point.";
    "currentAbove", "Filter Series", "seriesList:seriesList!,n:float!", "Series whose last value is above n.";
    "currentBelow", "Filter Series", "seriesList:seriesList!,n:float!", "Series whose last value is at most n.";
    "dashed", "Graph", "seriesList:seriesList!,dashLength:integer=5", "Draws the series dashed.";
    "derivative", "Transform", "seriesList:seriesList!", "Difference from the previous point.";
    "diffSeries", "Combine", "seriesLists:seriesList!*", "First series minus the others.";
    "divideSeries", "Combine", "dividendSeriesList:seriesList!,divisorSeries:seriesList!", "Point-by-point division.";
    "drawAsInfinite", "Graph", "seriesList:seriesList!", "Draws each non-zero point as a vertical line across the graph.";
    "exclude", "Filter Series", "seriesList:seriesList!,pattern:string!", "Drop series whose name matches a regex.";
    "grep", "Filter Series", "seriesList:seriesList!,pattern:string!", "Keep series whose name matches a regex.";
    "group", "Combine", "seriesLists:seriesList*", "Several series lists as one.";
    "groupByNode", "Combine", "seriesList:seriesList!,nodeNum:nodeOrTag!,callback:aggOrSeriesFunc=average", "Aggregate series grouped by one node.";
    "groupByNodes", "Combine", "seriesList:seriesList!,callback:aggOrSeriesFunc!,nodes:nodeOrTag*", "Aggregate series grouped by nodes.";
    "groupByTags", "Combine", "seriesList:seriesList!,callback:aggOrSeriesFunc!,tags:tag!*", "Aggregate series grouped by tags.";
    "highest", "Filter Series", "seriesList:seriesList!,n:integer!,func:aggFunc=average", "The n highest series by a function.";
    "highestAverage", "Filter Series", "seriesList:seriesList!,n:integer!", "The n series with the highest average.";
    "highestCurrent", "Filter Series", "seriesList:seriesList!,n:integer!", "The n series with the highest last value.";
    "highestMax", "Filter Series", "seriesList:seriesList!,n:integer!", "The n series with the highest maximum.";
    "hitcount", "Transform", "seriesList:seriesList!,intervalString:interval!,alignToInterval:boolean=false", "Rates turned into hits per interval.";
    "integral", "Transform", "seriesList:seriesList!", "Running total.";
    "keepLastValue", "Transform", "seriesList:seriesList!,limit:intOrInf=inf", "Fill gaps with the last value.";
    "legendValue", "Alias", "seriesList:seriesList!,valuesTypes:string*", "Adds aggregates to names.";
    "limit", "Filter Series", "seriesList:seriesList!,n:integer!", "The first n series.";
    "lineWidth", "Graph", "seriesList:seriesList!,width:float!", "Draws the series with this line width.";
    "lowest", "Filter Series", "seriesList:seriesList!,n:integer!,func:aggFunc=average", "The n lowest series by a function.";
    "lowestAverage", "Filter Series", "seriesList:seriesList!,n:integer!", "The n series with the lowest average.";
    "lowestCurrent", "Filter Series", "seriesList:seriesList!,n:integer!", "The n series with the lowest last value.";
    "maxSeries", "Combine", "seriesLists:seriesList!*", "Maximum of series, point by point.";
    "maximumAbove", "Filter Series", "seriesList:seriesList!,n:float!", "Series whose maximum is above n.";
    "maximumBelow", "Filter Series", "seriesList:seriesList!,n:float!", "Series whose maximum is at most n.";
    "minSeries", "Combine", "seriesLists:seriesList!*", "Minimum of series, point by point.";
    "minimumAbove", "Filter Series", "seriesList:seriesList!,n:float!", "Series whose minimum is above n.";
    "minimumBelow", "Filter Series", "seriesList:seriesList!,n:float!", "Series whose minimum is at most n.";
    "movingAverage", "Calculate", "seriesList:seriesList!,windowSize:intOrInterval!,xFilesFactor:float", "Average of the window before each point.";
    "movingMax", "Calculate", "seriesList:seriesList!,windowSize:intOrInterval!,xFilesFactor:float", "Maximum of the window before each point.";
    "movingMedian", "Calculate", "seriesList:seriesList!,windowSize:intOrInterval!,xFilesFactor:float", "Median of the window before each point.";
    "movingMin", "Calculate", "seriesList:seriesList!,windowSize:intOrInterval!,xFilesFactor:float", "Minimum of the window before each point.";
    "movingSum", "Calculate", "seriesList:seriesList!,windowSize:intOrInterval!,xFilesFactor:float", "Sum of the window before each point.";
    "multiplySeries", "Combine", "seriesLists:seriesList!*", "Product of series, point by point.";
    "nonNegativeDerivative", "Transform", "seriesList:seriesList!,maxValue:float,minValue:float", "Counter increase; a reset gives null.";
    "offset", "Transform", "seriesList:seriesList!,factor:float!", "Adds a constant.";
    "percentileOfSeries", "Combine", "seriesList:seriesList!,n:float!,interpolate:boolean=false", "The n-th percentile across series.";
    "perSecond", "Transform", "seriesList:seriesList!,maxValue:float,minValue:float", "Counter increase per second; a reset gives null.";
    "rangeOfSeries", "Combine", "seriesLists:seriesList!*", "Max minus min, point by point.";
    "removeAboveValue", "Filter Data", "seriesList:seriesList!,n:float!", "Nulls points above n.";
    "removeBelowValue", "Filter Data", "seriesList:seriesList!,n:float!", "Nulls points below n.";
    "removeEmptySeries", "Filter Series", "seriesList:seriesList!,xFilesFactor:float", "Drops series with no data.";
    "scale", "Transform", "seriesList:seriesList!,factor:float!", "Multiplies by a constant.";
    "secondYAxis", "Graph", "seriesList:seriesList!", "Draws the series against a second y axis on the right.";
    "seriesByTag", "Special", "tagExpressions:string!*", "Series whose tags match every expression.";
    "sinFunction", "Transform", "name:string!,amplitude:integer=1,step:integer=60", "A sine wave of the clock.";
    "sortByMaxima", "Sorting", "seriesList:seriesList!", "Sort by maximum, descending.";
    "sortByMinima", "Sorting", "seriesList:seriesList!", "Sort by minimum, ascending.";
    "sortByName", "Sorting", "seriesList:seriesList!,natural:boolean=false,reverse:boolean=false", "Sort by name.";
    "sortByTotal", "Sorting", "seriesList:seriesList!", "Sort by sum, descending.";
    "stacked", "Graph", "seriesList:seriesList!,stack:string", "Stacks series on those before them (in this stack, across targets).";
    "stddevSeries", "Combine", "seriesLists:seriesList!*", "Standard deviation, point by point.";
    "sum", "Combine", "seriesLists:seriesList!*", "Alias of sumSeries.";
    "sumSeries", "Combine", "seriesLists:seriesList!*", "Sum of series, point by point.";
    "summarize", "Transform", "seriesList:seriesList!,intervalString:interval!,func:aggFunc=sum,alignToFrom:boolean=false", "Buckets of an interval, aggregated.";
    "threshold", "Graph", "value:float!,label:string,color:string", "A horizontal line at a value, with a label and colour.";
    "time", "Transform", "name:string!,step:integer=60", "The clock as a series.";
    "timeFunction", "Transform", "name:string!,step:integer=60", "The clock as a series.";
    "timeShift", "Transform", "seriesList:seriesList!,timeShift:interval!,resetEnd:boolean=true,alignDst:boolean=false", "The series from an interval ago.";
    "timeStack", "Transform", "seriesList:seriesList!,timeShiftUnit:interval=1d,timeShiftStart:integer=0,timeShiftEnd:integer=7", "The series shifted back 0..n units.";
    "transformNull", "Transform", "seriesList:seriesList!,default:float=0,referenceSeries:seriesList", "Replace nulls with a value.";
    // graphite-web 1.1.8's other functions (issue 12), after the first 80.
    "aggregateLine", "Calculate", "seriesList:seriesList!,func:aggFunc=average,keepStep:boolean=false", "A line at an aggregate of each series.";
    "aggregateSeriesLists", "Combine", "seriesListFirstPos:seriesList!,seriesListSecondPos:seriesList!,func:aggFunc!,xFilesFactor:float", "Aggregate the i-th series of two lists, pair by pair.";
    "aggregateWithWildcards", "Combine", "seriesList:seriesList!,func:aggFunc!,position:node*", "Aggregate series grouped by their name without the given nodes.";
    "applyByNode", "Combine", "seriesList:seriesList!,nodeNum:node!,templateFunction:string!,newName:string", "Evaluate a template target for each node prefix.";
    "averageOutsidePercentile", "Filter Series", "seriesList:seriesList!,n:float!", "Series whose average lies outside the n-th percentiles of averages.";
    "averageSeriesWithWildcards", "Combine", "seriesList:seriesList!,position:node*", "Average of series grouped without the given nodes.";
    "changed", "Special", "seriesList:seriesList!", "1 where the value changed, else 0.";
    "cumulative", "Special", "seriesList:seriesList!", "Alias of consolidateBy(seriesList, 'sum').";
    "delay", "Transform", "seriesList:seriesList!,steps:integer!", "Values moved by a number of steps.";
    "diffSeriesLists", "Combine", "seriesListFirstPos:seriesList!,seriesListSecondPos:seriesList!", "Difference of the i-th series of two lists.";
    "divideSeriesLists", "Combine", "dividendSeriesList:seriesList!,divisorSeriesList:seriesList!", "Quotient of the i-th series of two lists.";
    "events", "Special", "tags:string!*", "Events with the given tags, counted per second.";
    "exp", "Transform", "seriesList:seriesList!", "e to the power of each point.";
    "exponentialMovingAverage", "Calculate", "seriesList:seriesList!,windowSize:intOrInterval!", "Exponential moving average over a window.";
    "fallbackSeries", "Special", "seriesList:seriesList!,fallback:seriesList!", "The fallback when the series list is empty.";
    "filterSeries", "Filter Series", "seriesList:seriesList!,func:aggFunc!,operator:string!,threshold:float!", "Series whose aggregate compares to a threshold.";
    "holtWintersAberration", "Calculate", "seriesList:seriesList!,delta:integer=3,bootstrapInterval:interval=7d,seasonality:interval=1d", "How far points lie outside the Holt-Winters bands.";
    "holtWintersConfidenceArea", "Calculate", "seriesList:seriesList!,delta:integer=3,bootstrapInterval:interval=7d,seasonality:interval=1d", "The area between the Holt-Winters bands.";
    "holtWintersConfidenceBands", "Calculate", "seriesList:seriesList!,delta:integer=3,bootstrapInterval:interval=7d,seasonality:interval=1d", "Holt-Winters upper and lower bands.";
    "holtWintersForecast", "Calculate", "seriesList:seriesList!,bootstrapInterval:interval=7d,seasonality:interval=1d", "Holt-Winters forecast.";
    "identity", "Calculate", "name:string!", "The clock as a series, at one-minute steps.";
    "integralByInterval", "Transform", "seriesList:seriesList!,intervalUnit:string!", "Running total, restarted every interval.";
    "interpolate", "Transform", "seriesList:seriesList!,limit:intOrInf=inf", "Fill gaps on the line between their ends.";
    "invert", "Transform", "seriesList:seriesList!", "1 divided by each point.";
    "isNonNull", "Transform", "seriesList:seriesList!", "1 where there is a value, 0 where null.";
    "linearRegression", "Calculate", "seriesList:seriesList!,startSourceAt:date,endSourceAt:date", "The least-squares line through the series.";
    "log", "Transform", "seriesList:seriesList!,base:integer=10", "Logarithm of each point.";
    "logit", "Transform", "seriesList:seriesList!", "Logit of each point.";
    "map", "Combine", "seriesList:seriesList!,mapNodes:nodeOrTag!*", "Alias of mapSeries.";
    "mapSeries", "Combine", "seriesList:seriesList!,mapNodes:nodeOrTag!*", "Series lists grouped by nodes, for reduceSeries.";
    "minMax", "Transform", "seriesList:seriesList!", "Each point scaled to 0..1 between the series' min and max.";
    "mostDeviant", "Filter Series", "seriesList:seriesList!,n:integer!", "The n series with the largest variance.";
    "movingWindow", "Calculate", "seriesList:seriesList!,windowSize:intOrInterval!,func:aggFunc=average,xFilesFactor:float", "An aggregate of the window before each point.";
    "multiplySeriesLists", "Combine", "seriesListFirstPos:seriesList!,seriesListSecondPos:seriesList!", "Product of the i-th series of two lists.";
    "multiplySeriesWithWildcards", "Combine", "seriesList:seriesList!,position:node*", "Product of series grouped without the given nodes.";
    "nPercentile", "Calculate", "seriesList:seriesList!,n:float!", "A line at the n-th percentile of each series.";
    "offsetToZero", "Transform", "seriesList:seriesList!", "Each point minus the series' minimum.";
    "pct", "Combine", "seriesList:seriesList!,total:any,nodes:nodeOrTag*", "Alias of asPercent.";
    "pow", "Transform", "seriesList:seriesList!,factor:float!", "Each point to a power.";
    "powSeries", "Combine", "seriesList:seriesList!*", "The first series to the power of the others, point by point.";
    "randomWalk", "Special", "name:string!,step:integer=60", "A random walk from 0.";
    "randomWalkFunction", "Special", "name:string!,step:integer=60", "A random walk from 0.";
    "reduce", "Combine", "seriesLists:seriesLists!,reduceFunction:string!,reduceNode:node!,reduceMatchers:string!*", "Alias of reduceSeries.";
    "reduceSeries", "Combine", "seriesLists:seriesLists!,reduceFunction:string!,reduceNode:node!,reduceMatchers:string!*", "A function applied to the matched series of each mapSeries group.";
    "removeAbovePercentile", "Filter Data", "seriesList:seriesList!,n:float!", "Nulls points above the series' n-th percentile.";
    "removeBelowPercentile", "Filter Data", "seriesList:seriesList!,n:float!", "Nulls points below the series' n-th percentile.";
    "removeBetweenPercentile", "Filter Series", "seriesList:seriesList!,n:float!", "Series with a point outside the n-th percentiles across series.";
    "round", "Transform", "seriesList:seriesList!,precision:integer=0", "Each point rounded.";
    "scaleToSeconds", "Transform", "seriesList:seriesList!,seconds:float!", "Values per step turned into values per given seconds.";
    "setXFilesFactor", "Special", "seriesList:seriesList!,xFilesFactor:float!", "The share of non-null points consolidation needs.";
    "sigmoid", "Transform", "seriesList:seriesList!", "Sigmoid of each point.";
    "sin", "Transform", "name:string!,amplitude:integer=1,step:integer=60", "Alias of sinFunction.";
    "smartSummarize", "Transform", "seriesList:seriesList!,intervalString:interval!,func:aggFunc=sum,alignTo:string", "Buckets of an interval from the (aligned) start, aggregated.";
    "sortBy", "Sorting", "seriesList:seriesList!,func:aggFunc=average,reverse:boolean=false", "Sort by an aggregate.";
    "squareRoot", "Transform", "seriesList:seriesList!", "Square root of each point.";
    "stdev", "Calculate", "seriesList:seriesList!,points:integer!,windowTolerance:float=0.1", "Standard deviation over a moving window of points.";
    "substr", "Special", "seriesList:seriesList!,start:node=0,stop:node=0", "Rename to a slice of the path's nodes.";
    "sumSeriesLists", "Combine", "seriesListFirstPos:seriesList!,seriesListSecondPos:seriesList!", "Sum of the i-th series of two lists.";
    "sumSeriesWithWildcards", "Combine", "seriesList:seriesList!,position:node*", "Sum of series grouped without the given nodes.";
    "timeSlice", "Transform", "seriesList:seriesList!,startSliceAt:date!,endSliceAt:date=now", "Nulls points outside a time slice.";
    "unique", "Filter Series", "seriesLists:seriesList!*", "Series with distinct names, first kept.";
    "useSeriesAbove", "Filter Series", "seriesList:seriesList!,value:float!,search:string!,replace:string!", "Series named by substitution from those whose maximum is above a value.";
    "weightedAverage", "Combine", "seriesListAvg:seriesList!,seriesListWeight:seriesList!,nodes:nodeOrTag*", "Average weighted by another series list.";
    "xFilesFactor", "Special", "seriesList:seriesList!,xFilesFactor:float!", "Alias of setXFilesFactor.";
    "add", "Transform", "seriesList:seriesList!,constant:float!", "Adds a constant.";
    "aliasQuery", "Alias", "seriesList:seriesList!,search:string!,replace:string!,newName:string!", "Rename by the last value of a query made from the name.";
    "verticalLine", "Graph", "ts:date!,label:string,color:string", "A vertical line at a time.";
}

const AGG_FUNCS: &[&str] = &[
    "average", "avg", "avg_zero", "median", "sum", "total", "min", "max", "diff", "stddev",
    "count", "range", "rangeOf", "multiply", "last", "current",
];

/// Dispatches a call by name.
pub(crate) fn call(ctx: &Ctx, call: &Call) -> Result<Value> {
    let a = Args { ctx, call };
    match call.name.as_str() {
        "sumSeries" | "sum" => agg::series_agg(&a, "sum"),
        "averageSeries" | "avg" => agg::series_agg(&a, "average"),
        "minSeries" => agg::series_agg(&a, "min"),
        "maxSeries" => agg::series_agg(&a, "max"),
        "diffSeries" => agg::series_agg(&a, "diff"),
        "multiplySeries" => agg::series_agg(&a, "multiply"),
        "stddevSeries" => agg::series_agg(&a, "stddev"),
        "rangeOfSeries" => agg::series_agg(&a, "rangeOf"),
        "aggregate" => agg::aggregate_fn(&a),
        "countSeries" => agg::count_series(&a),
        "percentileOfSeries" => agg::percentile_of_series(&a),
        "divideSeries" => agg::divide_series(&a),
        "asPercent" => agg::as_percent(&a),
        "group" => agg::group(&a),
        "groupByNode" => agg::group_by_nodes(&a, true),
        "groupByNodes" => agg::group_by_nodes(&a, false),
        "groupByTags" => agg::group_by_tags(&a),
        "scale" => transform::scale(&a),
        "offset" => transform::offset(&a),
        "absolute" => transform::absolute(&a),
        "removeAboveValue" => transform::remove_value(&a, true),
        "removeBelowValue" => transform::remove_value(&a, false),
        "derivative" => transform::derivative(&a, "derivative"),
        "nonNegativeDerivative" => transform::derivative(&a, "nonNegativeDerivative"),
        "perSecond" => transform::derivative(&a, "perSecond"),
        "integral" => transform::integral(&a),
        "keepLastValue" => transform::keep_last_value(&a),
        "transformNull" => transform::transform_null(&a),
        "movingAverage" => transform::moving(&a, Some("average")),
        "movingMedian" => transform::moving(&a, Some("median")),
        "movingSum" => transform::moving(&a, Some("sum")),
        "movingMin" => transform::moving(&a, Some("min")),
        "movingMax" => transform::moving(&a, Some("max")),
        "summarize" => transform::summarize(&a),
        "hitcount" => transform::hitcount(&a),
        "timeShift" => transform::time_shift(&a),
        "timeStack" => transform::time_stack(&a),
        "consolidateBy" => transform::consolidate_by(&a, None),
        "constantLine" => transform::constant_line(&a),
        "time" | "timeFunction" => transform::clock(&a, false),
        "sinFunction" => transform::clock(&a, true),
        "highest" => filter::highest(&a, None, false),
        "lowest" => filter::highest(&a, None, true),
        "highestAverage" => filter::highest(&a, Some("average"), false),
        "highestCurrent" => filter::highest(&a, Some("current"), false),
        "highestMax" => filter::highest(&a, Some("max"), false),
        "lowestAverage" => filter::highest(&a, Some("average"), true),
        "lowestCurrent" => filter::highest(&a, Some("current"), true),
        "sortByTotal" => filter::sort_by(&a, "sum", true),
        "sortByMaxima" => filter::sort_by(&a, "max", true),
        "sortByMinima" => filter::sort_by(&a, "min", false),
        "sortByName" => filter::sort_by_name(&a),
        "limit" => filter::limit(&a),
        "exclude" => filter::grep(&a, false),
        "grep" => filter::grep(&a, true),
        "removeEmptySeries" => filter::remove_empty(&a),
        "averageAbove" => filter::filter_by(&a, "average", true),
        "averageBelow" => filter::filter_by(&a, "average", false),
        "currentAbove" => filter::filter_by(&a, "current", true),
        "currentBelow" => filter::filter_by(&a, "current", false),
        "maximumAbove" => filter::filter_by(&a, "max", true),
        "maximumBelow" => filter::filter_by(&a, "max", false),
        "minimumAbove" => filter::filter_by(&a, "min", true),
        "minimumBelow" => filter::filter_by(&a, "min", false),
        "alias" => alias::alias(&a),
        "aliasByNode" => alias::alias_by_node(&a),
        "aliasByTags" => alias::alias_by_tags(&a),
        "aliasByMetric" => alias::alias_by_metric(&a),
        "aliasSub" => alias::alias_sub(&a),
        "cactiStyle" => alias::cacti_style(&a),
        "legendValue" => alias::legend_value(&a),
        "color" => style::color(&a),
        "lineWidth" => style::line_width(&a),
        "alpha" => style::alpha(&a),
        "secondYAxis" => style::second_y_axis(&a),
        "dashed" => style::dashed(&a),
        "drawAsInfinite" => style::draw_as_infinite(&a),
        "stacked" => style::stacked(&a),
        "areaBetween" => style::area_between(&a),
        "threshold" => style::threshold(&a),
        "verticalLine" => style::vertical_line(&a),
        // graphite-web 1.1.8's other functions (issue 12).
        "aggregateSeriesLists" => combine::aggregate_series_lists(&a, None),
        "sumSeriesLists" => combine::aggregate_series_lists(&a, Some("sum")),
        "diffSeriesLists" => combine::aggregate_series_lists(&a, Some("diff")),
        "multiplySeriesLists" => combine::aggregate_series_lists(&a, Some("multiply")),
        "divideSeriesLists" => agg::divide_series_lists(&a),
        "aggregateWithWildcards" => combine::aggregate_with_wildcards(&a, None),
        "sumSeriesWithWildcards" => combine::aggregate_with_wildcards(&a, Some("sum")),
        "averageSeriesWithWildcards" => combine::aggregate_with_wildcards(&a, Some("average")),
        "multiplySeriesWithWildcards" => combine::aggregate_with_wildcards(&a, Some("multiply")),
        "applyByNode" => combine::apply_by_node(&a),
        "mapSeries" | "map" => combine::map_series(&a),
        "reduceSeries" | "reduce" => combine::reduce_series(&a),
        "weightedAverage" => combine::weighted_average(&a),
        "pct" => agg::as_percent(&a),
        "powSeries" => math::pow_series(&a),
        "add" => math::add(&a),
        "pow" => math::pow(&a),
        "exp" => math::exp(&a),
        "log" => math::log(&a),
        "logit" => math::logit(&a),
        "sigmoid" => math::sigmoid(&a),
        "squareRoot" => math::square_root(&a),
        "invert" => math::invert(&a),
        "isNonNull" => math::is_non_null(&a),
        "round" => math::round(&a),
        "scaleToSeconds" => math::scale_to_seconds(&a),
        "minMax" => math::min_max(&a),
        "offsetToZero" => math::offset_to_zero(&a),
        "changed" => math::changed(&a),
        "delay" => math::delay(&a),
        "interpolate" => math::interpolate(&a),
        "integralByInterval" => math::integral_by_interval(&a),
        "timeSlice" => math::time_slice(&a),
        "substr" => math::substr(&a),
        "setXFilesFactor" | "xFilesFactor" => math::set_x_files_factor(&a),
        "cumulative" => transform::consolidate_by(&a, Some("sum")),
        "movingWindow" => transform::moving(&a, None),
        "sin" => transform::clock(&a, true),
        "holtWintersForecast" => calc::holt_winters_forecast(&a),
        "holtWintersConfidenceBands" => calc::holt_winters_confidence_bands(&a),
        "holtWintersConfidenceArea" => calc::holt_winters_confidence_area(&a),
        "holtWintersAberration" => calc::holt_winters_aberration(&a),
        "exponentialMovingAverage" => calc::exponential_moving_average(&a),
        "linearRegression" => calc::linear_regression(&a),
        "nPercentile" => calc::n_percentile(&a),
        "removeAbovePercentile" => calc::remove_percentile(&a, true),
        "removeBelowPercentile" => calc::remove_percentile(&a, false),
        "removeBetweenPercentile" => calc::remove_between_percentile(&a),
        "averageOutsidePercentile" => calc::average_outside_percentile(&a),
        "mostDeviant" => calc::most_deviant(&a),
        "stdev" => calc::stdev(&a),
        "aggregateLine" => calc::aggregate_line(&a),
        "identity" => calc::identity(&a),
        "randomWalk" | "randomWalkFunction" => calc::random_walk(&a),
        "smartSummarize" => special::smart_summarize(&a),
        "filterSeries" => special::filter_series(&a),
        "sortBy" => special::sort_by(&a),
        "unique" => special::unique(&a),
        "fallbackSeries" => special::fallback_series(&a),
        "useSeriesAbove" => special::use_series_above(&a),
        "aliasQuery" => special::alias_query(&a),
        "events" => special::events(&a),
        other => Err(QueryError::UnknownFunction(other.to_owned())),
    }
}

/// `/functions`: every function with its group, description and parameters.
pub fn functions_json() -> Json {
    let mut out = Map::new();
    for spec in SPECS {
        let params: Vec<Json> = spec
            .params
            .split(',')
            .map(|p| {
                let (decl, default) = p.split_once('=').map_or((p, None), |(d, v)| (d, Some(v)));
                let required = decl.contains('!');
                let multiple = decl.contains('*');
                let decl = decl
                    .trim_end_matches(['!', '*'])
                    .trim_end_matches(['!', '*']);
                let (name, ty) = decl.split_once(':').unwrap_or((decl, "any"));
                let mut m = Map::new();
                m.insert("name".into(), json!(name));
                m.insert("type".into(), json!(ty));
                if required {
                    m.insert("required".into(), json!(true));
                }
                if multiple {
                    m.insert("multiple".into(), json!(true));
                }
                if let Some(d) = default {
                    let v = match (ty, d) {
                        (_, "true") => json!(true),
                        (_, "false") => json!(false),
                        ("integer" | "float", n) => n.parse::<f64>().map_or(json!(n), |x| {
                            if x.fract() == 0.0 {
                                json!(x as i64)
                            } else {
                                json!(x)
                            }
                        }),
                        // Never a bare Infinity: Grafana's editor cannot parse it.
                        (_, s) => json!(s),
                    };
                    m.insert("default".into(), v);
                }
                if ty == "aggFunc" || ty == "aggOrSeriesFunc" {
                    m.insert("options".into(), json!(AGG_FUNCS));
                }
                Json::Object(m)
            })
            .collect();
        out.insert(
            spec.name.into(),
            json!({"name": spec.name, "group": spec.group, "description": spec.description, "module": "graphite.render.functions", "params": params}),
        );
    }
    Json::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_listed_function_dispatches() {
        let ctx = Ctx::new(Arc::new(crate::source::MemSource::default()), 0, 600);
        for spec in SPECS {
            if spec.name == "seriesByTag" {
                continue;
            }
            let c = Call {
                name: spec.name.into(),
                args: vec![],
                kwargs: vec![],
                raw: String::new(),
            };
            if let Err(QueryError::UnknownFunction(n)) = call(&ctx, &c) {
                panic!("{n} is listed but does not dispatch");
            }
        }
    }

    /// graphite-web 1.1.8 lists `keepLastValue(seriesList, limit=INF)` with the default
    /// `float('inf')` and writes it as a bare `Infinity`, which is not JSON (Grafana patches the
    /// text before parsing). We list `"inf"`: valid JSON, and the word graphite's grammar reads
    /// as that infinity, so the default Grafana's editor copies into a target means what
    /// graphite-web's does.
    #[test]
    fn an_infinite_default_is_listed_as_inf_issue_11() {
        let j = functions_json();
        let limit = &j["keepLastValue"]["params"][1];
        assert_eq!(limit["name"], "limit");
        assert_eq!(limit["type"], "intOrInf");
        assert_eq!(limit["default"], "inf");
        let target = format!(
            "keepLastValue(a.b, {})",
            limit["default"].as_str().unwrap_or("")
        );
        let Ok(crate::graphite::Expr::Call(c)) = crate::graphite::parse(&target) else {
            panic!("{target} does not parse");
        };
        assert_eq!(
            c.args[1],
            crate::graphite::Expr::Number {
                value: f64::INFINITY,
                int: false
            }
        );
        // Every parameter that may be infinite and has a default lists it the same way.
        for (name, f) in j.as_object().into_iter().flatten() {
            for p in f["params"].as_array().into_iter().flatten() {
                if p["type"] == "intOrInf" && !p["default"].is_null() {
                    assert_eq!(p["default"], "inf", "{name}.{}", p["name"]);
                }
            }
        }
    }

    /// Defaults as graphite-web 1.1.8 lists them (its `Param(..., default=...)`), typed as JSON.
    #[test]
    fn defaults_are_graphite_webs() {
        let j = functions_json();
        let default = |f: &str, i: usize| j[f]["params"][i]["default"].clone();
        assert_eq!(default("transformNull", 1), json!(0));
        assert_eq!(default("sinFunction", 1), json!(1));
        assert_eq!(default("sinFunction", 2), json!(60));
        assert_eq!(default("timeStack", 1), json!("1d"));
        assert_eq!(default("timeStack", 3), json!(7));
        assert_eq!(default("summarize", 2), json!("sum"));
        assert_eq!(default("summarize", 3), json!(false));
        assert_eq!(default("timeShift", 2), json!(true));
    }

    /// The other direction of `every_listed_function_dispatches`, over graphite-web 1.1.8's
    /// whole library: every function it has is listed here with its group and parameters
    /// (names, types, required, multiple, defaults), nothing is listed that it does not have,
    /// and a name that is not listed does not dispatch. Of the "Graph" group (display-only
    /// functions) only the names are checked.
    #[test]
    fn the_table_is_graphite_webs_and_dispatch_agrees_issue_12() {
        let reference: Vec<(&str, &str, &str)> = include_str!("graphite_web_1_1_8.tsv")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let mut f = l.split('\t');
                Some((f.next()?, f.next()?, f.next().unwrap_or("")))
            })
            .collect();
        assert_eq!(reference.len(), 151);
        let ctx = Ctx::new(Arc::new(crate::source::MemSource::default()), 0, 600);
        let mut problems = Vec::new();
        for (name, group, params) in &reference {
            match SPECS.iter().find(|s| s.name == *name) {
                Some(spec) => {
                    // The display-only "Graph" functions belong to the renderer's work.
                    if *group != "Graph" && (spec.group != *group || spec.params != *params) {
                        problems.push(format!(
                            "{name}: listed {} ({}), graphite-web {group} ({params})",
                            spec.group, spec.params
                        ));
                    }
                }
                None if *group == "Graph" => {}
                None => problems.push(format!("{name} ({group}) is not listed")),
            }
            let listed = SPECS.iter().any(|s| s.name == *name);
            let c = Call {
                name: (*name).into(),
                args: vec![],
                kwargs: vec![],
                raw: String::new(),
            };
            let unknown = matches!(call(&ctx, &c), Err(QueryError::UnknownFunction(_)));
            if listed == unknown && *name != "seriesByTag" {
                problems.push(format!(
                    "{name}: listed {listed} but dispatches {}",
                    !unknown
                ));
            }
        }
        for spec in SPECS {
            if !reference.iter().any(|(n, _, _)| *n == spec.name) {
                problems.push(format!(
                    "{} is listed but graphite-web has no such function",
                    spec.name
                ));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn functions_json_is_what_grafana_parses() {
        let j = functions_json();
        let p = &j["movingAverage"]["params"];
        assert_eq!(p[0]["name"], "seriesList");
        assert_eq!(p[0]["required"], true);
        assert_eq!(j["sumSeries"]["params"][0]["multiple"], true);
        assert_eq!(j["summarize"]["params"][2]["default"], "sum");
        assert!(j["groupByNode"]["params"][2]["options"].is_array());
        assert!(SPECS.len() >= 141, "{}", SPECS.len());
    }
}
