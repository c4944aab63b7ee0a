//! UCX's callbacks. They run inside `ucp_worker_progress` on the progress thread and only
//! queue [`Event`]s, which the engine's loop handles once progress returns, so no callback
//! touches the engine's state.

use super::context::status_text;
use super::wire::Header;
use crate::buffer::ReceiveBuffer;
use crate::CommError;
use bytes::Bytes;
use shoal_ucx_sys as ucx;
use std::cell::RefCell;
use std::ffi::c_void;

/// What a UCX callback saw; handled by the loop after `ucp_worker_progress` returns.
pub(super) enum Event {
    /// An eager active message, copied out of UCX's buffer.
    Message {
        header: Header,
        data: Bytes,
    },
    /// A rendezvous active message: its data waits behind `desc`.
    Rendezvous {
        header: Header,
        desc: *mut c_void,
        len: usize,
    },
    SendDone {
        id: u64,
        status: ucx::ucs_status_t,
    },
    RecvDone {
        id: u64,
        status: ucx::ucs_status_t,
    },
    EndpointFailed {
        id: u64,
        status: ucx::ucs_status_t,
    },
}

thread_local! {
    pub(super) static EVENTS: RefCell<Vec<Event>> = const { RefCell::new(Vec::new()) };
}

pub(super) fn push(event: Event) {
    EVENTS.with(|e| e.borrow_mut().push(event));
}

pub(super) fn ucx_error(call: &str, status: ucx::ucs_status_t) -> CommError {
    CommError::Io(std::io::Error::other(format!(
        "{call} failed: {}",
        status_text(status)
    )))
}

pub(super) unsafe extern "C" fn on_am(
    _arg: *mut c_void,
    header: *const c_void,
    header_length: usize,
    data: *mut c_void,
    length: usize,
    param: *const ucx::ucp_am_recv_param_t,
) -> ucx::ucs_status_t {
    // SAFETY: UCX passes `header_length` readable bytes at `header`.
    let raw = unsafe { std::slice::from_raw_parts(header.cast::<u8>(), header_length) };
    let Some(header) = Header::decode(raw) else {
        return ucx::ucs_status_t::UCS_OK;
    };
    // SAFETY: `param` is valid during the callback.
    let attr = unsafe { (*param).recv_attr };
    if attr & u64::from(ucx::UCP_AM_RECV_ATTR_FLAG_RNDV) != 0 {
        push(Event::Rendezvous {
            header,
            desc: data,
            len: length,
        });
        // The descriptor stays valid until ucp_am_recv_data_nbx.
        return ucx::ucs_status_t::UCS_INPROGRESS;
    }
    let bytes = if length == 0 {
        Bytes::new()
    } else {
        // SAFETY: eager data: `length` readable bytes at `data` during the callback.
        let slice = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), length) };
        let mut buffer = ReceiveBuffer::new(length);
        buffer.vec().extend_from_slice(slice);
        buffer.into_bytes()
    };
    push(Event::Message {
        header,
        data: bytes,
    });
    ucx::ucs_status_t::UCS_OK
}

pub(super) unsafe extern "C" fn on_sent(
    request: *mut c_void,
    status: ucx::ucs_status_t,
    user: *mut c_void,
) {
    push(Event::SendDone {
        id: user as u64,
        status,
    });
    // SAFETY: a request UCX handed to this callback; freed once.
    unsafe { ucx::ucp_request_free(request) };
}

pub(super) unsafe extern "C" fn on_received(
    request: *mut c_void,
    status: ucx::ucs_status_t,
    _length: usize,
    user: *mut c_void,
) {
    push(Event::RecvDone {
        id: user as u64,
        status,
    });
    // SAFETY: as in on_sent.
    unsafe { ucx::ucp_request_free(request) };
}

pub(super) unsafe extern "C" fn on_endpoint_error(
    arg: *mut c_void,
    _ep: ucx::ucp_ep_h,
    status: ucx::ucs_status_t,
) {
    push(Event::EndpointFailed {
        id: arg as u64,
        status,
    });
}
