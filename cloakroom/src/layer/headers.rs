//! The headers the layer adds: the session cookie, and what keeps caches from sharing it.

use http::header::{CACHE_CONTROL, HeaderValue, SET_COOKIE, VARY};
use http::{Response, StatusCode};

pub(super) fn set_cookie<B>(response: &mut Response<B>, cookie: HeaderValue) {
    let headers = response.headers_mut();
    headers.append(SET_COOKIE, cookie);
    let private = headers.get_all(CACHE_CONTROL).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.contains("no-store") || v.contains("private"))
    });
    if !private {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

pub(super) fn add_vary_cookie<B>(response: &mut Response<B>) {
    let headers = response.headers_mut();
    let varies = headers.get_all(VARY).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|h| h == "*" || h.eq_ignore_ascii_case("cookie"))
        })
    });
    if !varies {
        headers.append(VARY, HeaderValue::from_static("Cookie"));
    }
}

pub(super) fn error_response<B: Default>(status: StatusCode) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
