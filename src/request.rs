//! The request as the core sees it: Envoy's header map (pseudo-headers included), read once by the
//! host adapter in a single host call. Header names arrive lowercased from Envoy.

#[derive(Debug, Clone, Default)]
pub struct RequestView {
    headers: Vec<(String, String)>,
}

impl RequestView {
    pub fn new(headers: Vec<(String, String)>) -> RequestView {
        RequestView { headers }
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order (a header may repeat).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n == name)
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
}
