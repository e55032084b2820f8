//! The route table of the `/v1` API: every operation once, with its method, path template,
//! body kinds and the problem codes it may answer besides the generic ones.
//!
//! The server's dispatcher, its metrics route labels and its OpenAPI paths are all made from
//! [`ROUTES`]; the client builds its URLs with [`Operation::path`]. A path template's
//! `{placeholder}` segments match any one segment.

use super::problem::ProblemCode;
use super::problem::ProblemCode as P;

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }

    /// The method named `text` (upper case, as HTTP writes it), if the API uses it.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "GET" => Some(Self::Get),
            "POST" => Some(Self::Post),
            "PUT" => Some(Self::Put),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }
}

/// Every operation of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    OpenApi,
    SignUp,
    LogIn,
    WhoAmI,
    ListTokens,
    CreateToken,
    RevokeToken,
    ListTeams,
    CreateTeam,
    ShowTeam,
    ListMembers,
    SetMember,
    RemoveMember,
    CreateProject,
    ListProjects,
    ShowProject,
    ListVersions,
    ShowVersion,
    Restore,
    Pull,
    Push,
    Missing,
    Upload,
    Commit,
    Events,
}

/// What travels in a request or answer body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body.
    Empty,
    /// JSON of the named type of [`super::bodies`] (its schema name in the OpenAPI document).
    Json(&'static str),
    /// An [object stream](crate::stream).
    Objects,
    /// Server-Sent Events.
    Events,
}

/// One operation: everything the dispatcher, the OpenAPI document and a client need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub operation: Operation,
    pub method: Method,
    /// The path template, e.g. `/v1/projects/{project}/pull`.
    pub path: &'static str,
    /// The OpenAPI operation id.
    pub id: &'static str,
    pub summary: &'static str,
    /// False for the few routes that need no token.
    pub authenticated: bool,
    pub request: Body,
    /// The query parameters (name, required), all strings on the wire.
    pub query: &'static [(&'static str, bool)],
    /// The success status.
    pub status: u16,
    pub response: Body,
    /// The problem codes this operation answers besides the generic ones (`unauthorized`,
    /// `internal`, `unavailable`...) and those of its request body's kind, which
    /// [`Route::problem_codes`] adds.
    pub problems: &'static [ProblemCode],
}

/// Where a request's method and path lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    /// The operation, and the values of the path's placeholders in order.
    Found(&'static Route, Vec<String>),
    /// The path exists; these methods are allowed on it (for `405` and its `Allow` header).
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

impl Route {
    /// Every problem code this operation answers besides the generic ones: its own, then those
    /// of its request body's kind (a JSON body's, an object stream's).
    pub fn problem_codes(&self) -> Vec<ProblemCode> {
        let body = match self.request {
            Body::Json(_) => JSON_PROBLEMS,
            Body::Objects => STREAM_PROBLEMS,
            Body::Empty | Body::Events => &[],
        };
        let mut codes = self.problems.to_vec();
        for code in body {
            if !codes.contains(code) {
                codes.push(*code);
            }
        }
        codes
    }

    /// The placeholder values of `segments` (the path split at `/`, `v1` included) when they
    /// match this route's template.
    pub fn captures(&self, segments: &[&str]) -> Option<Vec<String>> {
        template_captures(self.path, segments)
    }
}

/// The placeholder values of `segments` (a path split at `/`, without empty segments) when they
/// match the path template `template`, whose `{placeholder}` segments match any one segment:
/// how the API's routes and the server's account pages are matched alike.
pub fn template_captures(template: &str, segments: &[&str]) -> Option<Vec<String>> {
    let patterns: Vec<&str> = template
        .split('/')
        .filter(|pattern| !pattern.is_empty())
        .collect();
    if patterns.len() != segments.len() {
        return None;
    }
    let mut captured = Vec::new();
    for (pattern, segment) in patterns.iter().zip(segments) {
        if pattern.starts_with('{') {
            captured.push((*segment).to_owned());
        } else if pattern != segment {
            return None;
        }
    }
    Some(captured)
}

impl Operation {
    /// This operation's route.
    pub fn route(self) -> &'static Route {
        // Every operation has exactly one route: a test holds the table to it.
        ROUTES
            .iter()
            .find(|route| route.operation == self)
            .unwrap_or(&ROUTES[0])
    }

    /// The path with its placeholders replaced by `values`, in order, each percent-encoded as
    /// a path segment.
    pub fn path(self, values: &[&str]) -> String {
        let mut values = values.iter();
        self.route()
            .path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    encode_segment(values.next().copied().unwrap_or_default())
                } else {
                    segment.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Finds the route of `method` (as HTTP writes it) on `segments` (the path split at `/`,
/// without empty segments, `v1` first).
pub fn find(method: &str, segments: &[&str]) -> RouteMatch {
    let mut allowed = Vec::new();
    for route in ROUTES {
        if let Some(captured) = route.captures(segments) {
            if route.method.as_str() == method {
                return RouteMatch::Found(route, captured);
            }
            allowed.push(route.method);
        }
    }
    if allowed.is_empty() {
        RouteMatch::NotFound
    } else {
        allowed.sort();
        allowed.dedup();
        RouteMatch::MethodNotAllowed(allowed)
    }
}

/// What any JSON request body may answer.
const JSON_PROBLEMS: &[ProblemCode] = &[P::BadJson, P::BodyTooLarge];

/// What any object-stream request body may answer.
const STREAM_PROBLEMS: &[ProblemCode] = &[
    P::HashMismatch,
    P::NonCanonicalObject,
    P::BadName,
    P::CaseCollision,
    P::ObjectTooLarge,
    P::BadFrame,
    P::KindMismatch,
    P::TruncatedStream,
    P::BadStream,
    P::TooManyObjects,
    P::BodyTooLarge,
    P::UnsupportedMediaType,
    P::BodyTimeout,
];

/// Every route of the API.
pub const ROUTES: &[Route] = &[
    Route {
        operation: Operation::OpenApi,
        method: Method::Get,
        path: "/v1/openapi.json",
        id: "openApi",
        summary: "This API's OpenAPI 3.1 document",
        authenticated: false,
        request: Body::Empty,
        query: &[],
        status: 200,
        response: Body::Json("OpenApiDocument"),
        problems: &[],
    },
    Route {
        operation: Operation::SignUp,
        method: Method::Post,
        path: "/v1/accounts",
        id: "signUp",
        summary: "Create an account",
        authenticated: false,
        request: Body::Json("SignUp"),
        query: &[],
        status: 201,
        response: Body::Json("Account"),
        problems: &[P::InvalidField, P::AlreadyExists],
    },
    Route {
        operation: Operation::LogIn,
        method: Method::Post,
        path: "/v1/sessions",
        id: "logIn",
        summary: "Log in: exchange a name (or email) and password for a new token",
        authenticated: false,
        request: Body::Json("LogIn"),
        query: &[],
        status: 201,
        response: Body::Json("NewToken"),
        problems: &[P::BadCredentials, P::InvalidField, P::TooManyRequests],
    },
    Route {
        operation: Operation::WhoAmI,
        method: Method::Get,
        path: "/v1/account",
        id: "whoAmI",
        summary: "The caller's account",
        authenticated: true,
        request: Body::Empty,
        query: &[],
        status: 200,
        response: Body::Json("Account"),
        problems: &[],
    },
    Route {
        operation: Operation::ListTokens,
        method: Method::Get,
        path: "/v1/tokens",
        id: "listTokens",
        summary: "The caller's tokens (never their secrets)",
        authenticated: true,
        request: Body::Empty,
        query: &[],
        status: 200,
        response: Body::Json("TokenList"),
        problems: &[],
    },
    Route {
        operation: Operation::CreateToken,
        method: Method::Post,
        path: "/v1/tokens",
        id: "createToken",
        summary: "Create a token; its secret is shown only in this answer",
        authenticated: true,
        request: Body::Json("CreateToken"),
        query: &[],
        status: 201,
        response: Body::Json("NewToken"),
        problems: &[P::InvalidField],
    },
    Route {
        operation: Operation::RevokeToken,
        method: Method::Delete,
        path: "/v1/tokens/{token}",
        id: "revokeToken",
        summary: "Revoke one of the caller's tokens",
        authenticated: true,
        request: Body::Empty,
        query: &[],
        status: 204,
        response: Body::Empty,
        problems: &[P::NotFound],
    },
    Route {
        operation: Operation::ListTeams,
        method: Method::Get,
        path: "/v1/teams",
        id: "listTeams",
        summary: "The caller's teams and roles",
        authenticated: true,
        request: Body::Empty,
        query: &[],
        status: 200,
        response: Body::Json("TeamList"),
        problems: &[],
    },
    Route {
        operation: Operation::CreateTeam,
        method: Method::Post,
        path: "/v1/teams",
        id: "createTeam",
        summary: "Create a team owned by the caller",
        authenticated: true,
        request: Body::Json("NameBody"),
        query: &[],
        status: 201,
        response: Body::Json("Team"),
        problems: &[P::InvalidField, P::AlreadyExists],
    },
    Route {
        operation: Operation::ShowTeam,
        method: Method::Get,
        path: "/v1/teams/{team}",
        id: "showTeam",
        summary: "One team (members only)",
        authenticated: true,
        request: Body::Empty,
        query: &[],
        status: 200,
        response: Body::Json("Team"),
        problems: &[P::NotFound],
    },
    Route {
        operation: Operation::ListMembers,
        method: Method::Get,
        path: "/v1/teams/{team}/members",
        id: "listMembers",
        summary: "A team's members",
        authenticated: true,
        request: Body::Empty,
        query: &[],
        status: 200,
        response: Body::Json("MemberList"),
        problems: &[P::NotFound],
    },
    Route {
        operation: Operation::SetMember,
        method: Method::Put,
        path: "/v1/teams/{team}/members/{account}",
        id: "setMember",
        summary: "Add a member or change their role (owners; account id or name)",
        authenticated: true,
        request: Body::Json("RoleBody"),
        query: &[],
        status: 200,
        response: Body::Json("Member"),
        problems: &[P::NotFound, P::Forbidden, P::InvalidField, P::LastOwner],
    },
    Route {
        operation: Operation::RemoveMember,
        method: Method::Delete,
        path: "/v1/teams/{team}/members/{account}",
        id: "removeMember",
        summary: "Remove a member (owners), or leave",
        authenticated: true,
        request: Body::Empty,
        query: &[],
        status: 204,
        response: Body::Empty,
        problems: &[P::NotFound, P::Forbidden, P::InvalidField, P::LastOwner],
    },
    Route {
        operation: Operation::CreateProject,
        method: Method::Post,
        path: "/v1/teams/{team}/projects",
        id: "createProject",
        summary: "Create a project in a team (editors and owners)",
        authenticated: true,
        request: Body::Json("NameBody"),
        query: &[],
        status: 201,
        response: Body::Json("Project"),
        problems: &[P::NotFound, P::Forbidden, P::InvalidField, P::AlreadyExists],
    },
    Route {
        operation: Operation::ListProjects,
        method: Method::Get,
        path: "/v1/projects",
        id: "listProjects",
        summary: "Every project the caller may see",
        authenticated: true,
        request: Body::Empty,
        query: &[],
        status: 200,
        response: Body::Json("ProjectList"),
        problems: &[],
    },
    Route {
        operation: Operation::ShowProject,
        method: Method::Get,
        path: "/v1/projects/{project}",
        id: "head",
        summary: "A project and its head (version and root)",
        authenticated: true,
        request: Body::Empty,
        query: &[],
        status: 200,
        response: Body::Json("Project"),
        problems: &[P::NotFound],
    },
    Route {
        operation: Operation::ListVersions,
        method: Method::Get,
        path: "/v1/projects/{project}/versions",
        id: "listVersions",
        summary: "History, newest first (query: before, limit)",
        authenticated: true,
        request: Body::Empty,
        query: &[("before", false), ("limit", false)],
        status: 200,
        response: Body::Json("VersionList"),
        problems: &[P::NotFound, P::BadQuery],
    },
    Route {
        operation: Operation::ShowVersion,
        method: Method::Get,
        path: "/v1/projects/{project}/versions/{number}",
        id: "showVersion",
        summary: "One version",
        authenticated: true,
        request: Body::Empty,
        query: &[],
        status: 200,
        response: Body::Json("Version"),
        problems: &[P::NotFound, P::UnknownVersion],
    },
    Route {
        operation: Operation::Restore,
        method: Method::Post,
        path: "/v1/projects/{project}/restore",
        id: "restore",
        summary: "Make an old version's tree the head, as a new version",
        authenticated: true,
        request: Body::Json("Restore"),
        query: &[],
        status: 200,
        response: Body::Json("Committed"),
        problems: &[
            P::NotFound,
            P::Forbidden,
            P::Conflict,
            P::PushIdReused,
            P::UnknownVersion,
            P::InvalidField,
        ],
    },
    Route {
        operation: Operation::Pull,
        method: Method::Post,
        path: "/v1/projects/{project}/pull",
        id: "pull",
        summary: "Stream the objects needed to go from `have` to `want` (default: the head); head version and root in the Cairn-Version and Cairn-Root headers",
        authenticated: true,
        request: Body::Json("PullRequest"),
        query: &[],
        status: 200,
        response: Body::Objects,
        problems: &[
            P::NotFound,
            P::UnknownVersion,
            P::MissingObject,
            P::InvalidField,
            P::IntegrityError,
        ],
    },
    Route {
        operation: Operation::Push,
        method: Method::Post,
        path: "/v1/projects/{project}/push",
        id: "push",
        summary: "Upload objects (children first) and commit `root` on `base_version`, in one request; idempotent by push_id",
        authenticated: true,
        request: Body::Objects,
        query: &[
            ("push_id", true),
            ("base_version", true),
            ("root", true),
            ("message", false),
        ],
        status: 200,
        response: Body::Json("Committed"),
        problems: &[
            P::NotFound,
            P::Forbidden,
            P::Conflict,
            P::MissingObject,
            P::EntryMismatch,
            P::BadPath,
            P::BadRecords,
            P::PushIdReused,
            P::InvalidField,
            P::BadQuery,
        ],
    },
    Route {
        operation: Operation::Missing,
        method: Method::Post,
        path: "/v1/projects/{project}/missing",
        id: "missing",
        summary: "Which of these object ids the project does not have (resume, negotiation)",
        authenticated: true,
        request: Body::Json("MissingQuery"),
        query: &[],
        status: 200,
        response: Body::Json("MissingAnswer"),
        problems: &[P::NotFound, P::InvalidField],
    },
    Route {
        operation: Operation::Upload,
        method: Method::Post,
        path: "/v1/projects/{project}/objects",
        id: "upload",
        summary: "Upload objects without committing (resuming an interrupted push)",
        authenticated: true,
        request: Body::Objects,
        query: &[],
        status: 200,
        response: Body::Json("UploadAnswer"),
        problems: &[
            P::NotFound,
            P::Forbidden,
            P::MissingObject,
            P::EntryMismatch,
        ],
    },
    Route {
        operation: Operation::Commit,
        method: Method::Post,
        path: "/v1/projects/{project}/commits",
        id: "commit",
        summary: "Commit a root whose objects are all stored; idempotent by push_id",
        authenticated: true,
        request: Body::Json("Commit"),
        query: &[],
        status: 200,
        response: Body::Json("Committed"),
        problems: &[
            P::NotFound,
            P::Forbidden,
            P::Conflict,
            P::MissingObject,
            P::EntryMismatch,
            P::BadPath,
            P::PushIdReused,
            P::InvalidField,
        ],
    },
    Route {
        operation: Operation::Events,
        method: Method::Get,
        path: "/v1/projects/{project}/events",
        id: "events",
        summary: "Server-Sent Events: `head` events with the project's head, the current one first",
        authenticated: true,
        request: Body::Empty,
        query: &[],
        status: 200,
        response: Body::Events,
        problems: &[P::NotFound],
    },
];

/// The problem codes of object-stream bodies (push and upload), for documentation.
pub fn stream_problems() -> &'static [ProblemCode] {
    STREAM_PROBLEMS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(path: &str) -> Vec<&str> {
        path.split('/').filter(|s| !s.is_empty()).collect()
    }

    #[test]
    fn every_operation_has_exactly_one_route() {
        for route in ROUTES {
            let same = ROUTES
                .iter()
                .filter(|other| other.operation == route.operation)
                .count();
            assert_eq!(same, 1, "{:?}", route.operation);
            assert_eq!(route.operation.route().path, route.path);
            let same_place = ROUTES
                .iter()
                .filter(|other| other.method == route.method && other.path == route.path)
                .count();
            assert_eq!(same_place, 1, "{} {}", route.method.as_str(), route.path);
        }
    }

    #[test]
    fn stream_routes_list_every_stream_problem() {
        for operation in [Operation::Push, Operation::Upload] {
            for code in stream_problems() {
                assert!(
                    operation.route().problem_codes().contains(code),
                    "{operation:?} lacks {code}"
                );
            }
        }
    }

    #[test]
    fn requests_find_their_routes() {
        match find("POST", &split("/v1/projects/abc/pull")) {
            RouteMatch::Found(route, values) => {
                assert_eq!(route.operation, Operation::Pull);
                assert_eq!(values, vec!["abc".to_owned()]);
            }
            other => panic!("{other:?}"),
        }
        match find("PATCH", &split("/v1/teams/t/members/m")) {
            RouteMatch::MethodNotAllowed(allowed) => {
                assert_eq!(allowed, vec![Method::Put, Method::Delete]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            find("GET", &split("/v1/projects/a/b/c")),
            RouteMatch::NotFound
        );
        assert_eq!(find("GET", &split("/v1")), RouteMatch::NotFound);
        assert_eq!(
            find("GET", &split("/v1/projects/abc/pull/x")),
            RouteMatch::NotFound
        );
    }

    #[test]
    fn paths_are_built_with_encoded_values() {
        assert_eq!(
            Operation::Pull.path(&["0123abcd"]),
            "/v1/projects/0123abcd/pull"
        );
        assert_eq!(
            Operation::SetMember.path(&["team", "ada lovelace/x"]),
            "/v1/teams/team/members/ada%20lovelace%2Fx"
        );
    }
}
