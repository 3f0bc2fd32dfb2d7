//! The Connect JSON codec of the `querier.v1` messages: protobuf's proto3
//! JSON mapping, written by hand for the messages the query routes read and
//! write (prost has no JSON support).
//!
//! Reading ([`Obj`] and the `*_request` functions): a field is looked up by
//! its JSON name (lowerCamelCase, e.g. `profileTypeID`, `labelSelector`)
//! and then by its proto name (`profile_typeID`, `label_selector`), as
//! proto3 JSON parsers accept both; `null` is the default value; 64-bit
//! integers are accepted as numbers or decimal strings; doubles as numbers
//! or strings (including `"NaN"`, `"Infinity"`, `"-Infinity"`); enums as
//! their names or numbers. Unknown fields are ignored, as connect-go's
//! server codec does. A wrong type is an error naming the field.
//!
//! Writing (the `*_json` functions): JSON names, 64-bit integers as
//! strings, enums by name, `bytes` as base64, and fields with their
//! default value (zero, empty) left out — protojson's canonical output.

use crate::proto::pprof as pb;
use crate::proto::pyroscope::querier::v1 as q;
use crate::proto::pyroscope::types::v1 as t;
use base64::Engine;
use serde_json::{Map, Value};

/// A JSON request that does not fit its message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

type Result<T> = std::result::Result<T, JsonError>;

/// A JSON object being read as a message; `path` names it in errors.
pub struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    /// The top-level message of a request body.
    pub fn root(v: &'a Value, message: &str) -> Result<Obj<'a>> {
        match v {
            Value::Object(map) => Ok(Obj {
                map,
                path: message.to_string(),
            }),
            _ => Err(JsonError(format!("{message}: want a JSON object"))),
        }
    }

    /// The field's value by its JSON name, then its proto name; `None`
    /// when absent or `null`.
    fn get(&self, json: &str, proto: &str) -> Option<(&'a Value, String)> {
        [json, proto]
            .into_iter()
            .find_map(|k| self.map.get(k).filter(|v| !v.is_null()).map(|v| (v, k)))
            .map(|(v, k)| (v, format!("{}.{k}", self.path)))
    }

    fn bad<T>(field: &str, want: &str, got: &Value) -> Result<T> {
        let mut shown = got.to_string();
        if shown.len() > 64 {
            let mut cut = 64;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
            shown.push('…');
        }
        Err(JsonError(format!("{field}: want {want}, got {shown}")))
    }

    /// A `string` field.
    pub fn string(&self, json: &str, proto: &str) -> Result<String> {
        match self.get(json, proto) {
            None => Ok(String::new()),
            Some((Value::String(s), _)) => Ok(s.clone()),
            Some((v, f)) => Self::bad(&f, "a string", v),
        }
    }

    /// A `repeated string` field.
    pub fn strings(&self, json: &str, proto: &str) -> Result<Vec<String>> {
        match self.get(json, proto) {
            None => Ok(Vec::new()),
            Some((Value::Array(a), f)) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    v => Self::bad(&f, "an array of strings", v),
                })
                .collect(),
            Some((v, f)) => Self::bad(&f, "an array of strings", v),
        }
    }

    /// An `optional int64` field.
    pub fn opt_i64(&self, json: &str, proto: &str) -> Result<Option<i64>> {
        let Some((v, f)) = self.get(json, proto) else {
            return Ok(None);
        };
        let n = match v {
            Value::Number(n) => n.as_i64().or_else(|| {
                // 1e3 and 1000.0 are integers too.
                n.as_f64()
                    .filter(|x| x.fract() == 0.0 && x.abs() < 9.2e18)
                    .map(|x| x as i64)
            }),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match n {
            Some(n) => Ok(Some(n)),
            None => Self::bad(&f, "a 64-bit integer (number or string)", v),
        }
    }

    /// An `int64` field.
    pub fn i64(&self, json: &str, proto: &str) -> Result<i64> {
        Ok(self.opt_i64(json, proto)?.unwrap_or(0))
    }

    /// A `uint32` field.
    pub fn u32(&self, json: &str, proto: &str) -> Result<u32> {
        let n = self.i64(json, proto)?;
        u32::try_from(n)
            .map_err(|_| JsonError(format!("{}.{json}: {n} is not a uint32", self.path)))
    }

    /// A `bool` field.
    pub fn bool(&self, json: &str, proto: &str) -> Result<bool> {
        match self.get(json, proto) {
            None => Ok(false),
            Some((Value::Bool(b), _)) => Ok(*b),
            Some((v, f)) => Self::bad(&f, "true or false", v),
        }
    }

    /// A `double` field.
    pub fn f64(&self, json: &str, proto: &str) -> Result<f64> {
        let Some((v, f)) = self.get(json, proto) else {
            return Ok(0.0);
        };
        let x = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => match s.as_str() {
                "NaN" => Some(f64::NAN),
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                s => s.trim().parse::<f64>().ok(),
            },
            _ => None,
        };
        match x {
            Some(x) => Ok(x),
            None => Self::bad(&f, "a number", v),
        }
    }

    /// An `optional` enum field: its name (one of `names`, whose numbers
    /// are their positions) or its number.
    pub fn opt_enum(&self, json: &str, proto: &str, names: &[&str]) -> Result<Option<i32>> {
        let Some((v, f)) = self.get(json, proto) else {
            return Ok(None);
        };
        let n = match v {
            Value::String(s) => names.iter().position(|n| n == s).map(|i| i as i32),
            Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
            _ => None,
        };
        match n {
            Some(n) => Ok(Some(n)),
            None => Self::bad(&f, &format!("one of {}", names.join(", ")), v),
        }
    }

    /// An enum field.
    pub fn enum_(&self, json: &str, proto: &str, names: &[&str]) -> Result<i32> {
        Ok(self.opt_enum(json, proto, names)?.unwrap_or(0))
    }

    /// A message field.
    pub fn obj(&self, json: &str, proto: &str) -> Result<Option<Obj<'a>>> {
        match self.get(json, proto) {
            None => Ok(None),
            Some((Value::Object(map), path)) => Ok(Some(Obj { map, path })),
            Some((v, f)) => Self::bad(&f, "an object", v),
        }
    }

    /// A `repeated` message field.
    pub fn objs(&self, json: &str, proto: &str) -> Result<Vec<Obj<'a>>> {
        match self.get(json, proto) {
            None => Ok(Vec::new()),
            Some((Value::Array(a), path)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(map) => Ok(Obj {
                        map,
                        path: format!("{path}[{i}]"),
                    }),
                    v => Self::bad(&path, "an array of objects", v),
                })
                .collect(),
            Some((v, f)) => Self::bad(&f, "an array of objects", v),
        }
    }
}

/// `querier.v1.ProfileFormat`, by number.
pub const PROFILE_FORMATS: &[&str] = &[
    "PROFILE_FORMAT_UNSPECIFIED",
    "PROFILE_FORMAT_FLAMEGRAPH",
    "PROFILE_FORMAT_TREE",
    "PROFILE_FORMAT_DOT",
    "PROFILE_FORMAT_PPROF",
];
/// `types.v1.TimeSeriesAggregationType`, by number.
pub const AGGREGATIONS: &[&str] = &[
    "TIME_SERIES_AGGREGATION_TYPE_SUM",
    "TIME_SERIES_AGGREGATION_TYPE_AVERAGE",
];
/// `types.v1.ExemplarType`, by number.
pub const EXEMPLAR_TYPES: &[&str] = &[
    "EXEMPLAR_TYPE_UNSPECIFIED",
    "EXEMPLAR_TYPE_NONE",
    "EXEMPLAR_TYPE_INDIVIDUAL",
    "EXEMPLAR_TYPE_SPAN",
];
/// `querier.v1.AsyncQueryType`, by number.
const ASYNC_TYPES: &[&str] = &["ASYNC_QUERY_TYPE_DISABLED", "ASYNC_QUERY_TYPE_FORCE"];

/// `querier.v1.ProfileTypesRequest`.
pub fn profile_types_request(o: &Obj) -> Result<q::ProfileTypesRequest> {
    Ok(q::ProfileTypesRequest {
        start: o.i64("start", "start")?,
        end: o.i64("end", "end")?,
    })
}

/// `types.v1.LabelNamesRequest`.
pub fn label_names_request(o: &Obj) -> Result<t::LabelNamesRequest> {
    Ok(t::LabelNamesRequest {
        matchers: o.strings("matchers", "matchers")?,
        start: o.i64("start", "start")?,
        end: o.i64("end", "end")?,
    })
}

/// `types.v1.LabelValuesRequest`.
pub fn label_values_request(o: &Obj) -> Result<t::LabelValuesRequest> {
    Ok(t::LabelValuesRequest {
        name: o.string("name", "name")?,
        matchers: o.strings("matchers", "matchers")?,
        start: o.i64("start", "start")?,
        end: o.i64("end", "end")?,
    })
}

/// `querier.v1.SeriesRequest`.
pub fn series_request(o: &Obj) -> Result<q::SeriesRequest> {
    Ok(q::SeriesRequest {
        matchers: o.strings("matchers", "matchers")?,
        label_names: o.strings("labelNames", "label_names")?,
        start: o.i64("start", "start")?,
        end: o.i64("end", "end")?,
    })
}

fn stack_trace_selector(o: &Obj) -> Result<Option<t::StackTraceSelector>> {
    let Some(s) = o.obj("stackTraceSelector", "stack_trace_selector")? else {
        return Ok(None);
    };
    let call_site = s
        .objs("callSite", "call_site")?
        .iter()
        .map(|l| {
            Ok(t::Location {
                name: l.string("name", "name")?,
            })
        })
        .collect::<Result<_>>()?;
    let go_pgo = match s.obj("goPgo", "go_pgo")? {
        None => None,
        Some(g) => Some(t::GoPgo {
            keep_locations: g.u32("keepLocations", "keep_locations")?,
            aggregate_callees: g.bool("aggregateCallees", "aggregate_callees")?,
        }),
    };
    Ok(Some(t::StackTraceSelector { call_site, go_pgo }))
}

/// `querier.v1.SelectMergeStacktracesRequest`.
pub fn select_merge_stacktraces_request(o: &Obj) -> Result<q::SelectMergeStacktracesRequest> {
    let r#async = match o.obj("async", "async")? {
        None => None,
        Some(a) => Some(q::AsyncQueryRequest {
            request_id: a.string("requestId", "request_id")?,
            r#type: a.enum_("type", "type", ASYNC_TYPES)?,
        }),
    };
    Ok(q::SelectMergeStacktracesRequest {
        profile_type_id: o.string("profileTypeID", "profile_typeID")?,
        label_selector: o.string("labelSelector", "label_selector")?,
        start: o.i64("start", "start")?,
        end: o.i64("end", "end")?,
        max_nodes: o.opt_i64("maxNodes", "max_nodes")?,
        format: o.enum_("format", "format", PROFILE_FORMATS)?,
        stack_trace_selector: stack_trace_selector(o)?,
        profile_id_selector: o.strings("profileIdSelector", "profile_id_selector")?,
        r#async,
        trace_id_selector: o.strings("traceIdSelector", "trace_id_selector")?,
        span_selector: o.strings("spanSelector", "span_selector")?,
    })
}

/// `querier.v1.SelectMergeSpanProfileRequest`.
pub fn select_merge_span_profile_request(o: &Obj) -> Result<q::SelectMergeSpanProfileRequest> {
    Ok(q::SelectMergeSpanProfileRequest {
        profile_type_id: o.string("profileTypeID", "profile_typeID")?,
        label_selector: o.string("labelSelector", "label_selector")?,
        span_selector: o.strings("spanSelector", "span_selector")?,
        start: o.i64("start", "start")?,
        end: o.i64("end", "end")?,
        max_nodes: o.opt_i64("maxNodes", "max_nodes")?,
        format: o.enum_("format", "format", PROFILE_FORMATS)?,
    })
}

/// `querier.v1.SelectMergeProfileRequest`.
pub fn select_merge_profile_request(o: &Obj) -> Result<q::SelectMergeProfileRequest> {
    Ok(q::SelectMergeProfileRequest {
        profile_type_id: o.string("profileTypeID", "profile_typeID")?,
        label_selector: o.string("labelSelector", "label_selector")?,
        start: o.i64("start", "start")?,
        end: o.i64("end", "end")?,
        max_nodes: o.opt_i64("maxNodes", "max_nodes")?,
        stack_trace_selector: stack_trace_selector(o)?,
        profile_id_selector: o.strings("profileIdSelector", "profile_id_selector")?,
        trace_id_selector: o.strings("traceIdSelector", "trace_id_selector")?,
    })
}

/// `querier.v1.SelectSeriesRequest`.
pub fn select_series_request(o: &Obj) -> Result<q::SelectSeriesRequest> {
    Ok(q::SelectSeriesRequest {
        profile_type_id: o.string("profileTypeID", "profile_typeID")?,
        label_selector: o.string("labelSelector", "label_selector")?,
        start: o.i64("start", "start")?,
        end: o.i64("end", "end")?,
        group_by: o.strings("groupBy", "group_by")?,
        step: o.f64("step", "step")?,
        aggregation: o.opt_enum("aggregation", "aggregation", AGGREGATIONS)?,
        stack_trace_selector: stack_trace_selector(o)?,
        limit: o.opt_i64("limit", "limit")?,
        exemplar_type: o.enum_("exemplarType", "exemplar_type", EXEMPLAR_TYPES)?,
    })
}

/// `querier.v1.DiffRequest`.
pub fn diff_request(o: &Obj) -> Result<q::DiffRequest> {
    let side = |json: &str| -> Result<Option<q::SelectMergeStacktracesRequest>> {
        o.obj(json, json)?
            .map(|s| select_merge_stacktraces_request(&s))
            .transpose()
    };
    Ok(q::DiffRequest {
        left: side("left")?,
        right: side("right")?,
    })
}

/// Writes fields, leaving defaults out.
#[derive(Default)]
struct Out(Map<String, Value>);

impl Out {
    fn str(mut self, k: &str, v: &str) -> Self {
        if !v.is_empty() {
            self.0.insert(k.into(), v.into());
        }
        self
    }

    fn i64(mut self, k: &str, v: i64) -> Self {
        if v != 0 {
            self.0.insert(k.into(), v.to_string().into());
        }
        self
    }

    fn u64(mut self, k: &str, v: u64) -> Self {
        if v != 0 {
            self.0.insert(k.into(), v.to_string().into());
        }
        self
    }

    fn bool(mut self, k: &str, v: bool) -> Self {
        if v {
            self.0.insert(k.into(), true.into());
        }
        self
    }

    fn f64(mut self, k: &str, v: f64) -> Self {
        if v != 0.0 {
            let x = if v.is_nan() {
                "NaN".into()
            } else if v.is_infinite() {
                if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
            } else {
                serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
            };
            self.0.insert(k.into(), x);
        }
        self
    }

    fn strs(mut self, k: &str, v: &[String]) -> Self {
        if !v.is_empty() {
            self.0.insert(k.into(), v.into());
        }
        self
    }

    fn i64s(mut self, k: &str, v: &[i64]) -> Self {
        if !v.is_empty() {
            let a = v.iter().map(|n| Value::String(n.to_string())).collect();
            self.0.insert(k.into(), Value::Array(a));
        }
        self
    }

    fn u64s(mut self, k: &str, v: &[u64]) -> Self {
        if !v.is_empty() {
            let a = v.iter().map(|n| Value::String(n.to_string())).collect();
            self.0.insert(k.into(), Value::Array(a));
        }
        self
    }

    fn bytes(mut self, k: &str, v: &[u8]) -> Self {
        if !v.is_empty() {
            let s = base64::engine::general_purpose::STANDARD.encode(v);
            self.0.insert(k.into(), s.into());
        }
        self
    }

    fn obj(mut self, k: &str, v: Option<Value>) -> Self {
        if let Some(v) = v {
            self.0.insert(k.into(), v);
        }
        self
    }

    fn list(mut self, k: &str, v: Vec<Value>) -> Self {
        if !v.is_empty() {
            self.0.insert(k.into(), Value::Array(v));
        }
        self
    }

    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

fn label_pairs(v: &[t::LabelPair]) -> Vec<Value> {
    v.iter()
        .map(|l| {
            Out::default()
                .str("name", &l.name)
                .str("value", &l.value)
                .done()
        })
        .collect()
}

/// `querier.v1.ProfileTypesResponse`.
pub fn profile_types_json(r: &q::ProfileTypesResponse) -> Value {
    let types = r
        .profile_types
        .iter()
        .map(|p| {
            Out::default()
                .str("ID", &p.id)
                .str("name", &p.name)
                .str("sampleType", &p.sample_type)
                .str("sampleUnit", &p.sample_unit)
                .str("periodType", &p.period_type)
                .str("periodUnit", &p.period_unit)
                .done()
        })
        .collect();
    Out::default().list("profileTypes", types).done()
}

/// `types.v1.LabelNamesResponse` and `LabelValuesResponse` (`names`).
pub fn names_json(names: &[String]) -> Value {
    Out::default().strs("names", names).done()
}

/// `querier.v1.SeriesResponse`.
pub fn series_json(r: &q::SeriesResponse) -> Value {
    let sets = r
        .labels_set
        .iter()
        .map(|l| Out::default().list("labels", label_pairs(&l.labels)).done())
        .collect();
    Out::default().list("labelsSet", sets).done()
}

fn levels(v: &[q::Level]) -> Vec<Value> {
    v.iter()
        .map(|l| Out::default().i64s("values", &l.values).done())
        .collect()
}

fn flamegraph(f: &q::FlameGraph) -> Value {
    Out::default()
        .strs("names", &f.names)
        .list("levels", levels(&f.levels))
        .i64("total", f.total)
        .i64("maxSelf", f.max_self)
        .done()
}

/// `querier.v1.SelectMergeStacktracesResponse`.
pub fn select_merge_stacktraces_json(r: &q::SelectMergeStacktracesResponse) -> Value {
    let pprof = r.pprof.as_ref().map(|p| {
        Out::default()
            .obj("profile", p.profile.as_ref().map(profile_json))
            .done()
    });
    Out::default()
        .obj("flamegraph", r.flamegraph.as_ref().map(flamegraph))
        .bytes("tree", &r.tree)
        .str("dot", &r.dot)
        .obj("pprof", pprof)
        .done()
}

/// `querier.v1.SelectMergeSpanProfileResponse`.
pub fn select_merge_span_profile_json(r: &q::SelectMergeSpanProfileResponse) -> Value {
    Out::default()
        .obj("flamegraph", r.flamegraph.as_ref().map(flamegraph))
        .bytes("tree", &r.tree)
        .done()
}

/// `querier.v1.DiffResponse`.
pub fn diff_json(r: &q::DiffResponse) -> Value {
    let fg = r.flamegraph.as_ref().map(|f| {
        Out::default()
            .strs("names", &f.names)
            .list("levels", levels(&f.levels))
            .i64("total", f.total)
            .i64("maxSelf", f.max_self)
            .i64("leftTicks", f.left_ticks)
            .i64("rightTicks", f.right_ticks)
            .done()
    });
    Out::default().obj("flamegraph", fg).done()
}

/// `querier.v1.SelectSeriesResponse` (points carry no annotations or
/// exemplars here).
pub fn select_series_json(r: &q::SelectSeriesResponse) -> Value {
    let series = r
        .series
        .iter()
        .map(|s| {
            let points = s
                .points
                .iter()
                .map(|p| {
                    Out::default()
                        .f64("value", p.value)
                        .i64("timestamp", p.timestamp)
                        .done()
                })
                .collect();
            Out::default()
                .list("labels", label_pairs(&s.labels))
                .list("points", points)
                .done()
        })
        .collect();
    Out::default().list("series", series).done()
}

fn value_type(v: &pb::ValueType) -> Value {
    Out::default()
        .i64("type", v.r#type)
        .i64("unit", v.unit)
        .done()
}

/// A pprof profile (`google.v1.Profile` upstream, `perftools.profiles`
/// here: the same message).
pub fn profile_json(p: &pb::Profile) -> Value {
    let samples = p
        .sample
        .iter()
        .map(|s| {
            let labels = s
                .label
                .iter()
                .map(|l| {
                    Out::default()
                        .i64("key", l.key)
                        .i64("str", l.str)
                        .i64("num", l.num)
                        .i64("numUnit", l.num_unit)
                        .done()
                })
                .collect();
            Out::default()
                .u64s("locationId", &s.location_id)
                .i64s("value", &s.value)
                .list("label", labels)
                .done()
        })
        .collect();
    let mappings = p
        .mapping
        .iter()
        .map(|m| {
            Out::default()
                .u64("id", m.id)
                .u64("memoryStart", m.memory_start)
                .u64("memoryLimit", m.memory_limit)
                .u64("fileOffset", m.file_offset)
                .i64("filename", m.filename)
                .i64("buildId", m.build_id)
                .bool("hasFunctions", m.has_functions)
                .bool("hasFilenames", m.has_filenames)
                .bool("hasLineNumbers", m.has_line_numbers)
                .bool("hasInlineFrames", m.has_inline_frames)
                .done()
        })
        .collect();
    let locations = p
        .location
        .iter()
        .map(|l| {
            let lines = l
                .line
                .iter()
                .map(|ln| {
                    Out::default()
                        .u64("functionId", ln.function_id)
                        .i64("line", ln.line)
                        .i64("column", ln.column)
                        .done()
                })
                .collect();
            Out::default()
                .u64("id", l.id)
                .u64("mappingId", l.mapping_id)
                .u64("address", l.address)
                .list("line", lines)
                .bool("isFolded", l.is_folded)
                .done()
        })
        .collect();
    let functions = p
        .function
        .iter()
        .map(|f| {
            Out::default()
                .u64("id", f.id)
                .i64("name", f.name)
                .i64("systemName", f.system_name)
                .i64("filename", f.filename)
                .i64("startLine", f.start_line)
                .done()
        })
        .collect();
    Out::default()
        .list("sampleType", p.sample_type.iter().map(value_type).collect())
        .list("sample", samples)
        .list("mapping", mappings)
        .list("location", locations)
        .list("function", functions)
        .strs("stringTable", &p.string_table)
        .i64("dropFrames", p.drop_frames)
        .i64("keepFrames", p.keep_frames)
        .i64("timeNanos", p.time_nanos)
        .i64("durationNanos", p.duration_nanos)
        .obj("periodType", p.period_type.as_ref().map(value_type))
        .i64("period", p.period)
        .i64s("comment", &p.comment)
        .i64("defaultSampleType", p.default_sample_type)
        .done()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: &Value) -> Obj<'_> {
        Obj::root(v, "M").unwrap()
    }

    #[test]
    fn reads_json_and_proto_names_strings_for_int64_and_enum_names() {
        let v = json!({
            "profile_typeID": "a:b:c:d:e",
            "labelSelector": "{x=\"1\"}",
            "start": "1000",
            "end": 2000,
            "maxNodes": "16",
            "format": "PROFILE_FORMAT_PPROF",
            "unknownField": [1, 2],
        });
        let r = select_merge_stacktraces_request(&obj(&v)).unwrap();
        assert_eq!(r.profile_type_id, "a:b:c:d:e");
        assert_eq!(r.label_selector, "{x=\"1\"}");
        assert_eq!((r.start, r.end, r.max_nodes), (1000, 2000, Some(16)));
        assert_eq!(r.format, 4);
        let v = json!({"groupBy": ["a"], "step": "15.5", "aggregation": 1, "limit": null,
                       "exemplar_type": "EXEMPLAR_TYPE_NONE"});
        let r = select_series_request(&obj(&v)).unwrap();
        assert_eq!(r.group_by, ["a"]);
        assert_eq!((r.step, r.aggregation, r.limit), (15.5, Some(1), None));
        assert_eq!(r.exemplar_type, 1);
        let v = json!({"left": {"profileTypeID": "x"}, "right": null});
        let r = diff_request(&obj(&v)).unwrap();
        assert_eq!(r.left.unwrap().profile_type_id, "x");
        assert!(r.right.is_none());
    }

    #[test]
    fn wrong_types_name_the_field() {
        for (v, field) in [
            (json!({"start": "soon"}), "M.start"),
            (json!({"start": 1.5}), "M.start"),
            (json!({"matchers": "{}"}), "M.matchers"),
            (json!({"matchers": [1]}), "M.matchers"),
        ] {
            let e = label_names_request(&obj(&v)).unwrap_err().to_string();
            assert!(e.starts_with(field), "{e}");
        }
        let e = select_series_request(&obj(&json!({"aggregation": "MAX"})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("TIME_SERIES_AGGREGATION_TYPE_SUM"), "{e}");
        assert!(Obj::root(&json!([]), "M").is_err());
    }

    #[test]
    fn writes_canonical_proto3_json() {
        let r = q::SelectMergeStacktracesResponse {
            flamegraph: Some(q::FlameGraph {
                names: vec!["total".into()],
                levels: vec![q::Level {
                    values: vec![0, 5, 0, 0],
                }],
                total: 5,
                max_self: 0,
            }),
            ..Default::default()
        };
        assert_eq!(
            select_merge_stacktraces_json(&r),
            json!({"flamegraph": {"names": ["total"], "levels": [{"values": ["0", "5", "0", "0"]}],
                                  "total": "5"}})
        );
        let s = q::SelectSeriesResponse {
            series: vec![t::Series {
                labels: vec![t::LabelPair {
                    name: "a".into(),
                    value: "b".into(),
                }],
                points: vec![t::Point {
                    value: 2.0,
                    timestamp: 1000,
                    ..Default::default()
                }],
            }],
        };
        assert_eq!(
            select_series_json(&s),
            json!({"series": [{"labels": [{"name": "a", "value": "b"}],
                               "points": [{"value": 2.0, "timestamp": "1000"}]}]})
        );
        assert_eq!(names_json(&[]), json!({}));
    }
}
