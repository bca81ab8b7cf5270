//! Link settings of the `ferry` binary.
//!
//! On Linux with glibc the binary's relative relocations are packed (`-z
//! pack-relative-relocs`, DT_RELR: glibc ≥ 2.36, binutils ≥ 2.38): the table the dynamic
//! linker reads at every start shrinks from about 1.8 MB to a few KB, and so does the
//! memory every command maps for it (docs/benchmarks.md, "Startup memory"). The
//! executable stays position-independent.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" && std::env::var_os("FERRY_NO_RELR").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-env-changed=FERRY_NO_RELR");
}
