//! Route templates, declared once and used three ways: to match a request
//! path (the warp filter of the route), to label metrics and logs with the
//! template instead of the raw path, and to compare against
//! `knative/exam-results/functions.yaml` and docs/openapi.yaml in tests.
//!
//! A template is literal segments and `{name}` parameters, e.g.
//! `/results/{exam_year}/{roll_number}`. Matching is exact: the same number
//! of segments, no empty segment, no trailing slash. One result has one URL,
//! so a cache in front cannot be bypassed by spelling the path differently.

use warp::path::FullPath;
use warp::{Filter, Rejection};

/// A route template such as `/results/{exam_year}/{roll_number}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route(&'static str);

impl Route {
    /// A template: `/`-separated literal segments and `{name}` parameters.
    pub const fn new(template: &'static str) -> Self {
        Self(template)
    }

    /// The template itself (also the `http_route` label).
    pub const fn template(self) -> &'static str {
        self.0
    }

    /// Whether `path` (the raw request path, without the query) matches.
    pub fn matches(self, path: &str) -> bool {
        self.walk(path, |_, _| ())
    }

    /// The parameters' raw values, in template order, when `path` matches
    /// and the template has exactly `N` parameters.
    pub fn params<const N: usize>(self, path: &str) -> Option<[&str; N]> {
        let mut values = [""; N];
        let mut count = 0;
        let matched = self.walk(path, |index, value| {
            if let Some(slot) = values.get_mut(index) {
                *slot = value;
            }
            count = index + 1;
        });
        (matched && count == N).then_some(values)
    }

    /// The warp filter of this route: passes when the request path matches,
    /// otherwise rejects with "not found" so another route may answer.
    pub fn filter(self) -> impl Filter<Extract = (), Error = Rejection> + Clone {
        warp::path::full()
            .and_then(move |path: FullPath| async move {
                if self.matches(path.as_str()) {
                    Ok(())
                } else {
                    Err(warp::reject::not_found())
                }
            })
            .untuple_one()
    }

    /// Walks `path` against the template, calling `param(index, value)` for
    /// each parameter; false when a segment or the segment count differs.
    fn walk<'p>(self, path: &'p str, mut param: impl FnMut(usize, &'p str)) -> bool {
        let (Some(path), Some(template)) = (path.strip_prefix('/'), self.0.strip_prefix('/'))
        else {
            return false;
        };
        let mut segments = path.split('/');
        let mut index = 0;
        for expected in template.split('/') {
            match segments.next() {
                Some(segment) if expected.starts_with('{') && !segment.is_empty() => {
                    param(index, segment);
                    index += 1;
                }
                Some(segment) if segment == expected => {}
                _ => return false,
            }
        }
        segments.next().is_none()
    }
}

/// The template of the first route `path` matches, or `unmatched`: the
/// bounded `http_route` label of a request.
pub fn classify(routes: &[Route], path: &str) -> &'static str {
    routes
        .iter()
        .find(|route| route.matches(path))
        .map_or("unmatched", |route| route.template())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ITEM: Route = Route::new("/results/{exam_year}/{roll_number}");
    const COLLECTION: Route = Route::new("/results");

    #[test]
    fn a_path_matches_only_its_exact_shape() {
        assert_eq!(ITEM.params::<2>("/results/2024/1"), Some(["2024", "1"]));
        for path in [
            "/results/2024/1/",
            "/results/2024",
            "/results//1",
            "/results/2024/1/x",
            "results/2024/1",
            "/result/2024/1",
        ] {
            assert!(!ITEM.matches(path), "{path}");
        }
        assert!(COLLECTION.matches("/results"));
        assert!(!COLLECTION.matches("/results/"));
        assert!(!COLLECTION.matches("/"));
    }

    #[test]
    fn a_capture_of_the_wrong_arity_does_not_match() {
        assert_eq!(ITEM.params::<1>("/results/2024/1"), None);
        assert_eq!(COLLECTION.params::<0>("/results"), Some([]));
    }

    #[test]
    fn paths_map_to_bounded_route_templates() {
        let routes = [ITEM, Route::new("/healthz")];
        assert_eq!(classify(&routes, "/results/2024/1"), ITEM.template());
        assert_eq!(classify(&routes, "/results/anything/else"), ITEM.template());
        assert_eq!(classify(&routes, "/results"), "unmatched");
        assert_eq!(classify(&routes, "/results/2024/1/x"), "unmatched");
        assert_eq!(classify(&routes, "/admin"), "unmatched");
        assert_eq!(classify(&routes, "/healthz"), "/healthz");
    }
}
