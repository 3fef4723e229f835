//! Licence expressions: which declared licences kiln writes as SPDX expressions.
//!
//! CycloneDX takes any expression (its schema does not check one), so a syntactically
//! valid expression goes there as `expression`. SPDX 2.3 validators check every licence ID
//! against the SPDX licence list, so `licenseDeclared` gets an expression only when all its
//! IDs are in [`KNOWN`] (the licences packages commonly declare); anything else is
//! `NOASSERTION` with the declared text in `licenseComments`.

/// SPDX licence IDs kiln writes into SPDX documents as they are.
const KNOWN: &[&str] = &[
    "0BSD",
    "AFL-2.1",
    "AGPL-3.0-only",
    "AGPL-3.0-or-later",
    "Apache-1.1",
    "Apache-2.0",
    "Artistic-2.0",
    "BlueOak-1.0.0",
    "BSD-1-Clause",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSL-1.0",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "CC0-1.0",
    "CDDL-1.0",
    "EPL-1.0",
    "EPL-2.0",
    "GPL-2.0-only",
    "GPL-2.0-or-later",
    "GPL-3.0-only",
    "GPL-3.0-or-later",
    "HPND",
    "ISC",
    "LGPL-2.1-only",
    "LGPL-2.1-or-later",
    "LGPL-3.0-only",
    "LGPL-3.0-or-later",
    "MIT",
    "MIT-0",
    "MPL-2.0",
    "OpenSSL",
    "PSF-2.0",
    "Python-2.0",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "Unlicense",
    "WTFPL",
    "X11",
    "Zlib",
];

/// Exceptions (`WITH`) kiln writes into SPDX documents as they are.
const KNOWN_EXCEPTIONS: &[&str] = &["LLVM-exception", "Classpath-exception-2.0"];

/// The words of an expression: IDs, operators and parentheses.
fn tokens(expression: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for word in expression.split_whitespace() {
        let mut rest = word;
        while let Some(stripped) = rest.strip_prefix('(') {
            out.push("(");
            rest = stripped;
        }
        let mut closing = 0;
        while let Some(stripped) = rest.strip_suffix(')') {
            closing += 1;
            rest = stripped;
        }
        if !rest.is_empty() {
            out.push(rest);
        }
        out.extend(std::iter::repeat_n(")", closing));
    }
    out
}

fn is_id(token: &str) -> bool {
    !token.is_empty()
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | ':'))
        && !matches!(token, "AND" | "OR" | "WITH")
}

/// Whether `text` is an SPDX licence expression by its syntax: IDs joined by `AND`, `OR`,
/// `WITH`, with balanced parentheses.
pub(crate) fn is_expression(text: &str) -> bool {
    let mut depth = 0usize;
    // Whether an ID (or a closed group) was the last thing seen.
    let mut operand = false;
    for token in tokens(text) {
        match token {
            "(" if !operand => depth += 1,
            ")" if operand && depth > 0 => depth -= 1,
            "AND" | "OR" | "WITH" if operand => operand = false,
            id if !operand && is_id(id) => operand = true,
            _ => return false,
        }
    }
    operand && depth == 0
}

/// Whether `expression` is valid and names only licences (and exceptions) of [`KNOWN`].
pub(crate) fn is_known_expression(expression: &str) -> bool {
    if !is_expression(expression) {
        return false;
    }
    let mut after_with = false;
    for token in tokens(expression) {
        match token {
            "(" | ")" | "AND" | "OR" => after_with = false,
            "WITH" => after_with = true,
            id if after_with => {
                if !KNOWN_EXCEPTIONS.contains(&id) {
                    return false;
                }
            }
            id => {
                if !KNOWN.contains(&id.trim_end_matches('+')) {
                    return false;
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_by_syntax_and_by_list() {
        for ok in [
            "MIT",
            "(MIT OR Apache-2.0)",
            "Apache-2.0 WITH LLVM-exception",
            "BSD-3-Clause AND (MIT OR ISC)",
        ] {
            assert!(is_expression(ok), "{ok}");
            assert!(is_known_expression(ok), "{ok}");
        }
        for bad in [
            "",
            "MIT OR",
            "(MIT",
            "MIT)",
            "BSD License",
            "SEE LICENSE IN LICENSE.md",
            "OR MIT",
        ] {
            assert!(!is_expression(bad), "{bad}");
        }
        assert!(is_expression("LicenseRef-Proprietary"));
        assert!(!is_known_expression("LicenseRef-Proprietary"));
        assert!(!is_known_expression("BSD"));
    }
}
