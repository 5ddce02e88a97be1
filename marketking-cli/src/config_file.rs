//! The optional `marketking.toml`: the lowest-priority source of the store settings.
//!
//! Read from `$MARKETKING_CONFIG` or `./marketking.toml` when present, with the `toml` crate.
//! Settings: `database_url`, `db_path`, `table` and `redis_url` (strings); anything else is an
//! error naming the line.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::args::GlobalArgs;

/// Settings found in the file.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
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
    toml::from_str(text).map_err(|e| {
        // One line: `FILE:LINE: message`, like the import errors.
        let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        anyhow::anyhow!("{}:{line}: {}", path.display(), e.message().trim())
    })
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
        assert!(e.starts_with("m.toml:1: unknown field `tabel`"), "{e}");
        assert!(parse(Path::new("m.toml"), "table = x\n").is_err());
    }
}
