//! A checker for CloudWatch Embedded Metric Format documents, written from
//! the specification (AmazonCloudWatch/latest/monitoring/
//! CloudWatch_Embedded_Metric_Format_Specification), and sums over them.

use std::collections::BTreeMap;

use serde_json::Value;

/// The units the specification allows.
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// One metric value of one document.
#[derive(Debug, Clone)]
pub struct Datum {
    pub namespace: String,
    pub name: String,
    pub unit: Option<String>,
    /// Dimension name -> value, as the document's dimension set names them.
    pub dimensions: BTreeMap<String, String>,
    /// One value, or the values of an array.
    pub values: Vec<f64>,
    /// The whole document (for properties such as `RequestId`).
    pub document: Value,
}

/// Checks one line against the specification; its metric values.
pub fn parse_line(line: &str) -> Result<Vec<Datum>, String> {
    let doc: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let root = doc.as_object().ok_or("the root is not an object")?;
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or("no _aws object")?;
    let timestamp = aws
        .get("Timestamp")
        .and_then(Value::as_u64)
        .ok_or("_aws.Timestamp is not a whole number of milliseconds")?;
    if timestamp < 1_600_000_000_000 {
        return Err(format!("_aws.Timestamp {timestamp} is not in milliseconds"));
    }
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or("no _aws.CloudWatchMetrics array")?;
    if directives.is_empty() {
        return Err("_aws.CloudWatchMetrics is empty".into());
    }
    let mut data = Vec::new();
    for directive in directives {
        let namespace = directive
            .get("Namespace")
            .and_then(Value::as_str)
            .ok_or("a directive has no Namespace")?;
        if namespace.is_empty() || namespace.len() > 255 {
            return Err(format!("Namespace {namespace:?} is not 1-255 characters"));
        }
        let sets = directive
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or("a directive has no Dimensions array")?;
        let mut dimension_sets = Vec::new();
        for set in sets {
            let set = set.as_array().ok_or("a dimension set is not an array")?;
            if set.len() > 30 {
                return Err(format!(
                    "a dimension set has {} dimensions (30 at most)",
                    set.len()
                ));
            }
            let mut dimensions = BTreeMap::new();
            for key in set {
                let key = key.as_str().ok_or("a dimension name is not a string")?;
                let value = root
                    .get(key)
                    .and_then(Value::as_str)
                    .ok_or(format!("dimension {key} has no string value at the root"))?;
                if value.is_empty() || value.len() > 1024 {
                    return Err(format!("dimension {key} value is not 1-1024 characters"));
                }
                dimensions.insert(key.to_string(), value.to_string());
            }
            dimension_sets.push(dimensions);
        }
        let metrics = directive
            .get("Metrics")
            .and_then(Value::as_array)
            .ok_or("a directive has no Metrics array")?;
        if metrics.len() > 100 {
            return Err(format!(
                "{} metrics in one directive (100 at most)",
                metrics.len()
            ));
        }
        for metric in metrics {
            let name = metric
                .get("Name")
                .and_then(Value::as_str)
                .ok_or("a metric has no Name")?;
            if name.is_empty() || name.len() > 1024 {
                return Err(format!("metric name {name:?} is not 1-1024 characters"));
            }
            let unit = match metric.get("Unit") {
                None => None,
                Some(unit) => {
                    let unit = unit.as_str().ok_or("a Unit is not a string")?;
                    if !UNITS.contains(&unit) {
                        return Err(format!("{name}: unit {unit:?} is not a CloudWatch unit"));
                    }
                    Some(unit.to_string())
                }
            };
            let values = match root.get(name) {
                Some(Value::Number(n)) => vec![n.as_f64().ok_or("not a number")?],
                Some(Value::Array(items)) => {
                    if items.is_empty() || items.len() > 100 {
                        return Err(format!("{name}: {} values (1-100)", items.len()));
                    }
                    items
                        .iter()
                        .map(|v| v.as_f64().ok_or(format!("{name}: a value is not a number")))
                        .collect::<Result<Vec<f64>, String>>()?
                }
                _ => return Err(format!("metric {name} has no numeric value at the root")),
            };
            for dimensions in &dimension_sets {
                data.push(Datum {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    unit: unit.clone(),
                    dimensions: dimensions.clone(),
                    values: values.clone(),
                    document: doc.clone(),
                });
            }
        }
    }
    Ok(data)
}

/// Checks every line of `text` (all must be EMF documents).
pub fn parse_all(text: &str) -> Vec<Datum> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .flat_map(|line| parse_line(line).unwrap_or_else(|e| panic!("not valid EMF: {e}: {line}")))
        .collect()
}

/// The sum of metric `name` over all documents, by the value of dimension
/// `by` (documents without it are left out).
pub fn sum_by(data: &[Datum], name: &str, by: &str) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for datum in data.iter().filter(|d| d.name == name) {
        if let Some(key) = datum.dimensions.get(by) {
            *sums.entry(key.clone()).or_insert(0.0) += datum.values.iter().sum::<f64>();
        }
    }
    sums
}

/// The sum of metric `name` over documents whose dimensions include all of
/// `with`.
pub fn sum_where(data: &[Datum], name: &str, with: &[(&str, &str)]) -> f64 {
    data.iter()
        .filter(|d| d.name == name)
        .filter(|d| {
            with.iter()
                .all(|(k, v)| d.dimensions.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|d| d.values.iter().sum::<f64>())
        .sum()
}
