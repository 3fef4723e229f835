//! Debian control data: deb822 stanzas, version ordering and dependency relations.
//!
//! See Debian Policy §5 (control files), §5.6.12 (versions) and §7.1 (relations).

use std::cmp::Ordering;
use std::fmt;

/// deb822 text that is not a sequence of stanzas.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StanzaError {
    /// An indented line before any field.
    #[error("line {line}: continuation line without a field")]
    ContinuationWithoutField {
        /// Its line number (from 1).
        line: usize,
    },
    /// A line that is neither `Field: value` nor a continuation.
    #[error("line {line}: expected \"Field: value\", found {text:?}")]
    NotAField {
        /// Its line number (from 1).
        line: usize,
        /// The line.
        text: String,
    },
}

/// Text that is not a Debian version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// The version is empty.
    #[error("empty version")]
    Empty,
    /// The part before `:` is not a number.
    #[error("version {version:?} has a non-numeric epoch")]
    NonNumericEpoch {
        /// The version.
        version: String,
    },
    /// The upstream version does not start with a digit.
    #[error("version {version:?} must start with a digit")]
    NoLeadingDigit {
        /// The version.
        version: String,
    },
}

/// A relation field (`Depends`, `Provides`) that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelationError {
    /// A `[` (architectures) or `(` (version constraint) is not closed.
    #[error("unclosed '{bracket}' in {relation:?}")]
    Unclosed {
        /// The bracket.
        bracket: char,
        /// The relation.
        relation: String,
    },
    /// The version constraint's operator is none of `<<`, `<=`, `=`, `>=`, `>>`.
    #[error("unknown relation operator {operator:?} in {relation:?}")]
    UnknownOperator {
        /// The operator.
        operator: String,
        /// The relation.
        relation: String,
    },
    /// The constraint's version does not parse.
    #[error(transparent)]
    Version(#[from] VersionError),
    /// The relation has no package name.
    #[error("relation {relation:?} names no package")]
    NoPackage {
        /// The relation.
        relation: String,
    },
}

/// One deb822 stanza: fields in file order, names compared case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stanza {
    fields: Vec<(String, String)>,
}

impl Stanza {
    /// The value of `name` (case-insensitive). Multi-line values keep their newlines.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All fields, in file order.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    /// Sets or replaces `name`.
    pub fn set(&mut self, name: &str, value: &str) {
        match self
            .fields
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some((_, v)) => *v = value.to_string(),
            None => self.fields.push((name.to_string(), value.to_string())),
        }
    }

    /// Writes the stanza back in deb822 form (continuation lines indented, empty lines as
    /// ` .`), ending with a newline.
    pub fn to_deb822(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.fields {
            out.push_str(k);
            out.push(':');
            let mut lines = v.split('\n');
            if let Some(first) = lines.next()
                && !first.is_empty()
            {
                out.push(' ');
                out.push_str(first);
            }
            out.push('\n');
            for line in lines {
                if line.is_empty() {
                    out.push_str(" .\n");
                } else {
                    out.push(' ');
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// Parses deb822 text into stanzas. `#` comment lines are skipped; a line that is neither a
/// field nor a continuation is an error naming its line number.
pub fn parse_stanzas(text: &str) -> Result<Vec<Stanza>, StanzaError> {
    let mut stanzas = Vec::new();
    let mut current = Stanza::default();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if !current.fields.is_empty() {
                stanzas.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some((_, value)) = current.fields.last_mut() else {
                return Err(StanzaError::ContinuationWithoutField { line: n + 1 });
            };
            let cont = line.trim();
            value.push('\n');
            if cont != "." {
                value.push_str(cont);
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(StanzaError::NotAField {
                line: n + 1,
                text: line.to_string(),
            });
        };
        // Only the end of a name is trimmed: a line starting with other whitespace than a
        // continuation's (`\u{b}#: x`) must not become a `#…` field, which reads back as a
        // comment.
        current
            .fields
            .push((name.trim_end().to_string(), value.trim().to_string()));
    }
    if !current.fields.is_empty() {
        stanzas.push(current);
    }
    Ok(stanzas)
}

/// A Debian package version, `[epoch:]upstream[-revision]`, ordered as dpkg orders them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    epoch: u64,
    upstream: String,
    revision: String,
    text: String,
}

impl Version {
    /// Parses a version string.
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(VersionError::Empty);
        }
        let (epoch, rest) = match text.split_once(':') {
            Some((e, rest)) => (
                e.parse().map_err(|_| VersionError::NonNumericEpoch {
                    version: text.to_string(),
                })?,
                rest,
            ),
            None => (0, text),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        if upstream.is_empty() || !upstream.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(VersionError::NoLeadingDigit {
                version: text.to_string(),
            });
        }
        Ok(Self {
            epoch,
            upstream: upstream.to_string(),
            revision: revision.to_string(),
            text: text.to_string(),
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// dpkg's `verrevcmp`: alternating non-digit and digit runs; `~` sorts before everything,
/// even the end of the string; letters before other characters.
fn verrevcmp(a: &str, b: &str) -> Ordering {
    fn order(c: Option<u8>) -> i32 {
        match c {
            None => 0,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(c),
            Some(b'~') => -1,
            Some(c) => i32::from(c) + 256,
        }
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// A version constraint operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<<`
    Less,
    /// `<=` (and the deprecated `<`)
    LessEq,
    /// `=`
    Eq,
    /// `>=` (and the deprecated `>`)
    GreaterEq,
    /// `>>`
    Greater,
}

impl Op {
    /// Whether `candidate OP wanted` holds.
    pub fn holds(self, candidate: &Version, wanted: &Version) -> bool {
        let ord = candidate.cmp(wanted);
        match self {
            Self::Less => ord == Ordering::Less,
            Self::LessEq => ord != Ordering::Greater,
            Self::Eq => ord == Ordering::Equal,
            Self::GreaterEq => ord != Ordering::Less,
            Self::Greater => ord == Ordering::Greater,
        }
    }
}

/// One package reference in a relation: `name[:arch] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Package name.
    pub name: String,
    /// Version constraint.
    pub constraint: Option<(Op, Version)>,
}

impl Relation {
    /// Whether a package (or provided name) at `version` satisfies this relation. A
    /// constraint against an unversioned provide never holds, as in dpkg.
    pub fn accepts(&self, version: Option<&Version>) -> bool {
        match (&self.constraint, version) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((op, wanted)), Some(v)) => op.holds(v, wanted),
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some((op, v)) = &self.constraint {
            let op = match op {
                Op::Less => "<<",
                Op::LessEq => "<=",
                Op::Eq => "=",
                Op::GreaterEq => ">=",
                Op::Greater => ">>",
            };
            write!(f, " ({op} {v})")?;
        }
        Ok(())
    }
}

/// Parses a relation field (`Depends`, `Pre-Depends`, `Provides`) into clauses of
/// alternatives, keeping only alternatives whose architecture restriction (`[amd64]`,
/// `[!i386]`) admits `arch`. Arch qualifiers (`:any`, `:native`) are dropped.
pub fn parse_relations(field: &str, arch: &str) -> Result<Vec<Vec<Relation>>, RelationError> {
    let mut clauses = Vec::new();
    for clause in field.split(',') {
        let clause = clause.trim();
        if clause.is_empty() {
            continue;
        }
        let mut alternatives = Vec::new();
        for alt in clause.split('|') {
            if let Some(relation) = parse_relation(alt.trim(), arch)? {
                alternatives.push(relation);
            }
        }
        if !alternatives.is_empty() {
            clauses.push(alternatives);
        }
    }
    Ok(clauses)
}

fn parse_relation(text: &str, arch: &str) -> Result<Option<Relation>, RelationError> {
    let unclosed = |bracket| RelationError::Unclosed {
        bracket,
        relation: text.to_string(),
    };
    let mut rest = text;
    // Build profiles (<!nocheck>) only appear in build relations; drop them.
    if let Some(i) = rest.find('<')
        && rest[i..].starts_with("<!")
    {
        rest = rest[..i].trim_end();
    }
    if let Some(open) = rest.find('[') {
        let close = rest[open..]
            .find(']')
            .map(|c| open + c)
            .ok_or_else(|| unclosed('['))?;
        let arches: Vec<&str> = rest[open + 1..close].split_whitespace().collect();
        let negated = arches.iter().all(|a| a.starts_with('!'));
        let listed = arches.iter().any(|a| a.trim_start_matches('!') == arch);
        if negated == listed {
            return Ok(None);
        }
        rest = rest[..open].trim_end();
    }
    let (name_part, constraint) = match rest.find('(') {
        Some(open) => {
            // The last ')' after the '(' (one before it, as in `a ) (`, is no closing one).
            let close = rest[open..]
                .rfind(')')
                .map(|c| open + c)
                .ok_or_else(|| unclosed('('))?;
            let inner = rest[open + 1..close].trim();
            let split = inner
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .unwrap_or(inner.len());
            let op = match &inner[..split] {
                "<<" => Op::Less,
                "<=" | "<" => Op::LessEq,
                "=" => Op::Eq,
                ">=" | ">" => Op::GreaterEq,
                ">>" => Op::Greater,
                other => {
                    return Err(RelationError::UnknownOperator {
                        operator: other.to_string(),
                        relation: text.to_string(),
                    });
                }
            };
            (&rest[..open], Some((op, Version::parse(&inner[split..])?)))
        }
        None => (rest, None),
    };
    let name = name_part.trim();
    let name = name.split_once(':').map_or(name, |(n, _)| n.trim_end());
    if name.is_empty() {
        return Err(RelationError::NoPackage {
            relation: text.to_string(),
        });
    }
    Ok(Some(Relation {
        name: name.to_string(),
        constraint,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn stanzas_parse_with_continuations_and_comments() {
        let text = "# comment\nPackage: a\nDescription: short\n long line\n .\n more\n\n\nPackage: b\nversion: 1\n";
        let stanzas = parse_stanzas(text).unwrap();
        assert_eq!(stanzas.len(), 2);
        assert_eq!(
            stanzas[0].get("description"),
            Some("short\nlong line\n\nmore")
        );
        assert_eq!(stanzas[1].get("Version"), Some("1"));
        assert_eq!(
            stanzas[0].to_deb822(),
            "Package: a\nDescription: short\n long line\n .\n more\n"
        );
        assert!(parse_stanzas(" orphan\n").is_err());
        assert!(parse_stanzas("no colon here\n").is_err());
    }

    #[test]
    fn versions_order_like_dpkg() {
        let ascending = [
            "1.0~rc1",
            "1.0",
            "1.0-1",
            "1.0-1+deb12u1",
            "1.0a",
            "1.0.1",
            "1.1",
            "1.10",
            "2:0.1",
        ];
        for pair in ascending.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(v("1.0").cmp(&v("1.0-0")), Ordering::Equal);
        assert_eq!(v("01.0").cmp(&v("1.0")), Ordering::Equal);
        assert!(v("1.0~~") < v("1.0~"));
        assert!(v("2.36-9+deb12u13") > v("2.36-9+deb12u9"));
        assert!(Version::parse("").is_err());
        assert!(Version::parse("x:1").is_err());
        assert!(Version::parse("abc").is_err());
    }

    #[test]
    fn relations_parse_alternatives_constraints_and_arches() {
        let r = parse_relations(
            "libc6 (>= 2.36), libgcc-s1 | libgcc1, python3:any (>= 3.11~), foo [i386], bar [!i386], baz [amd64] <!nocheck>",
            "amd64",
        )
        .unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(r[0][0].to_string(), "libc6 (>= 2.36)");
        assert_eq!(r[1].len(), 2);
        assert_eq!(r[2][0].name, "python3");
        assert_eq!(r[3][0].name, "bar");
        assert_eq!(r[4][0].name, "baz");
        assert!(r[0][0].accepts(Some(&v("2.36-9"))));
        assert!(!r[0][0].accepts(Some(&v("2.35"))));
        assert!(!r[0][0].accepts(None));
        assert!(parse_relations("a (=> 1)", "amd64").is_err());
        assert!(parse_relations("a (>= 1", "amd64").is_err());
        // The messages name what failed, as they did as strings.
        for (field, message) in [
            ("a (>= 1", r#"unclosed '(' in "a (>= 1""#),
            ("a [amd64", r#"unclosed '[' in "a [amd64""#),
            (
                "a (=> 1)",
                r#"unknown relation operator "=>" in "a (=> 1)""#,
            ),
            ("(>= 1)", r#"relation "(>= 1)" names no package"#),
            ("a (>= x)", r#"version "x" must start with a digit"#),
        ] {
            let error = parse_relations(field, "amd64").unwrap_err();
            assert_eq!(error.to_string(), message, "{field}");
        }
        assert_eq!(
            parse_stanzas("no colon here\n").unwrap_err().to_string(),
            r#"line 1: expected "Field: value", found "no colon here""#
        );
        assert_eq!(
            parse_stanzas(" orphan\n").unwrap_err(),
            StanzaError::ContinuationWithoutField { line: 1 }
        );
        assert_eq!(
            Version::parse("x:1").unwrap_err().to_string(),
            r#"version "x:1" has a non-numeric epoch"#
        );
    }
}
