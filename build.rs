//! Release binaries keep line tables for this crate (file:line in backtraces and profiles) but
//! store their DWARF compressed (zlib, SHF_COMPRESSED: read by std's backtraces, gdb, perf and
//! addr2line alike): about 37 MiB of debug sections become a few. Debug builds are left alone, so
//! test binaries link as fast as before.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if release && linux {
        println!("cargo:rustc-link-arg-bins=-Wl,--compress-debug-sections=zlib");
    }
}
