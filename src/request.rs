//! The request as the core sees it: Envoy's header map (pseudo-headers included), read once by the
//! host adapter in a single host call. Header names arrive lowercased from Envoy.

use crate::header_map::HeaderMap;

#[derive(Debug, Clone, Default)]
pub struct RequestView {
    headers: HeaderMap,
    /// Envoy's `source.address` without the port, when the configuration needs addresses.
    source_address: Option<String>,
}

impl RequestView {
    /// From (name, value) pairs.
    pub fn new(headers: Vec<(String, String)>) -> RequestView {
        RequestView::from_map(HeaderMap::from_pairs(&headers))
    }

    /// From the map as the host read it.
    pub fn from_map(headers: HeaderMap) -> RequestView {
        RequestView {
            headers,
            source_address: None,
        }
    }

    /// Adds the peer address (`ip:port` or `[v6]:port` as Envoy reports it).
    pub fn with_source_address(mut self, address: &str) -> RequestView {
        let host = match address.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => address,
        };
        self.source_address = Some(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        );
        self
    }

    /// The client address. With `trusted_hops` = N > 0 proxies the operator trusts in front of
    /// Envoy: the (N+1)-th `x-forwarded-for` entry from the right (Envoy, with
    /// `use_remote_address`, appends the peer — the nearest trusted proxy — as the last entry;
    /// each trusted proxy appended the address it saw). Otherwise, or if the header is shorter,
    /// the peer address. A client-chosen value is never used by default.
    pub fn client_address(&self, trusted_hops: u32) -> Option<&str> {
        if trusted_hops > 0 {
            let hops = usize::try_from(trusted_hops).unwrap_or(usize::MAX);
            let forwarded: Vec<&str> = self
                .headers_named("x-forwarded-for")
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect();
            if let Some(entry) = forwarded
                .len()
                .checked_sub(hops.saturating_add(1))
                .and_then(|i| forwarded.get(i))
            {
                if !entry.is_empty() {
                    return Some(entry);
                }
            }
        }
        self.source_address.as_deref()
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// Every value of a header, in order (a header may repeat).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.all(name)
    }

    /// Every (name, value), in order, pseudo-headers included.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter()
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers.contains(name)
    }

    pub fn method(&self) -> &str {
        self.header(":method").unwrap_or("")
    }

    /// `:path` without the query string.
    pub fn path(&self) -> &str {
        let full = self.header(":path").unwrap_or("");
        full.split_once('?').map_or(full, |(path, _)| path)
    }

    /// The raw query string (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.header(":path")?.split_once('?').map(|(_, q)| q)
    }

    pub fn request_id(&self) -> Option<&str> {
        self.header("x-request-id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn splits_path_and_query() {
        let view = RequestView::new(vec![
            (":method".into(), "GET".into()),
            (":path".into(), "/v1/a?x=1&y=2".into()),
            ("cookie".into(), "a=1".into()),
            ("cookie".into(), "b=2".into()),
        ]);
        assert_eq!(view.method(), "GET");
        assert_eq!(view.path(), "/v1/a");
        assert_eq!(view.query(), Some("x=1&y=2"));
        assert_eq!(view.headers_named("cookie").count(), 2);
        assert!(RequestView::default().query().is_none());
    }

    #[test]
    fn client_address_trusts_only_configured_hops() {
        // The client claims 6.6.6.6; the trusted proxy saw 1.2.3.4; Envoy appended the proxy.
        let view = RequestView::new(vec![(
            "x-forwarded-for".into(),
            "6.6.6.6, 1.2.3.4, 10.0.0.9".into(),
        )])
        .with_source_address("10.0.0.9:5555");
        assert_eq!(view.client_address(0), Some("10.0.0.9"));
        assert_eq!(view.client_address(1), Some("1.2.3.4"));
        assert_eq!(view.client_address(2), Some("6.6.6.6"));
        assert_eq!(view.client_address(3), Some("10.0.0.9"));
        let v6 = RequestView::default().with_source_address("[::1]:80");
        assert_eq!(v6.client_address(0), Some("::1"));
    }
}
