//! Case-insensitive routing for the fixed path segments the SDKs spell differently (Node sends
//! `/enrollmentgroups/{id}/attestationmechanism`, others `/enrollmentGroups/...`), and trailing
//! slashes (Node's hub registry lists `/devices/`).
//!
//! Routes are registered in their canonical spelling. A request that matches no route comes
//! to [`fallback`], which rewrites only the keyword segments (never IDs) to the canonical case,
//! drops trailing slashes, and dispatches once more; what still matches nothing gets a JSON 404.

use axum::Router;
use axum::extract::Request;
use axum::http::uri::PathAndQuery;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

use crate::error::{Shape, rejection};

/// The path with its keyword segments in canonical case, when that differs from `path`.
pub(crate) fn canonical_path(method: &Method, path: &str) -> Option<String> {
    // Node's service client posts bulk operations to `/enrollments/` (trailing slash).
    let trimmed = path.trim_end_matches('/');
    let mut segs: Vec<&str> = trimmed.split('/').collect();
    // segs[0] is the empty string before the leading '/'.
    if segs.first() != Some(&"") || segs.len() < 2 {
        return None;
    }
    let n = segs.len() - 1;
    let fix = |s: &mut &str, canonical: &'static str| {
        if s.eq_ignore_ascii_case(canonical) {
            *s = canonical;
        }
    };
    let first = segs[1];
    if ["enrollments", "enrollmentGroups"]
        .iter()
        .any(|c| c.eq_ignore_ascii_case(first))
    {
        fix(&mut segs[1], "enrollments");
        fix(&mut segs[1], "enrollmentGroups");
        if n == 3 {
            fix(&mut segs[3], "attestationmechanism");
        }
        if n == 2 && method == Method::POST {
            fix(&mut segs[2], "query");
        }
    } else if first.eq_ignore_ascii_case("registrations") && n <= 3 {
        fix(&mut segs[1], "registrations");
        if n == 3 {
            fix(&mut segs[3], "query");
        }
    } else if first.eq_ignore_ascii_case("devices") {
        // Hub: /devices[/{id}], POST /devices/query, /devices/{id}/commands,
        // /devices/{id}/modules[/{mid}],
        // /devices/{id}/messages/events, /devices/{id}/messages/deviceBound[/{lock}[/abandon]]
        // (the SDKs' device HTTP transports spell it `devicebound`)
        fix(&mut segs[1], "devices");
        if n == 3 {
            fix(&mut segs[3], "commands");
            fix(&mut segs[3], "applyConfigurationContent");
        }
        if n == 3 || n == 4 {
            fix(&mut segs[3], "modules");
        }
        if n >= 4 && segs[3].eq_ignore_ascii_case("messages") {
            fix(&mut segs[3], "messages");
            fix(&mut segs[4], "events");
            fix(&mut segs[4], "deviceBound");
            if n == 6 && segs[4] == "deviceBound" {
                fix(&mut segs[6], "abandon");
            }
        }
    } else if first.eq_ignore_ascii_case("messages") {
        // Hub: /messages/events[/live | /consumerGroups[/{group}[/checkpoint]] |
        // /partitions[/{id}]]
        fix(&mut segs[1], "messages");
        if n >= 2 {
            fix(&mut segs[2], "events");
        }
        if n == 3 {
            fix(&mut segs[3], "live");
        }
        if n == 3 || n == 4 {
            fix(&mut segs[3], "consumerGroups");
            fix(&mut segs[3], "partitions");
        }
        if n == 5 {
            fix(&mut segs[3], "consumerGroups");
            fix(&mut segs[5], "checkpoint");
        }
    } else if first.eq_ignore_ascii_case("twins") {
        // Hub: /twins/{id}[/methods], /twins/{id}/modules/{mid}[/methods]
        fix(&mut segs[1], "twins");
        if n == 3 {
            fix(&mut segs[3], "methods");
        }
        if n == 4 || n == 5 {
            fix(&mut segs[3], "modules");
        }
        if n == 5 && segs[3] == "modules" {
            fix(&mut segs[5], "methods");
        }
    } else if first.eq_ignore_ascii_case("configurations") {
        // Hub: /configurations[/{id}], POST /configurations/testQueries
        fix(&mut segs[1], "configurations");
        if n == 2 && method == Method::POST {
            fix(&mut segs[2], "testQueries");
        }
    } else if first.eq_ignore_ascii_case("statistics") {
        fix(&mut segs[1], "statistics");
        if n == 2 {
            fix(&mut segs[2], "devices");
            fix(&mut segs[2], "service");
        }
    } else if first.eq_ignore_ascii_case("diagnostics") {
        fix(&mut segs[1], "diagnostics");
        if n == 2 {
            fix(&mut segs[2], "authFailures");
        }
    } else if n >= 3 && segs[2].eq_ignore_ascii_case("registrations") {
        // Device API: /{idScope}/registrations/{registrationId}[/register | /operations/{op}]
        fix(&mut segs[2], "registrations");
        if n == 4 {
            fix(&mut segs[4], "register");
        }
        if n == 5 {
            fix(&mut segs[4], "operations");
        }
    }
    let out = segs.join("/");
    (out != path).then_some(out)
}

/// Which error shape an unknown path gets: the device shape for paths that look like the DPS
/// device API, the hub shape otherwise.
pub(crate) fn shape_for(path: &str) -> Shape {
    let mut segs = path.split('/').skip(1);
    let first = segs.next().unwrap_or("");
    let second = segs.next().unwrap_or("");
    if second.eq_ignore_ascii_case("registrations") && !first.eq_ignore_ascii_case("registrations")
    {
        Shape::Device
    } else {
        Shape::Service
    }
}

/// Fallback of the public router: retry with canonical keyword case, else JSON 404.
pub(crate) async fn fallback(routes: Router, req: Request) -> Response {
    let Some(path) = canonical_path(req.method(), req.uri().path()) else {
        return not_found(&req);
    };
    let (mut parts, body) = req.into_parts();
    let pq = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut uri = parts.uri.clone().into_parts();
    uri.path_and_query = PathAndQuery::try_from(pq).ok();
    match Uri::from_parts(uri) {
        Ok(u) => parts.uri = u,
        Err(_) => return not_found(&Request::from_parts(parts, body)),
    }
    tracing::debug!(
        path = parts.uri.path(),
        "path keywords rewritten to canonical case"
    );
    let req = Request::from_parts(parts, body);
    match routes.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

/// Fallback of the canonical routes: JSON 404 in the shape the path suggests.
pub(crate) async fn not_found_handler(req: Request) -> Response {
    not_found(&req)
}

fn not_found(req: &Request) -> Response {
    let path = req.uri().path();
    rejection(StatusCode::NOT_FOUND, req.method(), path, String::new())
        .into_response_with(shape_for(path))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(method: &Method, p: &str) -> Option<String> {
        canonical_path(method, p)
    }

    #[test]
    fn keywords_only() {
        assert_eq!(
            canon(
                &Method::POST,
                "/enrollmentgroups/My-Group/AttestationMechanism"
            )
            .as_deref(),
            Some("/enrollmentGroups/My-Group/attestationmechanism")
        );
        assert_eq!(
            canon(&Method::POST, "/Enrollments/Query").as_deref(),
            Some("/enrollments/query")
        );
        // a GET of an enrollment whose ID is "Query" keeps its ID
        assert_eq!(
            canon(&Method::GET, "/ENROLLMENTS/Query").as_deref(),
            Some("/enrollments/Query")
        );
        assert_eq!(
            canon(
                &Method::GET,
                "/0ne00ABC/Registrations/Dev-01/Operations/5.x.y"
            )
            .as_deref(),
            Some("/0ne00ABC/registrations/Dev-01/operations/5.x.y")
        );
        assert_eq!(
            canon(&Method::PUT, "/0ne00ABC/REGISTRATIONS/Register/REGISTER").as_deref(),
            Some("/0ne00ABC/registrations/Register/register")
        );
        assert_eq!(
            canon(&Method::POST, "/Registrations/Grp/QUERY").as_deref(),
            Some("/registrations/Grp/query")
        );
        assert_eq!(
            canon(&Method::GET, "/diagnostics/authfailures").as_deref(),
            Some("/diagnostics/authFailures")
        );
        assert_eq!(canon(&Method::GET, "/enrollments/x"), None);
        assert_eq!(
            canon(&Method::POST, "/enrollments/").as_deref(),
            Some("/enrollments")
        );
        assert_eq!(
            canon(&Method::POST, "/Registrations/g/query/").as_deref(),
            Some("/registrations/g/query")
        );
        assert_eq!(
            canon(&Method::GET, "/devices/").as_deref(),
            Some("/devices")
        );
        assert_eq!(
            canon(&Method::GET, "/Devices/Dev-1").as_deref(),
            Some("/devices/Dev-1")
        );
        assert_eq!(
            canon(&Method::POST, "/TWINS/Methods/METHODS").as_deref(),
            Some("/twins/Methods/methods")
        );
        assert_eq!(
            canon(&Method::GET, "/Statistics/Service").as_deref(),
            Some("/statistics/service")
        );
        assert_eq!(
            canon(&Method::GET, "/devices/Dev-1/messages/devicebound").as_deref(),
            Some("/devices/Dev-1/messages/deviceBound")
        );
        assert_eq!(
            canon(
                &Method::POST,
                "/devices/d/messages/devicebound/LOCK/Abandon"
            )
            .as_deref(),
            Some("/devices/d/messages/deviceBound/LOCK/abandon")
        );
        assert_eq!(
            canon(&Method::POST, "/Devices/d/Messages/Events").as_deref(),
            Some("/devices/d/messages/events")
        );
        assert_eq!(
            canon(&Method::DELETE, "/devices/Commands/COMMANDS").as_deref(),
            Some("/devices/Commands/commands")
        );
        assert_eq!(
            canon(&Method::PUT, "/Messages/Events/consumergroups/G/Checkpoint").as_deref(),
            Some("/messages/events/consumerGroups/G/checkpoint")
        );
        assert_eq!(
            canon(&Method::GET, "/messages/events/LIVE").as_deref(),
            Some("/messages/events/live")
        );
        assert_eq!(
            canon(&Method::GET, "/messages/events/CONSUMERGROUPS").as_deref(),
            Some("/messages/events/consumerGroups")
        );
        assert_eq!(
            canon(&Method::DELETE, "/messages/Events/consumergroups/Live").as_deref(),
            Some("/messages/events/consumerGroups/Live")
        );
        assert_eq!(
            canon(&Method::GET, "/Messages/events/Partitions/3").as_deref(),
            Some("/messages/events/partitions/3")
        );
        assert_eq!(
            canon(&Method::GET, "/Devices/d/Modules/").as_deref(),
            Some("/devices/d/modules")
        );
        assert_eq!(
            canon(&Method::PUT, "/devices/Modules/MODULES/Modules").as_deref(),
            Some("/devices/Modules/modules/Modules")
        );
        assert_eq!(
            canon(&Method::POST, "/Twins/d/Modules/Methods/METHODS").as_deref(),
            Some("/twins/d/modules/Methods/methods")
        );
        assert_eq!(canon(&Method::GET, "/nothing/here"), None);
        assert_eq!(canon(&Method::GET, "/"), None);
    }

    #[test]
    fn shapes() {
        assert_eq!(shape_for("/0ne00ABC/registrations/d/x"), Shape::Device);
        assert_eq!(shape_for("/registrations/d"), Shape::Service);
        assert_eq!(shape_for("/nothing"), Shape::Service);
    }
}
