//! Bearer tokens: the one check every HTTP endpoint with a token uses.

use http::header::AUTHORIZATION;
use http::HeaderMap;
use subtle::ConstantTimeEq;

/// Whether `headers` carry `Authorization: Bearer <token>`. The comparison takes the same time
/// wherever the given token first differs, so it cannot be guessed byte by byte.
pub fn bearer_ok(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())))
}

/// Whether a request passes a check where `token` may be unset (then everything passes).
pub fn allowed(headers: &HeaderMap, token: Option<&str>) -> bool {
    token.is_none_or(|t| bearer_ok(headers, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, value.parse().expect("header"));
        h
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        assert!(bearer_ok(&with("Bearer s3cret"), "s3cret"));
        assert!(!bearer_ok(&with("Bearer s3cre"), "s3cret"));
        assert!(!bearer_ok(&with("Bearer s3cret2"), "s3cret"));
        assert!(!bearer_ok(&with("Basic s3cret"), "s3cret"));
        assert!(!bearer_ok(&with("bearer s3cret"), "s3cret"));
        assert!(!bearer_ok(&HeaderMap::new(), "s3cret"));
        assert!(allowed(&HeaderMap::new(), None));
        assert!(!allowed(&HeaderMap::new(), Some("t")));
        assert!(allowed(&with("Bearer t"), Some("t")));
    }
}
