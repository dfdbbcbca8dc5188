//! List*Jobs for the sweep: the jobs of one kind modified after a time, 100 a page, following
//! NextToken. Each page is one call, counted, classified and rate-limited like every other.

use super::{Limited, SdkAws, Sent, read_pages, timestamp};
use crate::aws::{AwsResult, JobKind, JobQuery, JobSummary, Listing};
use aws_sdk_sagemaker::primitives::DateTime;
use aws_sdk_sagemaker::types::{
    AutoMlJobStatus, ProcessingJobStatus, TrainingJobStatus, TransformJobStatus,
};

/// SageMaker's largest page.
const PAGE_SIZE: i32 = 100;

fn sdk_time(t: crate::clock::Timestamp) -> DateTime {
    DateTime::from_secs_and_nanos(t.timestamp(), t.timestamp_subsec_nanos())
}

fn summary(
    name: Option<&str>,
    status: Option<&str>,
    modified: Option<&DateTime>,
) -> Option<JobSummary> {
    Some(JobSummary {
        name: name?.to_string(),
        status: status.unwrap_or_default().to_string(),
        last_modified: modified.and_then(timestamp),
    })
}

/// One kind's paged List*Jobs call: the four differ only in the SDK's names and types.
macro_rules! list_pages {
    ($aws:expr, $q:expr, $list:ident, $status:ty, $summaries:ident, $name:ident, $job_status:ident) => {{
        let aws = $aws;
        let q = $q;
        let after = sdk_time(q.modified_after);
        let op = q.kind.list_operation();
        let status = q.status.as_deref();
        read_pages(q.max_pages, |token| async move {
            let out = aws
                .sagemaker
                .$list()
                .last_modified_time_after(after)
                .set_status_equals(status.map(<$status>::from))
                .max_results(PAGE_SIZE)
                .set_next_token(token)
                .send()
                .limited(&aws.limiter, op)
                .await
                .sent(op)?;
            let items = out.$summaries().iter().filter_map(|j| {
                summary(
                    j.$name(),
                    j.$job_status().map(|s| s.as_str()),
                    j.last_modified_time(),
                )
            });
            Ok((items.collect(), out.next_token().map(str::to_string)))
        })
        .await
    }};
}

impl SdkAws {
    pub(super) async fn list_jobs_paged(&self, q: &JobQuery) -> AwsResult<Listing<JobSummary>> {
        match q.kind {
            JobKind::Training => list_pages!(
                self,
                q,
                list_training_jobs,
                TrainingJobStatus,
                training_job_summaries,
                training_job_name,
                training_job_status
            ),
            JobKind::Transform => list_pages!(
                self,
                q,
                list_transform_jobs,
                TransformJobStatus,
                transform_job_summaries,
                transform_job_name,
                transform_job_status
            ),
            JobKind::Processing => list_pages!(
                self,
                q,
                list_processing_jobs,
                ProcessingJobStatus,
                processing_job_summaries,
                processing_job_name,
                processing_job_status
            ),
            JobKind::AutoMl => list_pages!(
                self,
                q,
                list_auto_ml_jobs,
                AutoMlJobStatus,
                auto_ml_job_summaries,
                auto_ml_job_name,
                auto_ml_job_status
            ),
        }
    }
}
