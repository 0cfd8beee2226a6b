//! What a function's build depends on, hashed, so `labs up` can tell an unchanged function
//! without starting the compiler (cargo-lambda's own up-to-date check takes seconds).
//!
//! The inputs: the pinned cargo-lambda and zig and the profile's name (the caller's `toolchain`),
//! the Rust compiler's version, the workspace manifest (which holds the profile's settings) and
//! lock file, and every source file of the function's crate and of the workspace
//! crates it depends on (by path, transitively). Tests and fixtures are not inputs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// The workspace's own crates, by dependency name: `[workspace.dependencies]` entries with a path.
fn workspace_crates(source: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let manifest = read_manifest(&source.join("Cargo.toml"))?;
    let dependencies = manifest.get("workspace").and_then(|w| w.get("dependencies")).and_then(|d| d.as_table());
    Ok(dependencies
        .into_iter()
        .flatten()
        .filter_map(|(name, spec)| Some((name.clone(), source.join(spec.get("path")?.as_str()?))))
        .collect())
}

fn read_manifest(path: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.parse().with_context(|| format!("{} is not valid TOML", path.display()))
}

/// The crate directories a function's build reads: its own and its workspace dependencies'.
fn crate_dirs(source: &Path, package: &str) -> Result<BTreeSet<PathBuf>> {
    let workspace = workspace_crates(source)?;
    let mut dirs = BTreeSet::new();
    let mut todo = vec![source.join("lambdas").join(package)];
    while let Some(dir) = todo.pop() {
        if !dirs.insert(dir.clone()) {
            continue;
        }
        let manifest = read_manifest(&dir.join("Cargo.toml"))?;
        for section in ["dependencies", "build-dependencies"] {
            let names = manifest.get(section).and_then(|d| d.as_table()).into_iter().flat_map(|t| t.keys());
            todo.extend(names.filter_map(|name| workspace.get(name).cloned()));
        }
    }
    Ok(dirs)
}

/// Every file under `dir` that can change the binary, sorted, without tests or build output.
fn source_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with('.') || matches!(name, "target" | "tests" | "benches") {
            continue;
        }
        if path.is_dir() {
            source_files(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

fn compiler_version() -> String {
    Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .arg("-V")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

/// A hash of everything `package`'s build reads (see the module's comment); `toolchain` names
/// the pinned build tools.
pub fn hash(source: &Path, package: &str, toolchain: &str) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(toolchain.as_bytes());
    hasher.update(compiler_version().as_bytes());
    let mut files = vec![source.join("Cargo.toml"), source.join("Cargo.lock")];
    for dir in crate_dirs(source, package)? {
        let mut crate_files = Vec::new();
        source_files(&dir, &mut crate_files)?;
        crate_files.sort();
        files.extend(crate_files);
    }
    for file in files {
        let content = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        // Name and length first, so moving bytes between files changes the hash.
        hasher.update(file.strip_prefix(source).unwrap_or(&file).to_string_lossy().as_bytes());
        hasher.update((content.len() as u64).to_le_bytes());
        hasher.update(&content);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-crate workspace in a temporary folder: `lambdas/fun` depends on `lambdas/core`.
    fn workspace(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("labs-inputs-{name}-{}", std::process::id()));
        let write = |path: &str, text: &str| {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("Cargo.toml", "[workspace.dependencies]\ncore = { path = \"lambdas/core\" }\nserde = \"1\"\n");
        write("Cargo.lock", "# lock\n");
        write("lambdas/fun/Cargo.toml", "[dependencies]\ncore.workspace = true\nserde.workspace = true\n");
        write("lambdas/fun/src/main.rs", "fn main() {}\n");
        write("lambdas/fun/tests/t.rs", "#[test] fn t() {}\n");
        write("lambdas/core/Cargo.toml", "[dependencies]\n");
        write("lambdas/core/src/lib.rs", "pub fn f() {}\n");
        write("lambdas/other/Cargo.toml", "[dependencies]\n");
        write("lambdas/other/src/lib.rs", "pub fn g() {}\n");
        root
    }

    #[test]
    fn changes_with_the_function_and_its_workspace_dependencies_only() {
        let root = workspace("deps");
        let before = hash(&root, "fun", "tools-1").unwrap();
        assert_eq!(hash(&root, "fun", "tools-1").unwrap(), before, "stable for the same inputs");
        std::fs::write(root.join("lambdas/other/src/lib.rs"), "pub fn g() { }\n").unwrap();
        std::fs::write(root.join("lambdas/fun/tests/t.rs"), "// changed\n").unwrap();
        assert_eq!(hash(&root, "fun", "tools-1").unwrap(), before, "an unrelated crate or a test is not an input");
        std::fs::write(root.join("lambdas/core/src/lib.rs"), "pub fn f() { }\n").unwrap();
        let after_core = hash(&root, "fun", "tools-1").unwrap();
        assert_ne!(after_core, before, "a dependency's source is an input");
        std::fs::write(root.join("Cargo.lock"), "# lock 2\n").unwrap();
        let after_lock = hash(&root, "fun", "tools-1").unwrap();
        assert_ne!(after_lock, after_core, "the lock file is an input");
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        std::fs::write(root.join("Cargo.toml"), manifest + "[profile.lambda]\nopt-level = \"s\"\n").unwrap();
        assert_ne!(hash(&root, "fun", "tools-1").unwrap(), after_lock, "the profile's settings are an input");
        assert_ne!(hash(&root, "fun", "tools-2").unwrap(), hash(&root, "fun", "tools-1").unwrap());
        std::fs::remove_dir_all(root).ok();
    }
}
