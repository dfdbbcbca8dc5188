//! [`ObjectStore`] on the S3 SDK client, and the one multipart-upload procedure that both a local
//! file ([`AwsPort::upload_file`](crate::aws::AwsPort::upload_file)) and a streamed body
//! ([`ObjectStore::upload_stream`]) go through.

use super::upload_guard::{OpenUpload, send_abort};
use super::{Limited, SdkAws, Sent, found, io_error, terminal};
use crate::aws::{
    AwsError, AwsErrorKind, AwsResult, ObjectInfo, ObjectPage, ObjectStore, OpenMultipartUpload,
    UploadBody,
};
use async_trait::async_trait;
use aws_sdk_s3::primitives::{ByteStream, DateTime, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// S3's smallest part (every part but the last must be at least this big).
const MIN_PART: u64 = 5 * 1024 * 1024;

/// The parts of a multipart upload, produced one at a time, in order.
#[async_trait]
pub(super) trait Parts: Send {
    /// The next part and its length (never empty), or `None` after the last one.
    async fn next_part(&mut self) -> AwsResult<Option<(ByteStream, u64)>>;
}

/// A local file cut into parts; each part is read from the file by the SDK as it is sent.
pub(super) struct FileParts {
    path: PathBuf,
    size: u64,
    offset: u64,
    part_size: u64,
}

impl FileParts {
    pub(super) fn new(path: &Path, size: u64, part_size: u64) -> FileParts {
        FileParts {
            path: path.to_path_buf(),
            size,
            offset: 0,
            part_size,
        }
    }
}

#[async_trait]
impl Parts for FileParts {
    async fn next_part(&mut self) -> AwsResult<Option<(ByteStream, u64)>> {
        if self.offset >= self.size {
            return Ok(None);
        }
        let len = self.part_size.min(self.size - self.offset);
        let body = ByteStream::read_from()
            .path(&self.path)
            .offset(self.offset)
            .length(Length::Exact(len))
            .build()
            .await
            .map_err(|e| {
                terminal(
                    "UploadPart",
                    format!("reading {}: {e}", self.path.display()),
                )
            })?;
        self.offset += len;
        Ok(Some((body, len)))
    }
}

/// A body being read as it arrives: `pending` holds what was read ahead (the bytes read to learn
/// that the body is above the threshold), then the reader is read one part at a time.
struct StreamParts {
    pending: Vec<u8>,
    reader: UploadBody,
    part_size: u64,
    ended: bool,
}

#[async_trait]
impl Parts for StreamParts {
    async fn next_part(&mut self) -> AwsResult<Option<(ByteStream, u64)>> {
        let part_size = usize::try_from(self.part_size).unwrap_or(usize::MAX);
        let mut part = if self.pending.len() > part_size {
            let rest = self.pending.split_off(part_size);
            std::mem::replace(&mut self.pending, rest)
        } else {
            std::mem::take(&mut self.pending)
        };
        if part.len() < part_size && !self.ended {
            self.ended = read_up_to(&mut self.reader, &mut part, self.part_size).await?;
        }
        if part.is_empty() {
            return Ok(None);
        }
        let len = part.len() as u64;
        Ok(Some((ByteStream::from(part), len)))
    }
}

/// Reads into `buf` until it holds `limit` bytes or the body ends; true when it ended.
async fn read_up_to(reader: &mut UploadBody, buf: &mut Vec<u8>, limit: u64) -> AwsResult<bool> {
    let want = limit.saturating_sub(buf.len() as u64);
    if want == 0 {
        return Ok(false);
    }
    buf.reserve(usize::try_from(want).unwrap_or(0));
    let read = (&mut *reader)
        .take(want)
        .read_to_end(buf)
        .await
        .map_err(body_error)?;
    Ok((read as u64) < want)
}

/// The body being uploaded could not be read (the client went away, or the reader refused the
/// data: too large, not the expected content). Retrying the same upload cannot help.
fn body_error(e: std::io::Error) -> AwsError {
    AwsError {
        kind: AwsErrorKind::Terminal,
        operation: "ReadBody",
        code: Some("BodyReadError".into()),
        message: format!("reading the upload: {e}"),
    }
}

/// RFC 3339, UTC, as the service formats every time.
fn rfc3339(t: &DateTime) -> Option<String> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()).map(crate::clock::to_db)
}

/// ETags come quoted from S3; the quotes are not part of the value.
fn etag(e: Option<&str>) -> Option<String> {
    e.map(|e| e.trim_matches('"').to_string())
}

/// `x-amz-copy-source` is `bucket/key` with the key URL-encoded ('/' kept).
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = format!("{bucket}/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl SdkAws {
    /// The part size in use (never below S3's minimum).
    pub(super) fn part_size(&self) -> u64 {
        self.settings.multipart_part_size.max(MIN_PART)
    }

    /// One PutObject of a body already known to be small.
    pub(super) async fn put_body(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        body: ByteStream,
    ) -> AwsResult<()> {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(body)
            .send()
            .limited(&self.limiter, "PutObject")
            .await
            .sent("PutObject")?;
        Ok(())
    }

    /// A whole multipart upload: create it, send every part, complete it; on any failure (a part
    /// that cannot be read included) abort it, so that nothing half-written remains. An upload
    /// whose future is dropped instead (a request dropped, a step timeout, a lost lease, the
    /// shutdown's drain deadline) is aborted by its [`OpenUpload`] guard. Returns the bytes
    /// uploaded.
    pub(super) async fn multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        parts: &mut dyn Parts,
    ) -> AwsResult<u64> {
        let created = self
            .s3
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .limited(&self.limiter, "CreateMultipartUpload")
            .await
            .sent("CreateMultipartUpload")?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| terminal("CreateMultipartUpload", "no upload id returned".into()))?
            .to_string();
        let mut guard = OpenUpload::new(&self.s3, bucket, key, &upload_id);
        let result = self.send_parts(bucket, key, &upload_id, parts).await;
        if result.is_err() {
            // Aborted here, before the error is answered (the guard would only spawn it).
            guard.abort().await;
        }
        guard.settled();
        result
    }

    async fn send_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &mut dyn Parts,
    ) -> AwsResult<u64> {
        let mut done = Vec::new();
        let mut total = 0u64;
        let mut number = 1i32;
        while let Some((body, len)) = parts.next_part().await? {
            let out = self
                .s3
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(len as i64)
                .body(body)
                .send()
                .limited(&self.limiter, "UploadPart")
                .await
                .sent("UploadPart")?;
            done.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .build(),
            );
            total += len;
            number += 1;
        }
        self.s3
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .limited(&self.limiter, "CompleteMultipartUpload")
            .await
            .sent("CompleteMultipartUpload")?;
        Ok(total)
    }
}

#[async_trait]
impl ObjectStore for SdkAws {
    async fn list_multipart_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> AwsResult<Vec<OpenMultipartUpload>> {
        let out = self
            .s3
            .list_multipart_uploads()
            .bucket(bucket)
            .set_prefix(Some(prefix.to_string()).filter(|p| !p.is_empty()))
            .send()
            .limited(&self.limiter, "ListMultipartUploads")
            .await
            .sent("ListMultipartUploads")?;
        Ok(out
            .uploads()
            .iter()
            .filter_map(|u| {
                Some(OpenMultipartUpload {
                    key: u.key()?.to_string(),
                    upload_id: u.upload_id()?.to_string(),
                    initiated: u
                        .initiated()
                        .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
                })
            })
            .collect())
    }

    async fn abort_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> AwsResult<()> {
        send_abort(&self.s3, bucket, key, upload_id).await
    }

    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: i32,
    ) -> AwsResult<ObjectPage> {
        const OP: &str = "ListObjectsV2";
        let out = found(
            OP,
            self.s3
                .list_objects_v2()
                .bucket(bucket)
                .set_prefix(Some(prefix.to_string()).filter(|p| !p.is_empty()))
                .set_continuation_token(continuation.map(str::to_string))
                .max_keys(max_keys.clamp(1, 1000))
                .send()
                .limited(&self.limiter, OP)
                .await,
        )?
        .ok_or_else(|| AwsError {
            kind: AwsErrorKind::NotFound,
            operation: OP,
            code: Some("NoSuchBucket".into()),
            message: format!("no bucket {bucket:?}"),
        })?;
        let objects = out
            .contents()
            .iter()
            .map(|o| ObjectInfo {
                key: o.key().unwrap_or_default().to_string(),
                size: o.size().unwrap_or_default().max(0) as u64,
                last_modified: o.last_modified().and_then(rfc3339),
                etag: etag(o.e_tag()),
                content_type: None,
            })
            .collect();
        let next = if out.is_truncated() == Some(true) {
            out.next_continuation_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string)
        } else {
            None
        };
        Ok(ObjectPage { objects, next })
    }

    async fn head_object(&self, bucket: &str, key: &str) -> AwsResult<Option<ObjectInfo>> {
        let Some(out) = found(
            "HeadObject",
            self.s3
                .head_object()
                .bucket(bucket)
                .key(key)
                .send()
                .limited(&self.limiter, "HeadObject")
                .await,
        )?
        else {
            return Ok(None);
        };
        Ok(Some(ObjectInfo {
            key: key.to_string(),
            size: out.content_length().unwrap_or_default().max(0) as u64,
            last_modified: out.last_modified().and_then(rfc3339),
            etag: etag(out.e_tag()),
            content_type: out.content_type().map(str::to_string),
        }))
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> AwsResult<()> {
        self.s3
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .limited(&self.limiter, "DeleteObject")
            .await
            .sent("DeleteObject")?;
        Ok(())
    }

    async fn copy_object(
        &self,
        from_bucket: &str,
        from_key: &str,
        to_bucket: &str,
        to_key: &str,
    ) -> AwsResult<()> {
        self.s3
            .copy_object()
            .copy_source(copy_source(from_bucket, from_key))
            .bucket(to_bucket)
            .key(to_key)
            .send()
            .limited(&self.limiter, "CopyObject")
            .await
            .sent("CopyObject")?;
        Ok(())
    }

    async fn download_to_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        max_bytes: u64,
    ) -> AwsResult<u64> {
        const OP: &str = "GetObject";
        let too_large = |size: u64| AwsError {
            kind: AwsErrorKind::Terminal,
            operation: OP,
            code: Some("TooLarge".into()),
            message: format!(
                "s3://{bucket}/{key} is {size} bytes or more; at most {max_bytes} are accepted"
            ),
        };
        let mut out = found(
            OP,
            self.s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .limited(&self.limiter, OP)
                .await,
        )?
        .ok_or_else(|| AwsError {
            kind: AwsErrorKind::NotFound,
            operation: OP,
            code: Some("NoSuchKey".into()),
            message: format!("no object s3://{bucket}/{key}"),
        })?;
        if let Some(n) = out.content_length().filter(|n| *n as u64 > max_bytes) {
            return Err(too_large(n as u64));
        }
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| io_error(OP, path, e))?;
        let copied: AwsResult<u64> = async {
            let mut written = 0u64;
            while let Some(chunk) = out.body.next().await {
                let chunk = chunk.map_err(|e| AwsError {
                    kind: AwsErrorKind::Retryable,
                    operation: OP,
                    code: None,
                    message: format!("reading s3://{bucket}/{key}: {e}"),
                })?;
                written += chunk.len() as u64;
                if written > max_bytes {
                    return Err(too_large(written));
                }
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io_error(OP, path, e))?;
            }
            file.flush().await.map_err(|e| io_error(OP, path, e))?;
            Ok(written)
        }
        .await;
        if copied.is_err() {
            // No partial file stays behind to be mistaken for the object.
            drop(file);
            let _ = tokio::fs::remove_file(path).await;
        }
        copied
    }

    async fn upload_stream(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        mut body: UploadBody,
    ) -> AwsResult<u64> {
        // Read one byte past the threshold to learn which way the body goes; a body that ends
        // first is one PutObject. At most max(threshold, part size) bytes are held at once.
        let threshold = self.settings.multipart_threshold;
        let mut head = Vec::new();
        let ended = read_up_to(&mut body, &mut head, threshold.saturating_add(1)).await?;
        if ended {
            let size = head.len() as u64;
            self.put_body(bucket, key, content_type, ByteStream::from(head))
                .await?;
            return Ok(size);
        }
        let mut parts = StreamParts {
            pending: head,
            reader: body,
            part_size: self.part_size(),
            ended: false,
        };
        self.multipart_upload(bucket, key, content_type, &mut parts)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_encodes_the_key_but_not_its_slashes() {
        assert_eq!(
            copy_source("bkt", "datasets/a b+c/ü.csv"),
            "bkt/datasets/a%20b%2Bc/%C3%BC.csv"
        );
    }

    #[tokio::test]
    async fn a_stream_is_cut_into_parts_of_the_part_size() {
        let data: Vec<u8> = (0..23u32).map(|i| i as u8).collect();
        let mut reader: UploadBody = Box::new(std::io::Cursor::new(data[4..].to_vec()));
        let mut head = data[..4].to_vec();
        assert!(!read_up_to(&mut reader, &mut head, 7).await.unwrap());
        assert_eq!(head, data[..7]);
        let mut parts = StreamParts {
            pending: head,
            reader,
            part_size: 5,
            ended: false,
        };
        let mut lens = Vec::new();
        while let Some((body, len)) = parts.next_part().await.unwrap() {
            let bytes = body.collect().await.unwrap().into_bytes();
            assert_eq!(bytes.len() as u64, len);
            lens.push(len);
        }
        assert_eq!(lens, [5, 5, 5, 5, 3]);
    }
}
