//! Origin validation for apps with `allowed_origins` (a per-app allow-list checked at the WebSocket upgrade).
//!
//! Patterns: `*` (anything), an exact origin (`https://app.example.com`, scheme-aware), a bare host
//! (`app.example.com`, any scheme), or one leading wildcard label (`*.example.com`, `https://*.example.com`) that
//! matches subdomains but not the apex. Comparison ignores ASCII case. A request without an `Origin` header is
//! refused unless the list contains `*`: the list exists to keep other sites' pages out, and a missing header
//! cannot prove where the page came from.

/// True when `origin` (the request's `Origin` header, if any) is allowed by `allowed`.
pub fn is_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    if allowed.is_empty() || allowed.iter().any(|p| p.trim() == "*") {
        return true;
    }
    let Some(origin) = origin else { return false };
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, host) = match origin.split_once("://") {
        Some((s, h)) => (Some(s), h),
        None => (None, origin.as_str()),
    };
    allowed.iter().any(|pattern| {
        matches(
            &pattern.trim().trim_end_matches('/').to_ascii_lowercase(),
            scheme,
            host,
        )
    })
}

fn matches(pattern: &str, scheme: Option<&str>, host: &str) -> bool {
    let (p_scheme, p_host) = match pattern.split_once("://") {
        Some((s, h)) => (Some(s), h),
        None => (None, pattern),
    };
    if let Some(ps) = p_scheme {
        if scheme != Some(ps) {
            return false;
        }
    }
    match p_host.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host[..host.len() - suffix.len()].ends_with('.')
        }
        None => host == p_host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn empty_list_and_star_allow_everything() {
        assert!(is_allowed(&[], Some("https://evil.com")));
        assert!(is_allowed(&list(&["*"]), None));
    }

    #[test]
    fn exact_origins_are_scheme_aware() {
        let l = list(&["https://app.example.com"]);
        assert!(is_allowed(&l, Some("https://app.example.com")));
        assert!(is_allowed(&l, Some("HTTPS://App.Example.com/")));
        assert!(!is_allowed(&l, Some("http://app.example.com")));
        assert!(!is_allowed(&l, Some("https://app.example.com.evil.com")));
        assert!(!is_allowed(&l, None));
    }

    #[test]
    fn bare_hosts_match_any_scheme() {
        let l = list(&["app.example.com"]);
        assert!(is_allowed(&l, Some("http://app.example.com")));
        assert!(is_allowed(&l, Some("https://app.example.com")));
        assert!(!is_allowed(&l, Some("https://other.example.com")));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let l = list(&["*.example.com"]);
        assert!(is_allowed(&l, Some("https://a.example.com")));
        assert!(is_allowed(&l, Some("http://a.b.example.com")));
        assert!(!is_allowed(&l, Some("https://example.com")));
        assert!(!is_allowed(&l, Some("https://badexample.com")));
        let l = list(&["https://*.example.com"]);
        assert!(is_allowed(&l, Some("https://a.example.com")));
        assert!(!is_allowed(&l, Some("http://a.example.com")));
    }
}
