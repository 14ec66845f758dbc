//! Checks a service's variables against the tables of
//! `docs/configuration.md`, so the documentation cannot fall behind the code.
//!
//! The document has a `## Shared` section whose table has a `Used by` column
//! (comma-separated service names), and a `## <service>` section per service
//! with a `Variable | Default | Meaning` table. A row is a line starting with
//! ``| ` ``; its first cell is the variable in backticks, its second the
//! default. A default written as a single code span (`` `60s` ``) is a
//! literal and must match the code's; anything else (`unset`, `random…`,
//! `` `$HOSTNAME/<pid>` ``) is prose and is not compared.

use super::{Asked, Env};
use std::collections::BTreeMap;

/// One documented variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The variable's name.
    pub var: String,
    /// The default cell as written.
    pub default: String,
    /// The `Used by` cell's services (the Shared table only).
    pub used_by: Vec<String>,
}

impl Row {
    /// The default, when it is written as a literal (one code span with no
    /// `$` or `<` placeholder).
    pub fn literal_default(&self) -> Option<&str> {
        let inner = self.default.strip_prefix('`')?.strip_suffix('`')?;
        (!inner.contains(['`', '$', '<'])).then_some(inner)
    }
}

/// The rows under the `## {section}` heading, up to the next `## `.
pub fn table(markdown: &str, section: &str) -> Vec<Row> {
    let heading = format!("## {section}");
    let mut inside = false;
    let mut rows = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("## ") {
            inside = line.trim_end() == heading;
            continue;
        }
        if !inside || !line.starts_with("| `") {
            continue;
        }
        let cells = cells(line);
        let var = cells
            .first()
            .map(|c| c.trim_matches('`').to_owned())
            .unwrap_or_default();
        let default = cells.get(1).cloned().unwrap_or_default();
        let used_by = if cells.len() >= 4 {
            cells[2]
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        } else {
            Vec::new()
        };
        rows.push(Row {
            var,
            default,
            used_by,
        });
    }
    rows
}

/// A row's trimmed cells, split on `|` but not on an escaped `\|`.
fn cells(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut escaped = false;
    for c in line.trim().trim_start_matches('|').chars() {
        match c {
            '|' if !escaped => cells.push(std::mem::take(&mut cell).trim().to_owned()),
            _ => cell.push(c),
        }
        escaped = c == '\\';
    }
    if !cell.trim().is_empty() {
        cells.push(cell.trim().to_owned());
    }
    cells
}

/// The rows documenting `service`: its own section's, and the Shared rows
/// whose `Used by` names it.
pub fn documented(markdown: &str, service: &str) -> Vec<Row> {
    let shared = table(markdown, "Shared")
        .into_iter()
        .filter(|row| row.used_by.iter().any(|s| s == service));
    shared.chain(table(markdown, service)).collect()
}

/// Compares what a service's configuration asked `env` for (read it with
/// every variable unset first) with its rows in `markdown`.
///
/// # Errors
/// Every difference, one per line: a variable read but not documented (or
/// documented but not read), documented twice, or whose literal default
/// differs from the code's.
pub fn check(markdown: &str, service: &str, env: &Env) -> Result<(), String> {
    compare(&documented(markdown, service), &env.asked(), service)
}

fn compare(rows: &[Row], asked: &Asked, service: &str) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut by_var: BTreeMap<&str, &Row> = BTreeMap::new();
    for row in rows {
        if by_var.insert(&row.var, row).is_some() {
            problems.push(format!("`{}` is documented twice for {service}", row.var));
        }
    }
    for (var, code_default) in asked {
        let Some(row) = by_var.get(var) else {
            problems.push(format!(
                "`{var}` is read by {service} but not documented in its table"
            ));
            continue;
        };
        let code_default = code_default.as_deref().filter(|d| !d.is_empty());
        match (row.literal_default(), code_default) {
            (Some(doc), Some(code)) if !same_default(doc, code) => problems.push(format!(
                "`{var}`: documented default `{doc}`, but {service} uses `{code}`"
            )),
            (Some(doc), None) => problems.push(format!(
                "`{var}`: documented default `{doc}`, but {service} has no fixed default"
            )),
            (None, Some(code)) => problems.push(format!(
                "`{var}`: {service} defaults to `{code}`, but the table says {}",
                row.default
            )),
            _ => {}
        }
    }
    for var in by_var.keys() {
        if !asked.contains_key(var) {
            problems.push(format!(
                "`{var}` is documented for {service} but not read by it"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// The same value, however written: `60s` and `1m`, `1.0` and `1`.
fn same_default(doc: &str, code: &str) -> bool {
    if doc == code {
        return true;
    }
    if let (Ok(a), Ok(b)) = (
        humantime::parse_duration(doc),
        humantime::parse_duration(code),
    ) {
        return a == b;
    }
    matches!((doc.parse::<f64>(), code.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const DOC: &str = "\
# Configuration

## Shared

| Variable | Default | Used by | Meaning |
|---|---|---|---|
| `NATS_URL` | `nats://x` | a, b | NATS |
| `ONLY_B` | `1` | b | not a's |

## a

| Variable | Default | Meaning |
|---|---|---|
| `WAIT` | `60s` | how long (`x \\| y`) |
| `SCALE` | `1.0` | a factor |
| `ID` | `$HOSTNAME/<pid>` | replica |
| `CIDRS` | empty | ranges |

## b

| Variable | Default | Meaning |
|---|---|---|
| `OTHER` | `2` | b's own |
";

    fn service_a(env: &Env) {
        env.text("NATS_URL", "nats://x");
        let _ = env.duration("WAIT", Duration::from_secs(60));
        let _ = env.parse("SCALE", 1.0_f64);
        let _ = env.optional("ID");
        let _ = env.list::<String>("CIDRS");
    }

    #[test]
    fn reads_the_service_section_and_the_shared_rows_that_name_it() {
        let rows = documented(DOC, "a");
        let vars: Vec<_> = rows.iter().map(|r| r.var.as_str()).collect();
        assert_eq!(vars, ["NATS_URL", "WAIT", "SCALE", "ID", "CIDRS"]);
        assert_eq!(rows[1].literal_default(), Some("60s"));
        assert_eq!(rows[3].literal_default(), None);
        assert_eq!(rows[4].literal_default(), None);
        assert_eq!(
            cells("| `WAIT` | `60s` | how long (`x \\| y`) |")[2],
            "how long (`x \\| y`)"
        );
    }

    #[test]
    fn a_documented_service_passes() {
        let env = Env::empty();
        service_a(&env);
        assert_eq!(check(DOC, "a", &env), Ok(()));
    }

    #[test]
    fn a_variable_added_to_the_code_but_not_the_docs_fails() {
        let env = Env::empty();
        service_a(&env);
        let _ = env.parse("NEW_KNOB", 3_u32);
        let err = check(DOC, "a", &env).expect_err("undocumented");
        assert!(err.contains("`NEW_KNOB` is read by a"), "{err}");
    }

    #[test]
    fn a_documented_variable_the_code_no_longer_reads_fails() {
        let env = Env::empty();
        env.text("NATS_URL", "nats://x");
        let err = check(DOC, "a", &env).expect_err("stale docs");
        assert!(
            err.contains("`WAIT` is documented for a but not read"),
            "{err}"
        );
    }

    #[test]
    fn a_default_that_differs_from_the_docs_fails() {
        let env = Env::empty();
        env.text("NATS_URL", "nats://x");
        let _ = env.duration("WAIT", Duration::from_secs(30));
        let _ = env.parse("SCALE", 1.0_f64);
        let _ = env.optional("ID");
        let _ = env.list::<String>("CIDRS");
        let err = check(DOC, "a", &env).expect_err("wrong default");
        assert!(err.contains("`WAIT`: documented default `60s`"), "{err}");
    }

    #[test]
    fn defaults_compare_by_value() {
        assert!(same_default("60s", "1m"));
        assert!(same_default("1500ms", "1s 500ms"));
        assert!(same_default("1.0", "1"));
        assert!(!same_default("10", "20"));
        assert!(!same_default("true", "false"));
    }
}
