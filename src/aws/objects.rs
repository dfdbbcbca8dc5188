//! S3 object operations beyond staging a run's input: listing, reading, copying and deleting
//! objects, and streaming an upload of unknown size. Datasets and script jobs use them.

use super::AwsResult;
use async_trait::async_trait;
use std::path::Path;

/// One object as a listing or HeadObject shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// RFC 3339, UTC.
    pub last_modified: Option<String>,
    pub etag: Option<String>,
    pub content_type: Option<String>,
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectPage {
    pub objects: Vec<ObjectInfo>,
    /// Pass back to get the next page; None on the last page.
    pub next: Option<String>,
}

/// A multipart upload begun and neither completed nor aborted (ListMultipartUploads).
#[derive(Clone, Debug, PartialEq)]
pub struct OpenMultipartUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<crate::clock::Timestamp>,
}

/// A body to upload, read as it arrives.
pub type UploadBody = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// ListObjectsV2 under `prefix`, at most `max_keys` (1..=1000) per page.
    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: i32,
    ) -> AwsResult<ObjectPage>;
    /// HeadObject; `Ok(None)` when the object does not exist.
    async fn head_object(&self, bucket: &str, key: &str) -> AwsResult<Option<ObjectInfo>>;
    /// DeleteObject (deleting a missing object succeeds, as in S3).
    async fn delete_object(&self, bucket: &str, key: &str) -> AwsResult<()>;
    /// CopyObject (multipart copy above 5 GiB is not needed by any caller yet).
    async fn copy_object(
        &self,
        from_bucket: &str,
        from_key: &str,
        to_bucket: &str,
        to_key: &str,
    ) -> AwsResult<()>;
    /// Streams an object into a local file (created or truncated); refuses objects larger than
    /// `max_bytes`. Returns the bytes written.
    async fn download_to_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        max_bytes: u64,
    ) -> AwsResult<u64>;
    /// Streams `body` to `bucket/key` without holding it whole in memory: one PutObject when it
    /// ends below the multipart threshold, else a multipart upload that is aborted on any
    /// failure (a read error included), so nothing half-written remains. Returns the size.
    async fn upload_stream(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        body: UploadBody,
    ) -> AwsResult<u64>;
    /// ListMultipartUploads under `prefix`: the first 1,000 open uploads (the janitor comes back).
    async fn list_multipart_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> AwsResult<Vec<OpenMultipartUpload>> {
        let _ = (bucket, prefix);
        Err(super::AwsError::terminal(
            "ListMultipartUploads",
            "not supported here".into(),
        ))
    }
    /// AbortMultipartUpload (an upload already gone succeeds).
    async fn abort_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> AwsResult<()> {
        let _ = (bucket, key, upload_id);
        Err(super::AwsError::terminal(
            "AbortMultipartUpload",
            "not supported here".into(),
        ))
    }
}
