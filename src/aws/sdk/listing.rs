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

impl SdkAws {
    pub(super) async fn list_jobs_paged(&self, q: &JobQuery) -> AwsResult<Listing<JobSummary>> {
        let after = sdk_time(q.modified_after);
        let op = q.kind.list_operation();
        let status = q.status.as_deref();
        match q.kind {
            JobKind::Training => {
                read_pages(q.max_pages, |token| async move {
                    let out = self
                        .sagemaker
                        .list_training_jobs()
                        .last_modified_time_after(after)
                        .set_status_equals(status.map(TrainingJobStatus::from))
                        .max_results(PAGE_SIZE)
                        .set_next_token(token)
                        .send()
                        .limited(&self.limiter, op)
                        .await
                        .sent(op)?;
                    let items = out.training_job_summaries().iter().filter_map(|j| {
                        summary(
                            j.training_job_name(),
                            j.training_job_status().map(|s| s.as_str()),
                            j.last_modified_time(),
                        )
                    });
                    Ok((items.collect(), out.next_token().map(str::to_string)))
                })
                .await
            }
            JobKind::Transform => {
                read_pages(q.max_pages, |token| async move {
                    let out = self
                        .sagemaker
                        .list_transform_jobs()
                        .last_modified_time_after(after)
                        .set_status_equals(status.map(TransformJobStatus::from))
                        .max_results(PAGE_SIZE)
                        .set_next_token(token)
                        .send()
                        .limited(&self.limiter, op)
                        .await
                        .sent(op)?;
                    let items = out.transform_job_summaries().iter().filter_map(|j| {
                        summary(
                            j.transform_job_name(),
                            j.transform_job_status().map(|s| s.as_str()),
                            j.last_modified_time(),
                        )
                    });
                    Ok((items.collect(), out.next_token().map(str::to_string)))
                })
                .await
            }
            JobKind::Processing => {
                read_pages(q.max_pages, |token| async move {
                    let out = self
                        .sagemaker
                        .list_processing_jobs()
                        .last_modified_time_after(after)
                        .set_status_equals(status.map(ProcessingJobStatus::from))
                        .max_results(PAGE_SIZE)
                        .set_next_token(token)
                        .send()
                        .limited(&self.limiter, op)
                        .await
                        .sent(op)?;
                    let items = out.processing_job_summaries().iter().filter_map(|j| {
                        summary(
                            j.processing_job_name(),
                            j.processing_job_status().map(|s| s.as_str()),
                            j.last_modified_time(),
                        )
                    });
                    Ok((items.collect(), out.next_token().map(str::to_string)))
                })
                .await
            }
            JobKind::AutoMl => {
                read_pages(q.max_pages, |token| async move {
                    let out = self
                        .sagemaker
                        .list_auto_ml_jobs()
                        .last_modified_time_after(after)
                        .set_status_equals(status.map(AutoMlJobStatus::from))
                        .max_results(PAGE_SIZE)
                        .set_next_token(token)
                        .send()
                        .limited(&self.limiter, op)
                        .await
                        .sent(op)?;
                    let items = out.auto_ml_job_summaries().iter().filter_map(|j| {
                        summary(
                            j.auto_ml_job_name(),
                            j.auto_ml_job_status().map(|s| s.as_str()),
                            j.last_modified_time(),
                        )
                    });
                    Ok((items.collect(), out.next_token().map(str::to_string)))
                })
                .await
            }
        }
    }
}
