//! The optional `marketking.toml`: the lowest-priority source of the store settings.
//!
//! Read from `$MARKETKING_CONFIG` or `./marketking.toml` when present. Only flat
//! `key = "string"` lines are understood (with `#` comments): `database_url`, `db_path`,
//! `table` and `redis_url`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::args::GlobalArgs;

/// Settings found in the file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct FileConfig {
    pub(crate) database_url: Option<String>,
    pub(crate) db_path: Option<String>,
    pub(crate) table: Option<String>,
    pub(crate) redis_url: Option<String>,
}

impl FileConfig {
    /// Fills the settings the flags and the environment left unset.
    pub(crate) fn apply(self, g: &mut GlobalArgs) {
        g.database_url = g.database_url.take().or(self.database_url);
        g.db_path = g.db_path.take().or(self.db_path.map(PathBuf::from));
        g.table = g.table.take().or(self.table);
        g.redis_url = g.redis_url.take().or(self.redis_url);
    }
}

/// The config file to read: `$MARKETKING_CONFIG` (must exist) or `./marketking.toml` (if any).
pub(crate) fn load() -> anyhow::Result<Option<FileConfig>> {
    let (path, required) = match std::env::var_os("MARKETKING_CONFIG").filter(|v| !v.is_empty()) {
        Some(p) => (PathBuf::from(p), true),
        None => (PathBuf::from("marketking.toml"), false),
    };
    if !required && !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&path, &text).map(Some)
}

fn parse(path: &Path, text: &str) -> anyhow::Result<FileConfig> {
    let mut c = FileConfig::default();
    for (i, raw) in text.lines().enumerate() {
        let at = || format!("{}:{}", path.display(), i + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bail!("{}: expected key = \"value\"", at());
        };
        // A double-quoted string, optionally followed by a `#` comment.
        let quoted = value.trim().strip_prefix('"').and_then(|v| {
            let end = v.find('"')?;
            let rest = v[end + 1..].trim();
            (rest.is_empty() || rest.starts_with('#')).then(|| v[..end].to_string())
        });
        let Some(value) = quoted else {
            bail!("{}: the value must be a double-quoted string", at());
        };
        let value = Some(value);
        match key.trim() {
            "database_url" => c.database_url = value,
            "db_path" => c.db_path = value,
            "table" => c.table = value,
            "redis_url" => c.redis_url = value,
            other => bail!("{}: unknown setting {other:?} (database_url, db_path, table, redis_url)", at()),
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flat_string_settings() {
        let c =
            parse(Path::new("m.toml"), "# store\ntable = \"shop.docs\"  # comment\n\nredis_url = \"redis://h/0\"\n")
                .unwrap();
        assert_eq!(c.table.as_deref(), Some("shop.docs"));
        assert_eq!(c.redis_url.as_deref(), Some("redis://h/0"));
        assert_eq!(c.database_url, None);
        let e = parse(Path::new("m.toml"), "tabel = \"x\"\n").unwrap_err().to_string();
        assert!(e.starts_with("m.toml:1: unknown setting"), "{e}");
        assert!(parse(Path::new("m.toml"), "table = x\n").is_err());
    }
}
