//! Multipart uploads are never left open by this process: an [`OpenUpload`] guard aborts an
//! upload whose future is dropped before it completed (a request dropped, a step timeout, a lost
//! lease, the shutdown's drain deadline), and [`settle_uploads`] lets shutdown wait for those
//! aborts. What a crash leaves is the janitor's (`crate::janitor`).

use super::Sent;
use crate::aws::AwsResult;

/// Multipart uploads begun and neither completed nor aborted yet (their guards alive, or an
/// abort spawned by a guard still running). Shutdown waits for it to reach zero.
static OPEN_UPLOADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static UPLOADS_SETTLED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// One count in [`OPEN_UPLOADS`], given back when dropped.
struct OpenCount;

impl OpenCount {
    fn new() -> OpenCount {
        OPEN_UPLOADS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        OpenCount
    }
}

impl Drop for OpenCount {
    fn drop(&mut self) {
        if OPEN_UPLOADS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            UPLOADS_SETTLED.notify_waiters();
        }
    }
}

/// Waits (at most `limit`) until no multipart upload of this process is left open: those whose
/// futures were dropped have their aborts sent. Returns how many are still open.
pub async fn settle_uploads(limit: std::time::Duration) -> usize {
    let open = || OPEN_UPLOADS.load(std::sync::atomic::Ordering::SeqCst);
    let _ = tokio::time::timeout(limit, async {
        loop {
            let settled = UPLOADS_SETTLED.notified();
            if open() == 0 {
                return;
            }
            settled.await;
        }
    })
    .await;
    open()
}

/// A multipart upload that exists in S3 until it is completed or aborted. Dropped before
/// [`OpenUpload::settled`], it spawns AbortMultipartUpload: code after an await point never runs
/// in a dropped future, so the abort cannot be left to the upload's own error path.
pub(super) struct OpenUpload {
    s3: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: String,
    count: Option<OpenCount>,
}

impl OpenUpload {
    pub(super) fn new(
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> OpenUpload {
        OpenUpload {
            s3: s3.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            count: Some(OpenCount::new()),
        }
    }

    /// AbortMultipartUpload, awaited. A failed abort is only logged (the start-up janitor and
    /// S3 lifecycle rules clean up after it); the upload's own error is what the caller needs.
    pub(super) async fn abort(&mut self) {
        abort_upload(&self.s3, &self.bucket, &self.key, &self.upload_id).await;
        self.settled();
    }

    /// Completed or aborted: nothing to do when dropped.
    pub(super) fn settled(&mut self) {
        self.count = None;
    }
}

impl Drop for OpenUpload {
    fn drop(&mut self) {
        let Some(count) = self.count.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(bucket = %self.bucket, key = %self.key, "an upload was dropped outside the runtime; it stays open");
            return;
        };
        tracing::info!(bucket = %self.bucket, key = %self.key, "an unfinished multipart upload was dropped; aborting it");
        let (s3, bucket, key, id) = (
            self.s3.clone(),
            std::mem::take(&mut self.bucket),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.upload_id),
        );
        runtime.spawn(async move {
            abort_upload(&s3, &bucket, &key, &id).await;
            drop(count);
        });
    }
}

/// AbortMultipartUpload, logged when it fails (an upload already gone is no failure).
async fn abort_upload(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, upload_id: &str) {
    if let Err(e) = send_abort(s3, bucket, key, upload_id).await {
        tracing::warn!(bucket, key, error = %e, "abort failed");
    }
}

pub(super) async fn send_abort(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> AwsResult<()> {
    match s3
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
        .sent("AbortMultipartUpload")
    {
        Ok(_) => Ok(()),
        Err(e) if e.code.as_deref() == Some("NoSuchUpload") => Ok(()),
        Err(e) => Err(e),
    }
}
