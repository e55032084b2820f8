//! Pull, push, and the resume path (missing-objects query, upload, commit): glue between HTTP,
//! the stores and the protocol's two server machines.
//!
//! Every decision is made in `sync_protocol`: [`PushAcceptor`] checks an upload (references
//! against uploaded and stored objects, change records, paths, the root) and says what to
//! store, leaves first; [`PullResponder`] walks the diff and shapes the answer. The handlers
//! here authenticate, read bodies within their limits, fetch what a machine asks for from the
//! object store, run its CPU work off the async workers, and commit through the catalog.
//!
//! A push whose base is no longer the head stores nothing: the catalog is asked first and
//! answers the conflict (or, for a retried push id, the original outcome). Unless its client
//! allows a rebase (the `cairn-rebase` header): then it is committed on top of the head when
//! the two changed different paths ([`rebase`]).

mod rebase;

use futures_util::Future;
use sync_protocol::accept::{Accepted, PushAcceptor, Rejection, Step, ToStore};
use sync_protocol::respond::{PullRejection, PullResponder, PullStep};
use sync_protocol::stream::StreamDecoder;
use sync_protocol::wire::{
    self, MAX_MISSING_BODY, MAX_MISSING_IDS, OBJECT_COUNT_HEADER, OBJECTS_MEDIA_TYPE, ProblemCode,
    REBASE_ALLOWED, REBASE_HEADER, ROOT_HEADER, VERSION_HEADER,
};
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::answer::{commit_answer, json, unknown_version};
use super::request::{
    ApiRequest, check_declared_length, check_media_type, next_chunk, parse_id, parse_json_body,
    parse_query, project_access, read_body, read_json,
};
use crate::app::App;
use crate::catalog::{
    Authenticated, CommitRequest, Project, ProjectId, PushId, Role, VersionNumber, empty_root,
};
use crate::metrics::Metrics;
use crate::problem::Problem;

/// Runs CPU work (decompressing, hashing, building dirs, encoding) off the async workers.
async fn off_the_workers<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(Problem::internal)
}

// Pull.

pub async fn pull(app: &App, mut request: ApiRequest, project: &str) -> Result<Response, Problem> {
    let (_, project, _) = project_access(app, &request, project, Role::Viewer).await?;
    let body: wire::PullRequest = read_json(&mut request).await?;
    let (version, want) = match body.want {
        None => (Some(project.head_version), project.head_root),
        Some(wire::Want::Version(number)) if number == project.head_version => {
            (Some(number), project.head_root)
        }
        Some(wire::Want::Version(number)) => {
            let version = app
                .catalog
                .version(project.id, number)
                .await?
                .ok_or_else(|| unknown_version(number))?;
            (Some(number), version.root)
        }
        Some(wire::Want::Root(text)) => (None, parse_id("want", &text)?),
    };
    let have = match &body.have {
        Some(text) => parse_id("have", text)?,
        None => empty_root(),
    };
    let pull_problem = |rejection: PullRejection| -> Problem {
        let problem = Problem::from(wire::Problem::from(&rejection));
        if problem.code == ProblemCode::IntegrityError {
            tracing::error!(project = %project.id, %rejection, "pull of a version that is not whole");
        }
        problem
    };
    let objects = app.objects(project.id).await?;
    if have == empty_root() {
        // A clone: on a node that has not seen the project, a few whole packs beat a ranged
        // read per tree level.
        objects.warm(&app.warm_packs).await?;
    }
    let mut responder = PullResponder::new(have, want, body.records);
    let answer = loop {
        match responder.step().map_err(pull_problem)? {
            PullStep::Read(ids) => {
                let read = objects.read(&ids).await?;
                for (id, object) in ids.into_iter().zip(read) {
                    responder.provide(id, object).map_err(pull_problem)?;
                }
            }
            PullStep::Compute => {
                break off_the_workers(move || responder.compute())
                    .await?
                    .map_err(pull_problem)?;
            }
        }
    };
    Metrics::add(&app.metrics.pulls, 1);
    Metrics::add(&app.metrics.objects_served, u64::from(answer.items));
    let mut response = Response::new(answer.stream.into());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(OBJECTS_MEDIA_TYPE),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(version) = version {
        headers.insert(VERSION_HEADER, HeaderValue::from(version));
    }
    if let Ok(value) = HeaderValue::from_str(&want.to_string()) {
        headers.insert(ROOT_HEADER, value);
    }
    headers.insert(OBJECT_COUNT_HEADER, HeaderValue::from(answer.items));
    Ok(response)
}

// Push, upload and commit.

fn rejection_problem(rejection: &Rejection) -> Problem {
    let problem = Problem::from(wire::Problem::from(rejection));
    if problem.code == ProblemCode::IntegrityError {
        tracing::error!(%rejection, "a stored version is not whole");
    }
    problem
}

/// Feeds an object-stream body, within the upload limit, to `acceptor` as it arrives.
async fn receive(
    app: &App,
    request: &mut ApiRequest,
    mut acceptor: PushAcceptor,
) -> Result<PushAcceptor, Problem> {
    let limit = app.limits.max_upload_bytes;
    check_declared_length(&request.headers, limit)?;
    check_media_type(&request.headers, OBJECTS_MEDIA_TYPE)?;
    let mut decoder = StreamDecoder::new();
    let mut received: u64 = 0;
    while let Some(chunk) = next_chunk(&mut request.body).await? {
        let chunk = chunk.map_err(|error| {
            Problem::new(ProblemCode::TruncatedStream)
                .with_detail(format!("reading the body failed: {error}"))
        })?;
        received += chunk.len() as u64;
        if received > limit {
            return Err(Problem::body_too_large(limit));
        }
        // Decompressing and hashing is CPU work: keep it off the async workers.
        let (returned_decoder, returned_acceptor, result) = off_the_workers(move || {
            decoder.feed(&chunk);
            let result = loop {
                match decoder.next_item() {
                    Ok(Some(item)) => {
                        if let Err(rejection) = acceptor.receive(item) {
                            break Err(rejection_problem(&rejection));
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(error) => break Err(Problem::from(error)),
                }
            };
            (decoder, acceptor, result)
        })
        .await?;
        result?;
        decoder = returned_decoder;
        acceptor = returned_acceptor;
    }
    decoder.finish()?;
    Ok(acceptor)
}

/// Drives `acceptor` to its end: reads what it asks from the project's objects (cache, index,
/// packs), runs its CPU work off the async workers and stores what it accepted as packs.
async fn accept(
    app: &App,
    project: ProjectId,
    mut acceptor: PushAcceptor,
) -> Result<Accepted, Problem> {
    let objects = app.objects(project).await?;
    loop {
        let step = acceptor.step().map_err(|r| rejection_problem(&r))?;
        match step {
            Step::Read(ids) => {
                // Through the index, touched, like Stat: see `read_referenced`.
                let read = objects.read_referenced(&ids).await?;
                for (id, object) in ids.into_iter().zip(read) {
                    let object = object.map(|stored| stored.object);
                    acceptor
                        .provide(id, object)
                        .map_err(|r| rejection_problem(&r))?;
                }
            }
            Step::Stat(ids) => {
                // Touched: a collection running meanwhile keeps what this push references.
                let infos = objects.info(&ids, true).await?;
                for (id, info) in ids.into_iter().zip(infos) {
                    acceptor
                        .provide_info(id, info)
                        .map_err(|r| rejection_problem(&r))?;
                }
            }
            Step::Compute => {
                let (returned, result) = off_the_workers(move || {
                    let result = acceptor.compute();
                    (acceptor, result)
                })
                .await?;
                result.map_err(|r| rejection_problem(&r))?;
                acceptor = returned;
            }
            Step::Store(layers) => {
                let stored: Vec<ToStore> = layers.into_iter().flatten().collect();
                let written = objects.store(&stored).await?;
                Metrics::add(&app.metrics.objects_stored, written.objects);
                Metrics::add(&app.metrics.object_bytes_stored, written.bytes);
            }
            Step::Done(accepted) => return Ok(accepted),
        }
    }
}

/// Whether the request allows a server-side rebase: the `cairn-rebase` header, whose one value
/// is `allowed`.
fn rebase_allowed(request: &ApiRequest) -> Result<bool, Problem> {
    match request.headers.get(REBASE_HEADER) {
        None => Ok(false),
        Some(value) if value.as_bytes() == REBASE_ALLOWED.as_bytes() => Ok(true),
        Some(_) => Err(Problem::invalid_field(
            REBASE_HEADER,
            format!("the only value is `{REBASE_ALLOWED}`"),
        )),
    }
}

/// Commits a new version: a look at the head first (the project as the access check read it; a base that is already stale cannot
/// commit, so the catalog answers the conflict or a replay and nothing is stored), then the
/// acceptor's checks and storing (`receive` feeds it the body, if any), then the head's
/// compare-and-swap. With `rebase`, a stale base is accepted against its own tree and
/// committed on top of the head when it can be ([`rebase::commit_rebasing`]).
async fn commit_version<F>(
    app: &App,
    project: &Project,
    commit: CommitRequest,
    rebase: bool,
    receive_body: impl FnOnce(PushAcceptor) -> F,
) -> Result<Response, Problem>
where
    F: Future<Output = Result<PushAcceptor, Problem>>,
{
    // The project as the access check read it, a moment ago: as fresh a look at the head as
    // another read would be (the head can move after either; the commit's compare-and-swap
    // decides), and one catalog query fewer per push.
    let current = project.clone();
    let base_root = match rebase {
        true if current.head_version == commit.base_version => Some(current.head_root),
        true => rebase::base_root(app, project.id, commit.base_version).await?,
        false => None,
    };
    if let Some(base_root) = base_root {
        let acceptor = receive_body(PushAcceptor::version(base_root, commit.root)).await?;
        accept(app, project.id, acceptor).await?;
        return rebase::commit_rebasing(app, project, commit, base_root, current).await;
    }
    let acceptor = receive_body(PushAcceptor::version(current.head_root, commit.root)).await?;
    if current.head_version != commit.base_version {
        let outcome = app.catalog.commit(commit).await?;
        return commit_answer(app, project.id, outcome);
    }
    accept(app, project.id, acceptor).await?;
    let outcome = app.catalog.commit(commit).await?;
    commit_answer(app, project.id, outcome)
}

/// The catalog's commit of a push or commit, its push id and root checked.
fn commit_request(
    caller: &Authenticated,
    project: &Project,
    push_id: &str,
    base_version: VersionNumber,
    root: &str,
    message: String,
) -> Result<CommitRequest, Problem> {
    // Refused before any object is read or stored, not at the commit after them.
    crate::catalog::validate_message(&message)?;
    Ok(CommitRequest {
        project: project.id,
        push_id: PushId::new(push_id)?,
        base_version,
        root: parse_id("root", root)?,
        author: caller.account.id,
        message,
        onto: None,
    })
}

pub async fn push(app: &App, mut request: ApiRequest, project: &str) -> Result<Response, Problem> {
    let (caller, project, _) = project_access(app, &request, project, Role::Editor).await?;
    let query: wire::PushQuery = parse_query(&request)?;
    let rebase = rebase_allowed(&request)?;
    let commit = commit_request(
        &caller,
        &project,
        &query.push_id,
        query.base_version,
        &query.root,
        query.message,
    )?;
    commit_version(app, &project, commit, rebase, |acceptor| {
        receive(app, &mut request, acceptor)
    })
    .await
}

pub async fn upload(
    app: &App,
    mut request: ApiRequest,
    project: &str,
) -> Result<Response, Problem> {
    let (_, project, _) = project_access(app, &request, project, Role::Editor).await?;
    let acceptor = receive(app, &mut request, PushAcceptor::upload()).await?;
    let received = acceptor.received();
    accept(app, project.id, acceptor).await?;
    Ok(json(StatusCode::OK, &wire::UploadAnswer { received }))
}

pub async fn commit(
    app: &App,
    mut request: ApiRequest,
    project: &str,
) -> Result<Response, Problem> {
    let (caller, project, _) = project_access(app, &request, project, Role::Editor).await?;
    let rebase = rebase_allowed(&request)?;
    let body: wire::Commit = read_json(&mut request).await?;
    let commit = commit_request(
        &caller,
        &project,
        &body.push_id,
        body.base_version,
        &body.root,
        body.message,
    )?;
    commit_version(app, &project, commit, rebase, |acceptor| async {
        Ok(acceptor)
    })
    .await
}

pub async fn missing(
    app: &App,
    mut request: ApiRequest,
    project: &str,
) -> Result<Response, Problem> {
    let (_, project, _) = project_access(app, &request, project, Role::Viewer).await?;
    check_declared_length(&request.headers, MAX_MISSING_BODY)?;
    let bytes = read_body(&mut request.body, MAX_MISSING_BODY).await?;
    let body: wire::MissingQuery = parse_json_body(&bytes)?;
    if body.ids.len() > MAX_MISSING_IDS {
        return Err(Problem::invalid_field(
            "ids",
            format!("at most {MAX_MISSING_IDS} ids per query"),
        ));
    }
    let ids = body
        .ids
        .iter()
        .map(|text| parse_id("ids", text))
        .collect::<Result<Vec<_>, _>>()?;
    let missing = app.objects(project.id).await?.missing(&ids).await?;
    Ok(json(StatusCode::OK, &wire::MissingAnswer { missing }))
}
