//! Generate bindings to the system UCX's `ucp` API and its log handlers (found by
//! pkg-config) and link it.

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    let ucx = match pkg_config::Config::new()
        .atleast_version("1.9")
        .probe("ucx")
    {
        Ok(lib) => lib,
        Err(e) => panic!(
            "cannot find UCX 1.9 or newer with pkg-config ({e}).\n\
             Install it (Debian: apt-get install libucx-dev ucx-utils; or ./scripts/setup), \
             `module load ucx` on a cluster, or build without UCX: \
             cargo build --no-default-features --features mpi"
        ),
    };
    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .allowlist_function("ucp_.*")
        .allowlist_function("ucs_status_string")
        .allowlist_function("ucs_log_push_handler")
        .allowlist_function("vsnprintf")
        .allowlist_type("ucs_log_level_t")
        .allowlist_type("ucs_log_func_rc_t")
        .allowlist_type("ucp_.*")
        .allowlist_type("ucs_status_t")
        .allowlist_var("UCP_.*")
        .allowlist_var("UCS_.*")
        .newtype_enum("ucs_status_t")
        .prepend_enum_name(false)
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false);
    for dir in &ucx.include_paths {
        builder = builder.clang_arg(format!("-I{}", dir.display()));
    }
    let bindings = builder.generate().expect(
        "bindgen cannot parse ucp/api/ucp.h (is libclang installed? ./scripts/setup installs it)",
    );
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("cannot write the UCX bindings");
}
