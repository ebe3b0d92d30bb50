//! Builds the small C shim over ISA-L's streaming `isal_inflate` when the library's header is installed
//! (Debian `libisal-dev`), and sets `cfg(have_isal)`. Without it, gzip falls back to flate2's zlib-rs backend.

use std::path::Path;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(have_isal)");
    println!("cargo:rerun-if-changed=src/archive/isal_shim.c");
    println!("cargo:rerun-if-env-changed=IMGCORE_NO_ISAL");
    let header = Path::new("/usr/include/isa-l/igzip_lib.h");
    if std::env::var_os("IMGCORE_NO_ISAL").is_some() || !header.exists() {
        println!("cargo:warning=ISA-L (libisal-dev) not found: gzip uses zlib-rs (slower inflate)");
        return;
    }
    cc::Build::new()
        .file("src/archive/isal_shim.c")
        .opt_level(2)
        .compile("imgcore_isal_shim");
    println!("cargo:rustc-link-lib=isal");
    println!("cargo:rustc-cfg=have_isal");
}
