//! UCX's own diagnostics (warnings, errors) through `tracing`, so to stderr with the rest
//! of shoal's log: UCX prints them to stdout by default, where they would corrupt a
//! command's output (`shoal status --json`, `shoal info --json`).

use shoal_ucx_sys as ucx;
use std::ffi::{c_char, c_uint, CStr};
use std::sync::Once;

/// Longest UCX log message kept (the rest is cut).
const MESSAGE_MAX: usize = 1024;

/// Route UCX's log to `tracing` (target `ucx`) from now on; once per process. Called
/// before every UCP context is created, which is where UCX's diagnostics come from.
pub(super) fn route_to_tracing() {
    static ROUTED: Once = Once::new();
    // SAFETY: the handler has UCX's log-handler signature and lives for the whole process.
    ROUTED.call_once(|| unsafe { ucx::ucs_log_push_handler(Some(handler)) });
}

/// UCX's log handler: format the message and hand it to `tracing`; no other handler
/// (UCX's default one prints to stdout) sees it.
unsafe extern "C" fn handler(
    file: *const c_char,
    line: c_uint,
    _function: *const c_char,
    level: ucx::ucs_log_level_t,
    _component: *const ucx::ucs_log_component_config_t,
    format: *const c_char,
    args: ucx::va_list_param,
) -> ucx::ucs_log_func_rc_t {
    let mut text = [0u8; MESSAGE_MAX];
    // SAFETY: UCX passes a printf format and its arguments; vsnprintf writes at most
    // `text.len()` bytes, the last a NUL.
    unsafe { ucx::vsnprintf(text.as_mut_ptr().cast(), text.len() as _, format, args) };
    let text = CStr::from_bytes_until_nul(&text).map_or_else(
        |_| String::from_utf8_lossy(&text).into_owned(),
        |t| t.to_string_lossy().into_owned(),
    );
    let file = if file.is_null() {
        std::borrow::Cow::Borrowed("?")
    } else {
        // SAFETY: UCX passes its source file's name as a C string.
        unsafe { CStr::from_ptr(file) }.to_string_lossy()
    };
    match level {
        ucx::UCS_LOG_LEVEL_FATAL | ucx::UCS_LOG_LEVEL_ERROR => {
            tracing::error!(target: "ucx", %file, line, "{text}");
        }
        ucx::UCS_LOG_LEVEL_WARN => tracing::warn!(target: "ucx", %file, line, "{text}"),
        ucx::UCS_LOG_LEVEL_DIAG | ucx::UCS_LOG_LEVEL_INFO | ucx::UCS_LOG_LEVEL_PRINT => {
            tracing::info!(target: "ucx", %file, line, "{text}");
        }
        ucx::UCS_LOG_LEVEL_DEBUG => tracing::debug!(target: "ucx", %file, line, "{text}"),
        _ => tracing::trace!(target: "ucx", %file, line, "{text}"),
    }
    ucx::UCS_LOG_FUNC_RC_STOP
}
