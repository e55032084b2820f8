//! The S3 backend (aws-sdk-s3 over rustls), for clusters: any S3-compatible service.
//!
//! - One S3 object per pack, key `<prefix>packs/<project>/<pack>`, written with one PutObject
//!   and read with ranged GetObjects (one per range `ranges::plan` leaves after coalescing).
//!   Loose objects from before packs, key `<prefix>objects/<project>/<id>`, are still read.
//! - Writes are conditional (`If-None-Match: *`) where the service supports it: "412 already
//!   exists" is success, since objects are immutable and content-addressed. A 409 (a concurrent
//!   conditional write of the same key still in flight) is retried after a pause.
//! - Retries: the SDK's standard mode, with [`S3Settings::max_attempts`] attempts and
//!   exponential backoff with jitter, on 5xx, timeouts, connection errors and throttling
//!   (`SlowDown`). The SDK hands a `GetObject` over once its head has arrived, so a body that
//!   breaks off, or an answer that is not the range asked for, is sent again here, each
//!   request on its own (`reread::again`), and [`StoreError::Transfer`] if it breaks off
//!   every time.
//! - Batches run at most [`S3Settings::max_concurrency`] requests at once.
//! - Every HTTP attempt, retries included, is counted by kind by an SDK interceptor, so the
//!   counts are what S3 bills.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_s3::error::{BoxError, DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use sync_protocol::ObjectId;

use super::counts::{RequestCounters, RequestCounts, RequestKind};
use super::pack::{MAX_PACK_LEN, PackId};
use super::{
    MAX_FRAME_SIZE, ObjectBackend, Result, StoreError, object_key, pack_key, pack_prefix,
    project_prefix, ranges, reread,
};
use crate::catalog::ProjectId;

/// The most keys one `DeleteObjects` request may name (an S3 limit).
const DELETE_BATCH: usize = 1000;
/// How many times a put that got 409 (concurrent conditional write) is tried again.
const CONFLICT_RETRIES: u32 = 5;

/// Static S3 credentials. Without them the SDK's default chain is used (environment, profile
/// files, web identity, container and instance metadata).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Where and how to reach S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    pub region: String,
    /// A custom endpoint (MinIO, s3s-fs, R2...); `None` for AWS.
    pub endpoint: Option<String>,
    /// Prepended to every key, e.g. `cairn/`; a missing trailing `/` is added.
    pub prefix: String,
    /// Path-style URLs (`endpoint/bucket/key`), which most S3-compatible servers need.
    pub force_path_style: bool,
    pub credentials: Option<S3Credentials>,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Requests in flight at once per batch.
    pub max_concurrency: usize,
    /// Send `If-None-Match: *` on writes. Turn off for services that reject it.
    pub conditional_put: bool,
    /// A response body that sends nothing for this long is broken off and read again. The SDK's
    /// attempt timeout ends once the head has arrived, so without this a stalled body would
    /// hold its request (and the client's) forever.
    pub body_stall_timeout: Duration,
}

/// See [`S3Settings::body_stall_timeout`]: far longer than S3 ever pauses inside a body, short
/// enough that a read broken this way is read again well within a client's patience.
pub const DEFAULT_BODY_STALL_TIMEOUT: Duration = Duration::from_secs(10);

impl S3Settings {
    /// Settings for `bucket` on AWS in `us-east-1`, with default limits.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            region: "us-east-1".to_owned(),
            endpoint: None,
            prefix: String::new(),
            force_path_style: false,
            credentials: None,
            max_attempts: 5,
            max_concurrency: 32,
            conditional_put: true,
            body_stall_timeout: DEFAULT_BODY_STALL_TIMEOUT,
        }
    }
}

/// Objects in an S3 bucket. Cheap to clone; clones share the client and counters.
#[derive(Debug, Clone)]
pub struct S3Backend {
    client: Client,
    bucket: String,
    prefix: String,
    max_concurrency: usize,
    conditional_put: bool,
    body_stall_timeout: Duration,
    counters: Arc<RequestCounters>,
}

impl S3Backend {
    /// Builds the client. Makes no request: a missing bucket shows on first use.
    pub async fn connect(settings: &S3Settings) -> Result<Self> {
        if settings.bucket.is_empty() {
            return Err(StoreError::Config("the S3 bucket name is empty".to_owned()));
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()));
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(credentials) = &settings.credentials {
            loader = loader.credentials_provider(Credentials::new(
                &credentials.access_key_id,
                &credentials.secret_access_key,
                None,
                None,
                "cairn-settings",
            ));
        }
        let shared = loader.load().await;
        let counters = Arc::new(RequestCounters::default());
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(settings.force_path_style)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(settings.max_attempts.max(1))
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(5)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            )
            .interceptor(CountRequests(Arc::clone(&counters)))
            .build();
        let mut prefix = settings.prefix.clone();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Self {
            client: Client::from_conf(config),
            bucket: settings.bucket.clone(),
            prefix,
            max_concurrency: settings.max_concurrency.max(1),
            conditional_put: settings.conditional_put,
            body_stall_timeout: settings.body_stall_timeout,
            counters,
        })
    }

    /// The SDK client (tests use it to create buckets and tamper with objects).
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The S3 key of an object.
    pub fn key(&self, project: &ProjectId, id: &ObjectId) -> String {
        object_key(&self.prefix, project, id)
    }

    /// The S3 key of a pack.
    pub fn pack_key(&self, project: &ProjectId, pack: &PackId) -> String {
        pack_key(&self.prefix, project, pack)
    }

    fn error<E>(&self, operation: &'static str, key: &str, error: &SdkError<E>) -> StoreError
    where
        E: std::error::Error + 'static,
    {
        StoreError::S3 {
            operation,
            key: format!("s3://{}/{key}", self.bucket),
            message: DisplayErrorContext(error).to_string(),
        }
    }

    /// One conditional PutObject of `body` (retried by the SDK; the body is in memory, so it
    /// can be sent again).
    /// Every key under `prefix` (all pages), as the rest of the key and the object's size.
    async fn list_keys(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| self.error("list", prefix, &error))?;
            keys.extend(page.contents().iter().filter_map(|object| {
                let name = object.key()?.strip_prefix(prefix)?;
                Some((name.to_owned(), object.size().unwrap_or(0).max(0) as u64))
            }));
        }
        Ok(keys)
    }

    async fn put_one(&self, key: String, body: Bytes, content_type: &str) -> Result<()> {
        let mut conflicts = 0;
        loop {
            let mut request = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_type(content_type)
                .body(ByteStream::from(body.clone()));
            if self.conditional_put {
                request = request.if_none_match("*");
            }
            let error = match request.send().await {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            match status(&error) {
                // Already stored: the same bytes, since the key is their hash.
                Some(412) => return Ok(()),
                Some(409) if conflicts < CONFLICT_RETRIES => {
                    conflicts += 1;
                    tokio::time::sleep(Duration::from_millis(50 << conflicts)).await;
                }
                _ => return Err(self.error("put", &key, &error)),
            }
        }
    }

    async fn get_one(&self, project: ProjectId, id: ObjectId) -> Result<Option<Bytes>> {
        let key = self.key(&project, &id);
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_no_such_key())
                    || status(&error) == Some(404) =>
            {
                return Ok(None);
            }
            Err(error) => return Err(self.error("get", &key, &error)),
        };
        let oversized = |len: u64| StoreError::Oversized { project, id, len };
        if let Some(len) = output.content_length()
            && len > MAX_FRAME_SIZE as i64
        {
            return Err(oversized(len as u64));
        }
        let body = output
            .body
            .collect()
            .await
            .map_err(|error| StoreError::Transfer {
                operation: "get",
                key: format!("s3://{}/{key}", self.bucket),
                message: format!("reading the body: {}", DisplayErrorContext(&error)),
            })?
            .into_bytes();
        if body.len() > MAX_FRAME_SIZE {
            return Err(oversized(body.len() as u64));
        }
        Ok(Some(body))
    }

    async fn exists(&self, project: ProjectId, id: ObjectId) -> Result<bool> {
        let key = self.key(&project, &id);
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_not_found())
                    || status(&error) == Some(404) =>
            {
                Ok(false)
            }
            Err(error) => Err(self.error("head", &key, &error)),
        }
    }

    /// One ranged GetObject of a pack: `range`'s bytes, or fewer if the pack ends first (S3
    /// cuts a range short at the end, and answers 416 for one that starts past it; both come
    /// back short here, and `ranges::split` names the asked range that does not fit).
    async fn get_range(
        &self,
        project: ProjectId,
        pack: PackId,
        range: Range<u64>,
    ) -> Result<Bytes> {
        let key = self.pack_key(&project, &pack);
        let header = format!("bytes={}-{}", range.start, range.end - 1);
        let output = match self.get_pack_object(&project, &pack, &key, header).await? {
            Some(output) => output,
            None => return Ok(Bytes::new()),
        };
        let asked = range.end - range.start;
        // A service that ignored the range answers from byte 0; a range that starts elsewhere
        // must say so. Checked before reading, as is the length, so a whole pack sent back by
        // mistake is neither read nor cut at the wrong offsets.
        let served_from = match output.content_range() {
            Some(content_range) => content_range_start(content_range),
            None => Some(0),
        };
        let length = output.content_length().unwrap_or(0).max(0) as u64;
        if served_from != Some(range.start) || length > asked {
            return Err(StoreError::Transfer {
                operation: "get range",
                key: format!("s3://{}/{key}", self.bucket),
                message: format!(
                    "asked for bytes {}..{}, got {length} bytes ({:?})",
                    range.start,
                    range.end,
                    output.content_range()
                ),
            });
        }
        self.collect(&key, output.body, asked).await
    }

    /// A GetObject of a pack with a `Range` header: `None` on 416 (the range starts past the
    /// end), [`StoreError::MissingPack`] if there is no such pack.
    async fn get_pack_object(
        &self,
        project: &ProjectId,
        pack: &PackId,
        key: &str,
        range: String,
    ) -> Result<Option<aws_sdk_s3::operation::get_object::GetObjectOutput>> {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(range);
        match request.send().await {
            Ok(output) => Ok(Some(output)),
            Err(error) if status(&error) == Some(416) => Ok(None),
            Err(error) if not_found(&error) => Err(StoreError::MissingPack {
                project: *project,
                pack: *pack,
            }),
            Err(error) => Err(self.error("get", key, &error)),
        }
    }

    /// Reads a body of at most `limit` bytes (the caller checked the declared length; this
    /// holds to it should the service send more). A body that breaks off (shorter than its
    /// declared length, or its connection lost) or stalls (nothing for
    /// [`S3Settings::body_stall_timeout`]) is [`StoreError::Transfer`].
    async fn collect(&self, key: &str, mut body: ByteStream, limit: u64) -> Result<Bytes> {
        let failed = |message: String| StoreError::Transfer {
            operation: "get",
            key: format!("s3://{}/{key}", self.bucket),
            message,
        };
        let mut bytes = bytes::BytesMut::new();
        loop {
            let chunk = match tokio::time::timeout(self.body_stall_timeout, body.next()).await {
                Err(_) => {
                    return Err(failed(format!(
                        "the body stalled: nothing for {:?} after {} bytes",
                        self.body_stall_timeout,
                        bytes.len()
                    )));
                }
                Ok(None) => break,
                Ok(Some(chunk)) => chunk.map_err(|error| {
                    failed(format!("reading the body: {}", DisplayErrorContext(&error)))
                })?,
            };
            if (bytes.len() + chunk.len()) as u64 > limit {
                return Err(failed(format!(
                    "{} bytes, more than the {limit} asked for",
                    bytes.len() + chunk.len()
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes.freeze())
    }

    /// [`ObjectBackend::read_pack`], once: one GetObject.
    async fn get_pack(&self, project: &ProjectId, pack: PackId) -> Result<Bytes> {
        let key = self.pack_key(project, &pack);
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(error) if not_found(&error) => {
                return Err(StoreError::MissingPack {
                    project: *project,
                    pack,
                });
            }
            Err(error) => return Err(self.error("get", &key, &error)),
        };
        let declared = output.content_length().map(|len| len.max(0) as u64);
        if let Some(len) = declared
            && len > MAX_PACK_LEN as u64
        {
            return Err(StoreError::OversizedPack {
                project: *project,
                pack,
                len,
            });
        }
        let limit = declared.unwrap_or(MAX_PACK_LEN as u64);
        self.collect(&key, output.body, limit).await
    }

    /// [`ObjectBackend::read_tail`], once: one GetObject of a suffix range.
    async fn get_tail(&self, project: &ProjectId, pack: PackId, len: u64) -> Result<(Bytes, u64)> {
        let key = self.pack_key(project, &pack);
        if len == 0 {
            let total = self
                .pack_len(project, pack)
                .await?
                .ok_or(StoreError::MissingPack {
                    project: *project,
                    pack,
                })?;
            return Ok((Bytes::new(), total));
        }
        // A suffix range: the last `len` bytes, whose Content-Range names the whole length.
        let output = self
            .get_pack_object(project, &pack, &key, format!("bytes=-{len}"))
            .await?;
        let Some(output) = output else {
            // Only an empty pack has no last bytes.
            return Ok((Bytes::new(), 0));
        };
        let total = match output.content_range() {
            Some(content_range) => content_range_len(content_range),
            // A service that ignored the range sent the whole pack; its length is the total.
            None => output.content_length().map(|length| length.max(0) as u64),
        };
        let (Some(total), Some(length)) = (total, output.content_length()) else {
            return Err(StoreError::Transfer {
                operation: "get tail",
                key: format!("s3://{}/{key}", self.bucket),
                message: "the answer names no length".to_owned(),
            });
        };
        if length.max(0) as u64 > len {
            return Err(StoreError::Transfer {
                operation: "get tail",
                key: format!("s3://{}/{key}", self.bucket),
                message: format!("asked for the last {len} bytes, got {length}"),
            });
        }
        let tail = self.collect(&key, output.body, len).await?;
        Ok((tail, total))
    }

    async fn delete_batch(&self, keys: Vec<String>) -> Result<()> {
        let first = keys.first().cloned().unwrap_or_default();
        let objects = keys
            .into_iter()
            .map(|key| ObjectIdentifier::builder().key(key).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|error| StoreError::Backend {
                operation: "delete",
                message: error.to_string(),
            })?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|error| StoreError::Backend {
                operation: "delete",
                message: error.to_string(),
            })?;
        let output = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|error| self.error("delete", &first, &error))?;
        if let Some(failed) = output.errors().first() {
            return Err(StoreError::S3 {
                operation: "delete",
                key: format!("s3://{}/{}", self.bucket, failed.key().unwrap_or_default()),
                message: format!(
                    "{}: {}",
                    failed.code().unwrap_or("error"),
                    failed.message().unwrap_or_default()
                ),
            });
        }
        Ok(())
    }
}

/// The HTTP status of a failed request, if a response arrived.
fn status<E>(error: &SdkError<E>) -> Option<u16> {
    error
        .raw_response()
        .map(|response| response.status().as_u16())
}

/// Whether a request failed because its key does not exist.
fn not_found<E>(error: &SdkError<E>) -> bool {
    status(error) == Some(404)
}

/// The first byte of a `Content-Range: bytes <first>-<last>/<length>` answer.
fn content_range_start(content_range: &str) -> Option<u64> {
    let (first, _) = content_range.strip_prefix("bytes ")?.split_once('-')?;
    first.parse().ok()
}

/// The whole length of a `Content-Range: bytes <first>-<last>/<length>` answer.
fn content_range_len(content_range: &str) -> Option<u64> {
    let (_, len) = content_range.rsplit_once('/')?;
    len.parse().ok()
}

fn unique(ids: &[ObjectId]) -> Vec<ObjectId> {
    let mut seen = HashSet::new();
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

#[async_trait]
impl ObjectBackend for S3Backend {
    async fn put_many(&self, project: &ProjectId, objects: Vec<(ObjectId, Bytes)>) -> Result<()> {
        let mut seen = HashSet::new();
        let puts = objects
            .into_iter()
            .filter(|(id, _)| seen.insert(*id))
            .map(|(id, frame)| Ok((self.key(project, &id), frame)));
        stream::iter(puts)
            .try_for_each_concurrent(self.max_concurrency, |(key, frame)| {
                self.put_one(key, frame, "application/zstd")
            })
            .await
    }

    async fn get_many(&self, project: &ProjectId, ids: &[ObjectId]) -> Result<Vec<Option<Bytes>>> {
        let project = *project;
        // Futures are collected first: a lazy map closure over borrowed ids trips the
        // higher-ranked Send check of async-trait.
        let reads: Vec<_> = ids
            .iter()
            .map(|&id| reread::again(reread::broke_off, move || self.get_one(project, id)))
            .collect();
        stream::iter(reads)
            .buffered(self.max_concurrency)
            .try_collect()
            .await
    }

    async fn missing(&self, project: &ProjectId, ids: &[ObjectId]) -> Result<Vec<ObjectId>> {
        let ids = unique(ids);
        let project = *project;
        let probes: Vec<_> = ids.iter().map(|&id| self.exists(project, id)).collect();
        let present: Vec<bool> = stream::iter(probes)
            .buffered(self.max_concurrency)
            .try_collect()
            .await?;
        Ok(ids
            .into_iter()
            .zip(present)
            .filter(|(_, present)| !present)
            .map(|(id, _)| id)
            .collect())
    }

    async fn list(&self, project: &ProjectId) -> Result<Vec<ObjectId>> {
        let listed = self
            .list_keys(&project_prefix(&self.prefix, project))
            .await?;
        Ok(listed
            .into_iter()
            .filter_map(|(name, _)| name.parse().ok())
            .collect())
    }

    async fn delete_many(&self, project: &ProjectId, ids: &[ObjectId]) -> Result<()> {
        let keys: Vec<String> = unique(ids).iter().map(|id| self.key(project, id)).collect();
        let batches = keys.chunks(DELETE_BATCH).map(|batch| Ok(batch.to_vec()));
        stream::iter(batches)
            .try_for_each_concurrent(self.max_concurrency, |batch| self.delete_batch(batch))
            .await
    }

    /// One PutObject for the whole pack. A pack is at most [`MAX_PACK_LEN`] (64 MiB): far
    /// below what one PutObject carries (5 GiB), and at the tens of megabytes per second one
    /// S3 connection moves, a few seconds, inside the 60 s attempt timeout. A multipart upload
    /// takes at least three requests (create, parts, complete) and pays only when a single
    /// connection's bandwidth is the limit, which has not been measured to be so here. The body
    /// is in memory, so the SDK's retries send it again.
    async fn put_pack(&self, project: &ProjectId, pack: PackId, bytes: Bytes) -> Result<()> {
        let key = self.pack_key(project, &pack);
        self.put_one(key, bytes, "application/octet-stream").await
    }

    async fn read_ranges(
        &self,
        project: &ProjectId,
        reads: &[(PackId, Range<u64>)],
    ) -> Result<Vec<Bytes>> {
        ranges::check(reads)?;
        let fetches = ranges::plan(reads);
        let project = *project;
        // Futures are collected first, as in `get_many`.
        let gets: Vec<_> = fetches
            .iter()
            .map(|fetch| {
                reread::again(reread::broke_off, move || {
                    self.get_range(project, fetch.pack, fetch.range.clone())
                })
            })
            .collect();
        let fetched: Vec<Bytes> = stream::iter(gets)
            .buffered(self.max_concurrency)
            .try_collect()
            .await?;
        ranges::split(&project, reads, &fetches, fetched)
    }

    async fn read_pack(&self, project: &ProjectId, pack: PackId) -> Result<Bytes> {
        reread::again(reread::broke_off, || self.get_pack(project, pack)).await
    }

    async fn read_tail(&self, project: &ProjectId, pack: PackId, len: u64) -> Result<(Bytes, u64)> {
        reread::again(reread::broke_off, || self.get_tail(project, pack, len)).await
    }

    async fn pack_len(&self, project: &ProjectId, pack: PackId) -> Result<Option<u64>> {
        let key = self.pack_key(project, &pack);
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(output) => Ok(Some(output.content_length().unwrap_or(0).max(0) as u64)),
            Err(error) if not_found(&error) => Ok(None),
            Err(error) => Err(self.error("head", &key, &error)),
        }
    }

    async fn list_packs(&self, project: &ProjectId) -> Result<Vec<(PackId, u64)>> {
        let listed = self.list_keys(&pack_prefix(&self.prefix, project)).await?;
        Ok(listed
            .into_iter()
            .filter_map(|(name, size)| Some((name.parse().ok()?, size)))
            .collect())
    }

    async fn delete_packs(&self, project: &ProjectId, packs: &[PackId]) -> Result<()> {
        let mut seen = HashSet::new();
        let keys: Vec<String> = packs
            .iter()
            .filter(|pack| seen.insert(**pack))
            .map(|pack| self.pack_key(project, pack))
            .collect();
        let batches = keys.chunks(DELETE_BATCH).map(|batch| Ok(batch.to_vec()));
        stream::iter(batches)
            .try_for_each_concurrent(self.max_concurrency, |batch| self.delete_batch(batch))
            .await
    }

    fn request_counts(&self) -> RequestCounts {
        self.counters.snapshot()
    }
}

/// Counts every HTTP attempt the SDK transmits, by kind.
#[derive(Debug)]
struct CountRequests(Arc<RequestCounters>);

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "CairnCountRequests"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        let request = context.request();
        self.0.add(request_kind(request.method(), request.uri()), 1);
        Ok(())
    }
}

/// The kind of an S3 request, from its method and URI.
fn request_kind(method: &str, uri: &str) -> RequestKind {
    let query = uri.split_once('?').map_or("", |(_, query)| query);
    let has_param = |name: &str| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(name))
    };
    match method {
        "HEAD" => RequestKind::Head,
        "PUT" => RequestKind::Put,
        "DELETE" => RequestKind::Delete,
        "POST" if has_param("delete") => RequestKind::Delete,
        "GET" if has_param("list-type") => RequestKind::List,
        "POST" => RequestKind::Put,
        _ => RequestKind::Get,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(content_range_start("bytes 10-19/200"), Some(10));
        assert_eq!(content_range_len("bytes 10-19/200"), Some(200));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_len("bytes 0-9/*"), None);
    }

    #[test]
    fn request_kinds() {
        let kind = request_kind;
        assert_eq!(kind("GET", "http://h/b/objects/p/i"), RequestKind::Get);
        assert_eq!(
            kind("GET", "http://h/b?list-type=2&prefix=objects%2F"),
            RequestKind::List
        );
        assert_eq!(kind("HEAD", "http://h/b/k"), RequestKind::Head);
        assert_eq!(kind("PUT", "http://h/b/k"), RequestKind::Put);
        assert_eq!(kind("POST", "http://h/b?delete"), RequestKind::Delete);
        assert_eq!(kind("DELETE", "http://h/b/k"), RequestKind::Delete);
    }
}
