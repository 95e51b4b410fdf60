//! YARA rules ([`RuleSet`]): the built-in set (`rules/default.yar`,
//! compiled into the binary) plus the files and directories the operator
//! names, compiled by yara-x; and [`RuleSource`], which reloads them when a
//! file changes and keeps the previous rules when the new ones do not
//! compile.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// The rules that ship with the binary.
pub const BUILTIN: &str = include_str!("../rules/default.yar");

/// Rules that could not be read or compiled.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// A rules file or directory could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A rules file does not compile.
    #[error("{path}: invalid YARA rules: {reason}")]
    Compile {
        /// The file (`<built-in>` for the shipped rules).
        path: String,
        /// yara-x's message, with the line.
        reason: String,
    },
}

/// Compiled rules and where they came from.
pub struct RuleSet {
    rules: yara_x::Rules,
    files: Vec<PathBuf>,
    count: usize,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("files", &self.files)
            .field("count", &self.count)
            .finish()
    }
}

impl RuleSet {
    /// The built-in rules alone.
    pub fn builtin() -> RuleSet {
        RuleSet::load(&[]).expect("the built-in rules compile (tested)")
    }

    /// The built-in rules plus every `.yar`/`.yara` file of `paths` (files,
    /// or directories read one level deep, in name order). Each file is its
    /// own namespace, so two files may use the same rule name.
    ///
    /// # Errors
    ///
    /// The first file that cannot be read or does not compile.
    pub fn load(paths: &[PathBuf]) -> Result<RuleSet, RuleError> {
        let files = rule_files(paths)?;
        let mut compiler = yara_x::Compiler::new();
        compiler.new_namespace("builtin");
        compiler
            .add_source(BUILTIN)
            .map_err(|e| RuleError::Compile {
                path: "<built-in>".to_owned(),
                reason: e.to_string(),
            })?;
        for (i, file) in files.iter().enumerate() {
            let text = std::fs::read_to_string(file).map_err(|source| RuleError::Read {
                path: file.clone(),
                source,
            })?;
            compiler.new_namespace(&format!("file{i}"));
            let source =
                yara_x::SourceCode::from(text.as_str()).with_origin(file.display().to_string());
            compiler
                .add_source(source)
                .map_err(|e| RuleError::Compile {
                    path: file.display().to_string(),
                    reason: e.to_string(),
                })?;
        }
        let rules = compiler.build();
        let count = rules.iter().len();
        Ok(RuleSet {
            rules,
            files,
            count,
        })
    }

    /// The compiled rules.
    pub fn rules(&self) -> &yara_x::Rules {
        &self.rules
    }

    /// How many rules (built-in included).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there is no rule at all (never: the built-in set has some).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The files compiled besides the built-in set.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// The `.yar`/`.yara` files named by `paths`.
fn rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, RuleError> {
    let mut files = Vec::new();
    for path in paths {
        let read = |source| RuleError::Read {
            path: path.clone(),
            source,
        };
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(read)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yar" || x == "yara"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            std::fs::metadata(path).map_err(read)?;
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// What the files looked like when last compiled: name, size and
/// modification time of each.
type Stamp = Vec<(PathBuf, u64, Option<SystemTime>)>;

fn stamp(paths: &[PathBuf]) -> Stamp {
    let files = rule_files(paths).unwrap_or_default();
    let mut stamp: Stamp = files
        .into_iter()
        .map(|f| {
            let meta = std::fs::metadata(&f).ok();
            let size = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (f, size, modified)
        })
        .collect();
    // A directory that appears or disappears changes the stamp too.
    stamp.extend(
        paths
            .iter()
            .filter(|p| !p.exists())
            .map(|p| (p.clone(), u64::MAX, None)),
    );
    stamp
}

/// Rules that follow their files: [`RuleSource::refresh`] recompiles when a
/// file was added, removed or changed, and keeps the rules in use when the
/// new ones fail.
#[derive(Debug)]
pub struct RuleSource {
    paths: Vec<PathBuf>,
    current: Arc<RuleSet>,
    stamp: Stamp,
}

/// What [`RuleSource::refresh`] did.
#[derive(Debug)]
pub enum Refresh {
    /// Nothing changed.
    Unchanged,
    /// New rules are in use.
    Reloaded(usize),
    /// The files changed but do not compile; the previous rules stay.
    Kept(RuleError),
}

impl RuleSource {
    /// Compiles `paths` (plus the built-in rules).
    ///
    /// # Errors
    ///
    /// As [`RuleSet::load`]: at start, bad rules are an error.
    pub fn new(paths: Vec<PathBuf>) -> Result<RuleSource, RuleError> {
        let stamp = stamp(&paths);
        let current = Arc::new(RuleSet::load(&paths)?);
        Ok(RuleSource {
            paths,
            current,
            stamp,
        })
    }

    /// The rules in use.
    pub fn current(&self) -> Arc<RuleSet> {
        Arc::clone(&self.current)
    }

    /// The configured paths.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Recompiles if a file changed.
    pub fn refresh(&mut self) -> Refresh {
        let now = stamp(&self.paths);
        if now == self.stamp {
            return Refresh::Unchanged;
        }
        self.stamp = now;
        match RuleSet::load(&self.paths) {
            Ok(rules) => {
                let count = rules.len();
                self.current = Arc::new(rules);
                Refresh::Reloaded(count)
            }
            Err(err) => Refresh::Kept(err),
        }
    }
}

/// The display name of a rules path for messages.
pub fn describe(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "the built-in rules".to_owned();
    }
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    format!("the built-in rules and {}", names.join(", "))
}

/// Whether `path` looks like a rules file.
pub fn is_rules_file(path: &Path) -> bool {
    path.extension().is_some_and(|x| x == "yar" || x == "yara")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_rules_compile_and_find_the_test_string() {
        let set = RuleSet::builtin();
        assert!(set.len() >= 4, "{set:?}");
        let mut scanner = yara_x::Scanner::new(set.rules());
        let eicar = concat!(
            "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
            "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
        );
        let data = format!("junk {eicar} junk");
        let results = scanner.scan(data.as_bytes()).expect("scan");
        let names: Vec<&str> = results.matching_rules().map(|r| r.identifier()).collect();
        assert_eq!(names, ["eicar_test_file"]);
        let clean = scanner.scan(b"hello world").expect("scan");
        assert_eq!(clean.matching_rules().len(), 0);
    }

    #[test]
    fn a_bad_file_keeps_the_previous_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("mine.yar");
        std::fs::write(
            &file,
            "rule mine { strings: $a = \"plantedmarker\" condition: $a }",
        )
        .expect("write");
        let mut source = RuleSource::new(vec![dir.path().to_owned()]).expect("compiles");
        let before = source.current().len();
        assert!(matches!(source.refresh(), Refresh::Unchanged));
        std::fs::write(&file, "rule broken { condition: $nope }").expect("write");
        match source.refresh() {
            Refresh::Kept(err) => {
                assert!(err.to_string().contains("mine.yar"), "{err}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(source.current().len(), before);
        std::fs::write(
            &file,
            "rule mine { strings: $a = \"plantedmarker\" condition: $a }\nrule two { condition: false }",
        )
        .expect("write");
        assert!(matches!(source.refresh(), Refresh::Reloaded(n) if n == before + 1));
        assert!(RuleSource::new(vec![dir.path().join("missing.yar")]).is_err());
    }
}
