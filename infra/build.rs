//! Compiles every stack declaration in `stacks/` into the library, so adding an example's stack
//! is adding its file: no list to keep in step.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("stacks");
    // A directory makes cargo rerun this script when any file in it is added, removed or changed.
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("infra/stacks is readable")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "toml").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    let mut code =
        String::from("/// Every declaration, compiled into the binary so `labs` works from any directory.\n");
    code.push_str("const SOURCES: &[(&str, &str)] = &[\n");
    for name in &names {
        let path = dir.join(format!("{name}.toml"));
        writeln!(code, "    ({name:?}, include_str!({:?})),", path.display().to_string()).expect("writing to a String");
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("stacks.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}
