//! Creating a UCP context from the `UCX_*` environment, and UCX statuses as errors.

use super::UcxError;
use shoal_ucx_sys as ucx;

/// The text UCX gives a status.
pub(super) fn status_text(status: ucx::ucs_status_t) -> String {
    // SAFETY: ucs_status_string returns a static C string for any status.
    let text = unsafe { std::ffi::CStr::from_ptr(ucx::ucs_status_string(status)) };
    text.to_string_lossy().into_owned()
}

/// `Ok` for `UCS_OK`, else the failed call and why.
pub(super) fn check(call: &'static str, status: ucx::ucs_status_t) -> Result<(), UcxError> {
    if status == ucx::ucs_status_t::UCS_OK {
        Ok(())
    } else {
        Err(UcxError::Call {
            call,
            status: status_text(status),
        })
    }
}

/// A UCP context with `features` (`UCP_FEATURE_*`), configured by `UCX_*`, UCX's log
/// going through `tracing`; the caller cleans it up with `ucp_cleanup`.
///
/// # Errors
/// UCX rejects the configuration or finds no usable transport.
pub(super) fn create(features: u32) -> Result<ucx::ucp_context_h, UcxError> {
    super::log::route_to_tracing();
    let mut config = std::ptr::null_mut();
    // SAFETY: reads UCX_* from the environment into a fresh config.
    check("ucp_config_read", unsafe {
        ucx::ucp_config_read(std::ptr::null(), std::ptr::null(), &mut config)
    })?;
    let params = ucx::ucp_params_t {
        field_mask: u64::from(ucx::UCP_PARAM_FIELD_FEATURES),
        features: u64::from(features),
        ..Default::default()
    };
    let mut context = std::ptr::null_mut();
    // SAFETY: valid params and config; ucp_init is an inline wrapper of this call.
    let status = unsafe {
        ucx::ucp_init_version(
            ucx::UCP_API_MAJOR,
            ucx::UCP_API_MINOR,
            &params,
            config,
            &mut context,
        )
    };
    // SAFETY: the config is no longer needed.
    unsafe { ucx::ucp_config_release(config) };
    check("ucp_init", status)?;
    Ok(context)
}
