//! Gives the shared library its SONAME, `libastranet.so.0` (the major version of the C
//! ABI: bumped only when the ABI breaks). rustc's own version script already exports
//! only the `#[no_mangle]` functions, all named `astranet_*` (checked by the C suite).

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(os.as_str(), "linux" | "freebsd" | "netbsd" | "openbsd" | "dragonfly") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libastranet.so.0");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
