//! A subscription's tag filter (DELTA-TAGS.md §6.3-6.7, 6.9), compiled once from its JSON tree.
//!
//! JSON shape: branch `{"op":"and"|"or"|"not","nodes":[..]}`, leaf `{"key":K,"cmp":C,"val":V}` or
//! `{"key":K,"cmp":"in"|"nin","vals":[..]}` or `{"key":K,"cmp":"ex"|"nex"}`.
//! Stricter than Sockudo where Sockudo silently guessed: an unknown `op` or `cmp`, a missing `cmp`, or a filter
//! that is not an object is an error instead of a leaf that matches nothing / an `eq` / no filter.

use super::Tags;
use serde_json::Value;

/// Size limits of one filter (Sockudo's V2 `PredicateLimits` defaults).
#[derive(Debug, Clone, Copy)]
pub struct FilterLimits {
    /// Nodes in the whole tree.
    pub max_nodes: usize,
    /// Nesting depth (a single leaf is depth 1).
    pub max_depth: usize,
    /// Bytes of one key.
    pub max_key_bytes: usize,
    /// Bytes of one value.
    pub max_value_bytes: usize,
    /// Entries of one `vals` list.
    pub max_values: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        FilterLimits {
            max_nodes: 128,
            max_depth: 16,
            max_key_bytes: 256,
            max_value_bytes: 1024,
            max_values: 128,
        }
    }
}

/// Why a filter was refused; the text goes into `pusher:error` (code 4000).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// Not a JSON object where a node was expected.
    #[error("a filter node must be an object")]
    NotAnObject,
    /// `op` is not and/or/not.
    #[error("unknown op {0:?} (expected and, or, not)")]
    UnknownOp(String),
    /// `nodes` missing or not an array.
    #[error("{0} node requires a nodes array")]
    MissingNodes(&'static str),
    /// and/or without children.
    #[error("{0} node requires at least one child node")]
    EmptyBranch(&'static str),
    /// `not` with zero or several children.
    #[error("not node requires exactly one child node")]
    NotArity,
    /// Leaf without a non-empty string key.
    #[error("Leaf node requires a non-empty key")]
    MissingKey,
    /// Leaf without `cmp`, or an unknown one.
    #[error("unknown or missing cmp {0:?} (expected eq, neq, in, nin, ex, nex, sw, ew, ct, gt, gte, lt, lte)")]
    UnknownCmp(String),
    /// A comparator that needs `val` has none (or an empty one).
    #[error("cmp {0} requires a non-empty val")]
    MissingVal(&'static str),
    /// `in`/`nin` without a non-empty `vals` array.
    #[error("cmp {0} requires a non-empty vals array")]
    MissingVals(&'static str),
    /// Over a size limit.
    #[error("filter too large: {0}")]
    TooLarge(String),
}

/// A compiled filter.
#[derive(Debug, Clone, PartialEq)]
pub struct TagFilter {
    root: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    Leaf { key: Box<str>, test: Test },
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Eq(Box<str>),
    Neq(Box<str>),
    /// Sorted and de-duplicated.
    In(Box<[Box<str>]>),
    Nin(Box<[Box<str>]>),
    Exists,
    NotExists,
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Contains(Box<str>),
    /// `None` when the filter value is not a number: never matches.
    Gt(Option<f64>),
    Gte(Option<f64>),
    Lt(Option<f64>),
    Lte(Option<f64>),
}

impl TagFilter {
    /// Compiles and validates a filter tree.
    pub fn parse(value: &Value, limits: &FilterLimits) -> Result<Self, FilterError> {
        let mut nodes = 0;
        let root = compile(value, limits, 1, &mut nodes)?;
        Ok(TagFilter { root })
    }

    /// True when a message with `tags` passes.
    pub fn matches(&self, tags: &Tags) -> bool {
        eval(&self.root, tags)
    }
}

fn eval(node: &Node, tags: &Tags) -> bool {
    match node {
        Node::And(children) => children.iter().all(|c| eval(c, tags)),
        Node::Or(children) => children.iter().any(|c| eval(c, tags)),
        Node::Not(child) => !eval(child, tags),
        Node::Leaf { key, test } => {
            let value = tags.get(key);
            match (test, value) {
                (Test::Exists, v) => v.is_some(),
                (Test::NotExists, v) => v.is_none(),
                (Test::Neq(want), v) => v != Some(&**want),
                (Test::Nin(set), v) => v.is_none_or(|t| !contains(set, t)),
                (_, None) => false,
                (Test::Eq(want), Some(t)) => t == &**want,
                (Test::In(set), Some(t)) => contains(set, t),
                (Test::StartsWith(p), Some(t)) => t.starts_with(&**p),
                (Test::EndsWith(s), Some(t)) => t.ends_with(&**s),
                (Test::Contains(s), Some(t)) => t.contains(&**s),
                (Test::Gt(v), Some(t)) => numeric(t, *v, |a, b| a > b),
                (Test::Gte(v), Some(t)) => numeric(t, *v, |a, b| a >= b),
                (Test::Lt(v), Some(t)) => numeric(t, *v, |a, b| a < b),
                (Test::Lte(v), Some(t)) => numeric(t, *v, |a, b| a <= b),
            }
        }
    }
}

fn contains(set: &[Box<str>], t: &str) -> bool {
    set.binary_search_by(|v| (**v).cmp(t)).is_ok()
}

fn numeric(tag: &str, want: Option<f64>, op: fn(f64, f64) -> bool) -> bool {
    match (tag.parse::<f64>(), want) {
        (Ok(t), Some(v)) => op(t, v),
        _ => false,
    }
}

fn compile(
    value: &Value,
    limits: &FilterLimits,
    depth: usize,
    nodes: &mut usize,
) -> Result<Node, FilterError> {
    *nodes += 1;
    if *nodes > limits.max_nodes {
        return Err(FilterError::TooLarge(format!(
            "more than {} nodes",
            limits.max_nodes
        )));
    }
    if depth > limits.max_depth {
        return Err(FilterError::TooLarge(format!(
            "nested deeper than {} levels",
            limits.max_depth
        )));
    }
    let obj = value.as_object().ok_or(FilterError::NotAnObject)?;
    if let Some(op) = obj.get("op").filter(|v| !v.is_null()) {
        let op = op.as_str().unwrap_or_default();
        let name: &'static str = match op {
            "and" => "and",
            "or" => "or",
            "not" => "not",
            _ => return Err(FilterError::UnknownOp(op.to_string())),
        };
        let children = obj
            .get("nodes")
            .and_then(Value::as_array)
            .ok_or(FilterError::MissingNodes(name))?;
        let mut compiled = Vec::with_capacity(children.len());
        for child in children {
            compiled.push(compile(child, limits, depth + 1, nodes)?);
        }
        return match name {
            "not" => {
                if compiled.len() != 1 {
                    return Err(FilterError::NotArity);
                }
                Ok(Node::Not(Box::new(compiled.remove(0))))
            }
            _ if compiled.is_empty() => Err(FilterError::EmptyBranch(name)),
            "and" => Ok(Node::And(compiled.into_boxed_slice())),
            _ => Ok(Node::Or(compiled.into_boxed_slice())),
        };
    }
    let key = obj
        .get("key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or(FilterError::MissingKey)?;
    if key.len() > limits.max_key_bytes {
        return Err(FilterError::TooLarge(format!(
            "key longer than {} bytes",
            limits.max_key_bytes
        )));
    }
    let cmp = obj.get("cmp").and_then(Value::as_str).unwrap_or_default();
    let val = |name: &'static str| -> Result<Box<str>, FilterError> {
        let v = obj
            .get("val")
            .and_then(coerce)
            .filter(|v| !v.is_empty())
            .ok_or(FilterError::MissingVal(name))?;
        check_value(&v, limits)?;
        Ok(v.into_boxed_str())
    };
    let vals = |name: &'static str| -> Result<Box<[Box<str>]>, FilterError> {
        let list = obj
            .get("vals")
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
            .ok_or(FilterError::MissingVals(name))?;
        if list.len() > limits.max_values {
            return Err(FilterError::TooLarge(format!(
                "more than {} vals in one node",
                limits.max_values
            )));
        }
        let mut out = Vec::with_capacity(list.len());
        for v in list {
            if let Some(s) = coerce(v) {
                check_value(&s, limits)?;
                out.push(s.into_boxed_str());
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out.into_boxed_slice())
    };
    let number = |name: &'static str| -> Result<Option<f64>, FilterError> {
        Ok(val(name)?.parse::<f64>().ok())
    };
    let test = match cmp {
        "eq" => Test::Eq(val("eq")?),
        "neq" => Test::Neq(val("neq")?),
        "in" => Test::In(vals("in")?),
        "nin" => Test::Nin(vals("nin")?),
        "ex" => Test::Exists,
        "nex" => Test::NotExists,
        "sw" => Test::StartsWith(val("sw")?),
        "ew" => Test::EndsWith(val("ew")?),
        "ct" => Test::Contains(val("ct")?),
        "gt" => Test::Gt(number("gt")?),
        "gte" => Test::Gte(number("gte")?),
        "lt" => Test::Lt(number("lt")?),
        "lte" => Test::Lte(number("lte")?),
        other => return Err(FilterError::UnknownCmp(other.to_string())),
    };
    Ok(Node::Leaf {
        key: key.into(),
        test,
    })
}

fn check_value(v: &str, limits: &FilterLimits) -> Result<(), FilterError> {
    if v.len() > limits.max_value_bytes {
        return Err(FilterError::TooLarge(format!(
            "value longer than {} bytes",
            limits.max_value_bytes
        )));
    }
    Ok(())
}

/// `val` coercion (§6.7): string as is, number as its JSON text, bool as true/false, null absent, other JSON text.
fn coerce(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Tags::new(map).unwrap()
    }

    fn f(v: Value) -> TagFilter {
        TagFilter::parse(&v, &FilterLimits::default()).unwrap()
    }

    fn err(v: Value) -> FilterError {
        TagFilter::parse(&v, &FilterLimits::default()).unwrap_err()
    }

    #[test]
    fn every_comparator() {
        let t = tags(&[
            ("type", "goal"),
            ("xG", "0.87"),
            ("team", "Real Madrid"),
            ("e", ""),
        ]);
        let none = tags(&[]);
        let cases: &[(Value, bool, bool)] = &[
            // (filter, on t, on empty tags)
            (json!({"key":"type","cmp":"eq","val":"goal"}), true, false),
            (json!({"key":"type","cmp":"eq","val":"Goal"}), false, false),
            (json!({"key":"type","cmp":"neq","val":"shot"}), true, true),
            (json!({"key":"type","cmp":"neq","val":"goal"}), false, true),
            (
                json!({"key":"type","cmp":"in","vals":["shot","goal"]}),
                true,
                false,
            ),
            (
                json!({"key":"type","cmp":"in","vals":["shot"]}),
                false,
                false,
            ),
            (
                json!({"key":"type","cmp":"nin","vals":["shot"]}),
                true,
                true,
            ),
            (
                json!({"key":"type","cmp":"nin","vals":["goal","x"]}),
                false,
                true,
            ),
            (json!({"key":"e","cmp":"ex"}), true, false),
            (json!({"key":"zz","cmp":"nex"}), true, true),
            (json!({"key":"type","cmp":"nex"}), false, true),
            (json!({"key":"team","cmp":"sw","val":"Real"}), true, false),
            (json!({"key":"team","cmp":"ew","val":"Madrid"}), true, false),
            (json!({"key":"team","cmp":"ct","val":"al M"}), true, false),
            (json!({"key":"team","cmp":"ct","val":"Barca"}), false, false),
            (json!({"key":"xG","cmp":"gt","val":0.8}), true, false),
            (json!({"key":"xG","cmp":"gte","val":"0.87"}), true, false),
            (json!({"key":"xG","cmp":"lt","val":"0.87"}), false, false),
            (json!({"key":"xG","cmp":"lte","val":"1e0"}), true, false),
            (json!({"key":"team","cmp":"gt","val":"1"}), false, false),
            (json!({"key":"xG","cmp":"gt","val":"abc"}), false, false),
        ];
        for (filter, on_t, on_none) in cases {
            let compiled = f(filter.clone());
            assert_eq!(compiled.matches(&t), *on_t, "{filter} on tags");
            assert_eq!(compiled.matches(&none), *on_none, "{filter} on no tags");
        }
    }

    #[test]
    fn logical_nodes() {
        let filter = f(json!({"op":"or","nodes":[
            {"key":"event_type","cmp":"eq","val":"goal"},
            {"op":"and","nodes":[{"key":"event_type","cmp":"eq","val":"shot"},{"key":"xG","cmp":"gte","val":"0.8"}]}
        ]}));
        assert!(filter.matches(&tags(&[("event_type", "goal")])));
        assert!(filter.matches(&tags(&[("event_type", "shot"), ("xG", "0.9")])));
        assert!(!filter.matches(&tags(&[("event_type", "shot"), ("xG", "0.1")])));
        let not = f(json!({"op":"not","nodes":[{"key":"a","cmp":"eq","val":"1"}]}));
        assert!(not.matches(&tags(&[("a", "2")])));
        assert!(!not.matches(&tags(&[("a", "1")])));
    }

    #[test]
    fn value_coercion() {
        let t = tags(&[("n", "5"), ("b", "true")]);
        assert!(f(json!({"key":"n","cmp":"eq","val":5})).matches(&t));
        assert!(f(json!({"key":"b","cmp":"eq","val":true})).matches(&t));
        assert!(f(json!({"key":"n","cmp":"in","vals":[1,5]})).matches(&t));
    }

    #[test]
    fn invalid_filters_are_refused() {
        assert_eq!(
            err(json!({"op":"and","nodes":[]})),
            FilterError::EmptyBranch("and")
        );
        assert_eq!(err(json!({"op":"or"})), FilterError::MissingNodes("or"));
        assert_eq!(
            err(json!({"op":"not","nodes":[{"key":"a","cmp":"ex"},{"key":"b","cmp":"ex"}]})),
            FilterError::NotArity
        );
        assert_eq!(err(json!({"cmp":"eq","val":"x"})), FilterError::MissingKey);
        assert_eq!(
            err(json!({"key":"","cmp":"eq","val":"x"})),
            FilterError::MissingKey
        );
        assert_eq!(
            err(json!({"key":"a","cmp":"in","vals":[]})),
            FilterError::MissingVals("in")
        );
        assert_eq!(
            err(json!({"key":"a","cmp":"eq","val":""})),
            FilterError::MissingVal("eq")
        );
        assert_eq!(
            err(json!({"key":"a","cmp":"eq"})),
            FilterError::MissingVal("eq")
        );
        assert!(matches!(
            err(json!({"key":"a","cmp":"like","val":"x"})),
            FilterError::UnknownCmp(_)
        ));
        assert!(matches!(
            err(json!({"op":"xor","nodes":[]})),
            FilterError::UnknownOp(_)
        ));
        assert_eq!(err(json!("type=goal")), FilterError::NotAnObject);
        assert_eq!(
            FilterError::MissingKey.to_string(),
            "Leaf node requires a non-empty key"
        );
    }

    #[test]
    fn limits() {
        let mut deep = json!({"key":"a","cmp":"ex"});
        for _ in 0..16 {
            deep = json!({"op":"not","nodes":[deep]});
        }
        assert!(matches!(err(deep), FilterError::TooLarge(_)));
        let wide: Vec<Value> = (0..200).map(|_| json!({"key":"a","cmp":"ex"})).collect();
        assert!(matches!(
            err(json!({"op":"or","nodes":wide})),
            FilterError::TooLarge(_)
        ));
        let vals: Vec<Value> = (0..129).map(|i| json!(i)).collect();
        assert!(matches!(
            err(json!({"key":"a","cmp":"in","vals":vals})),
            FilterError::TooLarge(_)
        ));
        let long = "x".repeat(1025);
        assert!(matches!(
            err(json!({"key":"a","cmp":"eq","val":long})),
            FilterError::TooLarge(_)
        ));
    }
}
