//! One reading of the `Cookie` header for every part of Berth. Two cookies of the same name
//! (one planted from a sibling host, say) are ambiguous: the session layer and the app gateway
//! must not each pick a different one, so both treat the pair as no cookie at all.

use axum::http::{header, HeaderMap, HeaderValue};

/// Every cookie Berth sets starts with this (after an optional `__Host-` prefix); none of them
/// is passed on to a workspace.
pub const BERTH_PREFIX: &str = "berth_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    Absent,
    One(&'a str),
    /// Sent more than once: refused.
    Ambiguous,
}

impl<'a> Lookup<'a> {
    pub fn value(self) -> Option<&'a str> {
        match self {
            Lookup::One(v) => Some(v),
            _ => None,
        }
    }
}

/// `(name, value)` of every cookie in every `Cookie` header, in order.
fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
}

/// The one cookie called `name`.
pub fn single<'a>(headers: &'a HeaderMap, name: &str) -> Lookup<'a> {
    let mut found = Lookup::Absent;
    for (n, v) in pairs(headers) {
        if n == name {
            found = match found {
                Lookup::Absent => Lookup::One(v),
                _ => return Lookup::Ambiguous,
            };
        }
    }
    found
}

/// Whether a cookie name is one of Berth's.
pub fn is_berth(name: &str) -> bool {
    name.strip_prefix("__Host-").unwrap_or(name).starts_with(BERTH_PREFIX)
}

/// The request's cookies without Berth's, as one `Cookie` header value; None when nothing is
/// left. What a workspace app receives instead of the browser's header.
pub fn without_berth(headers: &HeaderMap) -> Option<HeaderValue> {
    let kept: Vec<String> = pairs(headers).filter(|(n, _)| !is_berth(n.trim())).map(|(n, v)| format!("{}={v}", n.trim())).collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join("; ")).ok()
}

/// Removes every `name` cookie from the request's headers when it was sent more than once,
/// so the session layer after this sees none. True when it removed any.
pub fn drop_if_ambiguous(headers: &mut HeaderMap, name: &str) -> bool {
    if single(headers, name) != Lookup::Ambiguous {
        return false;
    }
    let rest: Vec<String> = pairs(headers).filter(|(n, _)| *n != name).map(|(n, v)| format!("{n}={v}")).collect();
    headers.remove(header::COOKIE);
    if let Ok(value) = HeaderValue::from_str(&rest.join("; ")) {
        if !rest.is_empty() {
            headers.insert(header::COOKIE, value);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn one_cookie_or_none_at_all() {
        assert_eq!(single(&headers(&["a=1; berth_session=abc"]), "berth_session"), Lookup::One("abc"));
        assert_eq!(single(&headers(&["a=1"]), "berth_session"), Lookup::Absent);
        assert_eq!(single(&headers(&[]), "berth_session"), Lookup::Absent);
        // Twice in one header, in either order, or across two headers: nobody picks one.
        assert_eq!(single(&headers(&["berth_session=abc; berth_session=evil"]), "berth_session"), Lookup::Ambiguous);
        assert_eq!(single(&headers(&["berth_session=evil; berth_session=abc"]), "berth_session"), Lookup::Ambiguous);
        assert_eq!(single(&headers(&["berth_session=abc", "berth_session=evil"]), "berth_session"), Lookup::Ambiguous);
        assert_eq!(single(&headers(&["xberth_session=1; berth_sessionx=2; berth_session=ok"]), "berth_session"), Lookup::One("ok"));
    }

    #[test]
    fn workspaces_get_every_cookie_but_berths() {
        let h = headers(&["theme=dark; berth_session=s1; __Host-berth_session=s2", "berth_app=a; _xsrf=x|y; __Host-berth_app=b"]);
        assert_eq!(without_berth(&h).unwrap(), "theme=dark; _xsrf=x|y");
        assert_eq!(without_berth(&headers(&["berth_app=a"])), None);
        assert_eq!(without_berth(&headers(&[])), None);
    }

    #[test]
    fn ambiguous_session_cookies_are_dropped_before_the_session_layer() {
        let mut h = headers(&["theme=dark; berth_session=abc; berth_session=evil"]);
        assert!(drop_if_ambiguous(&mut h, "berth_session"));
        assert_eq!(h.get(header::COOKIE).unwrap(), "theme=dark");
        let mut h = headers(&["berth_session=abc"]);
        assert!(!drop_if_ambiguous(&mut h, "berth_session"));
        assert_eq!(h.get(header::COOKIE).unwrap(), "berth_session=abc");
        let mut h = headers(&["berth_session=abc", "berth_session=evil"]);
        assert!(drop_if_ambiguous(&mut h, "berth_session"));
        assert!(h.get(header::COOKIE).is_none());
    }
}
