//! The key catalogue: every configuration key Sockudo 5.0.1 knows plus this server's own, read from the
//! data file `sockudo_keys.tsv` (one line per key path: type, status, default, example, env names).
//!
//! Whether a key is implemented is data, not code: flipping a line's status from `ignored` to `honoured`
//! (once the model in [`model`](super::model) accepts the key) is the whole change. Unit tests hold the
//! data, the model, the environment layer and `config/README.md` together.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::OnceLock;

use serde_json::Value;

/// The catalogue's text, compiled in.
const DATA: &str = include_str!("sockudo_keys.tsv");

/// What this server does with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// A Sockudo key, implemented with Sockudo's meaning.
    Honoured,
    /// A Sockudo key of a feature this server does not have: accepted, listed in the startup warning.
    Ignored,
    /// A key of this server's own (not Sockudo's), implemented.
    Own,
}

impl Status {
    /// Whether the value reaches the configuration (honoured or own).
    pub fn is_applied(self) -> bool {
        !matches!(self, Status::Ignored)
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "honoured" => Some(Status::Honoured),
            "ignored" => Some(Status::Ignored),
            "own" => Some(Status::Own),
            _ => None,
        }
    }

    /// The word used in the data file.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Honoured => "honoured",
            Status::Ignored => "ignored",
            Status::Own => "own",
        }
    }
}

/// The shape a key's value must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueType {
    /// `true` / `false`.
    Bool,
    /// An integer.
    Int,
    /// A number.
    Float,
    /// A string.
    Str,
    /// A list (array).
    List,
    /// A table / object.
    Map,
    /// Anything (opaque to this server).
    Any,
    /// One of these strings.
    Enum(Vec<String>),
}

/// A key's type: the shape, and whether `null` is allowed too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyType {
    /// The shape.
    pub shape: ValueType,
    /// `null` is accepted (written with a trailing `?`).
    pub nullable: bool,
}

impl KeyType {
    fn parse(text: &str) -> Option<Self> {
        let (base, nullable) = match text.strip_suffix('?') {
            Some(base) => (base, true),
            None => (text, false),
        };
        let shape = match base {
            "bool" => ValueType::Bool,
            "int" => ValueType::Int,
            "float" => ValueType::Float,
            "string" => ValueType::Str,
            "list" => ValueType::List,
            "map" => ValueType::Map,
            "any" => ValueType::Any,
            _ => ValueType::Enum(
                base.strip_prefix("enum:")?
                    .split('|')
                    .map(str::to_string)
                    .collect(),
            ),
        };
        Some(KeyType { shape, nullable })
    }

    /// `None` if `value` fits, else what was expected.
    pub fn mismatch(&self, value: &Value) -> Option<String> {
        if value.is_null() && (self.nullable || self.shape == ValueType::Any) {
            return None;
        }
        let fits = match &self.shape {
            ValueType::Bool => value.is_boolean(),
            ValueType::Int => value.is_i64() || value.is_u64(),
            ValueType::Float => value.is_number(),
            ValueType::Str => value.is_string(),
            ValueType::List => value.is_array(),
            ValueType::Map => value.is_object(),
            ValueType::Any => true,
            ValueType::Enum(words) => value.as_str().is_some_and(|s| words.iter().any(|w| w == s)),
        };
        if fits {
            return None;
        }
        let wanted = match &self.shape {
            ValueType::Bool => "a boolean".to_string(),
            ValueType::Int => "an integer".to_string(),
            ValueType::Float => "a number".to_string(),
            ValueType::Str => "a string".to_string(),
            ValueType::List => "a list".to_string(),
            ValueType::Map => "a table/object".to_string(),
            ValueType::Any => "any value".to_string(),
            ValueType::Enum(words) => format!("one of \"{}\"", words.join("\", \"")),
        };
        Some(format!("expected {wanted}, found {}", describe(value)))
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.shape {
            ValueType::Bool => f.write_str("bool")?,
            ValueType::Int => f.write_str("int")?,
            ValueType::Float => f.write_str("float")?,
            ValueType::Str => f.write_str("string")?,
            ValueType::List => f.write_str("list")?,
            ValueType::Map => f.write_str("map")?,
            ValueType::Any => f.write_str("any")?,
            ValueType::Enum(words) => write!(f, "enum:{}", words.join("|"))?,
        }
        if self.nullable {
            f.write_str("?")?;
        }
        Ok(())
    }
}

/// `string "x"`, `number 3`, ... for error messages.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string \"{s}\""),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a table/object".into(),
    }
}

/// One line of the catalogue.
#[derive(Debug, Clone)]
pub struct Key {
    /// Dotted path; `[]` after a segment = each element of a list, `*` = any key of a map.
    pub path: String,
    /// Value shape.
    pub ty: KeyType,
    /// Honoured, ignored or own.
    pub status: Status,
    /// This server's default as JSON text; `None` = unset / not applicable.
    pub default: Option<String>,
    /// A typical value (as in Sockudo's shipped files), JSON text.
    pub example: String,
    /// Sockudo's environment variables for the same setting.
    pub env: Vec<String>,
    /// Numbers of the Sockudo 5.0.1 shipped files using the key (see the data file's header).
    pub files: Vec<u8>,
    /// Free text.
    pub note: String,
}

impl Key {
    /// The example value, parsed.
    pub fn example_value(&self) -> Value {
        serde_json::from_str(&self.example).unwrap_or(Value::Null)
    }

    /// The default value, parsed (`None` when unset).
    pub fn default_value(&self) -> Option<Value> {
        self.default
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
    }
}

/// Why a catalogue line could not be read (a defect in the data file).
#[derive(Debug, thiserror::Error)]
#[error("sockudo_keys.tsv line {line}: {message}")]
pub struct DataError {
    line: usize,
    message: String,
}

/// All keys with indexes for lookup.
#[derive(Debug)]
pub struct Catalogue {
    keys: Vec<Key>,
    by_path: HashMap<String, usize>,
    /// Every proper prefix of a key path (the sections and lists keys live in).
    sections: HashSet<String>,
    /// Sections holding at least one honoured or own key.
    applied_sections: HashSet<String>,
    by_env: HashMap<String, usize>,
}

/// The catalogue compiled into the binary.
pub fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        // The data is compiled in and parsed by a unit test, so a failure here is a build defect.
        Catalogue::parse(DATA).unwrap_or_else(|e| panic!("{e}"))
    })
}

impl Catalogue {
    /// Parses the data file's text.
    pub fn parse(text: &str) -> Result<Self, DataError> {
        let mut keys = Vec::new();
        let mut header_seen = false;
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let bad = |message: String| DataError {
                line: line_no,
                message,
            };
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if !header_seen {
                header_seen = true;
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() != 8 {
                return Err(bad(format!("expected 8 columns, found {}", cols.len())));
            }
            let ty =
                KeyType::parse(cols[1]).ok_or_else(|| bad(format!("bad type {:?}", cols[1])))?;
            let status =
                Status::parse(cols[2]).ok_or_else(|| bad(format!("bad status {:?}", cols[2])))?;
            let default = match cols[3] {
                "-" => None,
                json => {
                    serde_json::from_str::<Value>(json)
                        .map_err(|e| bad(format!("default is not JSON: {e}")))?;
                    Some(json.to_string())
                }
            };
            serde_json::from_str::<Value>(cols[4])
                .map_err(|e| bad(format!("example is not JSON: {e}")))?;
            let files: Vec<u8> = cols[6]
                .split(',')
                .filter(|f| !f.is_empty())
                .map(|f| f.parse().map_err(|_| bad(format!("bad file number {f:?}"))))
                .collect::<Result<_, _>>()?;
            keys.push(Key {
                path: cols[0].to_string(),
                ty,
                status,
                default,
                example: cols[4].to_string(),
                env: cols[5]
                    .split('|')
                    .filter(|e| !e.is_empty())
                    .map(str::to_string)
                    .collect(),
                files,
                note: cols[7].to_string(),
            });
        }
        let mut by_path = HashMap::new();
        let mut by_env = HashMap::new();
        let mut sections = HashSet::new();
        let mut applied_sections = HashSet::new();
        for (i, key) in keys.iter().enumerate() {
            if by_path.insert(key.path.clone(), i).is_some() {
                return Err(DataError {
                    line: 0,
                    message: format!("{} is listed twice", key.path),
                });
            }
            for var in &key.env {
                if by_env.insert(var.clone(), i).is_some() {
                    return Err(DataError {
                        line: 0,
                        message: format!("variable {var} is listed twice"),
                    });
                }
            }
            let mut prefix = String::new();
            let segments: Vec<&str> = key.path.split('.').collect();
            for segment in &segments[..segments.len() - 1] {
                if !prefix.is_empty() {
                    prefix.push('.');
                }
                prefix.push_str(segment);
                sections.insert(prefix.clone());
                if key.status.is_applied() {
                    applied_sections.insert(prefix.clone());
                }
            }
        }
        Ok(Catalogue {
            keys,
            by_path,
            sections,
            applied_sections,
            by_env,
        })
    }

    /// Every key, in the data file's order (sorted by path).
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The key at exactly this catalogue path.
    pub fn key(&self, path: &str) -> Option<&Key> {
        self.by_path.get(path).map(|&i| &self.keys[i])
    }

    /// The key a variable sets.
    pub fn key_of_env(&self, var: &str) -> Option<&Key> {
        self.by_env.get(var).map(|&i| &self.keys[i])
    }

    /// Whether keys live below this catalogue path (it is a section, or a list of sections with `[]`).
    pub fn is_section(&self, path: &str) -> bool {
        self.sections.contains(path)
    }

    /// Whether an honoured or own key lives below this catalogue path.
    pub fn has_applied_keys_below(&self, path: &str) -> bool {
        self.applied_sections.contains(path)
    }

    /// The known key or section closest to `path` (catalogue form), by edit distance: a sibling when
    /// one is close, else the closest path overall.
    pub fn closest(&self, path: &str) -> Option<Suggestion> {
        let (parent, leaf) = path.rsplit_once('.').unwrap_or(("", path));
        let known = || {
            self.keys
                .iter()
                .map(|k| k.path.as_str())
                .chain(self.sections.iter().map(String::as_str))
        };
        let sibling = known()
            .filter_map(|p| {
                let (p_parent, p_leaf) = p.rsplit_once('.').unwrap_or(("", p));
                (p_parent == parent && p_leaf != "*").then_some(p_leaf.trim_end_matches("[]"))
            })
            .map(|p_leaf| (edit_distance(leaf, p_leaf), p_leaf))
            .min();
        if let Some((distance, p_leaf)) = sibling {
            if distance <= leaf.chars().count().max(4) / 2 {
                return Some(Suggestion::Sibling(p_leaf.to_string()));
            }
        }
        known()
            .map(|p| (edit_distance(path, p), p))
            .min()
            .map(|(_, p)| Suggestion::Path(p.to_string()))
    }

    /// A config tree using exactly the keys Sockudo 5.0.1's shipped file number `file` uses (see the data
    /// file's header), each set to its example value: a stand-in for that file in tests.
    pub fn sockudo_file_fixture(&self, file: u8) -> Value {
        let mut tree = Value::Object(serde_json::Map::new());
        for key in self.keys.iter().filter(|k| k.files.contains(&file)) {
            insert_path(&mut tree, &key.path, Some(key.example_value()));
        }
        tree
    }

    /// The markdown table of every key, as in `config/README.md`.
    pub fn markdown_table(&self) -> String {
        let mut out = String::from(
            "| key | type | status | default | example | env | note |\n|---|---|---|---|---|---|---|\n",
        );
        for key in &self.keys {
            let code = |s: &str| {
                if s.is_empty() {
                    String::new()
                } else {
                    format!("`{}`", s.replace('|', "\\|"))
                }
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                code(&key.path),
                code(&key.ty.to_string()),
                key.status.as_str(),
                key.default
                    .as_deref()
                    .map(code)
                    .unwrap_or_else(|| "unset".into()),
                code(&key.example),
                key.env
                    .iter()
                    .map(|e| code(e))
                    .collect::<Vec<_>>()
                    .join(", "),
                key.note.replace('|', "\\|"),
            ));
        }
        out
    }
}

/// Sets `path` (catalogue form) in `tree`, creating the sections on the way: a `[]` list gets (or
/// reuses) one element, a `*` map key becomes `"ticker:*"`. With `value` `None` only the sections are
/// created.
pub fn insert_path(tree: &mut Value, path: &str, value: Option<Value>) {
    let segments: Vec<&str> = path.split('.').collect();
    let mut node = tree;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let (name, list) = match segment.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (*segment, false),
        };
        let name = if name == "*" { "ticker:*" } else { name };
        if !node.is_object() {
            *node = Value::Object(serde_json::Map::new());
        }
        let Value::Object(map) = node else {
            unreachable!("made an object above")
        };
        if last && !list {
            if let Some(value) = value {
                map.insert(name.to_string(), value);
            }
            return;
        }
        let child = map.entry(name.to_string()).or_insert_with(|| {
            if list {
                Value::Array(vec![Value::Object(serde_json::Map::new())])
            } else {
                Value::Object(serde_json::Map::new())
            }
        });
        if list {
            if !child.is_array() {
                *child = Value::Array(Vec::new());
            }
            if let Value::Array(items) = child {
                if items.is_empty() {
                    items.push(Value::Object(serde_json::Map::new()));
                }
                node = &mut items[0];
                continue;
            }
        }
        node = child;
    }
}

/// A known key offered for an unknown one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suggestion {
    /// A key or section next to the unknown one: just its last segment.
    Sibling(String),
    /// A catalogue path elsewhere.
    Path(String),
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}
