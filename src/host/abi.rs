//! Stream calls without the SDK's panics. `proxy_wasm::hostcalls` turns every status it does not
//! expect into a panic — and a panic takes the whole VM (the worker's filter) down. For the calls
//! finguard makes on a request's stream (answer it, change its headers, resume or reset it), any
//! failure is returned as the host's status code instead, and the caller fails closed.

use crate::header_map::HeaderMap;
use proxy_wasm::types::MapType;

// The SDK declares the same imports with its `Status` enum as the return type; `u32` here takes
// whatever the host returns without assuming it is one of the enum's values.
#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_send_local_response(
        status_code: u32,
        details_data: *const u8,
        details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

const OK: u32 = 0;

/// Envoy's metric kinds (proxy-wasm ABI values).
#[derive(Clone, Copy)]
pub enum MetricKind {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

/// Sets a filter-state property of the current stream (a one-segment path; Envoy stores it as
/// `wasm.<name>`). Fails, without panicking, outside a stream (e.g. from a root context).
pub fn set_property(name: &str, value: &[u8]) -> Result<(), u32> {
    // The ABI's property path is NUL-separated segments; one segment is the name itself.
    // SAFETY: pointers and lengths describe live buffers for the duration of the call.
    check(unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

/// Whether Envoy's `wasm` logger currently emits `info` lines (ABI levels: trace 0 … critical
/// 5). If the host cannot tell, assume it does: the audit line is not dropped on a guess.
pub fn logs_info() -> bool {
    let mut level = 0u32;
    // SAFETY: `level` is a valid out-pointer.
    let status = unsafe { proxy_get_log_level(&mut level) };
    status != OK || level <= 2
}

pub fn define_metric(kind: MetricKind, name: &str) -> Result<u32, u32> {
    let mut id = 0u32;
    // SAFETY: `name` is live for the call; `id` is a valid out-pointer.
    check(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, by: i64) -> Result<(), u32> {
    // SAFETY: plain values.
    check(unsafe { proxy_increment_metric(id, by) })
}

pub fn record_metric(id: u32, value: u64) -> Result<(), u32> {
    // SAFETY: plain values.
    check(unsafe { proxy_record_metric(id, value) })
}
const HTTP_REQUEST_STREAM: u32 = 0;

fn check(status: u32) -> Result<(), u32> {
    if status == OK {
        Ok(())
    } else {
        Err(status)
    }
}

/// The proxy-wasm header-map wire format: count, (name size, value size) pairs, then each name
/// and value NUL-terminated.
fn serialize_headers(headers: &[(&str, &str)]) -> Vec<u8> {
    let size: usize = 4 + headers
        .iter()
        .map(|(n, v)| 8 + n.len() + v.len() + 2)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (name, value) in headers {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// Answers the current stream locally.
pub fn send_local_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), u32> {
    let headers = serialize_headers(headers);
    // SAFETY: every pointer/length pair describes a live buffer owned by this function for the
    // duration of the call; the host copies what it needs.
    check(unsafe {
        proxy_send_local_response(
            status,
            std::ptr::null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// Sets (replaces) a header of the current stream's map.
pub fn set_header(map: MapType, name: &str, value: &str) -> Result<(), u32> {
    // SAFETY: as above, borrowed buffers valid for the call.
    check(unsafe {
        proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Removes a header of the current stream's map.
pub fn remove_header(map: MapType, name: &str) -> Result<(), u32> {
    // SAFETY: as above.
    check(unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) })
}

/// Resumes the current stream's request (held in a headers or body callback).
pub fn resume_request() -> Result<(), u32> {
    // SAFETY: no pointers.
    check(unsafe { proxy_continue_stream(HTTP_REQUEST_STREAM) })
}

/// Resets the current stream's request: the last resort when it cannot even be answered.
pub fn reset_request() -> Result<(), u32> {
    // SAFETY: no pointers.
    check(unsafe { proxy_close_stream(HTTP_REQUEST_STREAM) })
}

// Response-phase calls (src/host/response.rs): read the head, read and replace the buffered body.
#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
}

const NOT_FOUND: u32 = 1;
const HTTP_RESPONSE_STREAM: u32 = 1;
const HTTP_RESPONSE_BODY: u32 = 1;

/// Takes ownership of a buffer the host allocated through the module's allocator.
///
/// # Safety
/// `data`/`size` must come from a successful host call that returned an allocation.
unsafe fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        // SAFETY: the host allocated `size` bytes with proxy_on_memory_allocate (the SDK's
        // allocator, a Vec of that capacity), exactly as the SDK's own hostcalls assume.
        unsafe { Vec::from_raw_parts(data, size, size) }
    }
}

/// The buffered response body, `size` bytes from the start.
pub fn response_body(size: usize) -> Result<Vec<u8>, u32> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut length: usize = 0;
    // SAFETY: out-pointers point at locals.
    let status =
        unsafe { proxy_get_buffer_bytes(HTTP_RESPONSE_BODY, 0, size, &mut data, &mut length) };
    match status {
        // SAFETY: a successful call returned a host allocation (or null).
        OK => Ok(unsafe { take(data, length) }),
        NOT_FOUND => Ok(Vec::new()),
        other => Err(other),
    }
}

/// Replaces the first `size` bytes of the buffered response body with `body`.
pub fn set_response_body(size: usize, body: &[u8]) -> Result<(), u32> {
    // SAFETY: borrowed buffer valid for the call; the host copies it.
    check(unsafe { proxy_set_buffer_bytes(HTTP_RESPONSE_BODY, 0, size, body.as_ptr(), body.len()) })
}

/// Resets the current stream's response: the last resort when it cannot be answered.
pub fn reset_response() -> Result<(), u32> {
    // SAFETY: no pointers.
    check(unsafe { proxy_close_stream(HTTP_RESPONSE_STREAM) })
}

#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

/// Every header of the current stream's map, in one host call, read without copying each
/// header (see [`HeaderMap`]).
pub fn header_map(map: MapType) -> Result<HeaderMap, u32> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: out-pointers point at locals.
    let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    if status != OK {
        return Err(status);
    }
    // SAFETY: a successful call returned a host allocation (or null).
    let bytes = unsafe { take(data, size) };
    HeaderMap::from_serialized(bytes).ok_or(u32::MAX)
}
