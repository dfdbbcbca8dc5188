//! Essedum's dataset routes: CSV files kept as S3 objects. Uploads stream straight to S3 (one
//! PutObject for a small file, a multipart upload above the threshold, aborted on any failure),
//! are checked while they stream (size limit, CSV content), and leave nothing behind when refused.
//!
//! A dataset's id, as this service replies it, is the unpadded URL-safe base64 of `bucket/key`:
//! it names the object on its own, survives any key (S3 keys contain `/`) as one URL path
//! segment, and needs no lookup. The Python service's ids were plain S3 keys in the connection's
//! bucket, and the backend may hold those: a path id is read as an encoded id when it is
//! canonical URL-safe base64 of text holding a `/` (a key's `.`, `%`, space or `/` can never
//! appear in one), else as a plain key in the default bucket (a key holding `/` comes
//! URL-encoded, `%2F`).
//!
//! Where a request names no `Bucket`, the bucket is its Essedum connection's `bucketName` (as the
//! Python service used), else the configured datasets bucket (`EXECUTOR_DATASETS_BUCKET`), else
//! the request is a 422 naming `Bucket`.
// Every Essedum route takes the backend's query parameters and Referer, so handlers have many
// parameters by contract.
#![allow(clippy::too_many_arguments)]

use super::body::RawBody;
use super::dto::record_date;
use super::error::ErrorBody;
use super::operator::state_of;
use super::scope::AwsScope;
use super::{ApiError, AppState};
use crate::aws::{AwsError, AwsErrorKind, AwsPort, ObjectInfo, UploadBody};
use crate::validate::{self, Fields, InputError, InputResult};
use crate::workflows::input::{Origin, local_path};
use poem::web::Data;
use poem::{Request, RequestBody};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Json, ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::types::multipart::Upload;
use poem_openapi::{
    ApiRequest, ApiResponse, Multipart, Object, OpenApi, Tags, impl_apirequest_for_payload,
};
use serde_json::{Value, json};
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::oneshot;

pub struct DatasetsApi(pub Option<AppState>);

#[derive(Tags)]
enum DatasetTag {
    /// Essedum's dataset routes (CSV files in S3).
    Datasets,
}

/// Essedum's `type` word for a dataset.
const TYPE_WORD: &str = "s3-dataset";
/// The content type datasets are stored with.
const CSV: &str = "text/csv";
/// Where an upload goes when the request names no `Key`: `datasets/<file name>`.
const DEFAULT_PREFIX: &str = "datasets/";
/// How much of a file must hold its header line.
const HEADER_LIMIT: usize = 64 * 1024;
/// The largest text field of an upload form, and the largest JSON upload request.
const SMALL_BODY: u64 = 64 * 1024;

/// A dataset in Essedum's record shape (every key present, as the Python service's records).
#[derive(Object, Debug, Clone)]
#[oai(rename = "DatasetRecord")]
pub struct DatasetRecord {
    /// The object key (the Python service's dataset id; also accepted as `{id}`).
    #[oai(rename = "sourceID")]
    pub source_id: String,
    /// The object key.
    pub name: String,
    /// The dataset id: unpadded URL-safe base64 of `bucket/key`.
    pub id: String,
    /// `Uploaded`, `Available`, `Exported` or `Deleted`.
    pub status: String,
    /// Always `s3-dataset`.
    #[oai(rename = "type")]
    pub kind: String,
    /// The bucket.
    pub container: String,
    /// The object's `s3://bucket/key` URI.
    pub artifacts: String,
    /// The `adapter_instance` of the request.
    pub adapter: Option<String>,
    /// The `project` of the request.
    pub project: Option<String>,
    /// When the object was last written (`yyyy-MM-dd HH-mm-ss`, UTC).
    #[oai(rename = "createdOn")]
    pub created_on: Option<String>,
    /// When this reply was made (`yyyy-MM-dd HH-mm-ss`, UTC).
    #[oai(rename = "syncDate")]
    pub sync_date: String,
    pub description: Option<String>,
    /// Always `AWS`.
    #[oai(rename = "sourceOrg")]
    pub source_org: String,
    /// Always `s3`.
    pub sourcename: String,
    pub deployment: Option<String>,
    /// The object as S3 describes it (`Bucket`, `Key`, `Size`, `ETag`, `LastModified`,
    /// `ContentType`), as a JSON string.
    #[oai(rename = "rawPayload")]
    pub raw_payload: String,
}

/// The multipart form of an upload. Send the text fields before `file`: the file is streamed to
/// S3 as it arrives, so where it goes must be known first.
#[derive(Multipart)]
#[allow(dead_code)]
struct DatasetForm {
    /// The bucket; default: the configured datasets bucket.
    #[oai(rename = "Bucket")]
    bucket: Option<String>,
    /// The object key; default: `datasets/<name>`.
    #[oai(rename = "Key")]
    key: Option<String>,
    /// The dataset's file name (one path segment); default: the file part's file name.
    name: Option<String>,
    /// The CSV file (UTF-8 text with a header line).
    file: Upload,
}

/// `{Bucket?, Key?, local_dataset_path}`: a CSV file inside the service's data directory.
#[derive(Object)]
#[oai(rename = "DatasetFromLocalFile", deny_unknown_fields)]
#[allow(dead_code)]
struct LocalFileSchema {
    /// The bucket; default: the configured datasets bucket.
    #[oai(rename = "Bucket")]
    bucket: Option<String>,
    /// The object key; default: `datasets/<file name>`.
    #[oai(rename = "Key")]
    key: Option<String>,
    /// A file inside the data directory (`EXECUTOR_DATA_DIR`), relative to it or absolute.
    local_dataset_path: String,
}

/// `{Bucket?, Key?}`: where to copy the dataset (default: the dataset's own bucket and key; at
/// least one must differ).
#[derive(Object)]
#[oai(rename = "DatasetExport", deny_unknown_fields)]
#[allow(dead_code)]
struct ExportSchema {
    #[oai(rename = "Bucket")]
    bucket: Option<String>,
    #[oai(rename = "Key")]
    key: Option<String>,
}

/// The multipart upload, handed to the handler unread so that the file can be streamed.
pub struct FormStream(poem::web::Multipart);

impl Payload for FormStream {
    const CONTENT_TYPE: &'static str = "multipart/form-data";

    fn check_content_type(content_type: &str) -> bool {
        <DatasetForm as Payload>::check_content_type(content_type)
    }
    fn schema_ref() -> MetaSchemaRef {
        <DatasetForm as Payload>::schema_ref()
    }
    fn register(registry: &mut Registry) {
        <DatasetForm as Payload>::register(registry)
    }
}

impl ParsePayload for FormStream {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        use poem::FromRequest;
        Ok(FormStream(
            poem::web::Multipart::from_request(request, body).await?,
        ))
    }
}

impl_apirequest_for_payload!(FormStream);

/// A small JSON body documented with schema `T`, read raw (at most [`SMALL_BODY`] bytes; this
/// route's body limit is otherwise the dataset limit) and parsed by [`crate::validate`].
pub struct SmallJson<T> {
    value: Value,
    _schema: PhantomData<fn() -> T>,
}

impl<T: Type> Payload for SmallJson<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        <Json<RawBody<T>> as Payload>::check_content_type(content_type)
    }
    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }
    fn register(registry: &mut Registry) {
        T::register(registry)
    }
}

impl<T: Type> ParsePayload for SmallJson<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(_request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        use poem::http::StatusCode;
        let mut data = Vec::new();
        body.take()?
            .into_async_read()
            .take(SMALL_BODY + 1)
            .read_to_end(&mut data)
            .await
            .map_err(|e| poem::Error::from_string(e.to_string(), StatusCode::BAD_REQUEST))?;
        if data.len() as u64 > SMALL_BODY {
            return Err(poem::Error::from_string(
                format!("a JSON upload request is at most {SMALL_BODY} bytes"),
                StatusCode::PAYLOAD_TOO_LARGE,
            ));
        }
        let value = serde_json::from_slice(&data).map_err(|e| {
            poem::Error::from_string(
                format!("the body is not valid JSON: {e}"),
                StatusCode::BAD_REQUEST,
            )
        })?;
        Ok(SmallJson {
            value,
            _schema: PhantomData,
        })
    }
}

impl_apirequest_for_payload!(SmallJson<T>, T: Type);

#[derive(ApiRequest)]
enum UploadRequest {
    /// A CSV file (part `file`), streamed to S3; text fields `Bucket`, `Key`, `name` go first.
    Form(FormStream),
    /// A CSV file inside the service's data directory.
    Json(SmallJson<LocalFileSchema>),
}

#[derive(ApiResponse)]
enum UploadReply {
    /// Uploaded (an existing object at that key is replaced).
    #[oai(status = 201)]
    Created(Json<Box<DatasetRecord>>),
    /// The file is larger than the configured limit (`EXECUTOR_MAX_DATASET_BYTES`); nothing was
    /// kept.
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
}

#[derive(ApiResponse)]
enum ListReply {
    /// One page of datasets, in key order. When there are more, the `X-Next-Page-Token` header
    /// carries the `page_token` of the next page; it is absent on the last page.
    #[oai(status = 200)]
    Page(
        Json<Vec<DatasetRecord>>,
        #[oai(header = "X-Next-Page-Token")] Option<String>,
    ),
}

#[derive(ApiResponse)]
enum ExportReply {
    /// Copied; the record of the copy.
    #[oai(status = 201)]
    Created(Json<DatasetRecord>),
}

/// Essedum's query parameters, which end up in the record.
fn origin(adapter_instance: Query<Option<String>>, project: Query<Option<String>>) -> Origin {
    Origin {
        project: project.0,
        adapter_instance: adapter_instance.0,
    }
}

// ---------------------------------------------------------------------------------------------
// Dataset ids

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded URL-safe base64.
fn b64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 4 / 3 + 3);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The inverse of [`b64_encode`]; `None` for anything it cannot have produced (so that every
/// value has exactly one encoding).
fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u32> = text
        .bytes()
        .map(|c| B64.iter().position(|&d| d == c).map(|p| p as u32))
        .collect::<Option<_>>()?;
    if digits.len() % 4 == 1 {
        return None;
    }
    let mut data = Vec::with_capacity(digits.len() * 3 / 4);
    for group in digits.chunks(4) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | (d << (18 - 6 * i)));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let len = group.len() - 1;
        // The unused low bits of a short last group must be zero.
        if group.len() < 4 && bytes[len..].iter().any(|&b| b != 0) {
            return None;
        }
        data.extend_from_slice(&bytes[..len]);
    }
    Some(data)
}

/// The id of `bucket/key`.
pub fn dataset_id(bucket: &str, key: &str) -> String {
    b64_encode(format!("{bucket}/{key}").as_bytes())
}

/// The bucket and key an id names; `None` for anything [`dataset_id`] cannot have produced.
fn parse_id(id: &str) -> Option<(String, String)> {
    let text = String::from_utf8(b64_decode(id)?).ok()?;
    let (bucket, key) = text.split_once('/')?;
    let bucket = validate::bucket_name("id", bucket).ok()?;
    let key = object_key("id", key).ok()?;
    Some((bucket, key))
}

/// A listing's `page_token`: S3's continuation token bound to the bucket and prefix it continues,
/// so that a token cannot be replayed against another listing.
fn next_page_token(bucket: &str, prefix: &str, s3_token: &str) -> String {
    b64_encode(format!("{bucket}\n{prefix}\n{s3_token}").as_bytes())
}

/// S3's continuation token inside a `page_token` of this bucket and prefix.
fn s3_token(token: &str, bucket: &str, prefix: &str) -> InputResult<String> {
    let bad = || {
        InputError::invalid(
            "page_token",
            "is not the X-Next-Page-Token of a listing of this bucket and prefix",
        )
    };
    let text = String::from_utf8(b64_decode(token).ok_or_else(bad)?).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '\n');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(b), Some(p), Some(t)) if b == bucket && p == prefix && !t.is_empty() => {
            Ok(t.to_string())
        }
        _ => Err(bad()),
    }
}

/// What a path id names: an object given by an encoded id, or a plain key in the default
/// bucket.
#[derive(Debug, PartialEq)]
enum IdForm {
    Encoded { bucket: String, key: String },
    Key(String),
}

/// Reads a path id (see the module documentation): canonical base64 of text holding a `/` is an
/// encoded id (a bad bucket or key in it is a 400 naming `id`); anything else a plain key.
fn id_form(id: &str) -> Result<IdForm, ApiError> {
    let bad_id = |why: &str| {
        ApiError::bad_request(
            format!("not a dataset id ({why}): give the id the dataset routes reply, or an S3 key"),
            Some("id"),
        )
    };
    if let Some(text) = b64_decode(id).and_then(|d| String::from_utf8(d).ok())
        && text.contains('/')
    {
        return parse_id(id)
            .map(|(bucket, key)| IdForm::Encoded { bucket, key })
            .ok_or_else(|| bad_id("it decodes to an invalid bucket or key"));
    }
    object_key("id", id)
        .map(IdForm::Key)
        .map_err(|_| bad_id("not a valid S3 key either"))
}

/// The bucket and key a path id names; a plain key is looked up in the default bucket
/// (`Bucket` query parameter, else the connection's `bucketName`, else the configured one).
async fn id_of(
    app: &AppState,
    scope: &AwsScope,
    id: &str,
    bucket: Option<String>,
) -> Result<(String, String), ApiError> {
    match id_form(id)? {
        IdForm::Encoded { bucket, key } => Ok((bucket, key)),
        IdForm::Key(key) => Ok((bucket_for(app, scope, bucket).await?, key)),
    }
}

// ---------------------------------------------------------------------------------------------
// Input

/// An object key: 1 to 1024 bytes, relative, without control characters or `.`/`..` segments,
/// not ending in `/`.
fn object_key(field: &str, s: &str) -> InputResult<String> {
    if s.is_empty()
        || s.len() > 1024
        || s.starts_with('/')
        || s.ends_with('/')
        || s.chars().any(char::is_control)
        || s.split('/').any(|seg| seg == ".." || seg == ".")
    {
        return Err(InputError::invalid(
            field,
            "must be an S3 object key of 1 to 1024 bytes: relative, no '.' or '..' segments, no control characters, not ending in '/'",
        ));
    }
    Ok(s.to_string())
}

/// A file name (one key segment) that the default key `datasets/<name>` is made of.
fn file_name(field: &str, s: &str) -> InputResult<String> {
    // A browser may send the client's whole path; only its last segment names the file.
    let base = s.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    object_key(field, base).map_err(|_| {
        InputError::invalid(
            field,
            "must be a file name (not empty, no control characters, not '.' or '..')",
        )
    })
}

/// The request's bucket, else its connection's `bucketName`, else the configured one.
async fn bucket_for(
    app: &AppState,
    scope: &AwsScope,
    given: Option<String>,
) -> Result<String, ApiError> {
    if let Some(b) = given.filter(|b| !b.is_empty()) {
        return Ok(validate::bucket_name("Bucket", &b)?);
    }
    if let (Some(conn), Some(resolver)) = (&scope.connection, app.provider.connections()) {
        // The scope resolved it a moment ago: this is the cached answer.
        let details = resolver.resolve(conn).await.map_err(|e| {
            tracing::warn!(error = %e, "connection lookup failed while choosing a bucket");
            ApiError::unavailable(format!("the connection could not be read; try again: {e}"))
        })?;
        if let Some(b) = details.bucket.as_deref().filter(|b| !b.is_empty()) {
            return validate::bucket_name("Bucket", b).map_err(|_| {
                InputError::invalid(
                    "Bucket",
                    "is not given and the connection's bucketName is not a valid bucket name",
                )
                .into()
            });
        }
    }
    app.datasets_bucket.clone().ok_or_else(|| {
        InputError::invalid(
            "Bucket",
            "is required: the request's connection has no bucketName and the service has no datasets bucket configured (EXECUTOR_DATASETS_BUCKET)",
        )
        .into()
    })
}

// ---------------------------------------------------------------------------------------------
// The content check

/// Why an upload was refused while it streamed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
enum Refusal {
    #[error("the file is larger than {max} bytes")]
    TooLarge { max: u64 },
    #[error("the file is not CSV: {0}")]
    NotCsv(String),
}

/// Formats a CSV file can never start with.
const MAGIC: &[(&[u8], &str)] = &[
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an Excel workbook?)"),
    (b"\x1f\x8b", "gzip data"),
    (b"BZh", "bzip2 data"),
    (b"\xfd7zXZ\x00", "xz data"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x7fELF", "an executable"),
    (b"PAR1", "a Parquet file"),
    (b"\xd0\xcf\x11\xe0", "an old Office document"),
];

/// Checks a file as it streams by: at most `max` bytes, UTF-8 text without NUL bytes, not a
/// known binary format, and a header line (non-blank, without control characters) within the
/// first [`HEADER_LIMIT`] bytes.
#[derive(Debug)]
struct CsvCheck {
    max: u64,
    seen: u64,
    /// The first line so far, until its newline arrives.
    first_line: Vec<u8>,
    header_done: bool,
    /// The start of a UTF-8 character cut off at the end of the last chunk.
    carry: Vec<u8>,
}

fn not_csv(why: impl Into<String>) -> Refusal {
    Refusal::NotCsv(why.into())
}

impl CsvCheck {
    fn new(max: u64) -> CsvCheck {
        CsvCheck {
            max,
            seen: 0,
            first_line: Vec::new(),
            header_done: false,
            carry: Vec::new(),
        }
    }

    fn feed(&mut self, data: &[u8]) -> Result<(), Refusal> {
        self.seen += data.len() as u64;
        if self.seen > self.max {
            return Err(Refusal::TooLarge { max: self.max });
        }
        if data.contains(&0) {
            return Err(not_csv("it contains NUL bytes (binary data)"));
        }
        if !self.header_done {
            let (line, rest) = match data.iter().position(|&b| b == b'\n') {
                Some(i) => (&data[..i], Some(&data[i + 1..])),
                None => (data, None),
            };
            self.first_line.extend_from_slice(line);
            if let Some((_, what)) = MAGIC.iter().find(|(m, _)| self.first_line.starts_with(m)) {
                return Err(not_csv(format!("it is {what}")));
            }
            if rest.is_some() {
                self.header()?;
            } else if self.first_line.len() > HEADER_LIMIT {
                return Err(not_csv(format!(
                    "no header line ends within its first {HEADER_LIMIT} bytes"
                )));
            }
        }
        self.utf8(data)
    }

    /// The first line, complete: non-blank, no control characters but tabs.
    fn header(&mut self) -> Result<(), Refusal> {
        self.header_done = true;
        let line = std::mem::take(&mut self.first_line);
        let line = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(not_csv("its first line holds control characters"));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return Err(not_csv("its first line (the header) is blank"));
        }
        Ok(())
    }

    /// UTF-8 across chunk boundaries.
    fn utf8(&mut self, mut data: &[u8]) -> Result<(), Refusal> {
        let invalid = || not_csv("it is not UTF-8 text");
        if !self.carry.is_empty() {
            let width = match self.carry[0] {
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            let take = (width - self.carry.len()).min(data.len());
            self.carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            match std::str::from_utf8(&self.carry) {
                Ok(_) => self.carry.clear(),
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(invalid()),
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                self.carry = data[e.valid_up_to()..].to_vec();
                Ok(())
            }
            Err(_) => Err(invalid()),
        }
    }

    /// The file ended.
    fn finish(&mut self) -> Result<(), Refusal> {
        if self.seen == 0 {
            return Err(not_csv("it is empty"));
        }
        if !self.carry.is_empty() {
            return Err(not_csv("it is not UTF-8 text (it ends inside a character)"));
        }
        if !self.header_done {
            self.header()?;
        }
        Ok(())
    }
}

/// The body of an upload, checked as it is read. A refusal is recorded in `refusal` (the reader
/// only fails with an I/O error); dropping the other end of `cancel` (the handler went away)
/// fails the next read, so that the upload is aborted rather than left open.
struct CsvGate {
    inner: Pin<Box<dyn AsyncRead + Send>>,
    check: CsvCheck,
    refusal: Arc<Mutex<Option<Refusal>>>,
    cancel: oneshot::Receiver<()>,
    cancelled: bool,
}

impl AsyncRead for CsvGate {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.cancelled || Pin::new(&mut this.cancel).poll(cx).is_ready() {
            this.cancelled = true;
            return Poll::Ready(Err(io::Error::other("the request was abandoned")));
        }
        let before = buf.filled().len();
        ready!(this.inner.as_mut().poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        let verdict = if new.is_empty() {
            this.check.finish()
        } else {
            this.check.feed(new)
        };
        if let Err(refused) = verdict {
            let message = refused.to_string();
            *this.refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(refused);
            // A failed read hands out no data.
            buf.set_filled(before);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, message)));
        }
        Poll::Ready(Ok(()))
    }
}

/// A refusal as the client sees it.
fn refused(r: Refusal) -> Result<UploadReply, ApiError> {
    match r {
        Refusal::TooLarge { .. } => Ok(UploadReply::TooLarge(Json(ErrorBody {
            error: r.to_string(),
            field: Some("file".into()),
        }))),
        Refusal::NotCsv(_) => Err(InputError::invalid("file", r.to_string()).into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Replies

fn record(
    app: &AppState,
    bucket: &str,
    info: &ObjectInfo,
    status: &str,
    origin: &Origin,
) -> DatasetRecord {
    let id = dataset_id(bucket, &info.key);
    DatasetRecord {
        source_id: info.key.clone(),
        name: info.key.clone(),
        id,
        status: status.to_string(),
        kind: TYPE_WORD.to_string(),
        container: bucket.to_string(),
        artifacts: format!("s3://{bucket}/{}", info.key),
        adapter: origin.adapter_instance.clone(),
        project: origin.project.clone(),
        created_on: info.last_modified.as_deref().map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| record_date(t.with_timezone(&chrono::Utc)))
                .unwrap_or_else(|_| t.to_string())
        }),
        sync_date: record_date(app.clock.now()),
        description: None,
        source_org: "AWS".into(),
        sourcename: "s3".into(),
        deployment: None,
        raw_payload: json!({
            "Bucket": bucket,
            "Key": info.key,
            "Size": info.size,
            "ETag": info.etag,
            "LastModified": info.last_modified,
            "ContentType": info.content_type,
        })
        .to_string(),
    }
}

/// An S3 failure as the client sees it: a missing bucket names the request field that chose it.
fn s3_failure(e: AwsError, bucket_field: &str) -> ApiError {
    match e.kind {
        AwsErrorKind::Retryable | AwsErrorKind::Capacity => {
            ApiError::unavailable(format!("S3 did not answer; try again: {e}"))
        }
        _ if e.code.as_deref() == Some("NoSuchBucket") => {
            InputError::invalid(bucket_field, "no such bucket").into()
        }
        AwsErrorKind::NotFound => ApiError::not_found(format!("not found: {e}")),
        _ => InputError::invalid(bucket_field, format!("S3 refused it: {e}")).into(),
    }
}

/// The object as HeadObject describes it, for the reply after a write.
async fn described(aws: &dyn AwsPort, bucket: &str, key: &str) -> Result<ObjectInfo, ApiError> {
    aws.head_object(bucket, key)
        .await
        .map_err(|e| s3_failure(e, "Bucket"))?
        .ok_or_else(|| ApiError::unavailable("the object is not visible yet; list the datasets"))
}

/// One text field of the form, at most [`SMALL_BODY`] bytes.
async fn text_field(field: poem::web::Field, name: &str) -> Result<String, ApiError> {
    let mut data = Vec::new();
    field
        .into_async_read()
        .take(SMALL_BODY + 1)
        .read_to_end(&mut data)
        .await
        .map_err(|e| ApiError::bad_request(format!("the form is malformed: {e}"), Some(name)))?;
    if data.len() as u64 > SMALL_BODY {
        return Err(InputError::invalid(name, format!("is longer than {SMALL_BODY} bytes")).into());
    }
    String::from_utf8(data).map_err(|_| InputError::invalid(name, "must be UTF-8 text").into())
}

/// Reads and drops a form field this service does not use (at most [`SMALL_BODY`] bytes).
async fn skip_field(field: poem::web::Field, name: &str) -> Result<(), ApiError> {
    let read = tokio::io::copy(
        &mut field.into_async_read().take(SMALL_BODY + 1),
        &mut tokio::io::sink(),
    )
    .await
    .map_err(|e| ApiError::bad_request(format!("the form is malformed: {e}"), Some(name)))?;
    if read > SMALL_BODY {
        return Err(ApiError::bad_request(
            format!(
                "the form field {name:?} is not used and longer than {SMALL_BODY} bytes; the CSV goes in the part named file"
            ),
            Some(name),
        ));
    }
    Ok(())
}

/// How long the rest of a refused form is read.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

async fn drain(form: &mut poem::web::Multipart) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Ok(Some(field)) = form.next_field().await {
            let mut rest = Box::pin(field.into_async_read());
            let _ = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
        }
    })
    .await;
}

fn form_error(e: poem::error::ParseMultipartError) -> ApiError {
    ApiError::bad_request(format!("the multipart form is malformed: {e}"), None)
}

impl DatasetsApi {
    /// A multipart upload; a refused one has the rest of its form read (for a while) before the
    /// reply, so that the client, still sending, gets the reply rather than a reset connection.
    async fn upload_form(
        &self,
        app: &AppState,
        scope: &AwsScope,
        mut form: poem::web::Multipart,
        origin: &Origin,
    ) -> Result<UploadReply, ApiError> {
        let reply = self.receive_form(app, scope, &mut form, origin).await;
        if !matches!(reply, Ok(UploadReply::Created(_))) {
            drain(&mut form).await;
        }
        reply
    }

    /// Reads the text fields up to `file`, streams the file through the check to S3, then makes
    /// sure nothing follows it. Other text fields are read and ignored, and a blank field counts
    /// as absent, as on every route the Essedum backend calls.
    async fn receive_form(
        &self,
        app: &AppState,
        scope: &AwsScope,
        form: &mut poem::web::Multipart,
        origin: &Origin,
    ) -> Result<UploadReply, ApiError> {
        let aws = scope.aws.clone();
        let (mut bucket, mut key, mut name) = (None, None, None);
        let file = loop {
            let Some(field) = form.next_field().await.map_err(form_error)? else {
                return Err(InputError::invalid(
                    "file",
                    "is required: a form part named file holding the CSV file",
                )
                .into());
            };
            let (field_name, slot) = match field.name().unwrap_or_default() {
                "file" => break field,
                "Bucket" => ("Bucket", &mut bucket),
                "Key" => ("Key", &mut key),
                "name" => ("name", &mut name),
                other => {
                    let other = other.to_string();
                    skip_field(field, &other).await?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(ApiError::bad_request(
                    format!("the form field {field_name} is given twice"),
                    Some(field_name),
                ));
            }
            *slot = Some(text_field(field, field_name).await?).filter(|v| !v.is_empty());
        };
        let bucket = bucket_for(app, scope, bucket).await?;
        let key = match (key, name) {
            (Some(k), _) => object_key("Key", &k)?,
            (None, Some(n)) => format!("{DEFAULT_PREFIX}{}", file_name("name", &n)?),
            (None, None) => match file.file_name() {
                Some(f) => format!("{DEFAULT_PREFIX}{}", file_name("file", f)?),
                None => {
                    return Err(InputError::invalid(
                        "Key",
                        "is required when the file part has no file name (or give name)",
                    )
                    .into());
                }
            },
        };

        let refusal = Arc::new(Mutex::new(None));
        let (cancel_keep, cancel) = oneshot::channel::<()>();
        let body: UploadBody = Box::new(CsvGate {
            inner: Box::pin(file.into_async_read()),
            check: CsvCheck::new(app.max_dataset_bytes),
            refusal: refusal.clone(),
            cancel,
            cancelled: false,
        });
        // Its own task: if this request is dropped (a timeout), the dropped `cancel_keep` fails
        // the body's next read and the task still aborts the multipart upload.
        let upload = {
            let (aws, bucket, key) = (aws.clone(), bucket.clone(), key.clone());
            tokio::spawn(async move { aws.upload_stream(&bucket, &key, CSV, body).await })
        };
        let result = upload.await;
        drop(cancel_keep);
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                if let Some(r) = refusal.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    return refused(r);
                }
                if e.operation == "ReadBody" {
                    return Err(ApiError::bad_request(
                        format!("the file could not be read: {}", e.message),
                        Some("file"),
                    ));
                }
                return Err(s3_failure(e, "Bucket"));
            }
            Err(e) => {
                tracing::error!(error = %e, "dataset upload task failed");
                return Err(ApiError::unavailable("the upload failed; try again"));
            }
        }
        // The file part must be the last: anything after it was not read before the upload.
        let trailing = match form.next_field().await {
            Ok(None) => None,
            Ok(Some(f)) => Some(ApiError::bad_request(
                format!(
                    "the form field {:?} follows file: send Bucket, Key and name before file",
                    f.name().unwrap_or_default()
                ),
                f.name(),
            )),
            Err(e) => Some(form_error(e)),
        };
        if let Some(err) = trailing {
            if let Err(e) = aws.delete_object(&bucket, &key).await {
                tracing::warn!(bucket, key, error = %e, "could not delete a refused upload");
            }
            return Err(err);
        }
        let info = described(aws.as_ref(), &bucket, &key).await?;
        Ok(UploadReply::Created(Json(Box::new(record(
            app, &bucket, &info, "Uploaded", origin,
        )))))
    }

    /// A file from the data directory, uploaded as it is (multipart above the threshold).
    async fn upload_local(
        &self,
        app: &AppState,
        scope: &AwsScope,
        body: Value,
        origin: &Origin,
    ) -> Result<UploadReply, ApiError> {
        const FIELD: &str = "local_dataset_path";
        let aws = scope.aws.clone();
        let mut f = Fields::essedum(body, &["Bucket", "Key", FIELD])?;
        let bucket = bucket_for(app, scope, f.opt_str("Bucket")?).await?;
        let key = f.opt_str("Key")?;
        let path = local_path(FIELD, &f.str(FIELD)?, &app.limits)?;
        let key = match key {
            Some(k) => object_key("Key", &k)?,
            None => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                format!("{DEFAULT_PREFIX}{}", file_name(FIELD, &name)?)
            }
        };
        let unreadable = |e: io::Error| {
            tracing::warn!(path = %path.display(), error = %e, "cannot read a local dataset");
            InputError::invalid(FIELD, "cannot be read")
        };
        let mut file = tokio::fs::File::open(&path).await.map_err(unreadable)?;
        let size = file.metadata().await.map_err(unreadable)?.len();
        let mut check = CsvCheck::new(app.max_dataset_bytes);
        if size > app.max_dataset_bytes {
            return refused(Refusal::TooLarge { max: check.max });
        }
        // The start of the file decides; a file is checked whole only when it is that short.
        let mut head = Vec::new();
        (&mut file)
            .take(HEADER_LIMIT as u64)
            .read_to_end(&mut head)
            .await
            .map_err(unreadable)?;
        let verdict = check.feed(&head).and_then(|_| {
            if (head.len() as u64) < HEADER_LIMIT as u64 {
                check.finish()
            } else if !check.header_done {
                Err(not_csv(format!(
                    "no header line ends within its first {HEADER_LIMIT} bytes"
                )))
            } else {
                Ok(())
            }
        });
        if let Err(r) = verdict {
            return match r {
                Refusal::NotCsv(_) => Err(InputError::invalid(FIELD, r.to_string()).into()),
                Refusal::TooLarge { .. } => refused(r),
            };
        }
        drop(file);
        // Its own task, so that a dropped request does not cut a multipart upload short.
        let upload = {
            let (aws, bucket, key) = (aws.clone(), bucket.clone(), key.clone());
            tokio::spawn(async move { aws.upload_file(&bucket, &key, &path, CSV).await })
        };
        match upload.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(s3_failure(e, "Bucket")),
            Err(e) => {
                tracing::error!(error = %e, "dataset upload task failed");
                return Err(ApiError::unavailable("the upload failed; try again"));
            }
        }
        let info = described(aws.as_ref(), &bucket, &key).await?;
        Ok(UploadReply::Created(Json(Box::new(record(
            app, &bucket, &info, "Uploaded", origin,
        )))))
    }
}

#[OpenApi(tag = "DatasetTag::Datasets")]
impl DatasetsApi {
    /// Upload a CSV dataset to S3: a `multipart/form-data` form (text fields `Bucket`, `Key`,
    /// `name`, then the file part `file`, streamed to S3), or JSON `{Bucket?, Key?,
    /// local_dataset_path}` naming a file in the data directory. `Bucket` defaults to the
    /// configured datasets bucket, `Key` to `datasets/<file name>`. A file above the dataset size
    /// limit is refused (413), one that is not UTF-8 CSV text with a header line too (422); a
    /// refused upload leaves nothing in S3.
    #[oai(path = "/api/service/v1/datasets", method = "post")]
    async fn upload(
        &self,
        body: UploadRequest,
        #[oai(name = "adapter_instance")] adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        scope: Data<&AwsScope>,
    ) -> Result<UploadReply, ApiError> {
        let app = state_of(&self.0)?;
        let origin = origin(adapter_instance, project);
        match body {
            UploadRequest::Form(form) => self.upload_form(app, &scope, form.0, &origin).await,
            UploadRequest::Json(json) => self.upload_local(app, &scope, json.value, &origin).await,
        }
    }

    /// The datasets in a bucket (default: the configured datasets bucket) under `prefix`, one
    /// page at a time, in key order: the body is the page's records (a JSON list), and the
    /// `X-Next-Page-Token` header, present while there are more, is the `page_token` of the next
    /// page. `page_size` is 1 to 1000 (default 100).
    #[oai(path = "/api/service/v1/datasets/list", method = "get")]
    async fn list(
        &self,
        #[oai(name = "Bucket")] bucket: Query<Option<String>>,
        prefix: Query<Option<String>>,
        page_size: Query<Option<i64>>,
        page_token: Query<Option<String>>,
        #[oai(name = "adapter_instance")] adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        scope: Data<&AwsScope>,
    ) -> Result<ListReply, ApiError> {
        let app = state_of(&self.0)?;
        let origin = origin(adapter_instance, project);
        let bucket = bucket_for(app, &scope, bucket.0).await?;
        let prefix = prefix.0.unwrap_or_default();
        if prefix.len() > 1024 || prefix.chars().any(char::is_control) {
            return Err(InputError::invalid(
                "prefix",
                "must be at most 1024 bytes without control characters",
            )
            .into());
        }
        let page_size = page_size.0.unwrap_or(100);
        if !(1..=1000).contains(&page_size) {
            return Err(
                InputError::invalid("page_size", "must be an integer from 1 to 1000").into(),
            );
        }
        let token = page_token
            .0
            .filter(|t| !t.is_empty())
            .map(|t| s3_token(&t, &bucket, &prefix))
            .transpose()?;
        let page = scope
            .aws
            .list_objects(&bucket, &prefix, token.as_deref(), page_size as i32)
            .await
            .map_err(|e| s3_failure(e, "Bucket"))?;
        let records = page
            .objects
            .iter()
            .map(|o| record(app, &bucket, o, "Available", &origin))
            .collect();
        Ok(ListReply::Page(
            Json(records),
            page.next.map(|t| next_page_token(&bucket, &prefix, &t)),
        ))
    }

    /// A dataset, as S3 describes it now.
    #[oai(path = "/api/service/v1/datasets/:id", method = "get")]
    async fn get(
        &self,
        id: Path<String>,
        /// The bucket of a plain-key id (default: the connection's `bucketName`, else the
        /// configured datasets bucket); ignored for an encoded id.
        #[oai(name = "Bucket")]
        id_bucket: Query<Option<String>>,
        #[oai(name = "adapter_instance")] adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        scope: Data<&AwsScope>,
    ) -> Result<Json<DatasetRecord>, ApiError> {
        let app = state_of(&self.0)?;
        let origin = origin(adapter_instance, project);
        let (bucket, key) = id_of(app, &scope, &id.0, id_bucket.0).await?;
        let info = self.existing(scope.aws.as_ref(), &bucket, &key).await?;
        Ok(Json(record(app, &bucket, &info, "Available", &origin)))
    }

    /// Delete a dataset; the reply is its record as it was, with status `Deleted`.
    #[oai(path = "/api/service/v1/datasets/:id", method = "delete")]
    async fn delete(
        &self,
        id: Path<String>,
        /// The bucket of a plain-key id (default: the connection's `bucketName`, else the
        /// configured datasets bucket); ignored for an encoded id.
        #[oai(name = "Bucket")]
        id_bucket: Query<Option<String>>,
        #[oai(name = "adapter_instance")] adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        scope: Data<&AwsScope>,
    ) -> Result<Json<DatasetRecord>, ApiError> {
        let app = state_of(&self.0)?;
        let origin = origin(adapter_instance, project);
        let (bucket, key) = id_of(app, &scope, &id.0, id_bucket.0).await?;
        let info = self.existing(scope.aws.as_ref(), &bucket, &key).await?;
        scope
            .aws
            .delete_object(&bucket, &key)
            .await
            .map_err(|e| s3_failure(e, "id"))?;
        Ok(Json(record(app, &bucket, &info, "Deleted", &origin)))
    }

    /// Copy a dataset to `{Bucket?, Key?}` (default: its own bucket and key; at least one must
    /// differ). An object already at the destination is replaced. The reply is the copy's record.
    #[oai(path = "/api/service/v1/datasets/:id/export", method = "post")]
    async fn export(
        &self,
        id: Path<String>,
        body: Json<RawBody<ExportSchema>>,
        /// The bucket of a plain-key id (default: the connection's `bucketName`, else the
        /// configured datasets bucket); ignored for an encoded id.
        #[oai(name = "Bucket")]
        id_bucket: Query<Option<String>>,
        #[oai(name = "adapter_instance")] adapter_instance: Query<Option<String>>,
        #[oai(name = "project")] project: Query<Option<String>>,
        #[oai(name = "isCached")] _is_cached: Query<Option<String>>,
        #[oai(name = "isInstance")] _is_instance: Query<Option<String>>,
        #[oai(name = "Referer")] _referer: Header<Option<String>>,
        scope: Data<&AwsScope>,
    ) -> Result<ExportReply, ApiError> {
        let app = state_of(&self.0)?;
        let origin = origin(adapter_instance, project);
        let (bucket, key) = id_of(app, &scope, &id.0, id_bucket.0).await?;
        let mut f = Fields::essedum(body.0.value, &["Bucket", "Key"])?;
        let to_bucket = match f.opt_str("Bucket")? {
            Some(b) => validate::bucket_name("Bucket", &b)?,
            None => bucket.clone(),
        };
        let to_key = match f.opt_str("Key")? {
            Some(k) => object_key("Key", &k)?,
            None => key.clone(),
        };
        if (to_bucket.as_str(), to_key.as_str()) == (bucket.as_str(), key.as_str()) {
            return Err(InputError::invalid(
                "Key",
                "the destination is the dataset itself: give another Bucket or Key",
            )
            .into());
        }
        self.existing(scope.aws.as_ref(), &bucket, &key).await?;
        scope
            .aws
            .copy_object(&bucket, &key, &to_bucket, &to_key)
            .await
            .map_err(|e| match e.kind {
                // The source was there a moment ago.
                AwsErrorKind::NotFound if e.code.as_deref() != Some("NoSuchBucket") => {
                    ApiError::not_found(format!("no dataset {}", id.0))
                }
                _ => s3_failure(e, "Bucket"),
            })?;
        let info = described(scope.aws.as_ref(), &to_bucket, &to_key).await?;
        Ok(ExportReply::Created(Json(record(
            app, &to_bucket, &info, "Exported", &origin,
        ))))
    }
}

impl DatasetsApi {
    /// The object an id names; 404 when it (or its bucket) does not exist.
    async fn existing(
        &self,
        aws: &dyn AwsPort,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectInfo, ApiError> {
        aws.head_object(bucket, key)
            .await
            .map_err(|e| s3_failure(e, "id"))?
            .ok_or_else(|| ApiError::not_found(format!("no dataset s3://{bucket}/{key}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_canonical() {
        for key in ["a", "ab", "abc", "datasets/iris.csv", "x/ü y+z/%2F.csv"] {
            let id = dataset_id("my-bucket", key);
            assert!(id.bytes().all(|b| B64.contains(&b)), "{id}");
            assert_eq!(
                parse_id(&id),
                Some(("my-bucket".to_string(), key.to_string()))
            );
        }
        // "bkt/k" is Ymt0L2s; a different last digit with the same leading bits is refused.
        assert_eq!(dataset_id("bkt", "k"), "Ymt0L2s");
        assert_eq!(parse_id("Ymt0L2t"), None);
        for bad in [
            "",
            "list",
            "Ymt0L2s=",
            "Ym t0",
            &dataset_id("Bad_Bucket", "k"),
            &dataset_id("bkt", "../etc/passwd"),
            &dataset_id("bkt", ""),
            "Y",
        ] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn path_ids_are_encoded_ids_or_plain_keys() {
        let encoded = dataset_id("my-bucket", "datasets/iris.csv");
        assert_eq!(
            id_form(&encoded).unwrap(),
            IdForm::Encoded {
                bucket: "my-bucket".into(),
                key: "datasets/iris.csv".into()
            }
        );
        // The Python service's ids: S3 keys (a key with '/' arrives decoded from %2F).
        for key in [
            "iris.csv",
            "aws_sagemaker/train.csv",
            "data set.csv",
            "list",
        ] {
            assert_eq!(id_form(key).unwrap(), IdForm::Key(key.into()), "{key}");
        }
        // Canonical base64 of text with a '/' is an encoded id, checked as one.
        for bad in [
            dataset_id("Bad_Bucket", "a.csv"),
            dataset_id("bkt", "../a.csv"),
        ] {
            assert!(id_form(&bad).is_err(), "{bad}");
        }
        for bad in ["a/../b.csv", "/abs.csv", "dir/"] {
            assert!(id_form(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn page_tokens_belong_to_their_listing() {
        let t = next_page_token("bkt", "datasets/", "s3-token/+=");
        assert_eq!(s3_token(&t, "bkt", "datasets/").unwrap(), "s3-token/+=");
        for (token, bucket, prefix) in [
            (t.as_str(), "other", "datasets/"),
            (t.as_str(), "bkt", ""),
            ("bogus!", "bkt", "datasets/"),
            (&b64_encode(b"bkt\ndatasets/\n"), "bkt", "datasets/"),
        ] {
            let err = s3_token(token, bucket, prefix).unwrap_err();
            assert_eq!(err.field(), Some("page_token"));
        }
    }

    #[test]
    fn keys_and_file_names() {
        assert!(object_key("Key", "datasets/iris.csv").is_ok());
        for bad in ["", "/abs", "a/../b", "dir/", "a\nb", &"k".repeat(1025)] {
            assert!(object_key("Key", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            file_name("name", "C:\\Users\\me\\iris.csv").unwrap(),
            "iris.csv"
        );
        assert_eq!(file_name("name", "../iris.csv").unwrap(), "iris.csv");
        for bad in ["", "..", "dir/", " "] {
            assert!(file_name("name", bad).is_err(), "{bad:?}");
        }
    }

    fn check(chunks: &[&[u8]], max: u64) -> Result<(), Refusal> {
        let mut c = CsvCheck::new(max);
        for chunk in chunks {
            c.feed(chunk)?;
        }
        c.finish()
    }

    #[test]
    fn csv_is_utf8_text_with_a_header() {
        assert_eq!(check(&[b"a,b\n1,2\n"], 100), Ok(()));
        assert_eq!(check(&[b"\xef\xbb\xbfa;b\r\n1;2\r\n"], 100), Ok(()));
        assert_eq!(check(&[b"only,a,header"], 100), Ok(()));
        // A character cut between chunks is fine; one cut off at the end is not.
        let text = "name\nJürgen\n".as_bytes();
        assert_eq!(check(&[&text[..7], &text[7..]], 100), Ok(()));
        assert!(check(&[&text[..7]], 100).is_err());
        for (bad, why) in [
            (&[b"" as &[u8]][..], "empty"),
            (&[b"\n1,2\n"], "blank"),
            (&[b"a,b\n1,\x002\n"], "NUL"),
            (&[b"a,b\n\xff\xfe\n"], "UTF-8"),
            (&[b"%PDF-1.7\n%abc\n"], "PDF"),
            (&[b"PK\x03\x04\x14\x00"], "NUL"),
            (&[b"\x1f\x8b\x08"], "gzip"),
            (&[b"a\x07b\nc\n"], "control"),
        ] {
            let err = check(bad, 100).unwrap_err().to_string();
            assert!(err.contains(why), "{err} should say {why}");
        }
        let long = vec![b'a'; HEADER_LIMIT + 1];
        assert!(
            check(&[&long], u64::MAX)
                .unwrap_err()
                .to_string()
                .contains("header")
        );
    }

    #[test]
    fn the_size_limit_holds_across_chunks() {
        assert_eq!(check(&[b"a,b\n", b"1,2\n"], 8), Ok(()));
        assert_eq!(
            check(&[b"a,b\n", b"1,2\n", b"3"], 8),
            Err(Refusal::TooLarge { max: 8 })
        );
    }

    #[tokio::test]
    async fn the_gate_records_why_it_failed_and_fails_when_abandoned() {
        let refusal = Arc::new(Mutex::new(None));
        let (keep, cancel) = oneshot::channel();
        let mut gate = CsvGate {
            inner: Box::pin(std::io::Cursor::new(b"a,b\n1,2\n3,4\n".to_vec())),
            check: CsvCheck::new(10),
            refusal: refusal.clone(),
            cancel,
            cancelled: false,
        };
        let err = gate.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            *refusal.lock().unwrap(),
            Some(Refusal::TooLarge { max: 10 })
        );
        drop(keep);

        let (keep, cancel) = oneshot::channel::<()>();
        let mut gate = CsvGate {
            inner: Box::pin(std::io::Cursor::new(b"a,b\n".to_vec())),
            check: CsvCheck::new(10),
            refusal: Arc::new(Mutex::new(None)),
            cancel,
            cancelled: false,
        };
        drop(keep);
        assert!(gate.read_to_end(&mut Vec::new()).await.is_err());
    }
}
